"""Shuffle orders that depend on their `seed` alone.

tf.data's `shuffle(seed=s)` (and `list_files(seed=s)`) takes its seed pair from
the process's global seed as well: `(87654321, s)` while no global seed is set,
`(g, s)` after `tf.random.set_seed(g)` (`tensorflow.python.framework.random_seed.get_seed`).
A training function that seeds TensorFlow after its dataset is built (as Keras
users do, and `tfrec.training.train` must: the dataset is its argument) therefore trained the first model of a
process on another batch order than every later one with the same seed, and a
notebook cell re-run gave another model the second time. tfrec's pipelines build
their shuffles inside `seed_alone()`, which fixes the pair to `(87654321, s)`
whatever the global seed, the order a fresh process has always had.
"""
import contextlib

from tensorflow.python.eager import context

__all__ = ["seed_alone"]


@contextlib.contextmanager
def seed_alone(seed):
    """Within it, tf.data ops built eagerly with this explicit `seed` get the same seed
    pair whatever `tf.random.set_seed` was called with (as if it never was). Only the
    global seed is hidden, and restored on exit; the process's stream of op seeds
    for unseeded random ops is not touched. With `seed` None it does nothing: an op
    without a seed of its own stays reproducible through the global seed, as in TF."""
    ctx = context.context()
    if seed is None or not hasattr(ctx, "_seed"):  # a TensorFlow without the attribute: its own rule
        yield                                       # (tests/data/test_pipeline.py would say so)
        return
    saved = ctx._seed  # pylint: disable=protected-access; read by random_seed.get_seed via context.global_seed()
    ctx._seed = None
    try:
        yield
    finally:
        ctx._seed = saved
