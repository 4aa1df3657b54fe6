"""Content-only baseline: TF-IDF over item text, cosine to the user's profile."""
import re

import numpy as np
import scipy.sparse as sp

from tfrec.errors import DataError
from tfrec.evaluation.baselines.base import Baseline

_TOKEN = re.compile(r"[^\W_]+")  # runs of letters or digits (any script)


def tokenize(text, bigrams=False):
    """Lowercase alphanumeric tokens, plus adjacent-pair bigrams if asked.

    Example:
        tokenize("Toy Story (1995)", bigrams=True)
        # ['toy', 'story', '1995', 'toy story', 'story 1995']
    """
    tokens = _TOKEN.findall(text.lower())
    if bigrams:
        tokens = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
    return tokens


def smoothed_idf(n_docs, df):
    """ln((1 + n) / (1 + df)) + 1 per term (float64): as if one extra document held every term."""
    return np.log((1.0 + n_docs) / (1.0 + np.asarray(df, np.float64))) + 1.0


def tfidf_matrix(texts, *, bigrams=False, sublinear_tf=False):
    """TF-IDF rows for `texts`: float32 csr [n_docs, n_terms] and the vocabulary.

    tf is the raw count (or `1 + log(count)` with `sublinear_tf`); idf is the
    smoothed `ln((1 + n) / (1 + df)) + 1` (as if one extra document held every
    term, so no term gets idf 0 or a division by zero); rows are l2-normalised.
    A text with no tokens gives an all-zero row.
    """
    vocab = {}
    rows, cols, counts = [], [], []
    for doc, text in enumerate(texts):
        terms, tf = np.unique(
            [vocab.setdefault(t, len(vocab)) for t in tokenize(text, bigrams)], return_counts=True
        )
        rows.append(np.full(len(terms), doc))
        cols.append(terms)
        counts.append(tf)
    n_docs = len(texts)
    row = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    col = np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)
    tf = np.concatenate(counts).astype(np.float64) if counts else np.zeros(0)
    if sublinear_tf:
        tf = 1.0 + np.log(tf)
    idf = smoothed_idf(n_docs, np.bincount(col, minlength=len(vocab)))  # (n_terms,)
    weights = sp.csr_matrix((tf * idf[col], (row, col)), shape=(n_docs, len(vocab)))
    norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())  # (n_docs,)
    weights = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weights
    return weights.astype(np.float32).tocsr(), vocab


class TfidfContent(Baseline):
    """Content-based recommender: "more items whose text is like what you liked".

    Items are TF-IDF vectors of their text (title, genres, overview...). A user
    profile is the train-weighted sum of the (unit-length) vectors of their
    train items, which for 0/1 data points the same way as their mean; an
    item's score is the cosine between the profile and the item. It uses no
    collaborative signal, so it scores items nobody has interacted with (cold
    items) as well as any other: the reference for the text towers.

    Args:
        bigrams: add adjacent-token bigrams to the vocabulary.
        sublinear_tf: use `1 + log(tf)` instead of raw counts.

    Example:
        model = TfidfContent().fit(train, item_text=["Toy Story (1995) Animation", ...])
        scores = model.score(np.array([0]))  # (1, I), cosines in [0, 1]
    """

    name = "tfidf_content"
    grid = {"bigrams": [False, True], "sublinear_tf": [False, True]}

    def __init__(self, bigrams=False, sublinear_tf=False):
        self.bigrams = bool(bigrams)
        self.sublinear_tf = bool(sublinear_tf)

    def _fit(self, train, *, item_text, seed):
        if item_text is None:
            raise DataError(
                "`TfidfContent.fit` needs `item_text`: one string per item (index 0.."
                f"{self.n_items_ - 1}). Fix: pass `item_text=[...]`, e.g. titles and genres."
            )
        item_text = list(item_text)
        if len(item_text) != self.n_items_:
            raise DataError(
                f"`item_text` must hold one string per item column of `train` "
                f"({self.n_items_}), got {len(item_text)}."
            )
        bad = [i for i, t in enumerate(item_text) if not isinstance(t, str)]
        if bad:
            raise DataError(
                f"`item_text` must hold strings; item {bad[0]} is "
                f"{type(item_text[bad[0]]).__name__}. Fix: use '' for items without text."
            )
        self.item_vectors_, self.vocabulary_ = tfidf_matrix(
            item_text, bigrams=self.bigrams, sublinear_tf=self.sublinear_tf
        )  # (I, V)

    def _score(self, users):
        profiles = self.history_[users] @ self.item_vectors_  # (b, V)
        norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(axis=1)).ravel())  # (b,)
        # Item rows are unit length, so profile . item / ||profile|| is the cosine.
        # Users with no history (or only textless items) get all-zero scores.
        scores = (profiles @ self.item_vectors_.T).toarray()  # (b, I)
        return scores / np.where(norms > 0, norms, 1.0)[:, None]
