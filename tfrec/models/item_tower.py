"""Candidate tower: item id + item text + item attributes -> one embedding.

The id embedding carries collaborative signal; the projected BERT text embedding
and the attributes carry content. ID dropout (replacing the id by OOV for a share
of training examples) makes the tower also work from content alone, which is what
a cold item nobody has interacted with has. `call(..., with_content=True)` also
returns every item's content-only embedding (its id replaced by OOV, exactly how a
cold item is embedded), for the content-only auxiliary loss of `HybridRetrieval`.
"""
import numpy as np
import tensorflow as tf

from tfrec.models.id_tower import IdTower

OOV_ID = "\x00oov"  # not in any vocabulary: looks up the shared OOV row, as a cold item's id does
INDEX_FEATURE = "item_index"  # the id's lookup index, computed ahead (`ItemTower.row_inputs`)
MULTI_HOT_SUFFIX = "_multi_hot"  # <categorical feature> + this: its multi-hot, computed ahead


def mlp(units, output_dim, name, activation="relu"):
    layers = [tf.keras.layers.Dense(u, activation=activation) for u in units]
    layers.append(tf.keras.layers.Dense(output_dim))
    return tf.keras.Sequential(layers, name=name)


class ItemTower(tf.keras.layers.Layer):
    """Fuses id, text and attribute features of items.

    Args:
        item_vocabulary: item ids with trainable embeddings (train items).
        output_dim: size of the shared retrieval space.
        id_dim: id embedding size.
        categorical: name -> vocabulary of multi-valued "|"-joined item features.
        numeric: names of scalar float features (already normalised).
        use_id, use_text: switch parts off for ablations (text-only, id-only).
        id_dropout: share of training examples whose id is replaced by OOV.
        hidden_units: fusion MLP sizes.
        normalize: L2-normalise the output (cosine retrieval with a temperature).
        text_encoder: a trainable `BertTextEncoder` (fine-tuning modes): the tower then
            reads the item's raw `text` and encodes it itself, instead of a cached
            `text_embedding`. None: frozen text (cached embeddings).

    Inputs: dict with `item_id` string [...], `text_embedding` float [..., t] (or,
    with a `text_encoder`, `text` string [n]: one-dimensional, one row per distinct
    item, since BERT runs on every row), each categorical (string [...]) and numeric
    (float [...]) feature. Instead of `item_id` and the categorical strings, what
    `row_inputs` computes from them ahead (`item_index`, `<categorical>_multi_hot`):
    `HybridRetrieval` gathers those by catalogue row in training.
    """

    def __init__(self, item_vocabulary, output_dim=64, id_dim=64, categorical=None, numeric=(), use_id=True,
                 use_text=True, id_dropout=0.2, hidden_units=(128,), normalize=True, seed=0, text_encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.item_vocabulary = [str(v) for v in item_vocabulary]
        self.output_dim = int(output_dim)
        self.id_dim = int(id_dim)
        self.categorical = {k: [str(x) for x in v] for k, v in (categorical or {}).items()}
        self.numeric = list(numeric)
        names = set(self.categorical) | set(self.numeric)
        clash = sorted(names & ({INDEX_FEATURE} | {c + MULTI_HOT_SUFFIX for c in self.categorical}))
        if clash:  # the catalogue's column would be read as a precomputed input
            raise ValueError(f"Item feature names {clash} clash with the item tower's precomputed input columns "
                             f"(`{INDEX_FEATURE}`, `<categorical>{MULTI_HOT_SUFFIX}`); rename those columns of the "
                             "items table.")
        self.use_id = bool(use_id)
        self.use_text = bool(use_text)
        self.id_dropout = float(id_dropout)
        self.hidden_units = [int(u) for u in hidden_units]
        self.normalize = bool(normalize)
        self.seed = int(seed)
        if isinstance(text_encoder, dict):  # from get_config
            from tfrec.text.encoder import BertTextEncoder

            text_encoder = tf.keras.layers.deserialize(text_encoder, custom_objects={
                "BertTextEncoder": BertTextEncoder})
        self.text_encoder = text_encoder if self.use_text else None
        if self.use_id:
            self.ids = IdTower(self.item_vocabulary, self.id_dim, name="item_id")
        if self.use_text:
            self.text_projection = tf.keras.layers.Dense(self.id_dim, name="text_projection")
        self.multi_hot = {k: tf.keras.layers.StringLookup(vocabulary=v, output_mode="multi_hot", num_oov_indices=1)
                          for k, v in self.categorical.items()}
        self.fuse = mlp(self.hidden_units, self.output_dim, name="item_fusion")

    def call(self, features, training=False, with_content=False):
        """Returns the item embeddings [..., output_dim]; with `with_content`, also
        the content-only embeddings (every id replaced by OOV) from the same text and
        attribute features, so a fine-tuned BERT still runs once."""
        parts = []
        if self.use_id:
            index = features.get(INDEX_FEATURE)  # the id's lookup computed ahead (`row_inputs`), else here
            index = self.ids.lookup(features["item_id"]) if index is None else index
            if training and self.id_dropout > 0:
                drop = tf.random.uniform(tf.shape(index), seed=self.seed) < self.id_dropout
                index = tf.where(drop, tf.fill(tf.shape(index), tf.cast(IdTower.OOV_INDEX, index.dtype)),
                                 index)  # OOV for the dropped share
            parts.append(self.ids.by_index(index))
        if self.use_text:
            if self.text_encoder is not None:
                text = self.text_encoder(features["text"], training=training)  # (n, hidden)
            else:
                text = features["text_embedding"]
            parts.append(self.text_projection(text))
        for name, layer in self.multi_hot.items():
            encoded = features.get(name + MULTI_HOT_SUFFIX)  # likewise
            parts.append(layer(tf.strings.split(features[name], sep="|")) if encoded is None else encoded)
        for name in self.numeric:
            parts.append(tf.cast(features[name], tf.float32)[..., None])
        out = self._fuse(parts)
        if not with_content:
            return out
        if self.use_id:  # the id part is parts[0]
            parts[0] = self.ids.by_index(tf.fill(tf.shape(index), IdTower.OOV_INDEX))
        return out, self._fuse(parts)

    def row_inputs(self, item_ids, columns):
        """What `call` computes from an item's id and categorical strings, computed ahead for
        a table of items (numpy, one row per item): `item_index` (the id's lookup) and
        `<name>_multi_hot` for each categorical feature, from `item_ids` [n] and `columns`
        (name -> strings [n]). A batch carrying them (`HybridRetrieval` gathers them by
        catalogue row in training) skips the string work of every step: the same values."""
        out = {}
        if self.use_id:
            out[INDEX_FEATURE] = self.ids.lookup(tf.constant([str(i) for i in item_ids])).numpy()
        for name, layer in self.multi_hot.items():
            values = tf.constant(np.asarray(columns[name]).astype(str))
            out[name + MULTI_HOT_SUFFIX] = layer(tf.strings.split(values, sep="|")).numpy()
        return out

    def has_trained_id(self, item_ids):
        """bool [...]: which item ids have a trained id embedding (in `item_vocabulary`; none
        without ids). The id lookup maps "" to its mask index 0 and unknown ids to OOV index 1."""
        if not (self.use_id and self.item_vocabulary):
            return tf.zeros(tf.shape(item_ids), tf.bool)
        return self.ids.lookup(item_ids) >= 2

    def _fuse(self, parts):
        x = self.fuse(tf.concat(parts, axis=-1))
        return tf.math.l2_normalize(x, axis=-1) if self.normalize else x

    def get_config(self):
        return {**super().get_config(), "item_vocabulary": self.item_vocabulary, "output_dim": self.output_dim,
                "id_dim": self.id_dim, "categorical": self.categorical, "numeric": self.numeric,
                "use_id": self.use_id, "use_text": self.use_text, "id_dropout": self.id_dropout,
                "hidden_units": self.hidden_units, "normalize": self.normalize, "seed": self.seed,
                "text_encoder": (tf.keras.layers.serialize(self.text_encoder)
                                 if self.text_encoder is not None else None)}
