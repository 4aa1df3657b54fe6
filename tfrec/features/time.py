"""Request-time features computed in-graph from a raw Unix timestamp."""
import tensorflow as tf

SECONDS_PER_DAY = 86400


class TimeFeatures(tf.keras.layers.Layer):
    """Turns int64 Unix seconds into cyclical hour/weekday encodings and recency.

    Recommendations depend on when they are asked for (evening vs morning, weekday
    vs weekend, how recent the catalogue state is). The encodings are computed with
    TF ops, so a serving request sends the raw timestamp.

    Args:
        reference_time: Unix seconds that recency is measured against; fit it to
            the end of the train split.
        recency_scale_days: recency is (t - reference_time) / (scale days).
        utc_offset_hours: local-time shift applied before hour/weekday.
        max_recency: recency is capped there (default 1: one scale, 365 days, after
            `reference_time`). Training sees recency <= 0; a model served long after its
            data (or asked "now" about data from 1998: recency 28) would otherwise feed its
            query tower a value far outside anything it learned from. Requests within a
            year of the reference time (every validation and test event here) are unchanged.

    Output: float32 [batch, 5] = sin/cos(hour), sin/cos(weekday), recency.

    Example:
        layer = TimeFeatures(reference_time=893286638)
        ds = ds.map(lambda x: {**x, "time": layer(x["timestamp"])},
                    num_parallel_calls=tf.data.AUTOTUNE)
    """

    def __init__(self, reference_time=0, recency_scale_days=365.0, utc_offset_hours=0.0, max_recency=1.0, **kwargs):
        super().__init__(**kwargs)
        self.reference_time = int(reference_time)
        self.recency_scale_days = float(recency_scale_days)
        self.utc_offset_hours = float(utc_offset_hours)
        self.max_recency = float(max_recency)

    def call(self, timestamp):
        t = tf.cast(timestamp, tf.float64) + self.utc_offset_hours * 3600.0  # (batch,)
        day = tf.math.floordiv(t, SECONDS_PER_DAY)
        hour = tf.math.floormod(t, SECONDS_PER_DAY) / 3600.0
        # 1970-01-01 was a Thursday: +3 makes Monday 0.
        weekday = tf.math.floormod(day + 3.0, 7.0)
        two_pi = 2.0 * 3.141592653589793
        recency = (tf.cast(timestamp, tf.float64) - self.reference_time) / (self.recency_scale_days * SECONDS_PER_DAY)
        recency = tf.minimum(recency, self.max_recency)
        out = tf.stack([
            tf.sin(two_pi * hour / 24.0), tf.cos(two_pi * hour / 24.0),
            tf.sin(two_pi * weekday / 7.0), tf.cos(two_pi * weekday / 7.0),
            recency,
        ], axis=-1)  # (batch, 5)
        return tf.cast(out, tf.float32)

    def get_config(self):
        return {**super().get_config(), "reference_time": self.reference_time,
                "recency_scale_days": self.recency_scale_days, "utc_offset_hours": self.utc_offset_hours,
                "max_recency": self.max_recency}
