"""The pieces of an export that are not signatures: raw-feature input specs, example
values for them, and the set of variables/resources the signatures capture.

`normalize_spec` checks what a user passes as a model's inputs (names, dtypes, a
batch dimension) once, with errors that say how to fix them; `collect_resources`
decides what the SavedModel stores (each weight once, no optimizer state).
"""
import collections.abc
import re

import numpy as np
import tensorflow as tf

from tfrec.errors import ConfigError

_DTYPES = (tf.string, tf.int32, tf.int64, tf.float32, tf.float64, tf.bool)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalize_spec(spec, default_name, arg):
    """`spec` (a dict of TensorSpecs, or one TensorSpec) -> ({name: TensorSpec}, single).

    `single` is True when a lone TensorSpec was given: the model is then called with
    that tensor instead of a dict. Every input needs a leading batch dimension of
    None (TF Serving batches REST instances and batched requests along dim 0).
    """
    single = isinstance(spec, tf.TensorSpec)
    if single:
        spec = {spec.name or default_name: spec}
    if not isinstance(spec, collections.abc.Mapping) or not spec:
        raise ConfigError(f"`{arg}` must be a non-empty dict of feature name -> tf.TensorSpec (or one "
                          f"tf.TensorSpec), got {spec!r}.")
    out = {}
    for name, s in spec.items():
        if not isinstance(s, tf.TensorSpec):
            raise ConfigError(f"`{arg}[{name!r}]` must be a tf.TensorSpec, got {s!r}.")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"`{arg}` name {name!r} is not a valid signature input name (letters, digits, "
                              "underscores; not starting with a digit). Fix: rename the feature.")
        if s.dtype not in _DTYPES:
            raise ConfigError(f"`{arg}[{name!r}]` has dtype {s.dtype.name}; signatures take raw features: "
                              f"one of {[d.name for d in _DTYPES]}. Fix: cast inside the model.")
        if s.shape.rank is None or s.shape.rank < 1 or s.shape[0] is not None:
            raise ConfigError(f"`{arg}[{name!r}]` has shape {s.shape}; the first dimension must be the batch, "
                              f"None. Fix: tf.TensorSpec([None, ...], {s.dtype.name!r}).")
        out[name] = tf.TensorSpec(s.shape, s.dtype, name=name)
    return out, single


def example_value(spec, batch=1, fill=None):
    """A numpy value matching `spec` with batch `batch` (other unknown dims: 1)."""
    shape = [batch] + [d if d is not None else 1 for d in spec.shape[1:]]
    if spec.dtype == tf.string:
        return np.full(shape, b"" if fill is None else fill, dtype=object)
    return np.full(shape, 0 if fill is None else fill, dtype=spec.dtype.as_numpy_dtype)


def _call(model, features, single):
    return model(next(iter(features.values()))) if single else model(dict(features))


class _Untracked:
    """Holds the user's models without making them part of the SavedModel's object graph.

    Saving a Keras model as an object also saves its Keras metadata and traces its
    layers' call functions; a keras-hub BERT inside a tf.keras layer is then written
    twice (once per Keras generation). The export tracks only the variables and
    resources the signatures capture (`collect_resources`), so each weight is stored once.
    """

    def __init__(self, **models):
        self.__dict__.update(models)


def collect_resources(*objects):
    """Every tf.Variable and captured resource (lookup tables, assets) reachable from `objects`.

    Keras 3 variables are replaced by the tf.Variable they wrap, so a weight seen
    both through Keras 3 and through a tf.keras adapter is listed once.
    """
    from tensorflow.python.trackable.resource import CapturableResource

    root = tf.Module()
    root.objects = [o for o in objects if o is not None]
    out, seen = [], set()
    descendants = tf.train.TrackableView(root).descendants()
    # Optimizer state (Adam slots, iterations) is reachable through a trained model's
    # `optimizer` but no signature reads it: leave it out of the export.
    optimizers = [o for o in descendants if isinstance(o, (tf.keras.optimizers.Optimizer,
                                                            tf.keras.optimizers.legacy.Optimizer))]
    for opt in optimizers:
        seen.update(id(v) for v in tf.train.TrackableView(opt).descendants() if isinstance(v, tf.Variable))
    for obj in descendants:
        inner = getattr(obj, "value", None) if type(obj).__module__.startswith("keras") else None
        if isinstance(inner, tf.Variable):
            obj = inner
        if isinstance(obj, (tf.Variable, CapturableResource, tf.saved_model.Asset)) and id(obj) not in seen:
            seen.add(id(obj))
            out.append(obj)
    return out
