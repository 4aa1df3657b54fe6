import collections
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec.data.schema import Field, Role
from tfrec.data.tfrecord import infer_feature_spec, read_shards, serialize_examples, shard_paths, write_shards
from tfrec.errors import DataError, SchemaError

FIELDS = (Field("user_id", "string", Role.ID), Field("item_id", "string", Role.ID),
          Field("timestamp", "int64", Role.TIMESTAMP), Field("rating", "float32", Role.NUMERIC))


def _events(n=1000, seed=0, start=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": [f"u{k}" for k in rng.integers(0, 50, n)],
        "item_id": [f"i{k}é" for k in rng.integers(0, 80, n)],  # non-ASCII survives
        "timestamp": np.arange(start, start + n, dtype=np.int64) * 7 + 1_600_000_000,
        "rating": rng.integers(1, 6, n).astype(np.float32) / 2,
    }, index=pd.RangeIndex(start, start + n))


def _rows(batches):
    """Batches of feature dicts -> multiset of row tuples (strings decoded)."""
    rows = collections.Counter()
    for b in batches:
        cols = [b[k].numpy() for k in ("user_id", "item_id", "timestamp", "rating")]
        for u, i, t, r in zip(*cols):
            rows[(u.decode(), i.decode(), int(t), float(r))] += 1
    return rows


def _frame_rows(df):
    return collections.Counter(zip(df.user_id, df.item_id, df.timestamp.astype(int), df.rating.astype(float)))


def _read_all(pattern, **kwargs):
    kwargs.setdefault("shuffle_buffer", 0)
    return list(read_shards(pattern, infer_feature_spec(FIELDS), batch_size=64, **kwargs))


def test_round_trip_equals_the_dataframe_as_a_multiset(tmp_path):
    df = pd.concat([_events(), _events(50, seed=1)])  # duplicate rows on purpose
    df = pd.concat([df, df.iloc[:5]])
    write_shards(df, str(tmp_path / "ev"), n_shards=4)
    got = _rows(_read_all(str(tmp_path / "ev-*.tfrecord"), seed=1))
    assert got == _frame_rows(df) and sum(got.values()) == len(df)


def test_shard_count_names_and_balance(tmp_path):
    prefix = str(tmp_path / "sub" / "train")
    paths = write_shards(_events(1003), prefix, n_shards=3)
    assert [os.path.basename(p) for p in paths] == [
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord", "train-00002-of-00003.tfrecord"]
    assert paths == shard_paths(prefix, 3) and sorted(os.listdir(tmp_path / "sub")) == sorted(map(os.path.basename, paths))
    # Round-robin: 1003 rows -> 335, 334, 334.
    counts = [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in paths]
    assert counts == [335, 334, 334]


def test_streaming_writer_with_several_chunks_balances_and_keeps_every_row(tmp_path):
    chunks = [_events(n, seed=s, start=s * 1000) for s, n in enumerate([7, 300, 1, 1, 450])]
    paths = write_shards(iter(chunks), str(tmp_path / "ev"), n_shards=4)
    counts = [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in paths]
    assert sum(counts) == 759 and max(counts) - min(counts) <= 1
    assert _rows(_read_all(paths)) == _frame_rows(pd.concat(chunks))


def test_serialized_bytes_parse_like_python_built_examples():
    df = pd.DataFrame({"s": ["a", "héllo", ""], "i": np.array([1, -2, 2**40]), "f": np.float32([0.5, -1.25, 3]),
                       "b": [True, False, True]})
    got = serialize_examples(df)
    for row, blob in zip(df.itertuples(index=False), got):
        # Reference built with the protobuf API, one field at a time.
        want = tf.train.Example(features=tf.train.Features(feature={
            "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.s.encode()])),
            "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row.i)])),
            "f": tf.train.Feature(float_list=tf.train.FloatList(value=[float(row.f)])),
            "b": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row.b)])),
        }))
        assert tf.train.Example.FromString(blob) == want


def test_missing_values_are_absent_features_and_list_columns_round_trip(tmp_path):
    df = pd.DataFrame({"item_id": ["a", "b", "c"], "genres": ["x|y", None, "z"], "price": [1.5, np.nan, 2.0],
                       "history": [["p", "q"], [], ["r", "s", "t"]]})
    got = tf.train.Example.FromString(serialize_examples(df)[1])
    assert sorted(got.features.feature) == ["history", "item_id"]  # None and NaN left out
    assert list(got.features.feature["history"].bytes_list.value) == []
    write_shards(df, str(tmp_path / "items"), n_shards=1)
    spec = infer_feature_spec([Field("item_id", "string", Role.ID),
                               Field("genres", "string", Role.CATEGORICAL, separator="|"),
                               Field("price", "float32", Role.NUMERIC)], defaults={"genres": "", "price": -1.0})
    spec["history"] = tf.io.VarLenFeature(tf.string)
    (b,) = list(read_shards(str(tmp_path / "items-*"), spec, batch_size=8, shuffle_files=False, shuffle_buffer=0))
    assert b["genres"].numpy().tolist() == [b"x|y", b"", b"z"]
    assert b["price"].numpy().tolist() == [1.5, -1.0, 2.0]
    assert tf.sparse.to_dense(b["history"]).numpy().tolist() == [[b"p", b"q", b""], [b"", b"", b""], [b"r", b"s", b"t"]]


def test_fixed_length_sequence_column(tmp_path):
    hist = np.array([[f"i{r}_{k}" for k in range(20)] for r in range(10)], dtype=object)
    df = pd.DataFrame({"user_id": [f"u{r}" for r in range(10)], "history": list(hist)})
    write_shards(df, str(tmp_path / "h"), n_shards=2)
    spec = {"user_id": tf.io.FixedLenFeature([], tf.string), "history": tf.io.FixedLenFeature([20], tf.string)}
    (b,) = list(read_shards(str(tmp_path / "h-*"), spec, batch_size=10, shuffle_files=False, shuffle_buffer=0))
    order = np.argsort([int(u[1:]) for u in b["user_id"].numpy().astype(str)])
    assert b["history"].shape == (10, 20)
    np.testing.assert_array_equal(b["history"].numpy()[order].astype(str), hist.astype(str))


def test_order_is_deterministic_for_a_seed(tmp_path):
    write_shards(_events(2000), str(tmp_path / "ev"), n_shards=5)
    pattern = str(tmp_path / "ev-*.tfrecord")

    def order(seed):
        ds = read_shards(pattern, infer_feature_spec(FIELDS), batch_size=100, seed=seed, shuffle_buffer=500)
        return np.concatenate([b["timestamp"].numpy() for b in ds])

    a, b, c = order(3), order(3), order(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and sorted(a) == sorted(c)
    assert not np.array_equal(a, np.sort(a))  # it is shuffled at all


def test_unshuffled_read_follows_shard_order(tmp_path):
    write_shards(_events(10), str(tmp_path / "ev"), n_shards=2)
    ts = np.concatenate([b["timestamp"].numpy() for b in _read_all(str(tmp_path / "ev-*"), shuffle_files=False,
                                                                     cycle_length=1, deterministic=True)])
    # Shard 0 holds rows 0, 2, 4, ...; shard 1 rows 1, 3, ...
    want = _events(10)["timestamp"].to_numpy()
    np.testing.assert_array_equal(ts, np.concatenate([want[0::2], want[1::2]]))


def test_block_length_interleaves_blocks_of_each_file(tmp_path):
    write_shards(_events(10), str(tmp_path / "ev"), n_shards=2)
    ts = np.concatenate([b["timestamp"].numpy() for b in _read_all(str(tmp_path / "ev-*"), shuffle_files=False,
                                                                     cycle_length=2, block_length=2,
                                                                     deterministic=True)])
    # Shard 0 = rows 0,2,4,6,8 and shard 1 = rows 1,3,5,7,9; two records from each in turn.
    want = _events(10)["timestamp"].to_numpy()
    np.testing.assert_array_equal(ts, want[[0, 2, 1, 3, 4, 6, 5, 7, 8, 9]])


def test_failed_write_leaves_no_shard_files(tmp_path):
    def chunks():
        yield _events(100)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_shards(chunks(), str(tmp_path / "ev"), n_shards=3)
    assert os.listdir(tmp_path) == []  # neither shards nor temporaries


def test_failed_overwrite_keeps_the_previous_shard_set(tmp_path):
    old = write_shards(_events(30), str(tmp_path / "ev"), n_shards=2)

    def chunks():
        yield _events(100)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_shards(chunks(), str(tmp_path / "ev"), n_shards=3, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == sorted(map(os.path.basename, old))
    assert sum(_rows(_read_all(old)).values()) == 30


def test_existing_shards_need_overwrite_and_stale_shards_are_removed(tmp_path):
    write_shards(_events(30), str(tmp_path / "ev"), n_shards=4)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_shards(_events(30), str(tmp_path / "ev"), n_shards=2)
    new = write_shards(_events(20), str(tmp_path / "ev"), n_shards=2, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == sorted(map(os.path.basename, new))
    assert sum(_rows(_read_all(str(tmp_path / "ev-*"))).values()) == 20


def test_gzip_round_trip(tmp_path):
    df = _events(200)
    write_shards(df, str(tmp_path / "ev"), n_shards=2, compression="GZIP")
    assert _rows(_read_all(str(tmp_path / "ev-*"), compression="GZIP")) == _frame_rows(df)


def test_schema_fields_select_and_cast_columns(tmp_path):
    df = _events(10).assign(user_id=np.arange(10), extra=1)  # integer ids declared as strings
    write_shards(df, str(tmp_path / "ev"), n_shards=1, schema_fields=FIELDS)
    ex = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(str(tmp_path / "ev-00000-of-00001.tfrecord")))).numpy())
    assert sorted(ex.features.feature) == ["item_id", "rating", "timestamp", "user_id"]
    assert ex.features.feature["user_id"].bytes_list.value == [b"0"]
    with pytest.raises(SchemaError, match="`schema_fields` declares `rating`"):
        write_shards(df.drop(columns="rating"), str(tmp_path / "x"), schema_fields=FIELDS)


def test_infer_feature_spec_types():
    spec = infer_feature_spec(FIELDS + (Field("flag", "bool", Role.NUMERIC),))
    assert {k: v.dtype for k, v in spec.items()} == {
        "user_id": tf.string, "item_id": tf.string, "timestamp": tf.int64, "rating": tf.float32, "flag": tf.int64}
    assert all(v.shape == [] for v in spec.values())
    with pytest.raises(SchemaError, match="not in `fields`"):
        infer_feature_spec(FIELDS, defaults={"nope": 1})


@pytest.mark.parametrize("n_files, workers, policy", [(4, 2, "FILE"), (4, 4, "FILE"), (2, 3, "DATA")])
def test_auto_shard_policy(tmp_path, n_files, workers, policy):
    write_shards(_events(20), str(tmp_path / "ev"), n_shards=n_files)
    ds = read_shards(str(tmp_path / "ev-*"), infer_feature_spec(FIELDS), 8, num_workers=workers)
    got = ds.options().experimental_distribute.auto_shard_policy
    assert got == getattr(tf.data.experimental.AutoShardPolicy, policy)


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(DataError, match="`pattern` .* matches no files"):
        read_shards(str(tmp_path / "nothing-*"), infer_feature_spec(FIELDS), 8)
    with pytest.raises(ValueError, match="`n_shards` must be an integer >= 1"):
        write_shards(_events(3), str(tmp_path / "ev"), n_shards=0)
    with pytest.raises(ValueError, match="`block_length` must be an integer >= 1"):
        read_shards(write_shards(_events(3), str(tmp_path / "b"), 1), infer_feature_spec(FIELDS), 8, block_length=0)
    for p in os.listdir(tmp_path):
        os.remove(tmp_path / p)
    with pytest.raises(DataError, match="`when` holds datetimes"):
        write_shards(pd.DataFrame({"when": pd.to_datetime(["2020-01-01"])}), str(tmp_path / "ev"))
    assert os.listdir(tmp_path) == []


def test_order_does_not_depend_on_the_global_seed(tmp_path):
    write_shards(_events(600), str(tmp_path / "ev"), n_shards=4)
    pattern = str(tmp_path / "ev-*.tfrecord")

    def order(global_seed):
        tf.random.set_seed(global_seed)
        ds = read_shards(pattern, infer_feature_spec(FIELDS), batch_size=100, seed=3, shuffle_buffer=300)
        return np.concatenate([b["timestamp"].numpy() for b in ds])

    fresh = order(None)
    for g in (1, 99):
        np.testing.assert_array_equal(order(g), fresh)
