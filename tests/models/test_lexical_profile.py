"""The text profile's lexical term (`set_text_profile(..., lexical=v)`): items without a trained id
also score v x the TF-IDF content baseline's cosine, from the catalogue's table, from a new item's
text in graph ops, after `index_items` and in a SavedModel; checked against `tfidf_matrix` and a
hand-worked case."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.models.worlds import cold_items_world, seeded_hybrid
from tfrec.errors import ConfigError
from tfrec.evaluation.baselines.tfidf_content import tfidf_matrix
from tfrec.models.lexical import LexicalVectors
from tfrec.models.scoring import HybridScorer
from tfrec.models.text_profile import catalogue_texts


def _both_paths(lv, texts):
    """(numpy rows through `dense`, the graph path) for `texts`."""
    ids, w = lv.rows(texts)
    return lv.dense(tf.constant(ids), tf.constant(w)).numpy(), lv(tf.constant(list(texts))).numpy()


def test_a_hand_worked_catalogue():
    # Three texts; n = 3: df(story) = 2, df(toy) = df(the) = 1, idf = ln((1 + n) / (1 + df)) + 1.
    lv = LexicalVectors(["Toy Story", "Story, the STORY!", ""])
    assert lv.dim == 3 and set(lv.index) == {"toy", "story", "the"}
    idf = {"toy": math.log(4 / 2) + 1, "story": math.log(4 / 3) + 1, "the": math.log(4 / 2) + 1}
    second = np.array([2 * idf["story"], idf["the"]])  # "story" twice, "the" once
    second /= np.linalg.norm(second)
    for got in _both_paths(lv, ["story the story", "Toy Story", "", "unknown words only"]):
        assert got[0, lv.index["story"]] == pytest.approx(second[0], abs=1e-6)
        assert got[0, lv.index["the"]] == pytest.approx(second[1], abs=1e-6)
        assert got[0, lv.index["toy"]] == 0.0
        toy = np.array([idf["toy"], idf["story"]]) / math.hypot(idf["toy"], idf["story"])
        assert got[1, [lv.index["toy"], lv.index["story"]]] == pytest.approx(toy, abs=1e-6)
        np.testing.assert_array_equal(got[2:], 0.0)  # no text, or no word of the vocabulary: the zero vector


def test_both_paths_equal_tfidf_matrix_on_movielens_and_on_accented_text(ml100k_path):
    from tfrec.data.movielens import load_movielens
    from tfrec.text.template import item_texts

    texts = list(item_texts(load_movielens(ml100k_path).items))
    texts += ["Amélie (2001). Genres: Comédie", "Café_Society — Ça, 2ème", "ÉTÉ été", "x"]
    want = tfidf_matrix(texts)[0].toarray()
    lv = LexicalVectors(texts)
    ids, w = lv.fitted_rows()  # the fitted texts' rows, from the fit's own matrix
    fitted = lv.dense(tf.constant(ids), tf.constant(w)).numpy()
    for got in (*_both_paths(lv, texts), fitted):
        # The vocabulary is tfidf_matrix's, in its order: the same matrix.
        np.testing.assert_allclose(got, want, atol=2e-7)
    assert {"amélie", "comédie", "café", "society", "ça", "2ème", "été"} <= set(lv.index)


def _hand_tfidf(texts, new_texts, keep_words):
    """Unit TF-IDF rows of `new_texts` under the vocabulary and smoothed idf ln((1 + n) / (1 + df)) + 1 of
    `texts`, normalised over every word of the vocabulary, then only the `keep_words` columns."""
    import re

    tok = lambda t: re.findall(r"[^\W_]+", t.lower())  # noqa: E731
    df = {}
    for t in texts:
        for w in set(tok(t)):
            df[w] = df.get(w, 0) + 1
    out = np.zeros((len(new_texts), len(keep_words)))
    for r, t in enumerate(new_texts):
        counts = pd.Series([w for w in tok(t) if w in df], dtype=object).value_counts()
        full = {w: c * (math.log((1 + len(texts)) / (1 + df[w])) + 1) for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in full.values()))
        out[r] = [full.get(w, 0.0) / norm if norm else 0.0 for w in keep_words]
    return out, df


def test_a_cut_vocabulary_keeps_the_words_of_most_texts_and_every_words_norm(ml100k_path):
    """`LexicalVectors(texts, max_terms=D)`: columns for the D words of the most texts (ties: the
    vocabulary's order), each text's vector its unit TF-IDF vector over every word less the other
    columns (not renormalised): checked against a hand TF-IDF on ML-100K's texts, fitted and new."""
    from tfrec.data.movielens import load_movielens
    from tfrec.text.template import item_texts

    texts = list(item_texts(load_movielens(ml100k_path).items))
    full = LexicalVectors(texts)
    lv = LexicalVectors(texts, max_terms=300)
    assert (lv.dim, lv.n_words) == (300, full.dim) and full.dim > 2000
    m = tfidf_matrix(texts)[0]
    df = np.asarray((m > 0).sum(axis=0)).ravel()
    order = sorted(range(len(df)), key=lambda j: (-df[j], j))  # most texts first, then the vocabulary's order
    keep = sorted(order[:300])
    assert lv.terms == [full.terms[j] for j in keep]
    assert min(df[keep]) >= max(np.delete(df, keep)) and min(df[keep]) < max(df)  # a real cut, at a df tie
    np.testing.assert_allclose(lv.doc_fraction, df[keep] / len(texts))
    new = ["Star Trek: The Wrath of Khan (1982). Genres: Action, Adventure, Sci-Fi", "Khan. Genres: Action", "zebra"]
    want_new, hand_df = _hand_tfidf(texts, new, lv.terms)
    assert hand_df["khan"] < min(df[keep]) and want_new[1].max() > 0  # "khan" has no column, yet weighs in the norm
    assert np.linalg.norm(want_new[1]) < 1 - 1e-3 and np.abs(want_new[2]).max() == 0  # not renormalised
    ids, w = lv.fitted_rows()
    fitted = lv.dense(tf.constant(ids), tf.constant(w)).numpy()
    np.testing.assert_allclose(fitted, m.toarray()[:, keep], atol=2e-7)
    for got in _both_paths(lv, texts[:50] + new):
        np.testing.assert_allclose(got[:50], m.toarray()[:50, keep], atol=2e-7)
        np.testing.assert_allclose(got[50:], want_new, atol=2e-7)
    # A cut at or above the vocabulary's size is no cut: the same rows as every word's.
    same = LexicalVectors(texts, max_terms=full.dim)
    assert same.terms == full.terms
    for a, b in zip(same.fitted_rows(), full.fitted_rows()):
        np.testing.assert_array_equal(a, b)


def _reference_cosines(texts, known_rows, rows):
    """Naive TF-IDF content score: the unit sum of the known items' tfidf_matrix rows against each row."""
    m = tfidf_matrix(texts)[0].toarray().astype(np.float64)
    profile = m[known_rows].sum(axis=0)
    norm = np.linalg.norm(profile)
    return m[rows] @ (profile / norm) if norm > 0 else np.zeros(len(rows))


def test_untrained_items_gain_v_times_the_tfidf_cosine_and_trained_items_nothing():
    data, split, cat, text, qf = world = cold_items_world()
    model = seeded_hybrid(world)
    ids = list(cat.item_ids)
    trained = set(model.item_tower.item_vocabulary)
    texts = catalogue_texts(model.lookup, data.items)
    last = split.train.groupby("user_id")["timestamp"].max().sort_index()
    ev = (last.loc[split.train["user_id"].value_counts().index[:6]] + 1).reset_index()
    model.set_text_profile(0.5, shrinkage=10.0)
    before = HybridScorer(model, qf, split.train, ids).score_queries(ev)
    model.set_text_profile(0.5, shrinkage=10.0, lexical=0.7, item_texts=texts)
    try:
        got = HybridScorer(model, qf, split.train, ids).score_queries(ev)
        row = {i: n for n, i in enumerate(ids)}
        untrained = np.array([i not in trained for i in ids])
        assert 0 < untrained.sum() < len(ids)
        for r, (user, ts) in enumerate(zip(ev["user_id"].astype(str), ev["timestamp"])):
            mine = split.train[(split.train["user_id"].astype(str) == user) & (split.train["timestamp"] < ts)]
            cos = _reference_cosines(texts, [row[str(i)] for i in mine["item_id"]], list(range(len(ids))))
            np.testing.assert_allclose(got[r], before[r] + 0.7 * cos * untrained, atol=1e-5)
        assert np.abs(got - before)[:, untrained].max() > 1e-3  # not vacuous: the term moved them
    finally:
        model.set_text_profile(0.0)
    with pytest.raises(ConfigError, match="one text per catalogue item"):
        model.set_text_profile(0.5, lexical=0.5)
    with pytest.raises(ConfigError, match="a lexical weight >= 0"):
        model.set_text_profile(0.5, lexical=-1.0, item_texts=texts)


@pytest.mark.parametrize("lexical_terms", [4096, 25])
def test_index_items_and_a_saved_model_give_new_items_the_block_of_their_text(tmp_path, lexical_terms):
    """A new item's lexical part comes from its text (the frozen vocabulary and idf): added by
    `index_items` to the table queries read, and computed in graph ops by the exported item model;
    the exported query model reads the same profile as the scorer; with every word, or with a cut
    vocabulary."""
    from tests.models.worlds import tiny_bert_world
    from tfrec.config import ModelConfig
    from tfrec.explain.serving import hybrid_explainer
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.factory import build_hybrid
    from tfrec.models.recommender import Recommender
    from tfrec.models.serving import hybrid_serving_parts
    from tfrec.text.template import item_texts

    data, split, cat, enc, text, qf = tiny_bert_world(40, 30, 1200, data_seed=3, history_length=3)
    tf.keras.utils.set_random_seed(0)
    model = build_hybrid(ModelConfig(embedding_dim=8, use_id=False), cat, data.items, text, qf)  # all untrained
    rec = Recommender(model, qf, data.items, text, split.train, text_encoder=enc)
    rec.set_text_profile(0.5, length=20, lexical=0.8, lexical_terms=lexical_terms)
    lv = model.text_profile.lexical
    assert (lv.dim == lv.n_words) == (lexical_terms >= lv.n_words) and lv.dim == min(lexical_terms, lv.n_words)
    start, stop = model.block_columns("text_profile")  # after the tower (and the prior's column)
    lex = slice(start + text.shape[1], stop)  # the lexical part: after the text profile's t columns
    assert model.text_profile.dim == text.shape[1] + lv.dim and stop - lex.start == lv.dim
    assert rec.item_embeddings.shape[1] == stop
    # New items with words of the catalogue, one of them in a new order with an unknown word.
    new = data.items.iloc[:3].assign(item_id=[f"new-{i}" for i in range(3)]).reset_index(drop=True)
    new.loc[2, "title"] = "zebra " + str(new.loc[2, "title"])
    new_texts = list(item_texts(new))
    assert "zebra" not in lv.index  # the vocabulary stays the catalogue's: an unknown word adds nothing
    want = 0.8 * lv(tf.constant(new_texts)).numpy()
    assert (np.abs(want).max(axis=1) > 0).all()  # each new text has catalogue words
    ids, w = lv.rows(new_texts)
    np.testing.assert_allclose(want, 0.8 * lv.dense(tf.constant(ids), tf.constant(w)).numpy(), atol=1e-6)
    query_model, spec, item_encoder, item_spec = hybrid_serving_parts(model, qf, data.items, enc)
    explainer = hybrid_explainer(model, qf, list(cat.item_ids), rec.item_embeddings)
    path = export_retrieval(query_model, spec, list(cat.item_ids), rec.item_embeddings, item_encoder=item_encoder,
                            item_encoder_spec=item_spec, explainer=explainer, root=tmp_path, name="lex", k=5)
    loaded = tf.saved_model.load(path)
    raw = {}
    for name, s in item_spec.items():
        col = new[name]
        raw[name] = tf.constant(col.astype(str).tolist() if s.dtype == tf.string else col.astype(np.float32).to_numpy())
    served = loaded.signatures["encode_items"](**raw)["embedding"].numpy()
    np.testing.assert_allclose(served[:, lex], want, atol=1e-5)
    rec.index_items(new)
    np.testing.assert_allclose(rec.item_embeddings[-3:, lex], want, atol=1e-5)
    # A user whose history holds a new item: its words are in the query's lexical profile now.
    user = str(split.train["user_id"].iloc[0])
    ts = int(split.train["timestamp"].max()) + 1
    rec.observe(pd.DataFrame({"user_id": [user], "item_id": ["new-2"], "timestamp": [ts - 1]}))
    q = rec.query_embedding(user, timestamp=ts)
    mine = rec.known[rec.known["user_id"].astype(str) == user].sort_values("timestamp", kind="mergesort")
    hist = mine["item_id"].astype(str).tolist()[-20:]
    assert hist[-1] == "new-2"
    all_texts = dict(zip(rec.items["item_id"].astype(str), item_texts(rec.items)))
    ids, w = lv.rows([all_texts[i] for i in hist])
    profile = lv.dense(tf.constant(ids), tf.constant(w)).numpy().sum(axis=0)
    np.testing.assert_allclose(q[lex], profile / np.linalg.norm(profile), atol=1e-5)
    request = {"user_id": tf.constant([user]), "timestamp": tf.constant([ts], tf.int64),
               "history": tf.constant([[i for i in hist if not i.startswith("new-")]])}
    request.update({k: tf.constant(v) for k, v in qf.attributes([user]).items()})
    got = loaded.signatures["encode_query"](**request)["embedding"].numpy()[0]
    ids, w = lv.rows([all_texts[i] for i in request["history"].numpy()[0].astype(str)])
    profile = lv.dense(tf.constant(ids), tf.constant(w)).numpy().sum(axis=0)
    np.testing.assert_allclose(got[lex], profile / np.linalg.norm(profile), atol=1e-5)
    # The served `explain` names the lexical term's words with their parts of the score (the products of
    # the query's and the item's lexical columns), as `Explanation.text_profile_words` lists them.
    emb = dict(zip(map(str, cat.item_ids), rec.item_embeddings))
    items = [str(i) for i in cat.item_ids[:4]]
    out = loaded.signatures["explain"](**{k: tf.repeat(v, 4, axis=0) for k, v in request.items()},
                                       item_ids=tf.constant(items))
    words, parts = out["text_profile_words"].numpy().astype(str), out["text_profile_word_parts"].numpy()
    assert words.shape == parts.shape == (4, 5)
    for r, item in enumerate(items):
        n = int((words[r] != "").sum())
        assert n > 0 and (parts[r, n:] == 0).all() and (words[r, n:] == "").all()
        _assert_top_words(list(zip(words[r, :n], parts[r, :n])), got[lex] * emb[item][lex], lv.terms, 5)


def _assert_top_words(got, want_parts, terms, k):
    """`got` [(word, part)] is a top-k of `want_parts` [V] (ties in any order): each word's part is its
    expected one, largest first, and no word left out has a larger positive part."""
    want = {t: float(p) for t, p in zip(terms, want_parts)}
    positive = sorted((p for p in want_parts if p > 1e-6), reverse=True)
    assert len(got) == min(k, len(positive))
    for word, part in got:
        assert part == pytest.approx(want[word], abs=1e-5)
    parts = [p for _, p in got]
    assert parts == sorted(parts, reverse=True)
    if len(positive) > len(got):
        assert parts[-1] >= positive[len(got)] - 1e-5


def test_explanations_name_the_words_of_the_lexical_term_with_their_parts_of_the_score():
    """`Explanation.text_profile_words`: the words that make up the lexical term (v x the item's TF-IDF
    weight x the user's normalised TF-IDF profile's), checked against `tfidf_matrix`; the sentence
    names them; items with a trained id have none."""
    from tfrec.cli.explain import format_explanation
    from tfrec.explain.explainer import Explainer
    from tfrec.models.recommender import Recommender

    data, split, cat, text, qf = world = cold_items_world()
    model = seeded_hybrid(world)
    texts = catalogue_texts(model.lookup, data.items)
    model.set_text_profile(0.5, shrinkage=0.0, lexical=0.8, item_texts=texts)
    rec = Recommender(model, qf, data.items, text, split.train)
    ids = list(rec.item_ids)
    trained = set(model.item_tower.item_vocabulary)
    untrained = [i for i in ids if i not in trained]
    assert len(untrained) >= 3
    user = str(split.train["user_id"].value_counts().index[0])
    ts = int(rec.known["timestamp"].max()) + 1  # after everything known: the whole history counts
    mine = rec.known[rec.known["user_id"].astype(str) == user]
    m, vocab = tfidf_matrix(texts)
    m = m.toarray().astype(np.float64)
    terms = sorted(vocab, key=vocab.get)
    profile = m[[ids.index(str(i)) for i in mine["item_id"]]].sum(axis=0)
    profile /= np.linalg.norm(profile)
    ex = Explainer(rec, split.train, k_words=4)
    some_trained = sorted(trained)[:1]
    got = ex._explain(ex.features(user, ts), untrained[:3] + some_trained, 3)
    for e in got[:3]:
        want = 0.8 * m[ids.index(e.item_id)] * profile  # (V,): v x l_i x the unit profile, per word
        _assert_top_words(e.text_profile_words, want, terms, 4)
    assert got[3].text_profile_words == [] and got[3].text_profile == 0.0
    e = max(got[:3], key=lambda x: x.text_profile)
    assert e.text_profile > 0 and e.text_profile_words  # the items share words with the history
    from tfrec.explain.text import STOPWORDS

    common = set(model.text_profile.lexical.common_terms(0.5))  # not named in the sentence (a template's words)
    assert common == {t for t in terms if (m[:, vocab[t]] > 0).mean() > 0.5}
    first = next(w for w, _ in e.text_profile_words if w not in STOPWORDS | common)
    assert f'its description shares "{first}"' in e.sentence
    assert f'"{first}" {e.text_profile_words[0][1]:+.4f}' in format_explanation(e)
    back = type(e).from_dict(json.loads(e.to_json()))
    assert back.text_profile_words == e.text_profile_words
