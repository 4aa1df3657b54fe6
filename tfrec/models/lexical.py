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

`max_terms` = D > 0 keeps columns for only the D words found in most of the fitted texts (ties:
the vocabulary's order): a text's vector is then its unit TF-IDF vector over every word, less
the columns of the words left out, not renormalised. Every word still weighs in each text's
norm, so a title's rare words (in one text only, they match no other) still keep its common
words from counting for more. Measured on validation-cold items (`bench/lexical_hashing.py`):
1,024 of ML-100K's 2,468 words keep all of the term's gain, 256 keep 88%; renormalising the
kept words instead loses all of it and more, and hashing every word into D columns keeps less.
"""
import numpy as np
import tensorflow as tf

from tfrec.evaluation.baselines.tfidf_content import smoothed_idf, tfidf_matrix, tokenize
from tfrec.models.bags import per_row

# RE2 (tf.strings): anything but letters and digits separates tokens, as `tokenize`'s [^\W_]+ keeps them.
SEPARATORS = r"[^\pL\pN]+"


class LexicalVectors(tf.Module):
    """Unit TF-IDF vectors [n, V] over a vocabulary fitted on `texts` (a catalogue's): V columns, one per
    word, or per each of the `max_terms` words of most texts (module docstring; 0: every word)."""

    def __init__(self, texts, max_terms=0):
        super().__init__(name="lexical_vectors")
        texts = [str(t) for t in texts]
        weights, vocab = tfidf_matrix(texts)
        words = sorted(vocab, key=vocab.get)  # every word, in the fit's column order
        df = np.bincount(weights.indices, minlength=len(words))  # each text's row holds each of its terms once
        keep = np.arange(len(words))
        if 0 < int(max_terms) < len(words):
            keep = np.sort(np.lexsort((keep, -df))[:int(max_terms)])  # most texts first; ties: column order
        self._column = np.full(len(words), -1, np.int64)  # each word's column, -1: no column (still in the norm)
        self._column[keep] = np.arange(len(keep))
        cut = weights[:, keep].tocsr() if len(keep) < len(words) else weights
        cut.sort_indices()
        self._fitted = cut  # csr [n, V]: the fitted texts' vectors (`fitted_rows`), columns in order
        self._all_idf = smoothed_idf(len(texts), df)  # float64, every word's (tfidf_matrix's): each text's norm
        self._all_index = {t: k for k, t in enumerate(words)}
        self.doc_fraction = df[keep] / max(len(texts), 1)  # float64 [V]: the share of the fitted texts with each
        self.terms = [words[k] for k in keep]  # the vocabulary in column order
        self.index = {t: k for k, t in enumerate(self.terms)}
        self.dim, self.n_words = len(self.terms), len(words)
        self._idf = tf.constant(self._all_idf, tf.float32)
        self._keep = tf.constant(keep, tf.int64)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(words or [""], tf.string),
                                                tf.range(max(len(words), 1), dtype=tf.int64)), default_value=-1)

    def common_terms(self, fraction):
        """The terms of more than `fraction` of the fitted texts (a template's own words, e.g. "genres")."""
        return [t for t, f in zip(self.terms, self.doc_fraction) if f > fraction]

    def rows(self, texts):
        """Numpy: (term ids int32 [n, T], unit TF-IDF weights float32 [n, T]) of `texts`, padded with
        id 0 and weight 0 (T: the most distinct known terms of any text, at least 1)."""
        ids, weights = [], []
        for text in texts:
            words, counts = np.unique([self._all_index[t] for t in tokenize(str(text)) if t in self._all_index],
                                      return_counts=True)
            words = words.astype(np.int64)
            w = counts * self._all_idf[words]
            norm = np.sqrt(np.sum(w * w))  # over every word, those without a column too
            cols = self._column[words]
            ids.append(cols[cols >= 0])
            weights.append((w / norm if norm > 0 else w)[cols >= 0])
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
        return per_row(ids, weights, self.dim)

    def __call__(self, texts):
        """Unit TF-IDF vectors [n, V] of string texts [n], in graph ops (module docstring)."""
        lower = tf.strings.lower(texts, encoding="utf-8")
        tokens = tf.strings.split(tf.strings.strip(tf.strings.regex_replace(lower, SEPARATORS, " ")))
        ids = tf.ragged.map_flat_values(self._table.lookup, tokens)  # ragged [n, None]; -1: not in the vocabulary
        ids = tf.ragged.boolean_mask(ids, ids >= 0)
        counts = tf.math.bincount(tf.cast(ids, tf.int32), minlength=self.n_words, maxlength=self.n_words, axis=-1,
                                  dtype=tf.float32)  # (n, every word)
        unit = tf.math.l2_normalize(counts * self._idf, axis=-1)  # an all-zero row stays zero
        return unit if self.dim == self.n_words else tf.gather(unit, self._keep, axis=-1)  # (n, V)
