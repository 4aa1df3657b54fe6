"""Tests for tfrec.evaluation.beyond.

Each metric is checked against a naive loop over the lists (itertools / sets / math)
on random cases and against a hand-worked tiny case with the arithmetic in comments.
"""
import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

import tfrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

from tfrec.errors import ConfigError, DataError
from tfrec.evaluation import beyond

# Hand-worked fixture: 3 users, 5 items, K = 3; user 1's list has an empty slot and
# user 2's list is empty (e.g. every item excluded).
TOPK = np.array([[0, 1, 2], [0, 3, -1], [-1, -1, -1]])
POP = np.array([5, 1, 0, 2, 4])  # distinct train users per item, 8 train users


def _random_lists(seed, n_users=40, n_items=25, k=6, empty_slots=True):
    rng = np.random.default_rng(seed)
    # Zipf-like item choice so that popular items repeat across lists.
    weights = 1.0 / np.arange(1, n_items + 1)
    weights /= weights.sum()
    lists = np.stack([rng.choice(n_items, size=k, replace=False, p=weights) for _ in range(n_users)])
    if empty_slots:
        cut = rng.integers(0, k + 1, size=n_users)  # list length per user, 0..k
        lists = np.where(np.arange(k)[None, :] < cut[:, None], lists, -1)
    return lists


def _filled(row):
    return [int(i) for i in row if i >= 0]


def test_catalogue_coverage_hand_worked():
    # Recommended items {0, 1, 2, 3} out of 5 -> 4/5; at k=1 only {0} -> 1/5.
    assert beyond.catalogue_coverage(TOPK, 5) == pytest.approx(0.8)
    assert beyond.catalogue_coverage(TOPK, 5, k=1) == pytest.approx(0.2)


@pytest.mark.parametrize("seed", [0, 1])
def test_catalogue_coverage_matches_naive(seed):
    lists = _random_lists(seed)
    items = {i for row in lists for i in _filled(row)}
    assert beyond.catalogue_coverage(lists, 25) == pytest.approx(len(items) / 25)


def test_gini_hand_worked():
    # Counts over the 5 items: [2, 1, 1, 1, 0], sorted [0, 1, 1, 1, 2], total 5.
    # sum (2i - n - 1) c_i = (-4)(0) + (-2)(1) + 0(1) + 2(1) + 4(2) = 8 -> 8 / (5 * 5) = 0.32
    assert beyond.gini_index(TOPK, 5) == pytest.approx(0.32)
    # Uniform exposure -> 0; one item takes every slot -> (n - 1) / n.
    assert beyond.gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    assert beyond.gini_index(np.array([[2], [2], [2]]), 4) == pytest.approx(3 / 4)
    assert np.isnan(beyond.gini_index(np.full((2, 2), -1), 4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gini_matches_mean_absolute_difference_formula(seed):
    # Independent formula: G = sum_i sum_j |c_i - c_j| / (2 n^2 mean(c)).
    lists = _random_lists(seed)
    counts = [0] * 25
    for row in lists:
        for i in _filled(row):
            counts[i] += 1
    mad = sum(abs(x - y) for x in counts for y in counts)
    expected = mad / (2 * 25**2 * (sum(counts) / 25))
    assert beyond.gini_index(lists, 25) == pytest.approx(expected)


def test_recommended_popularity_and_lift_hand_worked():
    # ARP per user: (5 + 1 + 0) / 3 = 2; (5 + 2) / 2 = 3.5; empty list -> NaN.
    np.testing.assert_allclose(beyond.recommended_popularity(TOPK, POP), [2.0, 3.5, np.nan])
    # Catalogue baseline: mean(2, 3.5) / mean(POP) = 2.75 / 2.4.
    assert beyond.popularity_lift(TOPK, POP) == pytest.approx(2.75 / 2.4)
    # Profile baseline: user 0 trained on {4} (pop 4), user 1 on {1, 3} (pop 1.5),
    # user 2 on {0} but has an empty list -> left out. 2.75 / mean(4, 1.5) = 1.0.
    train = sp.csr_matrix(np.array([[0, 0, 0, 0, 1], [0, 1, 0, 1, 0], [1, 0, 0, 0, 0]]))
    assert beyond.popularity_lift(TOPK, POP, train) == pytest.approx(1.0)
    assert beyond.popularity_lift(TOPK, POP, [[4], [1, 3], [0]]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_popularity_lift_matches_naive(seed):
    rng = np.random.default_rng(seed)
    lists = _random_lists(seed)
    pop = rng.integers(0, 30, size=25)
    profiles = [list(rng.choice(25, size=rng.integers(0, 5), replace=False)) for _ in lists]
    arp, prof = [], []
    for row, profile in zip(lists, profiles):
        items = _filled(row)
        if items and profile:
            arp.append(sum(pop[i] for i in items) / len(items))
            prof.append(sum(pop[i] for i in profile) / len(profile))
    expected = (sum(arp) / len(arp)) / (sum(prof) / len(prof))
    assert beyond.popularity_lift(lists, pop, profiles) == pytest.approx(expected)


def test_novelty_hand_worked():
    # 8 train users. User 0: -log2(5/8) = 0.678072, -log2(1/8) = 3, item 2 has pop 0 ->
    # clipped to 1 -> 3; mean = 6.678072 / 3 = 2.226024.
    # User 1: (-log2(5/8) + -log2(2/8)) / 2 = (0.678072 + 2) / 2 = 1.339036.
    np.testing.assert_allclose(
        beyond.novelty(TOPK, POP, n_users=8), [2.226024, 1.339036, np.nan], atol=1e-6
    )


def test_novelty_matches_naive():
    lists = _random_lists(3)
    pop = np.random.default_rng(3).integers(0, 50, size=25)
    got = beyond.novelty(lists, pop, n_users=50)
    for u, row in enumerate(lists):
        items = _filled(row)
        if not items:
            assert np.isnan(got[u])
            continue
        expected = sum(-math.log2(max(pop[i], 1) / 50) for i in items) / len(items)
        assert got[u] == pytest.approx(expected)


def test_novelty_rejects_interaction_counts_above_users():
    with pytest.raises(DataError, match="at most `n_users`"):
        beyond.novelty(TOPK, POP, n_users=4)


def test_ild_hand_worked():
    # Genres (multi-hot): item0 {A}, item1 {A, B}, item2 {}, item3 {B}.
    genres = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [1, 0]])
    # User 0, items 0, 1, 2. Jaccard distances: (0,1) 1 - 1/2 = 0.5; (0,2) 1 - 0/1 = 1;
    # (1,2) 1 - 0/2 = 1 -> mean 2.5 / 3 = 0.833333. User 1, items 0, 3: 1 - 0/2 = 1.
    np.testing.assert_allclose(
        beyond.intra_list_diversity(TOPK, genres, distance="jaccard"), [2.5 / 3, 1.0, np.nan]
    )
    # Cosine: (0,1) 1 - 1/sqrt(2) = 0.292893; item 2 is a zero vector -> similarity 0,
    # distance 1 for both its pairs -> (0.292893 + 2) / 3 = 0.764298.
    np.testing.assert_allclose(
        beyond.intra_list_diversity(TOPK, genres, distance="cosine"),
        [(2 - 1 / math.sqrt(2) + 1) / 3, 1.0, np.nan],
    )


def test_ild_two_empty_genre_sets_have_jaccard_distance_zero():
    genres = np.array([[0, 0], [0, 0]])
    np.testing.assert_allclose(
        beyond.intra_list_diversity(np.array([[0, 1]]), genres, distance="jaccard"), [0.0]
    )


@pytest.mark.parametrize("distance", ["jaccard", "cosine"])
@pytest.mark.parametrize("chunk_size", [1, 7, 512])
def test_ild_matches_naive(distance, chunk_size):
    rng = np.random.default_rng(5)
    lists = _random_lists(5)
    if distance == "jaccard":
        features = (rng.random((25, 6)) < 0.35).astype(np.int8)
    else:
        features = rng.normal(size=(25, 4))
    got = beyond.intra_list_diversity(lists, features, distance=distance, chunk_size=chunk_size)
    for u, row in enumerate(lists):
        items = _filled(row)
        if len(items) < 2:
            assert np.isnan(got[u])
            continue
        dists = []
        for i, j in itertools.combinations(items, 2):
            if distance == "jaccard":
                gi, gj = set(np.flatnonzero(features[i])), set(np.flatnonzero(features[j]))
                union = gi | gj
                dists.append(1 - len(gi & gj) / len(union) if union else 0.0)
            else:
                fi, fj = features[i].tolist(), features[j].tolist()
                dot = sum(x * y for x, y in zip(fi, fj))
                norm = math.sqrt(sum(x * x for x in fi)) * math.sqrt(sum(y * y for y in fj))
                dists.append(1 - dot / norm)
        assert got[u] == pytest.approx(sum(dists) / len(dists)), u


def test_ild_accepts_sparse_features_and_checks_distance():
    genres = sp.csr_matrix(np.array([[1, 0], [0, 1]]))
    np.testing.assert_allclose(
        beyond.intra_list_diversity(np.array([[0, 1]]), genres, distance="jaccard"), [1.0]
    )
    with pytest.raises(ConfigError, match="`distance` must be"):
        beyond.intra_list_diversity(np.array([[0, 1]]), genres, distance="euclid")


def test_personalisation_hand_worked():
    # Pairs: (0,1) share item 0 -> 1/3; (0,2) and (1,2) share nothing (user 2's list is
    # empty). 1 - (1/3) / 3 = 0.888889.
    assert beyond.personalisation(TOPK) == pytest.approx(1 - 1 / 9)
    # Everyone gets the same list -> 0; disjoint lists -> 1.
    assert beyond.personalisation(np.array([[1, 2], [2, 1], [1, 2]])) == pytest.approx(0.0)
    assert beyond.personalisation(np.array([[1, 2], [3, 4]])) == pytest.approx(1.0)
    assert np.isnan(beyond.personalisation(np.array([[1, 2]])))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_personalisation_matches_all_pairs_loop(seed):
    lists = _random_lists(seed, n_users=60)
    k = lists.shape[1]
    overlaps = [
        len(set(_filled(a)) & set(_filled(b))) / k for a, b in itertools.combinations(lists, 2)
    ]
    assert beyond.personalisation(lists) == pytest.approx(1 - sum(overlaps) / len(overlaps))


def test_personalisation_rejects_repeated_items():
    with pytest.raises(DataError, match="repeats an item"):
        beyond.personalisation(np.array([[1, 1], [2, 3]]))


def test_cold_share():
    # Item 2 is the only cold item: user 0 -> 1/3, user 1 -> 0/2, empty list -> NaN.
    np.testing.assert_allclose(beyond.cold_share(TOPK, POP == 0), [1 / 3, 0.0, np.nan])
    lists = _random_lists(9)
    cold = np.random.default_rng(9).random(25) < 0.3
    got = beyond.cold_share(lists, cold)
    for u, row in enumerate(lists):
        items = _filled(row)
        expected = sum(cold[i] for i in items) / len(items) if items else np.nan
        np.testing.assert_allclose(got[u], expected)


def test_k_truncates_lists():
    # With k=1 only the first column counts: items {0} -> novelty of item 0 only.
    np.testing.assert_allclose(
        beyond.novelty(TOPK, POP, n_users=8, k=1), [-math.log2(5 / 8)] * 2 + [np.nan]
    )


def test_breakdown_hand_worked():
    # 9 warm users with activity [0,1,2,3,0,1,2,3,0] and one cold user (index 9).
    # Sorted warm activity: [0,0,0,1,1,2,2,3,3]. Share strictly below: 0 -> 0/9, 1 -> 3/9,
    # 2 -> 5/9, 3 -> 7/9. With 3 bins: floor(3 * share) -> 0 -> bin 1; 1 and 2 -> bin 2;
    # 3 -> bin 3. Values = user index: bin 1 = {0, 4, 8} -> 4; bin 2 = {1, 2, 5, 6} -> 3.5;
    # bin 3 = {3, 7} -> 5; cold = {9} -> 9.
    activity = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    values = {"x": np.arange(10.0), "y": np.where(np.arange(10) == 0, np.nan, 1.0)}
    table = beyond.breakdown(values, activity, n_bins=3, cold_mask=np.arange(10) == 9)
    assert list(table.index) == ["bin 1", "bin 2", "bin 3", "cold users"]
    np.testing.assert_allclose(table["x"], [4.0, 3.5, 5.0, 9.0])
    np.testing.assert_array_equal(table["n_users"], [3, 4, 2, 1])
    np.testing.assert_array_equal(table["activity_min"], [0, 1, 3, 1])
    # NaN values are ignored: bin 1 has y = NaN, 1, 1 -> 1.
    np.testing.assert_allclose(table["y"], [1.0, 1.0, 1.0, 1.0])


def test_breakdown_distinct_activity_gives_equal_deciles():
    # Independent expectation: with distinct activities and n divisible by n_bins, the
    # deciles are consecutive equal slices of the users sorted by activity.
    rng = np.random.default_rng(0)
    activity = rng.permutation(200) + 5
    metric = rng.random(200)
    table = beyond.breakdown({"m": metric}, activity, n_bins=10)
    order = np.argsort(activity)
    expected = [metric[part].mean() for part in np.array_split(order, 10)]
    np.testing.assert_allclose(table["m"], expected)
    assert "cold users" not in table.index
    np.testing.assert_array_equal(table["n_users"], [20] * 10)


def test_breakdown_errors():
    with pytest.raises(DataError, match=r"`per_user_values\['m'\]` has 2 values"):
        beyond.breakdown({"m": np.ones(2)}, np.ones(3))
    with pytest.raises(DataError, match="`cold_mask` has 2 entries"):
        beyond.breakdown({"m": np.ones(3)}, np.ones(3), cold_mask=np.ones(2, bool))
    with pytest.raises(ConfigError, match="`n_bins` must be"):
        beyond.breakdown({"m": np.ones(3)}, np.ones(3), n_bins=0)


@pytest.mark.parametrize(
    "topk, match",
    [
        (np.array([0.5, 1.0]), "must be an integer array"),
        (np.array([[0, -2]]), "only -1 may mark"),
        (np.array([[0, 9]]), "the catalogue has 5 items"),
    ],
)
def test_topk_validation(topk, match):
    with pytest.raises(DataError, match=match):
        beyond.catalogue_coverage(topk, 5)


def test_novelty_in_reports_counts_distinct_users_when_a_user_repeats_an_item():
    # Regression: the report passed interaction counts, so a user who rated an item 5 times
    # made its "popularity" exceed the number of users and novelty raised DataError.
    import types

    import pandas as pd

    from tfrec.evaluation.protocol import beyond_accuracy
    from tfrec.features.catalogue import Catalogue

    items = pd.DataFrame({"item_id": ["a", "b", "c"]})
    train = pd.DataFrame({"user_id": ["u1"] * 5 + ["u2", "u2"], "item_id": ["a"] * 5 + ["a", "b"]})
    cat = Catalogue.fit(items, train, train)  # 2 users; item a: 6 interactions, 2 distinct users
    topk = np.array([[0, 1], [0, 2]])  # u1 gets a, b; u2 gets a, c
    out = beyond_accuracy(types.SimpleNamespace(topk=topk), cat, cat.matrix(train), k=2, n_users=2)
    # By hand: a 2 users -> -log2(2/2) = 0; b 1 user -> 1; c 0 users, clipped to 1 -> 1.
    assert out["novelty@2"] == pytest.approx(((0 + 1) / 2 + (0 + 1) / 2) / 2)
