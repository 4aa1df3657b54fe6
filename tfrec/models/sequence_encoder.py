"""Behaviour-sequence encoders: the user's last N items -> one vector.

Inputs are the item representations of the history (from the shared item tower)
and a mask of real (non-padding) positions, oldest to newest with the newest in
the last position (see `tfrec.data.history`).
"""
import tensorflow as tf

from tfrec.config import SEQUENCE_ENCODERS as KINDS
from tfrec.errors import ConfigError


class SequenceEncoder(tf.keras.layers.Layer):
    """Encodes [batch, N, d] item vectors with a mask into [batch, output_dim].

    Args:
        kind: "mean" (masked mean), "gru" (GRU over the sequence; the state after the
            newest item), or "sasrec" (causal self-attention blocks with learned
            positions, in the style of SASRec; the newest position's output).
        output_dim: output size.
        num_heads, num_blocks, dropout: SASRec settings.
        max_length: positions for SASRec's position embedding.

    Empty histories (all padding) give a zero vector, never NaN.
    """

    def __init__(self, kind="mean", output_dim=64, num_heads=2, num_blocks=1, dropout=0.1, max_length=50, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ConfigError(f"`sequence encoder` kind must be one of {KINDS}, got {kind!r}.")
        self.kind = kind
        self.output_dim = int(output_dim)
        self.num_heads = int(num_heads)
        self.num_blocks = int(num_blocks)
        self.dropout = float(dropout)
        self.max_length = int(max_length)
        self.project = tf.keras.layers.Dense(self.output_dim, name="project")
        if kind == "gru":
            self.gru = tf.keras.layers.GRU(self.output_dim, name="gru")
        elif kind == "sasrec":
            self.positions = tf.keras.layers.Embedding(self.max_length, self.output_dim, name="positions")
            self.attn = [tf.keras.layers.MultiHeadAttention(self.num_heads, max(1, self.output_dim // self.num_heads),
                                                            dropout=self.dropout, name=f"attention_{i}")
                         for i in range(self.num_blocks)]
            self.ffn = [tf.keras.Sequential([tf.keras.layers.Dense(self.output_dim, activation="relu"),
                                             tf.keras.layers.Dense(self.output_dim)], name=f"ffn_{i}")
                        for i in range(self.num_blocks)]
            self.norm1 = [tf.keras.layers.LayerNormalization(name=f"norm1_{i}") for i in range(self.num_blocks)]
            self.norm2 = [tf.keras.layers.LayerNormalization(name=f"norm2_{i}") for i in range(self.num_blocks)]

    def call(self, items, mask, training=False):
        # items: (batch, N, d); mask: (batch, N) bool
        has_any = tf.reduce_any(mask, axis=1, keepdims=True)  # (batch, 1)
        m = tf.cast(mask, items.dtype)[:, :, None]  # (batch, N, 1)
        if self.kind == "mean":
            # Masked mean, then the (affine) projection: equal to projecting every item
            # and averaging, with N times fewer matmul FLOPs.
            mean = tf.reduce_sum(items * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)  # (batch, d)
            return tf.where(has_any, self.project(mean), 0.0)
        x = self.project(items)  # (batch, N, out)
        if self.kind == "gru":
            out = self.gru(x, mask=mask, training=training)
        else:
            n = tf.shape(x)[1]
            # Newest item at position 0 of the embedding, so the positions of recent
            # items mean the same whatever the history length.
            pos = tf.range(n - 1, -1, -1)
            pos = tf.minimum(pos, self.max_length - 1)
            x = (x + self.positions(pos)[None]) * m
            causal = tf.linalg.band_part(tf.ones([n, n], tf.bool), -1, 0)  # (N, N) lower triangle
            attn_mask = tf.logical_and(causal[None], mask[:, None, :])  # (batch, N, N): past, non-padding keys
            for attn, ffn, n1, n2 in zip(self.attn, self.ffn, self.norm1, self.norm2):
                h = attn(x, x, attention_mask=attn_mask, training=training)
                x = n1(x + h)
                x = n2(x + ffn(x)) * m
            out = x[:, -1, :]  # the newest position
        return tf.where(has_any, out, tf.zeros_like(out))

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "output_dim": self.output_dim, "num_heads": self.num_heads,
                "num_blocks": self.num_blocks, "dropout": self.dropout, "max_length": self.max_length}
