"""Weighted sums of table rows over each query's bag of row indices (a history read as a whole).

The retrieval space's history blocks (the text profile, the co-occurrence block, the lexical
term) each sum one table row per history item. Gathering the rows first materialises a
[queries, window, width] tensor, a memory-bound pass that grows with the window (1,000 items
for the text profile) whatever the catalogue's size. When the window is wide against the
catalogue, the same sum is a matrix product: each query's weight per catalogue row, a
[queries, rows] matrix, times the table, which stays in cache. `sum_rows` picks by the
window's width (`bench/profile_sums.py`, ML-100K's 1,683 x 384 table, 256 queries: a 1,000-item
window 39 ms gathered and 3.0 ms as a product, 256 items 9.0 and 2.2 ms; at 64 items, or for one
query, the two are within 0.9 ms and 0.3 ms). Both give the same sums up to float rounding (the
order of the additions differs).
"""
import tensorflow as tf

# `sum_rows` uses the product for at least MIN_QUERIES queries whose window is at least 1 / DENSE_RATIO of
# the table's rows wide; its [queries, rows] matrix is then at most DENSE_RATIO x the window's ids, smaller
# than the gathered rows. One served request gathers: the product took longer there (a served model's
# p50 with the text profile 1.58 against 1.50 ms, its exports called in random order; session 28).
DENSE_RATIO, MIN_QUERIES = 16, 8


def per_row(rows, weights, n):
    """[b, n]: weights [b, ...] summed per index of rows [b, ...] (int, in [0, n)) within each leading row."""
    b = tf.shape(rows)[0]
    n = tf.cast(n, tf.int32)
    seg = tf.reshape(tf.cast(rows, tf.int32), [b, -1]) + n * tf.range(b)[:, None]
    out = tf.math.unsorted_segment_sum(tf.reshape(tf.cast(weights, tf.float32), [-1]), tf.reshape(seg, [-1]), b * n)
    return tf.reshape(out, [b, n])


def sum_rows(table, rows, weights):
    """[b, t]: sum over l of weights[b, l] * table[rows[b, l]], for a table [n, t] and rows, weights [b, L]
    (module docstring: gathered for a narrow window or a few queries, else as a [b, n] weight matrix times
    the table)."""
    n = tf.shape(table, out_type=tf.int32)[0]
    weights = tf.cast(weights, table.dtype)
    b, width = tf.unstack(tf.shape(rows, out_type=tf.int32))
    return tf.cond(tf.logical_and(b >= MIN_QUERIES, width * DENSE_RATIO >= n),
                   lambda: tf.matmul(per_row(rows, weights, n), table),
                   lambda: tf.einsum("bl,blt->bt", weights, tf.gather(table, rows)))
