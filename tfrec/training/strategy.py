"""Distribution strategies: MirroredStrategy over every visible GPU by default,
MultiWorkerMirroredStrategy across machines (cluster from `TF_CONFIG`)."""
import tensorflow as tf

from tfrec.config import STRATEGIES
from tfrec.errors import ConfigError

DEFAULT_COLLECTIVE_TIMEOUT_S = 300.0
# One MirroredStrategy per device set and process: the ranking stage uses the
# (frozen) retrieval model's variables, which must belong to the same strategy.
_MIRRORED = {}
# One MultiWorkerMirroredStrategy per process: it configures the process's collective
# runtime (its gRPC server) once, and a second one cannot join the cluster again.
_MULTI_WORKER = []


def make_strategy(name: str = "mirrored", devices=None,
                  collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> tf.distribute.Strategy:
    """`mirrored`: MirroredStrategy over every visible GPU, or over the given
    `devices`; with no GPU and no `devices` the default strategy (mirroring one CPU
    costs ~33% per step for nothing, measured in bench/train_throughput.py);
    `one_device`: the first GPU or the CPU; `multi_worker`: MultiWorkerMirroredStrategy
    over the cluster in `TF_CONFIG` (checked first: a clear ConfigError when it is
    missing or malformed), whose collectives fail after `collective_timeout_s`
    seconds without an answer instead of waiting forever on a lost worker."""
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
        return _multi_worker(collective_timeout_s)
    raise ConfigError(f"Unknown `train.strategy` {name!r}; choose one of {', '.join(STRATEGIES)}.")


def _multi_worker(timeout_s):
    from tfrec.training.multi_worker import read_tf_config

    read_tf_config()  # a clear error before TensorFlow parses it
    if timeout_s is None or not float(timeout_s) > 0:
        raise ConfigError(f"`train.collective_timeout_s` must be > 0 seconds, got {timeout_s!r}: without a timeout "
                          "a lost worker leaves the others waiting forever.")
    if not _MULTI_WORKER:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout_s))
        try:
            _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy(communication_options=options))
        except RuntimeError as e:
            if "must be configured at program startup" not in str(e):
                raise
            raise ConfigError("`train.strategy=multi_worker` must be set up before TensorFlow runs its first op "
                              "(MultiWorkerMirroredStrategy configures the process's collective runtime once). "
                              "Fix: call tfrec.training.strategy.make_strategy('multi_worker') at the start of "
                              "your program, before loading data or building models; `tfrec run` does this.") from e
    return _MULTI_WORKER[0]


def split_cpu(n: int = 2):
    """Splits the physical CPU into `n` logical devices (to exercise MirroredStrategy
    without GPUs). Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    return [d.name for d in tf.config.list_logical_devices("CPU")]
