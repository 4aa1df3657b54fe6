"""Items without a trained id scored by how well their text matches the user's whole history.

A cold item's tower vector comes from its content through weights that were trained
beside item ids, and the query side matches it with a vector built mostly from ids
and the newest items of the history. A plainer content signal ranks such items well
by itself: the cosine between the item's text embedding and the user's text profile,
the sum of the text embeddings of everything the user is known to have consumed. With
MiniLM it only works once the embeddings are centred: they share one common direction
(the anisotropy of sentence embeddings), so raw cosines mostly measure how typical an
item's text is. For items without a trained id (`set_text_profile`):

    score(u, i) = the model's score + w * cos(profile_u, t_i)
    t_i = normalise((normalise(e_i) - m) P)    e_i: the item's cached text embedding
    profile_u = normalise(sum of t_j over the user's n known items j) * n / (n + k)

m is the mean normalised embedding of the catalogue when the profile is set; P [t, D] its top
D principal directions (the right singular vectors of the centred catalogue texts; no
interactions read), so the block's text part is D columns instead of the embedding's t
(`model.text_profile_dim`, default 64; 0: every dimension, P = identity). On ML-100K's
validation-cold items (7 models, MiniLM's 384 dimensions) 64 kept 98% of the profile's gain
(NDCG@10 0.2940 without the profile, 0.3521 with all 384 and 0.3508 with 64; 32: 94%, 16:
78%; `bench/profile_pca.py`). The shrinkage k keeps a profile of a few items, a noisy one,
from counting fully. Items with
a trained id get no term (w = 0 for them). It is a dot product of two more blocks of the
retrieval space, the query's `profile_u` against each item's `w * t_i`, so brute-force
and ANN indexes, the SavedModel signatures and `index_items` score it with no other
change. Nothing is trained: w and k are settings (`model.text_profile`, 0.5 by default since
session 29, 0: off; `model.text_profile_shrinkage`). On ML-100K's held-out cold items (w 0.5, k 40)
it took NDCG@10 from 0.92x to 1.14x the TF-IDF content baseline (1.19x with k 0), and to 1.22x on
average over five held-out draws; with the lexical term below, `tfrec run`'s default, 1.24x and
1.26x (README, cold start).

A second, lexical term (`lexical` = v > 0, `model.text_profile_lexical`, 0.5 by default; 0: off) adds
v * cos(lexical profile_u, l_i): l_i the unit TF-IDF vector of the item's template text
(`tfrec.models.lexical`, vocabulary and idf fitted on the catalogue's texts), the profile the
normalised sum of l_j over the same known items, unshrunk: the TF-IDF content baseline's own
score, so the words of a title count beside its meaning. It widens the block by the
vocabulary's size, or by `lexical_terms` columns (`model.text_profile_lexical_terms`: the words of
the most texts; every word still counts in l_i's norm); new items get l_i from their text
(`index_items`, the exported item model).

The profile reads the query's `profile_history` feature (item ids, "" = padding; the
newest `length` known items: `HybridScorer`, `Recommender` and the exported query model
build it from the same history as the `history` feature, which holds only the newest
`data.history_length`), and `history` where a query has no `profile_history`.
"""
import numpy as np
import tensorflow as tf

from tfrec.config import ModelConfig
from tfrec.errors import ConfigError
from tfrec.models.bags import sum_rows

PROFILE_FEATURE = "profile_history"


def catalogue_texts(lookup, items, template=None):
    """The template texts of `items` (an items table) in the order of `lookup.item_ids` ("" for an id
    the table lacks): what the lexical term is fitted on."""
    from tfrec.text.template import item_texts

    texts = dict(zip(items["item_id"].astype(str), item_texts(items, template)))
    return [texts.get(str(i), "") for i in lookup.item_ids]


class TextProfile(tf.Module):
    """The text-profile term of a hybrid model (module docstring).

    Args:
        model: a `HybridRetrieval` with cached (frozen) text embeddings in its lookup.
        weight: w > 0, in cosine units (the tower's scores are cosines).
        length: how many of the user's newest known items the profile reads.
        shrinkage: k >= 0; a profile of n items is scaled by n / (n + k) (0: not at all).
        lexical: v >= 0, the lexical term's weight (module docstring; 0: off).
        item_texts: with `lexical`, the template text of each item of `model.lookup`, in its order
            (`catalogue_texts`).
        lexical_terms: the most words the lexical term gives columns, those of the most texts
            (`tfrec.models.lexical`; 0: every word).
        dim: D, the text part's columns: the centred texts projected onto their top D principal
            directions (module docstring; 0 or at least the embedding's width: every dimension).
    """

    def __init__(self, model, weight, length=1000, shrinkage=ModelConfig.text_profile_shrinkage, lexical=0.0,
                 item_texts=None, lexical_terms=ModelConfig.text_profile_lexical_terms,
                 dim=ModelConfig.text_profile_dim):
        super().__init__(name="text_profile")
        lookup = model.lookup
        if not has_cached_text(model):
            raise ConfigError("The text profile needs cached text embeddings (`text.finetune=frozen` and "
                              "`model.use_text=true`). Fix: set `model.text_profile=0`.")
        if not weight > 0 or int(length) < 1 or not shrinkage >= 0 or not lexical >= 0 or int(dim) < 0:
            raise ConfigError(f"The text profile needs a weight > 0, a length >= 1, a shrinkage >= 0, a lexical "
                              f"weight >= 0 and a dim >= 0, got {weight}, {length}, {shrinkage}, {lexical} and {dim}.")
        self.weight, self.length, self.shrinkage = float(weight), int(length), float(shrinkage)
        emb = np.asarray(lookup.columns["text_embedding"].numpy()[:-1], np.float64)  # (I, t), the unknown row left out
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        mean = emb.mean(axis=0)  # (t,)
        self.mean = tf.constant(mean.astype(np.float32))
        self.projection = None  # (t, D): the top D principal directions of the centred catalogue texts
        if 0 < int(dim) < emb.shape[1]:
            vt = np.linalg.svd(emb - mean, full_matrices=False)[2]  # at most one per catalogue item
            self.projection = tf.constant(vt[:int(dim)].T.astype(np.float32))
        self.text_dim = int(emb.shape[1] if self.projection is None else self.projection.shape[1])  # its columns
        self._scales = None  # (c, r) of every lookup row, then a zero row (the unknown one): `_append_scales`
        self._append_scales(lookup.columns["text_embedding"].numpy()[:-1])
        self.tower = model.item_tower  # which ids are trained: `ItemTower.has_trained_id`
        self.lexical_weight, self.lexical = float(lexical), None
        if self.lexical_weight:
            from tfrec.models.lexical import LexicalVectors

            if item_texts is None or len(item_texts) != len(lookup.item_ids):
                raise ConfigError(f"The text profile's lexical term needs one text per catalogue item "
                                  f"({len(lookup.item_ids)}, `catalogue_texts`), got "
                                  f"{'none' if item_texts is None else len(item_texts)}.")
            self.lexical = LexicalVectors(item_texts, lexical_terms)
            self._lexical_rows = None
            self._append_lexical_rows(*self.lexical.fitted_rows())  # the catalogue's rows, from the fit
        self.dim = self.text_dim + (self.lexical.dim if self.lexical is not None else 0)  # the block's width

    def add_items(self, texts, text_embeddings):
        """The profile's tables gain rows for new catalogue items (`index_items` appends them to the lookup,
        before its unknown row): the scales of their text embeddings [n, t] (`_append_scales`), and with the
        lexical term their texts' rows, weighted by the frozen vocabulary and idf."""
        self._append_scales(text_embeddings)
        if self.lexical is not None:
            self._append_lexical_rows(*self.lexical.rows(texts))

    def _append_scales(self, text_embeddings):
        """Appends (c, r) of embeddings e [n, t] (before the zero row): `centred(e)` = (c e - r m) P, with
        r = 1 / |(e / |e| - m) P| and c = r / |e| (P: the projection, or none), so a profile is (the sum
        of c e_j over the history minus the sum of r_j times m) P; computed once per item, not for each
        history entry of each query."""
        e = tf.constant(np.asarray(text_embeddings), tf.float32)
        inv_e = tf.math.rsqrt(tf.maximum(tf.reduce_sum(e * e, axis=-1), 1e-12))  # as l2_normalize divides
        d = self._project(e * inv_e[:, None] - self.mean)
        r = tf.math.rsqrt(tf.maximum(tf.reduce_sum(d * d, axis=-1), 1e-12))
        new = tf.stack([r * inv_e, r], axis=-1).numpy()
        self._scales = tf.constant(_before_unknown(None if self._scales is None else self._scales.numpy(), new))

    def _append_lexical_rows(self, ids, weights):
        """Appends term-id and weight rows [n, T] to the table (before its unknown, zero row), both padded
        to the wider of the two widths with id 0 and weight 0."""
        old_ids, old_w = (None, None) if self._lexical_rows is None else (r.numpy() for r in self._lexical_rows)
        width = max(ids.shape[1], 0 if old_ids is None else old_ids.shape[1])
        pad = lambda a: None if a is None else np.pad(a, ((0, 0), (0, width - a.shape[1])))  # noqa: E731
        self._lexical_rows = (tf.constant(_before_unknown(pad(old_ids), pad(ids)).astype(np.int32)),
                              tf.constant(_before_unknown(pad(old_w), pad(weights)).astype(np.float32)))

    def _lexical_of_rows(self, rows):
        """Summed lexical vectors [b, V] of lookup rows [b, ...] (the unknown row adds nothing)."""
        ids, weights = self._lexical_rows
        return self.lexical.dense(tf.gather(ids, rows), tf.gather(weights, rows))

    def _project(self, x):
        """x [..., t] onto the top D principal directions, [..., D] (unchanged without a projection)."""
        return x if self.projection is None else tf.tensordot(x, self.projection, axes=1)

    def centred(self, text_embedding):
        """t = normalise((normalise(e) - m) P) for embeddings [..., t] (P: the projection, or none)."""
        e = tf.math.l2_normalize(tf.cast(text_embedding, tf.float32), axis=-1)
        return tf.math.l2_normalize(self._project(e - self.mean), axis=-1)

    def item_columns(self, lookup, item_ids, text_embedding=None, text=None):
        """[..., dim]: w * t_i (and v * l_i) for items without a trained id, 0 for the others.
        `text_embedding` [..., t] and `text` [...]: the items' embeddings and template texts (default:
        the model's catalogue `lookup`'s rows, which `index_items` replaces, so it is passed in; new
        items' from serving)."""
        if text_embedding is None:
            text_embedding = lookup(item_ids)["text_embedding"]
        untrained = 1.0 - tf.cast(self.tower.has_trained_id(item_ids), tf.float32)  # (...,)
        out = (self.weight * untrained)[..., None] * self.centred(text_embedding)
        if self.lexical is None:
            return out
        flat = tf.reshape(item_ids, [-1])
        lex = (self.lexical(tf.reshape(text, [-1])) if text is not None
               else self._lexical_of_rows(lookup.table.lookup(flat)))  # (n, V)
        lex = tf.reshape(lex, tf.concat([tf.shape(item_ids), [self.lexical.dim]], axis=0))
        return tf.concat([out, (self.lexical_weight * untrained)[..., None] * lex], axis=-1)

    def query_columns(self, lookup, features):
        """[b, dim]: each query's normalised text profile x n / (n + k), then its normalised lexical profile
        (zeros for an empty history)."""
        history = features.get(PROFILE_FEATURE, features["history"])  # (b, L) item ids
        if self._scales.shape[0] != len(lookup.item_ids) + 1:
            raise ValueError(f"The text profile has {self._scales.shape[0] - 1} items' rows and the lookup "
                             f"{len(lookup.item_ids)}: add items with `Recommender.index_items` (it extends both).")
        rows = lookup.table.lookup(history)
        known = tf.cast(tf.not_equal(rows, len(lookup.item_ids)), tf.float32)  # "" and unknown ids: not counted
        n = tf.reduce_sum(known, axis=1, keepdims=True)  # (b, 1)
        shrink = n / tf.maximum(n + self.shrinkage, 1.0)  # (0 items: 0; k = 0: 1)
        scales = tf.gather(self._scales, rows) * known[..., None]  # (b, L, 2)
        total = sum_rows(lookup.columns["text_embedding"], rows, scales[..., 0])  # the sum of c_j e_j
        total -= tf.reduce_sum(scales[..., 1], axis=1, keepdims=True) * self.mean
        out = tf.math.l2_normalize(self._project(total), axis=-1) * shrink  # total P: the sum of centred(e_j)
        if self.lexical is None:
            return out
        return tf.concat([out, tf.math.l2_normalize(self._lexical_of_rows(rows), axis=-1)], axis=-1)

    def newest(self, history):
        """The newest `length` columns of history ids [b, any] (the profile's window)."""
        return history[:, -self.length:]


def _before_unknown(table, new):
    """Numpy rows `new` [n, ...] put in `table` [m + 1, ...] (None: empty) before its last row, the unknown
    item's, which is zeros (the profile's tables follow the lookup's rows, whose last is the unknown one)."""
    head = new[:0] if table is None else table[:-1]
    return np.concatenate([head, new, np.zeros((1,) + new.shape[1:], new.dtype)])


def has_cached_text(model):
    """Whether the model's item tower reads its catalogue's cached text embeddings (what the profile reads)."""
    return "text_embedding" in model.lookup.column_names and model.item_tower.use_text


def with_text_profile(model, model_cfg, log=print, items=None, template=None):
    """As `tfrec run` configures it: items without a trained id also score `model.text_profile` x their
    text's match with the user's whole history (off at 0), and `model.text_profile_lexical` x their
    words' (the template texts of `items`, an items table). A model without cached text embeddings
    (`text.finetune` other than frozen, or `model.use_text=false`) has no profile, and the log says so."""
    if not model_cfg.text_profile:
        return
    if not has_cached_text(model):
        log("cold items: no text profile (it needs cached text embeddings: `text.finetune=frozen` and "
            "`model.use_text=true`)")
        return
    lexical = model_cfg.text_profile_lexical
    if lexical and items is None:
        raise ConfigError("`model.text_profile_lexical` > 0 needs the items table (their texts).")
    model.set_text_profile(model_cfg.text_profile, shrinkage=model_cfg.text_profile_shrinkage, lexical=lexical,
                           item_texts=catalogue_texts(model.lookup, items, template) if lexical else None,
                           lexical_terms=model_cfg.text_profile_lexical_terms, dim=model_cfg.text_profile_dim)
    n = len(model.lookup.item_ids) - len(set(model.lookup.item_ids) & set(model.item_tower.item_vocabulary))
    log(f"cold items: the {n} catalogue items without a trained id also score {model_cfg.text_profile:g} x the "
        f"cosine of their text with the user's text profile ({model.text_profile.text_dim} of "
        f"{int(model.text_profile.mean.shape[0])} text dimensions; newest {model.text_profile.length} known items; a "
        f"profile of n items counts n / (n + {model_cfg.text_profile_shrinkage:g}))"
        + (f", and {lexical:g} x their words' TF-IDF match ({model.text_profile.lexical.dim:,} of "
           f"{model.text_profile.lexical.n_words:,} words)" if lexical else ""))
