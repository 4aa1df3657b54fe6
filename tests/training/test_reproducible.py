"""The same seed trains the same model, whatever the process did before.

Until session 14 the first model a process trained differed from every later one with
the same seed (tf.data's shuffle read the global seed, which `train` sets only after
the dataset is built); the later ones matched across processes, the first did not."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from tests.models.worlds import synthetic_world
from tests.two_devices import run_on_two_cpus
from tfrec.config import ModelConfig
from tfrec.data.pipeline import make_dataset
from tfrec.models.factory import build_hybrid
from tfrec.training.trainer import train


def test_a_training_run_does_not_depend_on_what_ran_before_it():
    data, split, cat, text, qf = synthetic_world(40, 30, 900, data_seed=11, split="temporal", text_dim=8,
                                                 history_length=4)
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    cfg = ModelConfig(embedding_dim=8)  # id dropouts on: their seeds are train()'s

    def weights(global_seed_before, data_seed=5):
        # What a notebook or a second `train` call leaves behind: some global seed.
        tf.random.set_seed(global_seed_before)
        ds = make_dataset(feats, 64, seed=data_seed, drop_remainder=True)
        model, _, _ = train(lambda: build_hybrid(cfg, cat, data.items, text, qf, seed=0), ds,
                            strategy=tf.distribute.get_strategy(), epochs=2, optimizer="adam", learning_rate=0.02,
                            seed=0, verbose=0, log=lambda *a: None)
        return [v.numpy() for v in model.trainable_variables]

    first = weights(None)  # a fresh process
    for g in (0, 123):
        again = weights(g)
        assert len(again) == len(first) > 10
        for a, b in zip(first, again):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # float32 on 2 threads
    # Not a vacuous comparison: another data seed trains another model.
    assert not np.array_equal(weights(None, data_seed=6)[0], first[0])


@functools.lru_cache(maxsize=1)
def _small_world():
    """(data, train rows, catalogue, text, query features, train features): built once per process."""
    data, split, cat, text, qf = synthetic_world(40, 30, 1200, data_seed=11, split="temporal", text_dim=8,
                                                 history_length=4)
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    return data, len(split.train), cat, text, qf, feats


def fit_steps_per_call(overrides, steps_per_execution, strategy=None, data_seed=5, log=lambda *a: None):
    """Trains the hybrid (`ModelConfig(embedding_dim=8, **overrides)`) for two epochs on one
    small world, batches of 64 with a short last one, `steps_per_execution` steps per call.
    Returns (weights, loss per epoch, optimizer steps, steps per call compiled, train rows).
    Also run in a subprocess with two logical CPUs (below)."""
    data, rows, cat, text, qf, feats = _small_world()
    cfg = ModelConfig(embedding_dim=8, **overrides)
    ds = make_dataset(feats, 64, seed=data_seed, drop_remainder=False)
    model, history, _ = train(lambda: build_hybrid(cfg, cat, data.items, text, qf, seed=0), ds,
                              strategy=strategy or tf.distribute.get_strategy(), epochs=2, optimizer="adam",
                              learning_rate=0.02, seed=0, verbose=0, log=log, steps_per_execution=steps_per_execution)
    return ([v.numpy() for v in model.trainable_variables], history["loss"], int(model.optimizer.iterations.numpy()),
            int(model._steps_per_execution.numpy()), rows)


def test_steps_per_execution_trains_the_same_model():
    """`train.steps_per_execution` (several steps per call of the training function) is
    the same training: the same weights after two epochs as one step per call, with the
    history table refreshed inside a call (every 3 steps) and a last call shorter than
    the others (4 steps per call). Over two logical CPU devices (MirroredStrategy) it
    falls back to one step per call, and says so: there the sparse gradients' all-gather
    inside a multi-step call fails ("Shape mismatch in the collective instance")."""
    out = run_on_two_cpus("""
        import numpy as np, tensorflow as tf
        from tests.training.test_reproducible import fit_steps_per_call

        def diff(a, b):
            return max(float(np.abs(x - y).max()) for x, y in zip(a, b))

        table = {"history_refresh": 3}
        one, loss_one, steps_one, _, rows = fit_steps_per_call(table, 1)
        four, loss_four, steps_four, per_call, _ = fit_steps_per_call(table, 4)
        other = fit_steps_per_call(table, 1, data_seed=6)[0]
        mirrored = lambda: tf.distribute.MirroredStrategy(devices)
        m_one, _, m_steps, _, _ = fit_steps_per_call(table, 1, mirrored())
        m_four, _, _, m_per_call, _ = fit_steps_per_call(table, 4, mirrored(), log=print)
        print("ROWS", rows)
        print("RESULT", steps_one, steps_four, m_steps, per_call, m_per_call, len(one), diff(one, four),
              float(np.max(np.abs(np.subtract(loss_one, loss_four)))), diff(one, other), diff(m_one, m_four))
    """)
    lines = out.strip().splitlines()
    rows = int(next(line for line in lines if line.startswith("ROWS")).split()[1])
    words = lines[-1].split()
    assert words[0] == "RESULT", lines[-5:]
    steps_one, steps_four, m_steps, per_call, m_per_call, n = (int(w) for w in words[1:7])
    diff, loss, other, m_diff = (float(w) for w in words[7:11])
    per_epoch = -(-rows // 64)  # batches of 64, the last one short
    assert per_epoch % 4 != 0, per_epoch  # so an epoch ends with a call of fewer than 4 steps
    assert steps_one == steps_four == 2 * per_epoch and n > 10 and per_call == 4
    assert diff <= 1e-5 and loss <= 1e-4, (diff, loss)  # float32 on 2 threads, as above
    assert other > 1e-3  # not a vacuous comparison: another data seed trains another model
    assert m_per_call == 1 and m_steps == steps_one and m_diff <= 1e-5, (m_per_call, m_steps, m_diff)
    assert "train: steps_per_execution 4 -> 1 under 2 replicas" in out


@pytest.mark.parametrize("overrides", [
    {"sequence": "gru", "repeat_penalty": True, "history_negatives": 1.0},  # the recbole_sequential anchor's parts
    {"sequence": "sasrec"},
    {"num_random_negatives": 5, "content_loss_weight": 1.0},
])
def test_steps_per_execution_trains_the_same_model_for_other_retrievers(overrides):
    """The same weights with 1 and 4 steps per call for the sequence encoders, the repeat
    penalty, history negatives, random negatives and the content loss (in this process:
    one device)."""
    one, _, _, one_call, _ = fit_steps_per_call(overrides, 1)
    four, _, _, four_calls, _ = fit_steps_per_call(overrides, 4)
    assert (one_call, four_calls) == (1, 4) and len(one) == len(four) > 10
    for a, b in zip(one, four):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # float32 on 2 threads, as above
    assert not np.array_equal(fit_steps_per_call(overrides, 1, data_seed=6)[0][0], one[0])  # not vacuous


def _trained_weights(feats):
    """The small world's hybrid (`ModelConfig(embedding_dim=8)`) trained two epochs on `feats`
    (batches of 64, data seed 5): its trainable weights."""
    data, _, cat, text, qf, _ = _small_world()
    ds = make_dataset(feats, 64, seed=5, drop_remainder=True)
    model, _, _ = train(lambda: build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf, seed=0), ds,
                        strategy=tf.distribute.get_strategy(), epochs=2, optimizer="adam", learning_rate=0.02,
                        seed=0, verbose=0, log=lambda *a: None)
    return [v.numpy() for v in model.trainable_variables]


def test_precomputed_time_features_are_the_steps_own_and_train_the_same_model():
    """`training_features` adds the query tower's time features computed once
    (`precomputed_time_features`); the tower reads them instead of computing them in every
    step: the same values as the tower's own layer on each batch, and the same trained
    weights to the bit."""
    from tfrec.models.query_tower import precomputed_time_features

    data, _, cat, text, qf, feats = _small_world()
    ts = feats["timestamp"]
    column = precomputed_time_features(qf.reference_time, ts)
    np.testing.assert_array_equal(column, precomputed_time_features(qf.reference_time, ts, chunk=7))
    tower = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf, seed=0).query_tower
    by_batch = np.concatenate([tower.time(tf.constant(ts[i:i + 64])).numpy() for i in range(0, len(ts), 64)])
    np.testing.assert_array_equal(column, by_batch)
    # Independent of the layer: hour of day and weekday from the clock (1970-01-01 a Thursday).
    hour = (ts % 86400) / 3600.0
    weekday = (ts // 86400 + 3) % 7
    np.testing.assert_allclose(column[:, 0], np.sin(2 * np.pi * hour / 24), atol=1e-6)
    np.testing.assert_allclose(column[:, 3], np.cos(2 * np.pi * weekday / 7), atol=1e-6)

    def weights(time_column=None):
        return _trained_weights(feats if time_column is None else dict(feats, time_features=time_column))

    a, b = weights(), weights(column)
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # The column is what the tower reads when a batch carries it: other values, another model.
    assert not all(np.array_equal(x, y) for x, y in zip(a, weights(column + 0.5)))


def test_every_precomputed_query_input_trains_the_same_model():
    """`training_features` adds all of `QueryTower.precomputed_inputs` (the user id's and the
    attributes' lookups, the buckets, the time features; session 24): the same trained
    weights to the bit as a training set of raw columns only."""
    from tfrec.models.factory import query_tower_for

    _, _, cat, _, qf, feats = _small_world()
    ahead = query_tower_for(ModelConfig(embedding_dim=8), cat, qf).precomputed_inputs(feats)
    assert {"user_index", "gender_index", "occupation_index", "age_index", "time_features"} <= set(ahead)

    def weights(extra):
        return _trained_weights({**feats, **extra})

    a, b = weights({}), weights(ahead)
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # Read when carried: the users' indices shuffled train another model.
    shuffled = dict(ahead, user_index=np.random.default_rng(0).permutation(ahead["user_index"]))
    assert not all(np.array_equal(x, y) for x, y in zip(a, weights(shuffled)))
