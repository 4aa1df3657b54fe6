"""Baselines of tfrec.evaluation: each checked against an independent naive
computation or a hand-worked case, plus a Recall@20 sanity check on ML-100K."""
import json
import math

import tfrec  # noqa: F401  (before TensorFlow: sets TF_USE_LEGACY_KERAS)

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tfrec.errors import ConfigError, DataError
from tfrec.evaluation.baselines import (
    BASELINES,
    EASE,
    Baseline,
    ImplicitALS,
    ItemKNN,
    MostPopular,
    Random,
    TfidfContent,
    TfrsTutorial,
)
from tfrec.evaluation.baselines.tfidf_content import tfidf_matrix, tokenize

# Small settings so that every baseline fits the tiny matrices in well under a second.
FAST = {
    "tfrs_tutorial": {"epochs": 2, "batch_size": 16},
    "implicit_als": {"factors": 4, "iterations": 3},
    "item_knn": {"k": 3},
    "ease": {"l2": 1.0},
}


def weighted_matrix(n_users=7, n_items=6, density=0.5, seed=0):
    """Random weights in [0.5, 2): distinct similarities, so top-k has no ties."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # no empty user
    dense = np.where(mask, rng.uniform(0.5, 2.0, (n_users, n_items)), 0.0).astype(np.float32)
    return dense


def item_texts(n_items):
    words = ["space", "war", "love", "comedy", "crime", "drama", "war", "kids"]
    return [f"{words[i % 8]} {words[(i * 3 + 1) % 8]} film {i}" for i in range(n_items)]


# --------------------------------------------------------------------------- interface


def test_registry_names_classes_and_grids():
    assert set(BASELINES) == {
        "random", "most_popular", "recent_popular", "item_knn", "ease", "implicit_als", "tfidf_content",
        "tfrs_tutorial",
    }
    for name, cls in BASELINES.items():
        assert issubclass(cls, Baseline)
        assert cls.name == name
        # The tuning loop calls cls(**point) for each grid point: keys must be __init__ args.
        assert set(cls.grid) <= set(cls().get_params()), name
        for values in cls.grid.values():
            assert isinstance(values, list) and values


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_params_round_trip_through_json(name):
    cls = BASELINES[name]
    model = cls(**FAST.get(name, {}))
    params = json.loads(json.dumps(model.get_params()))
    assert cls(**params).get_params() == model.get_params()
    assert name == cls.name and repr(model).startswith(cls.__name__ + "(")


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_scores_shape_dtype_and_independent_of_batch(name):
    dense = weighted_matrix()
    train = sp.csr_matrix(dense)
    # Time-aware baselines also get each interaction's (random) timestamp.
    times = train.copy().astype(np.float64)
    times.data = np.random.default_rng(1).integers(0, 30 * 86400, times.nnz).astype(np.float64)
    model = BASELINES[name](**FAST.get(name, {})).fit(
        train, item_text=item_texts(dense.shape[1]), seed=0, times=times if BASELINES[name].needs_times else None
    )
    scores = model.score(np.arange(dense.shape[0]))
    assert scores.shape == dense.shape and scores.dtype == np.float32
    assert np.all(np.isfinite(scores))
    # The evaluator scores users in batches; a user's row must not depend on the batch.
    np.testing.assert_allclose(model.score(np.array([5, 0])), scores[[5, 0]], rtol=1e-6, atol=1e-7)
    assert model.score(np.array([], dtype=np.int64)).shape == (0, dense.shape[1])


def test_score_before_fit_is_explained():
    with pytest.raises(DataError, match=r"`EASE.score` was called before `fit`"):
        EASE().score(np.array([0]))


def test_bad_user_indices_are_explained():
    model = MostPopular().fit(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    with pytest.raises(DataError, match=r"`user_idx` must lie in \[0, 3\).*\[0, 3\]"):
        model.score(np.array([0, 3]))
    with pytest.raises(DataError, match=r"`user_idx` must be a 1-D array of integer"):
        model.score(np.array([0.0, 1.0]))


def test_bad_train_matrix_is_explained():
    with pytest.raises(DataError, match=r"`train` must be a scipy.sparse matrix.*got ndarray"):
        MostPopular().fit(np.eye(3))
    with pytest.raises(DataError, match=r"`train` values must be finite and >= 0"):
        MostPopular().fit(sp.csr_matrix(-np.eye(3)))


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (ItemKNN, {"k": 0}, r"`k` must be an integer > 0, got 0"),
        (ItemKNN, {"shrink": -1.0}, r"`shrink` must be a number >= 0"),
        (EASE, {"l2": 0.0}, r"`l2` must be a number > 0"),
        (ImplicitALS, {"factors": 2.5}, r"`factors` must be an integer > 0, got 2.5"),
        (TfrsTutorial, {"epochs": "3"}, r"`epochs` must be an integer > 0, got '3'"),
    ],
)
def test_bad_hyperparameters_are_explained(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cls(**kwargs)


# --------------------------------------------------------------------------- Random, MostPopular


def test_random_is_reproducible_per_seed_and_differs_per_user():
    train = sp.csr_matrix(weighted_matrix())
    a = Random().fit(train, seed=3).score(np.arange(7))
    b = Random().fit(train, seed=3).score(np.arange(7))
    c = Random().fit(train, seed=4).score(np.arange(7))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # Different users get different orders, not one shared random ranking.
    assert len({tuple(np.argsort(row)) for row in a}) > 1
    assert a.min() >= 0.0 and a.max() < 1.0


def test_most_popular_counts_interactions_by_hand():
    # items:        0  1  2  3
    dense = np.array([[1, 0, 1, 0],
                      [1, 0, 0, 0],
                      [3, 0, 1, 0]], dtype=np.float32)  # a weight of 3 is still one user
    # Counts by hand: item 0 -> 3 users, item 1 -> 0, item 2 -> 2, item 3 -> 0.
    scores = MostPopular().fit(sp.csr_matrix(dense)).score(np.array([0, 2]))
    np.testing.assert_array_equal(scores, [[3, 0, 2, 0], [3, 0, 2, 0]])


# --------------------------------------------------------------------------- ItemKNN


def naive_item_knn_scores(dense, k, shrink):
    """Explicit loops over item pairs: sim, per-target top-k, then weighted sums."""
    n_users, n_items = dense.shape
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i == j:
                continue
            dot = sum(dense[u, i] * dense[u, j] for u in range(n_users))
            norm_i = math.sqrt(sum(dense[u, i] ** 2 for u in range(n_users)))
            norm_j = math.sqrt(sum(dense[u, j] ** 2 for u in range(n_users)))
            sim[i, j] = dot / (norm_i * norm_j + shrink)
    kept = np.zeros_like(sim)
    for j in range(n_items):
        neighbours = sorted((i for i in range(n_items) if i != j), key=lambda i: -sim[i, j])[:k]
        for i in neighbours:
            kept[i, j] = sim[i, j]
    scores = np.zeros((n_users, n_items))
    for u in range(n_users):
        for j in range(n_items):
            scores[u, j] = sum(dense[u, i] * kept[i, j] for i in range(n_items))
    return scores


@pytest.mark.parametrize("k, shrink", [(1, 0.0), (2, 0.5), (3, 5.0), (50, 1.0)])
def test_item_knn_matches_naive_loops(k, shrink):
    dense = weighted_matrix(n_users=9, n_items=7, seed=1)
    model = ItemKNN(k=k, shrink=shrink).fit(sp.csr_matrix(dense))
    np.testing.assert_allclose(
        model.score(np.arange(9)), naive_item_knn_scores(dense, k, shrink), rtol=1e-5, atol=1e-6
    )
    # Sparse: at most k neighbours per target item (column).
    assert np.all(np.diff(model.similarity_.tocsc().indptr) <= k)


def test_item_knn_hand_worked_shrinkage():
    # Columns: i0 = [1,1,0], i1 = [1,1,0], i2 = [0,1,1]; every norm is sqrt(2), so
    # norm products are 2. dot(i0,i1) = 2, dot(i0,i2) = dot(i1,i2) = 1.
    # shrink = 1: sim01 = 2/3, sim02 = sim12 = 1/3.
    # user 2 (history {i2}):     [1/3, 1/3, 0]
    # user 0 (history {i0, i1}): [sim10, sim01, sim02 + sim12] = [2/3, 2/3, 2/3]
    dense = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=np.float32)
    scores = ItemKNN(k=2, shrink=1.0).fit(sp.csr_matrix(dense)).score(np.array([2, 0]))
    np.testing.assert_allclose(scores, [[1 / 3, 1 / 3, 0], [2 / 3, 2 / 3, 2 / 3]], rtol=1e-6)


# --------------------------------------------------------------------------- EASE


def test_ease_columns_are_the_per_column_ridge_regressions():
    # With diag(B) = 0, column j of B is the ridge regression of item j on all
    # other items: b_j = (X_-j^T X_-j + l2 I)^-1 X_-j^T x_j. Solved here column by
    # column, independently of the closed form used by the class.
    dense = weighted_matrix(n_users=10, n_items=6, seed=2)
    l2 = 2.0
    model = EASE(l2=l2).fit(sp.csr_matrix(dense))
    b = model.weights_.astype(np.float64)
    n_items = dense.shape[1]
    x = dense.astype(np.float64)
    for j in range(n_items):
        others = [i for i in range(n_items) if i != j]
        x_o = x[:, others]
        expected = np.linalg.solve(x_o.T @ x_o + l2 * np.eye(n_items - 1), x_o.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.diag(b), 0.0)
    # KKT stationarity of min ||X - XB||^2 + l2 ||B||^2 s.t. diag(B) = 0: the
    # gradient (G + l2 I) B - G may only be nonzero on the diagonal (the multipliers).
    gram = x.T @ x
    grad = (gram + l2 * np.eye(n_items)) @ b - gram
    off_diagonal = grad[~np.eye(n_items, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, 0.0, atol=1e-4)
    np.testing.assert_allclose(model.score(np.arange(10)), x @ b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- ImplicitALS


def naive_als_loss(dense, users, items, alpha, l2):
    conf = 1.0 + alpha * dense
    pref = (dense > 0).astype(np.float64)
    pred = users.astype(np.float64) @ items.astype(np.float64).T
    return np.sum(conf * (pref - pred) ** 2) + l2 * (np.sum(users.astype(np.float64) ** 2) + np.sum(items.astype(np.float64) ** 2))


def test_als_loss_decreases_and_matches_the_dense_loss():
    dense = weighted_matrix(n_users=12, n_items=9, seed=3)
    model = ImplicitALS(factors=3, l2=0.5, alpha=4.0, iterations=8).fit(sp.csr_matrix(dense), seed=0)
    losses = np.array(model.loss_history_)
    assert len(losses) == 8
    # Each half-step is an exact block minimisation, so the loss cannot go up
    # (up to float32 round-off in the solves).
    assert np.all(np.diff(losses) <= 1e-5 * losses[:-1]), losses
    assert losses[-1] < losses[0]
    # The reported loss skips the dense U x I matrix; recompute it densely.
    expected = naive_als_loss(dense, model.user_factors_, model.item_factors_, 4.0, 0.5)
    np.testing.assert_allclose(losses[-1], expected, rtol=1e-5)


def test_als_user_factors_solve_their_normal_equations():
    # Users are solved last in each sweep, so the final x_u must satisfy
    # (Y^T C_u Y + l2 I) x_u = Y^T C_u p_u for the final Y, user by user.
    dense = weighted_matrix(n_users=10, n_items=8, seed=4)
    alpha, l2 = 3.0, 0.7
    model = ImplicitALS(factors=4, l2=l2, alpha=alpha, iterations=4).fit(sp.csr_matrix(dense), seed=1)
    y = model.item_factors_.astype(np.float64)
    for u in range(dense.shape[0]):
        c_u = 1.0 + alpha * dense[u]
        p_u = (dense[u] > 0).astype(np.float64)
        lhs = y.T @ (c_u[:, None] * y) + l2 * np.eye(4)
        rhs = y.T @ (c_u * p_u)
        np.testing.assert_allclose(lhs @ model.user_factors_[u], rhs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.score(np.arange(10)), model.user_factors_ @ y.T, rtol=1e-5, atol=1e-6)


def test_als_is_deterministic_for_a_seed():
    train = sp.csr_matrix(weighted_matrix(seed=5))
    a = ImplicitALS(factors=3, iterations=3).fit(train, seed=7).score(np.arange(7))
    b = ImplicitALS(factors=3, iterations=3).fit(train, seed=7).score(np.arange(7))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- TfidfContent


def test_tokenize_lowercases_and_keeps_alphanumeric_runs():
    assert tokenize("Toy Story (1995)") == ["toy", "story", "1995"]
    assert tokenize("Toy Story (1995)", bigrams=True) == ["toy", "story", "1995", "toy story", "story 1995"]
    assert tokenize("Amélie_Poulain, 2001!") == ["amélie", "poulain", "2001"]


# Three documents, worked by hand (n = 3, smooth idf = ln((1 + n) / (1 + df)) + 1):
#   d0 "Apple banana apple"  tf: apple 2, banana 1
#   d1 "banana, cherry!"     tf: banana 1, cherry 1
#   d2 "Cherry cherry date"  tf: cherry 2, date 1
#   df: apple 1, banana 2, cherry 2, date 1
#   idf: apple = date = ln(4/2) + 1 = 1.693147; banana = cherry = ln(4/3) + 1 = 1.287682
#   d0: [apple 3.386294, banana 1.287682] / 3.622860 -> [0.934702, 0.355432]
#   d1: [banana 1.287682, cherry 1.287682] / 1.821057 -> [0.707107, 0.707107]
#   d2: [cherry 2.575364, date 1.693147] / 3.082085 -> [0.835592, 0.549351]
DOCS = ["Apple banana apple", "banana, cherry!", "Cherry cherry date"]
HAND_TFIDF = [
    {"apple": 0.934702, "banana": 0.355432},
    {"banana": 0.707107, "cherry": 0.707107},
    {"cherry": 0.835592, "date": 0.549351},
]


def test_tfidf_matches_the_hand_worked_example():
    vectors, vocab = tfidf_matrix(DOCS)
    assert set(vocab) == {"apple", "banana", "cherry", "date"}
    dense = vectors.toarray()
    for doc, expected in enumerate(HAND_TFIDF):
        got = {term: dense[doc, col] for term, col in vocab.items() if dense[doc, col] != 0}
        assert got.keys() == expected.keys()
        for term, value in expected.items():
            assert got[term] == pytest.approx(value, abs=1e-6)


def test_tfidf_content_scores_cold_items_by_cosine_to_the_profile():
    # Only items 0 and 1 have interactions; item 2 is cold.
    train = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32))
    model = TfidfContent().fit(train, item_text=DOCS)
    scores = model.score(np.arange(4))
    d0, d1, d2 = [np.array([v.get(t, 0.0) for t in ("apple", "banana", "cherry", "date")]) for v in HAND_TFIDF]
    # User 1 liked d1 (banana, cherry): the cold d2 shares "cherry", so it scores
    # cos(d1, d2) = 0.707107 * 0.835592 = 0.590857 > 0.
    assert scores[1, 2] == pytest.approx(0.590857, abs=1e-5)
    # User 0 liked d0 (apple, banana): no shared term with d2 -> 0; d1 via banana.
    np.testing.assert_allclose(scores[0], [1.0, 0.355432 * 0.707107, 0.0], atol=1e-5)
    # User 2's profile is d0 + d1; the score is its cosine to each item.
    profile = d0 + d1
    expected = [profile @ d / np.linalg.norm(profile) for d in (d0, d1, d2)]
    np.testing.assert_allclose(scores[2], expected, atol=1e-5)
    # No history, no profile: all zeros rather than NaN.
    np.testing.assert_array_equal(scores[3], 0.0)


def test_tfidf_content_needs_one_text_per_item():
    train = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(DataError, match=r"`TfidfContent.fit` needs `item_text`"):
        TfidfContent().fit(train)
    with pytest.raises(DataError, match=r"one string per item column of `train` \(3\), got 2"):
        TfidfContent().fit(train, item_text=DOCS[:2])
    with pytest.raises(DataError, match=r"item 1 is NoneType"):
        TfidfContent().fit(train, item_text=["a", None, "b"])


def test_tfidf_content_item_without_text_scores_zero():
    train = sp.csr_matrix(np.ones((1, 3), dtype=np.float32))
    scores = TfidfContent().fit(train, item_text=["war film", "", "war"]).score(np.array([0]))
    assert scores[0, 1] == 0.0 and scores[0, 0] > 0 and scores[0, 2] > 0


# --------------------------------------------------------------------------- TfrsTutorial


def block_matrix():
    """8 users x 8 items: users 0-3 took items 0-3, users 4-7 took items 4-7."""
    dense = np.zeros((8, 8), dtype=np.float32)
    dense[:4, :4] = 1.0
    dense[4:, 4:] = 1.0
    return dense


def test_tfrs_tutorial_ranks_in_block_items_first():
    dense = block_matrix()
    model = TfrsTutorial(epochs=60, batch_size=32).fit(sp.csr_matrix(dense), seed=0)
    scores = model.score(np.arange(8))
    in_block = dense > 0
    for u in range(8):
        assert scores[u, in_block[u]].min() > scores[u, ~in_block[u]].max(), (u, scores[u])
    assert model.user_embeddings_.shape == (8, 32) and model.item_embeddings_.shape == (8, 32)
    assert model.loss_history_[-1] < model.loss_history_[0]


def test_tfrs_tutorial_is_deterministic_for_a_seed():
    train = sp.csr_matrix(block_matrix())
    a = TfrsTutorial(epochs=3, batch_size=8).fit(train, seed=1).score(np.arange(8))
    b = TfrsTutorial(epochs=3, batch_size=8).fit(train, seed=1).score(np.arange(8))
    c = TfrsTutorial(epochs=3, batch_size=8).fit(train, seed=2).score(np.arange(8))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(a, c)


# --------------------------------------------------------------------------- real data


def naive_recall_at(scores, train, test, k):
    """Mean over users with test items of |top-k unseen items in test| / |test items|."""
    recalls = []
    for u in range(scores.shape[0]):
        relevant = set(test[u].indices)
        if not relevant:
            continue
        s = scores[u].astype(np.float64).copy()
        s[train[u].indices] = -np.inf  # seen items cannot be recommended
        top = np.argsort(-s, kind="stable")[:k]
        recalls.append(len(relevant.intersection(top.tolist())) / len(relevant))
    return float(np.mean(recalls))


@pytest.mark.slow
def test_ml100k_recall_ordering(ml100k_path):
    ratings = pd.read_csv(ml100k_path / "u.data", sep="\t", names=["user", "item", "rating", "ts"])
    users = ratings["user"].to_numpy() - 1  # GroupLens ids start at 1
    items = ratings["item"].to_numpy() - 1
    shape = (users.max() + 1, items.max() + 1)  # (943, 1682)
    is_test = np.random.default_rng(0).random(len(ratings)) < 0.2  # random 80/20 split

    def matrix(mask):
        ones = np.ones(mask.sum(), np.float32)
        return sp.csr_matrix((ones, (users[mask], items[mask])), shape=shape)

    train, test = matrix(~is_test), matrix(is_test)
    everyone = np.arange(shape[0])
    recall = {}
    for model in (Random(), MostPopular(), ItemKNN(), EASE(), ImplicitALS()):
        scores = model.fit(train, seed=0).score(everyone)
        recall[model.name] = naive_recall_at(scores, train, test, k=20)
    print("Recall@20 on ML-100K random 80/20:", {k: round(v, 4) for k, v in recall.items()})
    # Seen around 0.01 / 0.17 / 0.32 / 0.36 / 0.36 for these five.
    assert recall["most_popular"] > recall["random"] + 0.1
    assert recall["item_knn"] > recall["most_popular"] + 0.08
    assert recall["ease"] > recall["most_popular"] + 0.08
    assert recall["implicit_als"] > recall["most_popular"] + 0.08


# --- fold-in: scoring users from the history known at request time -------------

def _fold_case():
    rng = np.random.default_rng(5)
    train = sp.csr_matrix((rng.random((12, 9)) < 0.35).astype(np.float32))
    extra = sp.csr_matrix((rng.random((12, 9)) < 0.15).astype(np.float32))
    history = ((train + extra) > 0).astype(np.float32).tocsr()
    return train, history


def test_fold_in_with_train_rows_changes_nothing():
    from tfrec.evaluation.baselines import BASELINES

    train, _ = _fold_case()
    texts = [f"item {i} word{i % 3}" for i in range(9)]
    for name in ("item_knn", "ease", "implicit_als", "tfidf_content", "most_popular"):
        model = BASELINES[name]().fit(train, item_text=texts, seed=0)
        before = model.score(np.arange(12))
        np.testing.assert_allclose(model.fold_in(train).score(np.arange(12)), before, rtol=1e-4, atol=1e-5)


def test_ease_fold_in_scores_history_rows_with_the_fitted_weights():
    from tfrec.evaluation.baselines import EASE

    train, history = _fold_case()
    model = EASE(l2=10.0).fit(train)
    want = history.toarray() @ model.weights_  # X_history B, by hand
    np.testing.assert_allclose(model.fold_in(history).score(np.arange(12)), want, rtol=1e-5, atol=1e-6)


def test_als_fold_in_solves_the_user_normal_equations_on_the_new_history():
    from tfrec.evaluation.baselines import ImplicitALS

    train, history = _fold_case()
    als = ImplicitALS(factors=4, l2=1.0, alpha=2.0, iterations=5).fit(train, seed=0)
    als.fold_in(history)
    Y = als.item_factors_.astype(np.float64)
    for u in range(12):
        p = history[u].toarray().ravel()
        c = 1.0 + 2.0 * p  # confidence 1 + alpha * r
        lhs = Y.T @ (c[:, None] * Y) + 1.0 * np.eye(4)
        rhs = Y.T @ (c * p)
        np.testing.assert_allclose(als.user_factors_[u], np.linalg.solve(lhs, rhs), rtol=1e-3, atol=1e-4)


def test_fold_in_rejects_a_wrong_shape():
    from tfrec.errors import DataError
    from tfrec.evaluation.baselines import EASE

    train, _ = _fold_case()
    with pytest.raises(DataError, match=r"`history` must have the train matrix's shape \(12, 9\)"):
        EASE().fit(train).fold_in(sp.csr_matrix((3, 9), dtype=np.float32))
