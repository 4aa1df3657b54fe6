"""The words of item text as TF-IDF vectors, in numpy and in graph ops: the text profile's lexical term.

MiniLM's sentence embedding matches what a title is about; the exact words match franchises
and names ("Star Trek", "Wallace & Gromit"). `LexicalVectors` gives a text the unit TF-IDF
vector of `tfrec.evaluation.baselines.tfidf_content.tfidf_matrix` (raw term counts x the
smoothed idf ln((1 + n) / (1 + df)) + 1, l2-normalised; the tokens of its `tokenize`): the
vocabulary and idf are fitted once on a catalogue's texts and then frozen, so a new item is
weighted by them, as its numeric attributes are by the catalogue's statistics. Two paths give
the same vectors (tested): `rows(texts)` in numpy (each text's term ids and weights, the
catalogue's table that queries gather from), and calling the module on a string tensor
(`tf.strings` ops: what the exported item model runs on a new item's text). A text with no
known word gets the zero vector.
"""
import numpy as np
import tensorflow as tf

from tfrec.evaluation.baselines.tfidf_content import smoothed_idf, tfidf_matrix, tokenize

# RE2 (tf.strings): anything but letters and digits separates tokens, as `tokenize`'s [^\W_]+ keeps them.
SEPARATORS = r"[^\pL\pN]+"


class LexicalVectors(tf.Module):
    """Unit TF-IDF vectors [n, V] over a vocabulary of V terms fitted on `texts` (a catalogue's)."""

    def __init__(self, texts):
        super().__init__(name="lexical_vectors")
        texts = [str(t) for t in texts]
        weights, vocab = tfidf_matrix(texts)
        self._fitted = weights  # csr [n, V]: the fitted texts' vectors (`fitted_rows`)
        terms = sorted(vocab, key=vocab.get)
        df = np.bincount(weights.indices, minlength=len(terms))  # each text's row holds each of its terms once
        self.idf_values = smoothed_idf(len(texts), df)  # float64 [V], tfidf_matrix's
        self.doc_fraction = df / max(len(texts), 1)  # float64 [V]: the share of the fitted texts holding each term
        self.terms = terms  # the vocabulary in column order
        self.index = {t: k for k, t in enumerate(terms)}
        self.dim = len(terms)
        self._idf = tf.constant(self.idf_values, tf.float32)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(terms or [""], tf.string),
                                                tf.range(max(len(terms), 1), dtype=tf.int64)), default_value=-1)

    def common_terms(self, fraction):
        """The terms of more than `fraction` of the fitted texts (a template's own words, e.g. "genres")."""
        return [t for t, f in zip(self.terms, self.doc_fraction) if f > fraction]

    def rows(self, texts):
        """Numpy: (term ids int32 [n, T], unit TF-IDF weights float32 [n, T]) of `texts`, padded with
        id 0 and weight 0 (T: the most distinct known terms of any text, at least 1)."""
        ids, weights = [], []
        for text in texts:
            terms, counts = np.unique([self.index[t] for t in tokenize(str(text)) if t in self.index],
                                      return_counts=True)
            w = counts * self.idf_values[terms.astype(np.int64)]
            norm = np.sqrt(np.sum(w * w))
            ids.append(terms)
            weights.append(w / norm if norm > 0 else w)
        return self._padded(ids, weights)

    def fitted_rows(self):
        """`rows` of the texts the vocabulary was fitted on, from the fit's own matrix (not tokenised again)."""
        m = self._fitted
        return self._padded([m.indices[a:b] for a, b in zip(m.indptr[:-1], m.indptr[1:])],
                            [m.data[a:b] for a, b in zip(m.indptr[:-1], m.indptr[1:])])

    @staticmethod
    def _padded(ids, weights):
        width = max([1] + [len(t) for t in ids])
        out_ids, out_w = np.zeros((len(ids), width), np.int32), np.zeros((len(ids), width), np.float32)
        for r, (t, w) in enumerate(zip(ids, weights)):
            out_ids[r, :len(t)], out_w[r, :len(w)] = t, w
        return out_ids, out_w

    def dense(self, ids, weights):
        """Term ids and weights [b, ..., T] -> [b, V]: the weights of each leading row summed per term
        (one text's row: its vector; a query's history rows: the sum of their vectors)."""
        b = tf.shape(ids)[0]
        seg = tf.reshape(tf.cast(ids, tf.int32), [b, -1]) + self.dim * tf.range(b)[:, None]
        out = tf.math.unsorted_segment_sum(tf.reshape(tf.cast(weights, tf.float32), [-1]), tf.reshape(seg, [-1]),
                                           b * self.dim)
        return tf.reshape(out, [b, self.dim])

    def __call__(self, texts):
        """Unit TF-IDF vectors [n, V] of string texts [n], in graph ops (module docstring)."""
        lower = tf.strings.lower(texts, encoding="utf-8")
        tokens = tf.strings.split(tf.strings.strip(tf.strings.regex_replace(lower, SEPARATORS, " ")))
        ids = tf.ragged.map_flat_values(self._table.lookup, tokens)  # ragged [n, None]; -1: not in the vocabulary
        ids = tf.ragged.boolean_mask(ids, ids >= 0)
        counts = tf.math.bincount(tf.cast(ids, tf.int32), minlength=self.dim, maxlength=self.dim, axis=-1,
                                  dtype=tf.float32)  # (n, V)
        return tf.math.l2_normalize(counts * self._idf, axis=-1)  # an all-zero row stays zero
