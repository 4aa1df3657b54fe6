"""Distribution strategies: MirroredStrategy over every visible GPU by default."""
import tensorflow as tf

from tfrec.errors import ConfigError

STRATEGIES = ("mirrored", "one_device", "multi_worker")
# One MirroredStrategy per device set and process: the ranking stage uses the
# (frozen) retrieval model's variables, which must belong to the same strategy.
_MIRRORED = {}


def make_strategy(name: str = "mirrored", devices=None) -> tf.distribute.Strategy:
    """`mirrored`: MirroredStrategy over every visible GPU, or over the given
    `devices`; with no GPU and no `devices` the default strategy (mirroring one CPU
    costs ~33% per step for nothing, measured in bench/train_throughput.py);
    `one_device`: the first GPU or the CPU; `multi_worker`: reads TF_CONFIG."""
    if name == "mirrored":
        if devices is None:
            devices = [d.name for d in tf.config.list_logical_devices("GPU")]
            if not devices:
                return tf.distribute.get_strategy()
        key = tuple(devices)
        if key not in _MIRRORED:
            _MIRRORED[key] = tf.distribute.MirroredStrategy(devices=devices)
        return _MIRRORED[key]
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"Unknown `train.strategy` {name!r}; choose one of {', '.join(STRATEGIES)}.")


def split_cpu(n: int = 2):
    """Splits the physical CPU into `n` logical devices (to exercise MirroredStrategy
    without GPUs). Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    return [d.name for d in tf.config.list_logical_devices("CPU")]
