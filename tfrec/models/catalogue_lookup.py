"""In-graph lookup of item attributes by raw item id.

Training batches and serving requests carry item ids only; the item tower needs
each item's cached text embedding and attributes. `CatalogueLookup` holds those
arrays for the whole catalogue (items metadata, not interaction data, so cold
items are included) and gathers them by id with a hash table. Unknown ids get a
zero row, so a request never fails.
"""
import numpy as np
import pandas as pd
import tensorflow as tf


class StringColumn(tf.Module):
    """A string column: a row -> string hash table. Not a variable, because
    MultiWorkerMirroredStrategy broadcasts every variable's initial value from the chief
    and its collectives carry no strings (`CollectiveBcastSend`: "Value for attr 'T' of
    string is not in the list of allowed values"); every worker builds the same table
    from the same catalogue instead. `values`: the strings, as numpy (`column_values`)."""

    def __init__(self, values):
        super().__init__()  # no name: a column's name need not be a Python identifier
        self.values = np.asarray(values, dtype=object)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.range(len(self.values), dtype=tf.int64),
                                                tf.constant(self.values.astype(str))), default_value="")

    def gather(self, rows):
        return self.table.lookup(tf.cast(rows, tf.int64))


class CatalogueLookup(tf.keras.layers.Layer):
    """Maps item ids [...] to a dict of their features [..., ...].

    Args:
        item_ids: catalogue ids, one per row of every column.
        columns: name -> array [n_items, ...] (float text embeddings, "|"-joined
            category strings, numbers).

    Example:
        lookup = CatalogueLookup(["1", "2"], {"year": np.array([1995., 1996.])})
        lookup(tf.constant(["2", "zzz"]))["year"]  # [1996., 0.]
    """

    def __init__(self, item_ids, columns, **kwargs):
        super().__init__(**kwargs)
        self.item_ids = [str(i) for i in item_ids]
        self.column_names = sorted(columns)
        keys = tf.constant(self.item_ids)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(self.item_ids), dtype=tf.int64)),
            default_value=len(self.item_ids))  # the extra "unknown" row
        self.columns = {}
        for name in self.column_names:
            values = np.asarray(columns[name])
            pad = np.zeros((1,) + values.shape[1:], values.dtype) if values.dtype != object else np.array([""], object)
            full = np.concatenate([values, pad])
            if full.dtype == object:  # strings: a lookup table (see StringColumn)
                self.columns[name] = StringColumn(full.astype(str).astype(object))
                continue
            # Non-trainable variables: stored once in a SavedModel, replaceable by `index_items`.
            self.columns[name] = tf.Variable(full, trainable=False, name=f"catalogue_{name}")

    def call(self, item_ids):
        return self.by_row(self.table.lookup(item_ids))

    def by_row(self, rows, exclude=()):
        """The features of catalogue rows [...] (`len(item_ids)`: the unknown row), but `exclude`'s."""
        return {name: col.gather(rows) if isinstance(col, StringColumn) else tf.gather(col, rows)
                for name, col in self.columns.items() if name not in exclude}

    def get_config(self):
        # Arrays are data, not config: rebuild with the same columns to restore.
        return {**super().get_config(), "item_ids": self.item_ids,
                "columns": {k: column_values(v).tolist() for k, v in self.columns.items()}}

    @classmethod
    def from_config(cls, config):
        cols = {k: np.asarray(v, dtype=object if isinstance(v[0], str) else np.float32)[:-1]
                for k, v in config.pop("columns").items()}  # drop the trailing "unknown" row
        return cls(columns=cols, **config)


def column_values(col) -> np.ndarray:
    """A lookup column's values as numpy (strings as str), its trailing unknown row included."""
    return col.values.copy() if isinstance(col, StringColumn) else col.numpy()


def catalogue_rows(features, item_ids):
    """Training features for `HybridRetrieval` with item ids given as rows of its
    catalogue lookup (built from `item_ids`): `item_id` [n] -> `item_row` int32 and
    `history` [n, N] -> `history_row` int32, "" padding -> len(item_ids) (the lookup's
    unknown row). The loss is the same (tested); the input pipeline then gathers, and
    the training step de-duplicates, integers instead of strings. Features with an id
    outside `item_ids` are returned unchanged (the string path embeds unknown ids)."""
    index = pd.Index([str(x) for x in item_ids])
    cand = index.get_indexer(np.asarray(features["item_id"]).astype(str))
    history = np.asarray(features["history"]).astype(str)
    hist = index.get_indexer(history.ravel()).reshape(history.shape)
    if (cand < 0).any() or ((hist < 0) & (history != "")).any():
        return features
    hist[history == ""] = len(index)
    out = {k: v for k, v in features.items() if k not in ("item_id", "history")}
    out["item_row"], out["history_row"] = cand.astype(np.int32), hist.astype(np.int32)
    return out
