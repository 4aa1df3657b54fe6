"""The bounded-memory streaming path: id counts from shards, the training stream,
training to a number of steps. Expected values come from pandas (`Vocabulary.fit`
on the whole frame) and `collections.Counter`, never from the streaming code."""
import collections
import dataclasses
import math
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

from tfrec.config import RunConfig
from tfrec.data.streaming import count_ids, fit_from_shards, training_dataset
from tfrec.data.synthetic import generate, iter_interaction_chunks
from tfrec.data.tfrecord import write_shards
from tfrec.errors import ConfigError, DataError
from tfrec.features.vocabulary import Vocabulary


def _naive_vocab(ids, min_count=1, max_tokens=None):
    """Counter-based reference: (values, counts), most frequent first, ties by id."""
    pairs = sorted(((v, c) for v, c in collections.Counter(ids).items() if c >= min_count),
                   key=lambda vc: (-vc[1], vc[0]))[:max_tokens]
    return tuple(v for v, _ in pairs), tuple(c for _, c in pairs)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """3,000 synthetic interactions streamed in 4 chunks into 3 shards, and the frame."""
    chunks = list(iter_interaction_chunks(n_users=60, n_items=90, n_interactions=3000, seed=3, chunk_size=800))
    prefix = str(tmp_path_factory.mktemp("stream") / "ia")
    write_shards(iter(chunks), prefix, n_shards=3)
    return prefix + "-*.tfrecord", pd.concat(chunks)


@pytest.mark.parametrize("min_count,max_tokens", [(1, None), (5, None), (2, 7)])
def test_counts_equal_the_in_memory_vocabulary_and_a_counter(shards, min_count, max_tokens):
    pattern, df = shards
    got = count_ids(pattern, min_count=min_count, max_tokens=max_tokens, batch_size=256)  # 12 batches
    assert got.n_interactions == len(df) == 3000
    for vocab, col in ((got.user_vocab, "user_id"), (got.item_vocab, "item_id")):
        assert (vocab.values, vocab.counts) == _naive_vocab(df[col].tolist(), min_count, max_tokens)
        fitted = Vocabulary.fit(df[col], min_count=min_count)
        assert vocab.values == fitted.values[:max_tokens] and vocab.counts == fitted.counts[:max_tokens]
    assert got.n_items_seen == df["item_id"].nunique() and got.n_users_seen == df["user_id"].nunique()
    if max_tokens is None and min_count == 1:
        # logQ: log(count / interactions), from the frame.
        freq = df["item_id"].value_counts() / len(df)
        logq = got.item_log_probability()
        assert set(logq) == set(freq.index)
        np.testing.assert_allclose([logq[i] for i in freq.index], np.log(freq.to_numpy()), rtol=1e-12)


def test_integer_ids_and_missing_values(tmp_path):
    # Integer user ids become "12" as in Vocabulary.fit; a missing item is not counted.
    df = pd.DataFrame({"user_id": np.array([12, 7, 12, 3, 7, 12, 5, 7], np.int64),
                       "item_id": ["a", "b", None, "a", "c", "a", None, "b"]})
    write_shards(df, str(tmp_path / "ia"), n_shards=2)
    got = count_ids(str(tmp_path / "ia-*.tfrecord"), batch_size=3)
    assert got.user_vocab.values == ("12", "7", "3", "5") and got.user_vocab.counts == (3, 3, 1, 1)
    assert got.item_vocab == Vocabulary.fit(df["item_id"])  # ("a", "b", "c"), (3, 2, 1)
    assert got.item_vocab.values == ("a", "b", "c") and got.n_interactions == 8
    batches = list(training_dataset(str(tmp_path / "ia-*.tfrecord"), 4, shuffle_buffer=0, repeat=False,
                                    drop_remainder=False))
    pairs = sorted((u.decode(), i.decode()) for b in batches
                   for u, i in zip(b["user_id"].numpy(), b["item_id"].numpy()))
    assert pairs == sorted((str(u), i) for u, i in zip(df.user_id, df.item_id) if pd.notna(i))


@pytest.mark.parametrize("n_shards,policy", [(4, "FILE"), (1, "DATA")])
def test_two_workers_read_every_record_exactly_once(tmp_path, n_shards, policy):
    # A unique user id per row identifies each record.
    n = 403
    df = pd.DataFrame({"user_id": [f"r{k}" for k in range(n)], "item_id": [f"i{k % 17}" for k in range(n)]})
    write_shards(df, str(tmp_path / "ia"), n_shards=n_shards)

    def worker(i):
        # Each worker process builds its own pipeline (same seed, hence the same file
        # and shuffle order), then MultiWorkerMirroredStrategy applies this rewrite
        # for worker i of 2 with the dataset's own auto-shard policy.
        ds = training_dataset(str(tmp_path / "ia-*.tfrecord"), 32, seed=7, repeat=False, drop_remainder=False,
                              num_workers=2, shuffle_buffer=50)
        assert ds.options().experimental_distribute.auto_shard_policy == getattr(
            tf.data.experimental.AutoShardPolicy, policy)
        return [u.decode() for b in _AutoShardDataset(ds, 2, i) for u in b["user_id"].numpy()]

    seen = [worker(0), worker(1)]
    assert len(seen[0]) + len(seen[1]) == n
    assert sorted(seen[0] + seen[1]) == sorted(df["user_id"]) and not set(seen[0]) & set(seen[1])
    if policy == "FILE":  # each worker reads whole files: rows k with k % 4 in its two shards
        shards_of = [sorted({int(u[1:]) % 4 for u in s}) for s in seen]
        assert sorted(shards_of[0] + shards_of[1]) == [0, 1, 2, 3] and len(shards_of[0]) == 2


def test_training_from_shards_lowers_the_loss(tmp_path):
    data = generate(n_users=100, n_items=60, n_interactions=6000, n_clusters=4, in_cluster_prob=0.95, seed=1)
    write_shards(data.interactions, str(tmp_path / "ia"), n_shards=2)
    cfg = RunConfig()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind="two_tower", embedding_dim=16),
                              train=dataclasses.replace(cfg.train, batch_size=128, learning_rate=0.05,
                                                        shuffle_buffer=2000, optimizer="adagrad"))
    lines = []
    fit = fit_from_shards(str(tmp_path / "ia-*.tfrecord"), config=cfg, steps=80, log_every=40, log=lines.append)
    assert fit.steps == len(fit.step_losses) == 80
    first, last = np.mean(fit.step_losses[:10]), np.mean(fit.step_losses[-10:])
    # TFRS sums the in-batch softmax loss over the batch: an untrained model scores
    # about 128 * log(128) = 621 (more with the logQ shift); clustered data lets it fall.
    assert 0.9 * 128 * math.log(128) < first < 1.3 * 128 * math.log(128) and last < 0.8 * first, (first, last)
    assert fit.counts.item_vocab == Vocabulary.fit(data.interactions["item_id"])
    assert [ln.split(",")[0] for ln in lines[1:]] == ["train: step 40/80", "train: step 80/80"]
    emb = fit.model.candidate_tower(tf.constant(["i0", "not-an-item"]))
    assert emb.shape == (2, 16)


def test_errors_name_the_pattern_column_and_argument(tmp_path, shards):
    missing = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(DataError, match=r"`pattern` '.*nothing-\*\.tfrecord' matches no files.*write_shards"):
        count_ids(missing)
    write_shards(pd.DataFrame({"user_id": ["u1", "u2"], "movie": ["a", "b"]}), str(tmp_path / "bad"), n_shards=1)
    with pytest.raises(DataError, match=r"has no column `item_id`.*\['movie', 'user_id'\].*item_column="):
        training_dataset(str(tmp_path / "bad-*.tfrecord"), 8)
    write_shards(pd.DataFrame({"user_id": ["u1"], "item_id": [1.5]}), str(tmp_path / "flt"), n_shards=1)
    with pytest.raises(DataError, match=r"`item_id`.*float_list.*strings or integers"):
        count_ids(str(tmp_path / "flt-*.tfrecord"))
    # Several ids in one record pass the first-records check but fail parsing: wrapped.
    write_shards(pd.DataFrame({"user_id": ["u1", "u2"], "item_id": [["a", "b"], ["c"]]}), str(tmp_path / "lst"),
                 n_shards=1)
    with pytest.raises(DataError, match=r"Reading the id columns \['user_id', 'item_id'\] of .*lst.*one value"):
        count_ids(str(tmp_path / "lst-*.tfrecord"))
    with pytest.raises(ConfigError, match=r"`min_count` must be an integer >= 1, got 0"):
        count_ids(shards[0], min_count=0)
    with pytest.raises(ConfigError, match=r"`model.kind` 'hybrid'.*--model.kind=two_tower"):
        fit_from_shards(shards[0], config=RunConfig(), steps=1)
    cfg = RunConfig()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind="two_tower"))
    with pytest.raises(ConfigError, match=r"`steps` must be an integer >= 1, got 0"):
        fit_from_shards(shards[0], config=cfg, steps=0)
    assert os.path.exists(shards[0].replace("*", "00000-of-00003"))
