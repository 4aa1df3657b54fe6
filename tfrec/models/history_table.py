"""The history encoder's input in training: a table of the item tower's vectors.

The query tower reads the user's recent items through the *same* item tower as the
candidates. Run on each batch's history items with their gradient (the way this
model trained until session 18), that pass was about a third of the training step:
a batch of 1,024 queries with 20 history items each touches ~1,500 distinct items on
ML-100K, against ~700 distinct candidates.

With `history_refresh` = K > 0, the history's vectors come instead from a table of
every catalogue item's tower vector (inference mode: no id dropout), recomputed every
K training steps and read without gradient: the item tower learns from the candidate
role only, the query tower learns to read the item space as it is. Serving is not
affected: `query_vector` encodes a history through the current tower, which the table
equals after its last refresh. Measured on ML-100K (docs/retrieval_results.md, session
18): temporal validation NDCG@10 with the popularity prior 0.3649 (gradient path)
against 0.3716 (K = 10, three training seeds each), test 0.372 against 0.377, and an
epoch 1.35x shorter (bench/train_throughput.py); on test it lost under the random-split
protocols (recbole_general, tfrs_tutorial) and on held-out cold items.

The table is a cache, not a weight: it is not tracked (so neither checkpointed nor
exported) and each process starts by filling it. Under a distribution strategy each
replica keeps and refreshes its own copy (the towers are identical on every replica).
"""
import tensorflow as tf

CHUNK = 32768  # catalogue rows per tower call when the table is refreshed


class HistoryTable:
    """`model`: a `HybridRetrieval`; `refresh_steps`: K. Call it in a training step to
    get the (n_items + 1, d) table, refreshed first if K steps have passed; the last
    row (the catalogue lookup's unknown row: the history's padding, and ids outside the
    catalogue, which the tower's own pass would embed from the OOV id) is zeros."""

    def __init__(self, model, refresh_steps):
        self.model = model
        self.refresh_steps = int(refresh_steps)
        n, d = len(model.lookup.item_ids), model.item_tower.output_dim
        sync = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.table = tf.Variable(tf.zeros([n + 1, d]), name="history_table", **sync)
        self.step = tf.Variable(0, dtype=tf.int64, name="history_table_step", **sync)

    def catalogue_vectors(self):
        """The item tower's vectors of every catalogue row (inference mode), then a zero row."""
        model = self.model
        ids = model.lookup.item_ids
        parts = [model._tower_on_ids(tf.constant(ids[i:i + CHUNK]), training=False,
                                     rows=tf.range(i, min(i + CHUNK, len(ids))))
                 for i in range(0, len(ids), CHUNK)]
        parts.append(tf.zeros([1, model.item_tower.output_dim]))
        return tf.concat(parts, axis=0)

    def __call__(self):
        def refresh():
            self.table.assign(self.catalogue_vectors())
            return tf.constant(True)

        tf.cond(tf.equal(self.step % self.refresh_steps, 0), refresh, lambda: tf.constant(False))
        self.step.assign_add(1)
        return tf.stop_gradient(self.table.read_value())
