"""Point-in-time item popularity, a ranking feature computed in-graph.

How often an item was consumed lately is one of the strongest signals for which of
a user's retrieved candidates they pick next, and it drifts: on a temporal split the
items popular in the weeks before a request are not those popular over the whole
train period. The retriever cannot carry it (its logQ correction takes popularity
out of its training scores on purpose); the ranker gets it as two features per
(request, candidate):

    log(1 + events of the item in the `window_days` days before the request's day)
    log(1 + events of the item on all days before the request's day)

counted over the interactions the model knows (`set_counts`). Days are UTC days of
the Unix timestamp, and a request counts whole days before its own, as a feature
table refreshed once a day would: a training example never sees its own event or
anything later. A request after the last known day reads the table as of that day
(serving: the counts as of the export; evaluation: as of the end of the known
data, nothing from the test period). Items the table does not know (cold items
added after training) count zero.

The table is [days + 1, items + 1] float32 cumulative counts, sized when the layer
is built from the time range the data covers (ML-100K: 216 x 1,683, 1.5 MB).
"""
import numpy as np
import tensorflow as tf

from tfrec.errors import ConfigError

DAY = 86400
MAX_CELLS = 1 << 26  # 256 MB of float32


class ItemPopularity(tf.keras.layers.Layer):
    """Args:
        item_ids: the items the table counts (others count zero).
        first_day: the first day the table covers (Unix seconds // 86400).
        n_days: days covered from `first_day`; requests after them read the last known day.
        window_days: length of the recent window, in days.

    Call: (item_ids string [b, c], timestamp int [b]) -> float32 [b, c, 2].
    """

    def __init__(self, item_ids, first_day, n_days, window_days=30, **kwargs):
        super().__init__(**kwargs)
        self.item_ids = [str(i) for i in item_ids]
        self.first_day, self.n_days, self.window_days = int(first_day), int(n_days), int(window_days)
        if self.window_days < 1 or self.n_days < 1:
            raise ConfigError(f"ItemPopularity: window_days and n_days must be >= 1, got {window_days}, {n_days}.")
        cells = (self.n_days + 1) * (len(self.item_ids) + 1)
        if cells > MAX_CELLS:
            raise ConfigError(f"The popularity table would hold {self.n_days + 1:,} days x {len(self.item_ids) + 1:,} "
                              f"items = {cells:,} counts (limit {MAX_CELLS:,}); set `ranking.popularity_days=0` to "
                              f"turn the popularity features off for data this long or this wide.")
        self.index = tf.keras.layers.StringLookup(vocabulary=self.item_ids, mask_token=None, num_oov_indices=1)

    def build(self, input_shape=None):
        self.cumulative = self.add_weight(name="cumulative_counts", shape=(self.n_days + 1, len(self.item_ids) + 1),
                                          initializer="zeros", trainable=False)
        # Table row of "all known days": requests after the known data read this row.
        self.known_rows = self.add_weight(name="known_rows", shape=(), initializer="zeros", trainable=False)
        super().build(input_shape)

    def covers(self, timestamps) -> np.ndarray:
        """bool per Unix timestamp: whether its day is one of the table's (only those can be counted)."""
        days = np.asarray(timestamps, np.int64) // DAY - self.first_day
        return (days >= 0) & (days < self.n_days)

    def set_counts(self, interactions):
        """Fills the table from `interactions` (columns item_id, timestamp): what the
        model knows from now on."""
        if not self.built:
            self.build()
        days = np.asarray(interactions["timestamp"], np.int64) // DAY - self.first_day
        if not self.covers(interactions["timestamp"]).all():
            raise ConfigError(f"Interactions from day {days.min() + self.first_day} to {days.max() + self.first_day} "
                              f"fall outside the popularity table's days {self.first_day}.."
                              f"{self.first_day + self.n_days - 1}; build it over the whole data's time range.")
        cols = self.index(tf.constant(np.asarray(interactions["item_id"]).astype(str))).numpy()
        counts = np.zeros((self.n_days, len(self.item_ids) + 1), np.float64)
        np.add.at(counts, (days, cols), 1.0)
        counts[:, 0] = 0.0  # unknown items count zero
        cumulative = np.vstack([np.zeros((1, counts.shape[1])), np.cumsum(counts, axis=0)])
        self.cumulative.assign(cumulative.astype(np.float32))
        self.known_rows.assign(float(days.max() + 1) if len(days) else 0.0)

    def call(self, item_ids, timestamp):
        day = tf.cast(tf.math.floordiv(tf.cast(timestamp, tf.int64), DAY) - self.first_day, tf.float32)
        row = tf.cast(tf.clip_by_value(day, 0.0, self.known_rows), tf.int32)  # (b,)
        start = tf.maximum(row - self.window_days, 0)
        col = self.index(item_ids)  # (b, c) int64
        shape = tf.shape(col)

        def at(r):
            r = tf.broadcast_to(tf.cast(r, tf.int64)[:, None], shape)
            return tf.gather_nd(self.cumulative, tf.stack([r, col], axis=-1))  # (b, c)

        total = at(row)
        return tf.stack([tf.math.log1p(total - at(start)), tf.math.log1p(total)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "item_ids": self.item_ids, "first_day": self.first_day,
                "n_days": self.n_days, "window_days": self.window_days}


def popularity_layer(window_days, item_ids, timestamps):
    """An `ItemPopularity` over the days `timestamps` span, or None for `window_days` 0."""
    if not window_days:
        return None
    ts = np.asarray(timestamps, np.int64)
    first = int(ts.min()) // DAY
    return ItemPopularity(item_ids, first, int(ts.max()) // DAY - first + 1, window_days, name="item_popularity")
