"""Query tower: who asks (user id, attributes), when (time features) and what they
did recently (history encoded over the shared item representation)."""
import numpy as np
import tensorflow as tf

from tfrec.features.time import TimeFeatures
from tfrec.models.id_tower import IdTower
from tfrec.models.item_tower import mlp
from tfrec.models.sequence_encoder import SequenceEncoder

USER_INDEX = "user_index"  # the user id's lookup index, computed ahead (`QueryTower.precomputed_inputs`)
INDEX_SUFFIX = "_index"  # <user attribute> + this: its vocabulary index or bucket, likewise


class QueryTower(tf.keras.layers.Layer):
    """Args:
        user_vocabulary: user ids with trainable embeddings (train users).
        output_dim: shared retrieval space size.
        categorical: name -> vocabulary of single-valued user features (gender...).
        numeric: name -> (boundaries) of numeric user features, bucketised (age...).
        use_id, use_attributes, use_context, use_history: parts on/off (ablations).
        sequence: SequenceEncoder kind ("mean", "gru", "sasrec").
        reference_time: Unix seconds for the time features' recency.
        prefixes: name -> length of the prefix of a categorical feature that is looked
            up (zip_code -> 2), cut in-graph so requests send raw values.
        user_id_dropout: share of training examples whose user id is replaced by OOV,
            so the tower learns to serve users it has never seen from the rest.

    Inputs: dict with `user_id` [b], each categorical/numeric user feature [b],
    `timestamp` int64 [b]; history item vectors [b, N, d] and mask [b, N] are
    passed separately (the retrieval model computes them with the item tower). A
    batch may also carry what `precomputed_inputs` computes ahead for a training set
    (`user_index`, `<attribute>_index`, `time_features` [b, 5]), which is then read
    instead of the raw columns.
    """

    def __init__(self, user_vocabulary, output_dim=64, id_dim=64, categorical=None, numeric=None, use_id=True,
                 use_attributes=True, use_context=True, use_history=True, sequence="mean", reference_time=0,
                 user_id_dropout=0.1, hidden_units=(128,), normalize=True, seed=0, prefixes=None, **kwargs):
        super().__init__(**kwargs)
        self.user_vocabulary = [str(v) for v in user_vocabulary]
        self.output_dim = int(output_dim)
        self.id_dim = int(id_dim)
        self.categorical = {k: [str(x) for x in v] for k, v in (categorical or {}).items()}
        self.numeric = {k: [float(b) for b in v] for k, v in (numeric or {}).items()}
        self.use_id = bool(use_id)
        self.use_attributes = bool(use_attributes)
        self.use_context = bool(use_context)
        self.use_history = bool(use_history)
        self.sequence = sequence
        self.reference_time = int(reference_time)
        self.user_id_dropout = float(user_id_dropout)
        self.hidden_units = [int(u) for u in hidden_units]
        self.normalize = bool(normalize)
        self.seed = int(seed)
        self.prefixes = {k: int(v) for k, v in (prefixes or {}).items()}
        names = set(self.categorical) | set(self.numeric)
        clash = sorted(names & ({USER_INDEX, "time_features"} | {n + INDEX_SUFFIX for n in names})) + (
            ["user"] if "user" in names else [])
        if clash:  # a request's raw column would be read as a precomputed input
            raise ValueError(f"User attribute names {clash} clash with the query tower's precomputed input columns "
                             f"(`{USER_INDEX}`, `<attribute>{INDEX_SUFFIX}`, `time_features`); rename those columns "
                             "of the users table.")
        if self.use_id:
            self.ids = IdTower(self.user_vocabulary, self.id_dim, name="user_id")
        if self.use_attributes:
            self.cat = {k: tf.keras.Sequential([
                tf.keras.layers.StringLookup(vocabulary=v, mask_token=None, num_oov_indices=1),
                tf.keras.layers.Embedding(len(v) + 1, 16)], name=f"user_{k}") for k, v in self.categorical.items()}
            self.num = {k: tf.keras.Sequential([
                tf.keras.layers.Discretization(bin_boundaries=v),
                tf.keras.layers.Embedding(len(v) + 1, 8)], name=f"user_{k}") for k, v in self.numeric.items()}
        if self.use_context:
            self.time = _time_layer(self.reference_time)
        if self.use_history:
            self.encoder = SequenceEncoder(self.sequence, output_dim=self.id_dim, name="history_encoder")
        self.fuse = mlp(self.hidden_units, self.output_dim, name="query_fusion")

    def call(self, features, history_items=None, history_mask=None, training=False):
        parts = []
        # Each lookup, bucketing and the time features: read from the batch where it carries
        # them computed ahead (`precomputed_inputs`), else computed here from the raw columns.
        if self.use_id:
            index = features.get(USER_INDEX)
            index = self.ids.lookup(features["user_id"]) if index is None else index
            if training and self.user_id_dropout > 0:
                drop = tf.random.uniform(tf.shape(index), seed=self.seed + 1) < self.user_id_dropout
                index = tf.where(drop, tf.fill(tf.shape(index), tf.cast(IdTower.OOV_INDEX, index.dtype)), index)
            parts.append(self.ids.by_index(index))
        if self.use_attributes:
            for k, layer in {**self.cat, **self.num}.items():  # Sequential([lookup or bucketing, Embedding])
                index = features.get(k + INDEX_SUFFIX)
                parts.append(_embed_index(layer, index) if index is not None
                             else layer(self._raw_attribute(k, features[k])))
        if self.use_context:
            precomputed = features.get("time_features")
            parts.append(self.time(features["timestamp"]) if precomputed is None else precomputed)
        if self.use_history:
            parts.append(self.encoder(history_items, history_mask, training=training))
        x = self.fuse(tf.concat(parts, axis=-1))
        return tf.math.l2_normalize(x, axis=-1) if self.normalize else x

    def _raw_attribute(self, name, values):
        """A user attribute's raw column as its lookup reads it: a categorical's prefix
        (e.g. the region digits of a zip code, cut in-graph), a numeric's float value."""
        if name in self.num:
            return tf.cast(values, tf.float32)
        return tf.strings.substr(values, 0, self.prefixes[name]) if name in self.prefixes else values

    def precomputed_inputs(self, features, chunk=1 << 20):
        """What `call` computes from a batch's raw columns before its trainable layers,
        computed once for a whole training set (numpy, one row per example of `features`):
        `user_index` (the user id's lookup), `<attribute>_index` (each user attribute's
        vocabulary index or bucket) and `time_features` (`precomputed_time_features`). A
        batch carrying them skips that string and bucketing work in every step; the values
        are the ones the step computes, and training on them gives the same model (tested).
        Requests and exports send the raw columns."""
        out = {}
        if self.use_id:
            out[USER_INDEX] = _in_chunks(self.ids.lookup, np.asarray(features["user_id"]).astype(str), chunk)
        if self.use_attributes:
            for k, layer in {**self.cat, **self.num}.items():
                column = features[k] if k in self.num else np.asarray(features[k]).astype(str)
                out[k + INDEX_SUFFIX] = _in_chunks(
                    lambda v, k=k, layer=layer: layer.layers[0](self._raw_attribute(k, v)), column, chunk)
        if self.use_context:
            out["time_features"] = precomputed_time_features(self.reference_time, features["timestamp"], chunk)
        return out

    def get_config(self):
        return {**super().get_config(), "user_vocabulary": self.user_vocabulary, "output_dim": self.output_dim,
                "id_dim": self.id_dim, "categorical": self.categorical, "numeric": self.numeric,
                "use_id": self.use_id, "use_attributes": self.use_attributes, "use_context": self.use_context,
                "use_history": self.use_history, "sequence": self.sequence, "reference_time": self.reference_time,
                "user_id_dropout": self.user_id_dropout, "hidden_units": self.hidden_units,
                "normalize": self.normalize, "seed": self.seed, "prefixes": self.prefixes}


def _embed_index(sequential, index):
    """`Sequential([lookup or bucketing, Embedding])`'s output from the first layer's output
    computed ahead: its Embedding on `index`. The container is then marked built (its
    weights are its Embedding's) so that Keras lists them although it was not called."""
    out = sequential.layers[-1](index)
    sequential.built = True
    return out


def _time_layer(reference_time):
    return TimeFeatures(reference_time=int(reference_time), name="time_features")


def precomputed_time_features(reference_time, timestamps, chunk=1 << 20):
    """The query tower's time features of a whole column of Unix seconds (float32 [n, 5]),
    computed once by the layer the tower builds for `reference_time` (the query features'
    `reference_time`). A training set carrying them as `time_features` skips the
    computation in every step (about 2.5% of the hybrid's step on ML-100K); the values
    are the ones the step computes (tested)."""
    return _in_chunks(_time_layer(reference_time), timestamps, chunk)


def _in_chunks(fn, column, chunk):
    """numpy of `fn` (tensor -> tensor) over `column` in chunks of `chunk` rows (one, empty, at least)."""
    column = np.asarray(column)
    return np.concatenate([fn(tf.constant(column[i:i + chunk])).numpy() for i in range(0, max(len(column), 1), chunk)])
