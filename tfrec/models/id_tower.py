"""An id embedding tower: raw string id -> in-graph lookup -> embedding."""
import tensorflow as tf


class IdTower(tf.keras.layers.Layer):
    """Maps raw string ids to embeddings; unknown ids share the OOV row.

    The lookup runs inside the layer, so the exported model takes raw ids.

    Args:
        vocabulary: known ids (fitted on train), most frequent first.
        embedding_dim: output size.
        embeddings_regularizer_l2: optional L2 on the embedding table.

    Example:
        tower = IdTower(vocabulary=["1", "2"], embedding_dim=32)
        emb = tower(tf.constant(["1", "unknown"]))  # (2, 32)
    """

    def __init__(self, vocabulary, embedding_dim=64, embeddings_regularizer_l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = [str(v) for v in vocabulary]
        self.embedding_dim = int(embedding_dim)
        self.embeddings_regularizer_l2 = float(embeddings_regularizer_l2)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=self.vocabulary or ["<none>"], mask_token="", num_oov_indices=1)
        reg = tf.keras.regularizers.l2(self.embeddings_regularizer_l2) if self.embeddings_regularizer_l2 else None
        self.embedding = tf.keras.layers.Embedding(len(self.vocabulary) + 2, self.embedding_dim, embeddings_regularizer=reg)

    OOV_INDEX = 1  # the lookup's index of every unknown id ("" is the mask, index 0)

    def call(self, ids):
        return self.embedding(self.lookup(ids))  # (batch, dim)

    def by_index(self, index):
        """Embeddings of ids already looked up (`self.lookup(ids)`, e.g. computed ahead)."""
        return self.embedding(index)

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "embedding_dim": self.embedding_dim,
                "embeddings_regularizer_l2": self.embeddings_regularizer_l2}
