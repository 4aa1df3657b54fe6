"""The popularity prior of items nobody has interacted with, predicted from their content.

The hybrid's popularity prior adds w * log(1 + n_i) to item i's score, n_i its
interactions in the prior's window (`tfrec.models.hybrid`). An item nobody has
interacted with yet has n_i = 0, the same as a known item nobody wants: so a new
release starts below every item that was watched lately, and among new items the
prior says nothing. Its training objective cannot help: the logQ correction takes
popularity out of the towers' scores on purpose, so a new item's vector says what
it is like, not how many people will want it.

`ContentPrior` fills that gap with the expected value: a ridge regression, fitted
on the items that do have interactions, from an item's content (its cached text
embedding, its categorical attributes as a multi-hot, its numeric attributes as
one-hot quantile bins, so that a non-monotone effect such as the release year's
fits) to the prior's own quantity, log(1 + n in the window). Items with
interactions keep their counted n; only items without any get the prediction,
clipped at 0, with the prior's weight w unchanged. The fit is closed form (one
[features x features] solve) and deterministic, so a reloaded run recomputes the
same values; `predict` places items added later (`Recommender.index_items`).
Cost: the features of the whole catalogue are built once per lookup, float64 [items x
features] (ML-100K: 1,682 x 410, 5.5 MB, about 50 ms a fit; a 1M-item catalogue with a 384-d
text embedding would need 3.3 GB, which this simple fit does not try to avoid).

    prior = ContentPrior()
    ids, log_n = prior.log_counts(model.lookup, interactions, days=14)
"""
import numpy as np
import pandas as pd

from tfrec.models.catalogue_lookup import column_values


class ContentPrior:
    """Args:
        alpha: ridge penalty (features are not rescaled: text embeddings, 0/1 indicators).
        bins: quantile bins per numeric attribute.
    """

    def __init__(self, alpha=1.0, bins=8):
        if alpha <= 0 or int(bins) < 1:
            raise ValueError(f"`ContentPrior` needs alpha > 0 and bins >= 1, got {alpha} and {bins}.")
        self.alpha, self.bins = float(alpha), int(bins)
        self._encoding = None  # column -> multi-hot vocabulary or quantile edges (fitted on the catalogue)
        self._coef = None  # (feature mean, weights, target mean) of the last fit
        self._fitted_on = (None, None)  # (lookup, its features) of the last refit: the tuner refits per window

    @property
    def fitted(self):
        return self._coef is not None

    def log_counts(self, lookup, interactions, days):
        """(item ids, log(1 + n)): the items of `interactions` (`item_id`, `timestamp`)
        with interactions in the `days` before the latest one (0: all time), as the
        prior counts them, and every `lookup` item that has none at all in
        `interactions`, predicted from its content by a fit on the others (refitted
        on every call, also when every item has interactions: `predict` then places
        items added later). Items with interactions outside the window are left out (0)."""
        ids, counts = recent_counts(interactions, days)
        catalogue = np.asarray(lookup.item_ids, dtype=object)
        seen = pd.Index(pd.unique(np.asarray(interactions["item_id"]).astype(str)))
        known = seen.get_indexer(catalogue) >= 0
        if known.sum() < 2:  # nothing to learn from
            return ids, np.log1p(counts)
        x = self._features(lookup, refit=True)
        target = pd.Series(np.log1p(counts), index=ids).reindex(catalogue[known], fill_value=0.0).to_numpy()
        self._fit(x[known], target)
        pred = self._apply(x[~known])
        return (np.concatenate([ids.astype(object), catalogue[~known]]),
                np.concatenate([np.log1p(counts), pred]))

    def predict(self, lookup, item_ids):
        """Predicted log(1 + n) of `item_ids` (rows of `lookup`) from the last fit."""
        if not self.fitted:
            raise ValueError("`ContentPrior.predict` needs a fit first (`log_counts`).")
        rows = pd.Index(lookup.item_ids).get_indexer([str(i) for i in item_ids])
        if (rows < 0).any():
            raise ValueError(f"Items {list(np.asarray(item_ids)[rows < 0][:5])} are not in the catalogue lookup.")
        return self._apply(self._features(lookup, rows=rows))

    def predict_graph(self, feats):
        """`predict` as TensorFlow ops, for item features as the catalogue lookup holds
        them (name -> [batch, ...]; what the serving `encode_items` signature builds from
        a new item's raw fields): float32 [batch]."""
        import tensorflow as tf

        if not self.fitted:
            raise ValueError("`ContentPrior.predict_graph` needs a fit first (`log_counts`).")
        mean, w, y_mean = self._coef
        out, start = tf.constant(float(y_mean - mean @ w), tf.float32), 0
        for name, enc in self._encoding.items():
            v = feats[name]
            if enc is None:  # an embedding
                x = tf.cast(v, tf.float32)
            elif isinstance(enc, list):  # "|"-joined categories -> multi-hot over the fitted vocabulary
                if not enc:
                    continue
                tokens = tf.strings.split(v, "|").to_tensor(default_value="")  # (batch, L)
                x = tf.cast(tf.reduce_any(tf.equal(tokens[..., None], tf.constant(enc)), axis=1), tf.float32)
            else:  # a number -> its quantile bin, one-hot
                bins = tf.searchsorted(tf.constant(enc, tf.float32), tf.cast(v, tf.float32), side="right")
                x = tf.one_hot(bins, len(enc) + 1)
            k = int(x.shape[-1])
            out = out + tf.linalg.matvec(x, tf.constant(w[start:start + k], tf.float32))
            start += k
        return tf.maximum(out, 0.0)

    # -- internals -----------------------------------------------------------------
    def _features(self, lookup, refit=False, rows=None):
        """[n_items, F] content features of the lookup's rows (its trailing unknown row dropped),
        or of `rows` only (a new item's prediction builds its own features, not the catalogue's);
        `refit`: the encoding (vocabularies, bin edges) from this lookup, reused while it is
        the same lookup object (`index_items` replaces the lookup, so a changed catalogue is
        a new object)."""
        if refit and self._fitted_on[0] is lookup:
            return self._fitted_on[1]
        cols = {name: column_values(var)[:-1] for name, var in lookup.columns.items()}
        if rows is not None:
            cols = {name: v[rows] for name, v in cols.items()}
        if refit or self._encoding is None:
            self._encoding = {}
            for name, v in cols.items():
                if v.dtype == object and name != "text":  # "|"-joined categories
                    self._encoding[name] = sorted({t for s in v for t in str(s).split("|") if t})
                elif v.dtype != object and v.ndim == 1:  # a numeric attribute
                    self._encoding[name] = np.unique(np.quantile(v, np.linspace(0, 1, self.bins + 1)[1:-1]))
                elif v.dtype != object:  # an embedding: as it is
                    self._encoding[name] = None
        parts = []
        for name, enc in self._encoding.items():
            v = cols[name]
            if enc is None:
                parts.append(np.asarray(v, np.float64).reshape(len(v), -1))
            elif isinstance(enc, list):
                index = {t: j for j, t in enumerate(enc)}
                hot = np.zeros((len(v), len(enc)))
                for r, s in enumerate(v):
                    for t in str(s).split("|"):
                        if t in index:
                            hot[r, index[t]] = 1.0
                parts.append(hot)
            else:
                hot = np.zeros((len(v), len(enc) + 1))
                hot[np.arange(len(v)), np.searchsorted(enc, v, side="right")] = 1.0
                parts.append(hot)
        x = np.hstack(parts) if parts else np.zeros((len(lookup.item_ids) if rows is None else len(rows), 0))
        if refit:
            self._fitted_on = (lookup, x)
        return x

    def _fit(self, x, y):
        mean, y_mean = x.mean(axis=0), float(y.mean())
        xc = x - mean
        w = np.linalg.solve(xc.T @ xc + self.alpha * np.eye(x.shape[1]), xc.T @ (y - y_mean))
        self._coef = (mean, w, y_mean)

    def _apply(self, x):
        mean, w, y_mean = self._coef
        return np.maximum((x - mean) @ w + y_mean, 0.0)


def index_prior(model, item_ids):
    """Gives items just added to `model.lookup` (`Recommender.index_items`) the prior
    their content predicts, with the prior's current weight; nothing without a
    fitted content prior (it is fitted by `set_popularity_prior`)."""
    prior = getattr(model, "content_prior", None)
    if prior is None or not prior.fitted:
        return
    import tensorflow as tf

    ids = [str(i) for i in item_ids]
    values = model.temperature * model.popularity_prior[0] * prior.predict(model.lookup, ids)
    model._prior.insert(tf.constant(ids), tf.constant(values.astype(np.float32)))


def recent_counts(interactions, days):
    """(item ids, counts) of the interactions in the `days` days before the latest one
    (`days` 0: all of them)."""
    t = np.asarray(interactions["timestamp"], np.int64)
    if not len(t):
        return np.zeros(0, object), np.zeros(0, np.int64)
    ids = np.asarray(interactions["item_id"]).astype(str)
    recent = ids if int(days) <= 0 else ids[t > t.max() - int(days) * 86400]
    return np.unique(recent, return_counts=True)
