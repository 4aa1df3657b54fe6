"""Items without a trained id (cold items, `Recommender.index_items`) placed through
their nearest trained items.

The item tower embeds a cold item from its content with the shared OOV id vector: a
point the softmax only ever trained as "some item, id unknown". Items with the same
text and categories usually sit close to each other in the trained space, and that
space also knows who liked them. So a cold item's vector is mixed with its K nearest
trained items' vectors (nearest by text cosine + `category_weight` x cosine of the
categorical attributes' multi-hots, weights softmax(similarity / temperature)):

    v = normalise(content_weight * tower(item) + (1 - content_weight) * normalise(sum_k w_k v_k))

Trained items keep their own vectors. Nothing is trained: the trained items' vectors,
text embeddings and categories are a snapshot taken after training (and again after a
run is loaded), so a model that is trained further needs `set_cold_neighbours` again.
Off by default (`model.cold_neighbours=0`): on ML-100K validation-cold items (train
items held out, 3 seeds) NDCG@10 among cold items rose from 0.288 (tower alone) to 0.349
(TF-IDF content 0.284), but on the test cold items it fell from 0.275 to 0.226 (TF-IDF
0.253); see the README's cold-start results.
"""
import tensorflow as tf

from tfrec.errors import ConfigError


class ColdNeighbours(tf.Module):
    """The trained items' snapshot and the mix of `item_vectors` for the others.

    Args:
        model: a trained `HybridRetrieval` with cached (frozen) text embeddings.
        k: neighbours per cold item.
        temperature: softmax temperature over the neighbours' similarities.
        category_weight: weight of the categorical attributes' cosine in the similarity.
        content_weight: share of the item tower's own (content) vector in the mix.
    """

    def __init__(self, model, k=50, temperature=0.1, category_weight=0.5, content_weight=0.0, batch_size=4096):
        super().__init__(name="cold_neighbours")
        if int(k) < 1 or temperature <= 0 or category_weight < 0 or not 0.0 <= content_weight < 1.0:
            raise ConfigError(f"Cold neighbours need k >= 1, temperature > 0, category_weight >= 0 and content_weight "
                              f"in [0, 1), got {k}, {temperature}, {category_weight}, {content_weight}.")
        tower, lookup = model.item_tower, model.lookup
        if "text_embedding" not in lookup.column_names or not tower.use_id:
            raise ConfigError("Cold neighbours need item ids and cached text embeddings (`text.finetune=frozen`). "
                              "Fix: set `model.cold_neighbours=0`.")
        vocabulary = set(tower.item_vocabulary)
        trained = [i for i in lookup.item_ids if i in vocabulary]
        if not trained:
            raise ConfigError("Cold neighbours need trained items; the catalogue has none with a trained id.")
        self.k = min(int(k), len(trained))
        self.temperature, self.category_weight = float(temperature), float(category_weight)
        self.content_weight = float(content_weight)
        self.categorical = list(tower.categorical)
        parts = {"vectors": [], "text": [], **{c: [] for c in self.categorical}}
        for i in range(0, len(trained), batch_size):
            ids = tf.constant(trained[i:i + batch_size])
            feats = lookup(ids)
            parts["vectors"].append(model._tower_on_ids(ids))  # the tower's own vectors (no mix)
            for name, value in self._similarity_parts(tower, feats).items():
                parts[name].append(value)
        # Non-trainable variables, so a SavedModel stores them once.
        self.parts = {name: tf.Variable(tf.concat(v, axis=0), trainable=False, name=f"cold_neighbours_{name}")
                      for name, v in parts.items()}

    def _similarity_parts(self, tower, feats):
        """L2-normalised text embeddings and categorical multi-hots of items [n, ...]."""
        out = {"text": tf.math.l2_normalize(tf.cast(feats["text_embedding"], tf.float32), axis=-1)}
        for name in self.categorical:
            multi_hot = tower.multi_hot[name](tf.strings.split(feats[name], sep="|"))
            out[name] = tf.math.l2_normalize(tf.cast(multi_hot, tf.float32), axis=-1)
        return out

    def __call__(self, tower, item_ids, feats, vectors):
        """item_ids [n], their lookup (or serving) features, the tower's vectors [n, d]
        -> [n, d]: trained items unchanged, the others mixed with their neighbours
        (only their rows are compared with the trained items)."""
        rows = tf.where(tf.logical_not(tower.has_trained_id(item_ids)))[:, 0]  # (c,) the cold rows
        cold = {name: tf.gather(feats[name], rows) for name in ["text_embedding", *self.categorical]}
        own = self._similarity_parts(tower, cold)
        sim = tf.matmul(own["text"], self.parts["text"], transpose_b=True)  # (c, n_trained)
        for name in self.categorical:
            sim += self.category_weight * tf.matmul(own[name], self.parts[name], transpose_b=True)
        top, idx = tf.math.top_k(sim, k=self.k)  # (c, k)
        w = tf.nn.softmax(top / self.temperature, axis=-1)
        mix = tf.math.l2_normalize(tf.einsum("nk,nkd->nd", w, tf.gather(self.parts["vectors"], idx)), axis=-1)
        mixed = tf.math.l2_normalize(self.content_weight * tf.gather(vectors, rows)
                                     + (1.0 - self.content_weight) * mix, axis=-1)
        return tf.tensor_scatter_nd_update(vectors, rows[:, None], mixed)


def neighbour_settings(model_cfg):
    """ModelConfig -> the `ColdNeighbours` keyword arguments (None when off)."""
    if not model_cfg.cold_neighbours:
        return None
    t, c, w = (float(x) for x in model_cfg.cold_neighbour_settings)
    return {"k": int(model_cfg.cold_neighbours), "temperature": t, "category_weight": c, "content_weight": w}
