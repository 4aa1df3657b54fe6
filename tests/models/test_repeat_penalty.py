"""The learned repeat penalty (`tfrec.models.repeat`): the loss, the scorer and the export.

Expected values come from plain numpy loops over the batch, or are worked by hand.
"""
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.models.worlds import seeded_hybrid, synthetic_world
from tfrec.errors import ConfigError
from tfrec.models.hybrid import HybridRetrieval
from tfrec.models.repeat import history_cells, rerank_with_penalty, seen_indicator
from tfrec.models.scoring import FullCatalogueValidation, HybridScorer, first_events


def _raw_for(p):
    return float(np.log(np.expm1(p)))  # softplus(raw) = p


def test_seen_indicator_marks_each_querys_own_history_candidates():
    rng = np.random.default_rng(0)
    n_unique, batch, n = 12, 6, 4
    cand_u = rng.permutation(n_unique)[:7]
    hist = rng.integers(0, n_unique, (batch, n))
    valid = rng.random((batch, n)) > 0.3
    got = seen_indicator(tf.constant(hist), tf.constant(valid), tf.constant(cand_u), n_unique).numpy()
    want = np.zeros((batch, len(cand_u)), np.float32)
    for b in range(batch):
        for j, u in enumerate(cand_u):
            want[b, j] = float(any(valid[b, k] and hist[b, k] == u for k in range(n)))
    np.testing.assert_array_equal(got, want)


def test_history_cells_hand_worked():
    index = pd.Index(["a", "b", "c"])
    rows, cols = history_cells(np.array([["", "a", "a"], ["x", "c", "b"]], dtype=object), index)
    # Row 0: "a" once although twice in the history; row 1: unknown "x" skipped.
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1), (1, 2)]


def _bare_model(p, temperature=0.5):
    raw = tf.Variable(_raw_for(p))  # only what the loss methods read
    return types.SimpleNamespace(temperature=temperature, remove_accidental_hits=True, _repeat_raw=raw,
                                 repeat_penalty=tf.nn.softplus(raw))


def test_in_batch_loss_with_the_penalty_matches_a_naive_softmax():
    rng = np.random.default_rng(1)
    items = ["a", "b", "c", "d", "e"]
    pos = ["a", "b", "a", "c", "e"]  # "a" twice: an accidental hit for queries 0 and 2
    hist = [["b", "c", ""], ["", "", ""], ["d", "d", "e"], ["a", "", "c"], ["b", "a", "a"]]  # query 3: c is a repeat
    emb = {i: v / np.linalg.norm(v) for i, v in zip(items, rng.normal(size=(5, 4)))}
    q = rng.normal(size=(5, 4)).astype(np.float32)
    p, t = 0.3, 0.5
    # The model's indexing: distinct items of candidates + histories, as compute_loss builds them.
    keys = pos + [h for row in hist for h in row]
    uniq = list(dict.fromkeys(keys))
    idx = np.array([uniq.index(k) for k in keys])
    unique_emb = np.stack([emb.get(u, np.zeros(4)) for u in uniq]).astype(np.float32)
    hist_idx = idx[5:].reshape(5, 3)
    valid = np.array(hist) != ""
    m = _bare_model(p, t)
    got = float(HybridRetrieval._distinct_candidate_loss(m, tf.constant(q), tf.constant(unique_emb),
                                                         tf.constant(idx[:5]), None,
                                                         (tf.constant(hist_idx), tf.constant(valid))))
    want = 0.0
    for i in range(5):
        logits = []
        for j in range(5):
            if j != i and pos[j] == pos[i]:
                continue  # accidental hit removed
            s = q[i] @ emb[pos[j]] / t - (p / t if pos[j] in hist[i] else 0.0)
            logits.append((j == i, s))
        z = np.log(sum(np.exp(s) for _, s in logits))
        want += z - next(s for is_pos, s in logits if is_pos)
    assert got == pytest.approx(want, rel=1e-5)


def test_history_negative_loss_with_the_penalty_hand_worked():
    m = _bare_model(0.25)
    q = np.array([[1.0, 0.0]], np.float32)
    pos = np.array([[0.8, 0.6]], np.float32)
    hist = np.array([[[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]], np.float32)
    ids = np.array([["a", "", "p"]], object)  # "p" is the positive itself: a repeat
    got = float(HybridRetrieval._history_negative_loss(m, tf.constant(q), tf.constant(pos), tf.constant(hist),
                                                        tf.constant(ids), tf.constant(["p"])))
    # p / T = 0.5 off both: the positive (a repeat) 1.6 - 0.5 = 1.1, history item "a" 0 - 0.5 = -0.5.
    want = -np.log(np.exp(1.1) / (np.exp(1.1) + np.exp(-0.5)))
    assert got == pytest.approx(want, rel=1e-5)


@pytest.fixture(scope="module")
def world():
    return synthetic_world(100, 60, 3000, data_seed=5, split="temporal", text_dim=8, history_length=5,
                           val_fraction=0.1, test_fraction=0.1)


def test_the_penalty_is_learned_and_the_scorer_applies_it_to_each_querys_history(world):
    from tfrec.data.pipeline import make_dataset

    data, split, cat, text, qf = world

    def trained(train, **kw):
        model = seeded_hybrid(world, repeat_penalty=True, history_negatives=1.0, **kw)
        start = float(model.repeat_penalty)
        feats = qf.build(train, context=train)
        feats["item_id"] = train["item_id"].astype(str).to_numpy(dtype=object)
        model.compile(tf.keras.optimizers.Adam(0.05))
        model.fit(make_dataset(feats, 256, seed=0), epochs=4, verbose=0)
        return model, start, float(model.repeat_penalty)

    # The synthetic users re-consume often (2,400 rows, 694 distinct pairs): the penalty shrinks.
    assert split.train.duplicated(["user_id", "item_id"]).mean() > 0.5
    train = split.train.drop_duplicates(["user_id", "item_id"])  # nobody consumes an item twice: it grows
    for negatives in (20, 0):  # with mixed random negatives too; the last model is checked below
        _, start, learned = trained(split.train, num_random_negatives=negatives)
        assert learned < 0.5 * start, negatives
        model, start, learned = trained(train, num_random_negatives=negatives)
        assert learned > 1.5 * start, negatives
    events = split.test.head(7)
    scorer = HybridScorer(model, qf, train, cat.item_ids)
    got = scorer.score_queries(events)
    f = qf.build(events, context=train)
    q = model.query_embedding({k: tf.constant(v) for k, v in f.items()}).numpy()
    v = model.item_embeddings(tf.constant(list(cat.item_ids))).numpy()
    want = q @ v.T
    for r, h in enumerate(f["history"]):
        for item in set(h) - {""}:
            want[r, list(cat.item_ids).index(item)] -= learned
    assert (f["history"] != "").any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Validation (early stopping, the prior's choice) scores each user's query the same way.
    validation = FullCatalogueValidation(qf, train, split.val, cat, log=lambda *a: None)
    users, items, offsets = validation.vectors(model)
    first = first_events(cat, split.val)
    direct = scorer.score_queries(first)
    np.testing.assert_allclose(users[first["user_idx"]] @ items.T - offsets[first["user_idx"]].toarray(), direct,
                               rtol=1e-5, atol=1e-5)
    assert offsets.nnz > 0


def test_mixed_negative_loss_with_the_penalty_matches_a_naive_softmax():
    # In-batch candidates + random negatives (repeats allowed, one equal to a positive),
    # logQ per column, accidental hits removed, the penalty at every column that is one
    # of the query's history items (the positive's own column too).
    rng = np.random.default_rng(4)
    items = ["a", "b", "c", "d", "e", "f"]
    pos = ["a", "b", "a", "c"]
    negs = ["f", "d", "b", "f"]  # "f" twice; "b" is query 1's positive (an accidental hit)
    hist = [["b", "f", ""], ["", "", ""], ["d", "a", "a"], ["c", "", "e"]]  # query 2: its positive "a" is a repeat
    emb = {i: v / np.linalg.norm(v) for i, v in zip(items, rng.normal(size=(6, 4)))}
    logq = {i: float(np.log(w)) for i, w in zip(items, [0.3, 0.2, 0.2, 0.1, 0.1, 0.1])}
    q = rng.normal(size=(4, 4)).astype(np.float32)
    p, t, uniform = 0.4, 0.5, -np.log(6.0)
    keys = pos + [h for row in hist for h in row] + negs  # compute_loss's order: candidates, histories, negatives
    uniq = list(dict.fromkeys(keys))
    idx = np.array([uniq.index(k) for k in keys])
    unique_emb = np.stack([emb.get(u, np.zeros(4)) for u in uniq]).astype(np.float32)
    log_prob_unique = np.array([logq.get(u, 0.0) for u in uniq], np.float32)
    m = _bare_model(p, t)
    m.num_random_negatives, m.logq = len(negs), True
    m._negative_pool = tf.constant(items)
    got = float(HybridRetrieval._retrieval_loss(
        m, tf.constant(q), tf.constant(unique_emb), tf.constant(idx), tf.constant(idx[:4]),
        tf.constant(log_prob_unique), (tf.constant(idx[4:16].reshape(4, 3)), tf.constant(np.array(hist) != ""))))
    want = 0.0
    columns = [(c, logq[c]) for c in pos] + [(c, uniform) for c in negs]
    for i in range(4):
        logits = []
        for j, (c, lq) in enumerate(columns):
            if j != i and c == pos[i]:
                continue  # accidental hit removed
            logits.append((j == i, q[i] @ emb[c] / t - lq - (p / t if c in hist[i] else 0.0)))
        z = np.log(sum(np.exp(s) for _, s in logits))
        want += z - next(s for is_pos, s in logits if is_pos)
    assert got == pytest.approx(want, rel=1e-5)


def test_rerank_equals_the_penalised_full_ranking():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3, 30)).astype(np.float32)
    history = np.array([[0, 1, 2, -1], [5, 5, 29, 7], [-1, -1, -1, -1]], np.int64)
    for p in (0.1, 1.0, 100.0):
        penalised = scores.copy()
        for b, h in enumerate(history):
            penalised[b, [x for x in set(h) if x >= 0]] -= p
        want = np.argsort(-penalised, axis=1, kind="stable")[:, :5]
        top = tf.math.top_k(scores, k=5 + 4)  # what an index returns for k + N
        vals, rows = rerank_with_penalty(top.values, tf.cast(top.indices, tf.int64), tf.constant(history), p, 5)
        np.testing.assert_array_equal(rows.numpy(), want)
        np.testing.assert_allclose(vals.numpy(), np.take_along_axis(penalised, want, axis=1), rtol=1e-6)


class _QueryByUser(tf.Module):
    """User "0" / "1" -> a fixed vector (any other id: user 0's)."""

    def __init__(self, vectors):
        super().__init__()
        self.vectors = tf.constant(vectors)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["0", "1"], [0, 1]), 0)

    def __call__(self, features):
        return tf.gather(self.vectors, self.table.lookup(features["user_id"]))


def test_the_export_serves_the_penalised_top_k_and_says_so_in_its_config(tmp_path):
    from tfrec.export.retrieval import RetrievalModule

    rng = np.random.default_rng(3)
    items = np.array([f"i{k}" for k in range(40)], dtype=object)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    users = rng.normal(size=(2, 6)).astype(np.float32)
    spec = {"user_id": tf.TensorSpec([None], tf.string), "history": tf.TensorSpec([None, None], tf.string)}
    module = RetrievalModule(_QueryByUser(users), spec, items, emb, k=5, repeat_penalty=(2.0, 3))
    # Each user's history: their current top 3 (penalised away) plus an older item outside the window.
    base = users @ emb.T
    top3 = np.argsort(-base, axis=1)[:, :3]
    hist = np.array([["i39"] + [items[j] for j in top3[u]] for u in range(2)], dtype=object)
    out = module.signatures()["serving_default"](user_id=tf.constant(["0", "1"]), history=tf.constant(hist))
    penalised = base.copy()
    for u in range(2):
        penalised[u, top3[u]] -= 2.0  # the last 3 only: "i39" is outside the window
    want = items[np.argsort(-penalised, axis=1)[:, :5]]
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), want.astype(str))
    assert module.metadata()["repeat_penalty"] == [2.0, 3]
    with pytest.raises(ConfigError, match="history"):
        RetrievalModule(_QueryByUser(users), {"user_id": spec["user_id"]}, items, emb, k=5, repeat_penalty=(2.0, 3))


def test_a_saved_model_of_a_penalised_hybrid_serves_the_scorers_ranking_after_reloading(world, tmp_path):
    from tfrec.data.pipeline import make_dataset
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.serving import hybrid_serving_parts

    data, split, cat, text, qf = world
    train = split.train.drop_duplicates(["user_id", "item_id"])
    model = seeded_hybrid(world, repeat_penalty=True, history_negatives=1.0)
    feats = qf.build(train, context=train)
    feats["item_id"] = train["item_id"].astype(str).to_numpy(dtype=object)
    model.compile(tf.keras.optimizers.Adam(0.05))
    model.fit(make_dataset(feats, 256, seed=0), epochs=2, verbose=0)
    model._repeat_raw.assign(_raw_for(0.3))  # large enough to reorder the top 5
    query_model, spec, _, _ = hybrid_serving_parts(model, qf)
    ids = list(cat.item_ids)
    path = export_retrieval(query_model, spec, ids, model.item_embeddings(tf.constant(ids)).numpy(), root=tmp_path,
                            name="repeat", k=5, repeat_penalty=(float(model.repeat_penalty), qf.history_length))
    events = split.test.head(20)
    scorer = HybridScorer(model, qf, train, ids)
    f = scorer.features(events)
    want = np.asarray(ids, dtype=object)[np.argsort(-scorer.score_features(f), axis=1, kind="stable")[:, :5]]
    served = tf.saved_model.load(path).signatures["serving_default"](
        **{k: tf.constant(v) for k, v in f.items() if k in spec})["item_ids"].numpy().astype(str)
    np.testing.assert_array_equal(served, want.astype(str))
    unpenalised = np.argsort(-(scorer._embed(f) @ scorer.item_embeddings.T), axis=1, kind="stable")[:, :5]
    assert (np.asarray(ids, dtype=object)[unpenalised] != want).any()  # the penalty changed what is served
