"""What stock TF Serving relies on, proven on the export the main job (`make demo`) ends with.

The main job runs once per session (`ml100k_demo` in tests/conftest.py: real
MovieLens-100K, MiniLM, 2 epochs) and exports `saved_models/ml100k_retrieval/1`.
One fresh subprocess (`tests/export/serving_child.py`, importing only tensorflow and
tensorflow_text, without tfrec's environment) loads it through `tf.saved_model.load`
and through the TF1 session loader that TF Serving's C++ SavedModelBundle uses, and
runs:
  * hand-written requests for real users, a brand-new user and unknown ids, covering
    every signature: the two-stage `serving_default`/`recommend` (retrieve 200 -> rank),
    `retrieve`, `encode_query`, `encode_items`, `rank` and `explain`;
  * every record of the export's warm-up file;
  * the ML-100K REST examples of docs/serving.md, parsed with TF Serving's JSON rules.
Expected outputs come from the in-memory models (`HybridRetrieval.query_embedding`,
the cached catalogue embeddings, the trained `HybridRanker`) and numpy argsorts; the
`explain` reference calls the query tower once per left-out history item. It also checks every op type of
the graph against the op registries of TF core and TF Text, and the export's bytes
against the model's parameter bytes.

Run the same proofs on the export of an existing run folder (e.g. your `make demo`) with
    TFREC_PROOF_RUN=runs/<time>-ml100k .venv/bin/python -m pytest tests/test_demo_export_proofs.py
Regenerate the ML-100K blocks of docs/serving.md from a real export with
    .venv/bin/python -m tests.test_demo_export_proofs saved_models/ml100k_retrieval/<version>
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import tfrec  # noqa: F401  (before tensorflow)
import tensorflow as tf  # noqa: E402

from tfrec.export import rest  # noqa: E402
from tfrec.export.inspection import export_size, rest_inputs  # noqa: E402
from tfrec.export.warmup import read_warmup  # noqa: E402
from tfrec.models.text_profile import PROFILE_FEATURE  # noqa: E402

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "export" / "serving_child.py"
DOCS = REPO / "docs" / "serving.md"
# The ML-100K examples of docs/serving.md (the small-demo ones use `rest-example:`).
EXAMPLE = re.compile(r"<!-- ml100k-rest-example: ([\w-]+) -->\n(.*?)<!-- /ml100k-rest-example -->", re.S)
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.S)
# The MiniLM tokenizer (keras-hub BertTokenizer) is the export's only TF Text user.
TIES = "_reference_scores"  # not an output: the full score matrix, for near-ties
TIE_SWAPS = []  # positions where two near-tied items came in the other order (reported, not hidden)
TOKENIZER_OPS = {"CaseFoldUTF8", "FastWordpieceTokenizeWithOffsets", "NormalizeUTF8", "RegexSplitWithOffsets"}


def docs_examples(markdown):
    """[(example id, request dict, documented response dict)] of the ML-100K REST examples."""
    out = []
    for ex_id, body in EXAMPLE.findall(markdown):
        blocks = JSON_BLOCK.findall(body)
        out.append((ex_id, json.loads(blocks[0]), json.loads(blocks[1]) if len(blocks) > 1 else None))
    return out


def encode(v):
    v = np.asarray(v)
    if v.dtype == object or v.dtype.kind in "SU":
        v = v.astype(object)
        return {"dtype": "string",
                "value": np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b),
                                      otypes=[object])(v).tolist()}
    return {"dtype": v.dtype.name, "value": v.tolist()}


def decode(spec):
    if spec["dtype"] == "string":
        return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(np.array(spec["value"], dtype=object))
    return np.array(spec["value"], dtype=spec["dtype"])


def run_child(cases_by_export, tmp_dir):
    """Runs serving_child.py over {export_dir: [(signature, inputs)]}; returns its RESULT dict."""
    plan = {"exports": [{"export_dir": str(path),
                         "cases": [{"signature": s, "inputs": {n: encode(v) for n, v in i.items()}} for s, i in cases]}
                        for path, cases in cases_by_export.items()]}
    plan_path = pathlib.Path(tmp_dir) / "plan.json"
    plan_path.write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # a server sets no tfrec variables
    r = subprocess.run([sys.executable, str(CHILD), str(plan_path)], capture_output=True, text=True, timeout=600,
                       env=env, cwd=str(CHILD.parent))
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])


def _hand_cases(rec, path):
    """Requests a client would build from the tables: real users just after their last
    known event, a brand-new user with a short history, unknown ids everywhere."""
    known = rec.known
    users = ["1", "42", "943"]
    events = known[known.user_id.astype(str).isin(users)].sort_values("timestamp").groupby("user_id").tail(1).copy()
    events["user_id"] = events["user_id"].astype(str)
    events = events.set_index("user_id").loc[users].reset_index()[["user_id", "timestamp"]]
    events["timestamp"] += 1  # a request just after each user's last known event
    q = rec.query_features.build(events, context=known)
    n = q["history"].shape[1]
    new_user = {k: v[:1].copy() for k, v in q.items()}
    new_user["user_id"] = np.array(["never-seen-user"], object)
    new_user["history"] = np.array([[""] * (n - 3) + ["50", "181", "no-such-item"]], object)
    for name, v in new_user.items():  # unknown attributes: "" / -1 as `QueryFeatures.attributes` gives them
        if name not in ("user_id", "history", "timestamp"):
            new_user[name] = np.array([""], object) if v.dtype == object else np.array([-1.0], np.float32)
    q = {k: np.concatenate([q[k], new_user[k]]) for k in q}
    q = {k: _bytes(v) for k, v in q.items()}
    seen = [known.loc[known.user_id.astype(str) == u, "item_id"].astype(str).tolist()[-5:] for u in users]
    exclude = np.array([s + [""] * (5 - len(s)) for s in seen] + [["50", "unknown-item", "", "", ""]], object)
    items = rec.items.iloc[[0, 49, 180]]
    item_inputs = {n: (items[n].astype(str).to_numpy(dtype=object) if dt == "string"
                       else items[n].astype(np.float32).to_numpy())
                   for n, dt in rest_inputs(path)["encode_items"].items()}
    cases = [("serving_default", q), ("retrieve", q), ("encode_query", q),
             ("recommend", {**q, "exclude_item_ids": _bytes(exclude)}),
             ("encode_items", {k: _bytes(v) for k, v in item_inputs.items()})]
    sigs = rest_inputs(path)
    if "rank" in sigs:  # catalogue items, an unknown id and padding
        cands = np.array([["50", "181", "1", "no-such-item", ""]] * len(users) + [["100", "", "", "", ""]], object)
        cases.append(("rank", {**q, "candidate_item_ids": _bytes(cands)}))
    if "explain" in sigs:  # one item per query row: trained ones, one without a trained id (the text profile's
        # items) and an unknown one
        trained = set(rec.model.item_tower.item_vocabulary)
        untrained = next(i for i in rec.item_ids.astype(str) if i not in trained)
        cases.append(("explain", {**q, "item_ids": _bytes(np.array(["50", "181", untrained, "no-such-item"],
                                                                    object))}))
    return cases, events


def _bytes(v):
    """Strings as TF hands them back (bytes); numbers unchanged."""
    v = np.asarray(v)
    if v.dtype == object or v.dtype.kind in "SU":
        return np.vectorize(lambda x: x if isinstance(x, bytes) else str(x).encode("utf-8"), otypes=[object])(v)
    return v


def reference(rec, sig, inputs, meta):
    """The in-memory model's answer, with top-k by numpy argsort over the catalogue."""
    if sig == "encode_items":
        return {"embedding": _item_reference(rec, inputs)}
    n = rec.query_features.history_length
    feats = {k: v for k, v in inputs.items() if k != "exclude_item_ids"}
    hist = [[h for h in row] for row in feats["history"]]
    if rec.model.profile_length:  # the text profile reads the whole history sent (its newest `profile_length`)
        feats[PROFILE_FEATURE] = feats["history"][:, -rec.model.profile_length:]
    feats["history"] = np.array([([b""] * n + row)[-n:] for row in hist], object)  # newest n, "" pads on the left
    q = rec.model.query_embedding({k: tf.constant(v) for k, v in feats.items()}, training=False).numpy()
    if sig == "encode_query":
        return {"embedding": q}
    if sig == "rank":
        return {"scores": _rank_reference(rec, feats, inputs["candidate_item_ids"])}
    if sig == "explain":
        return _explain_reference(rec, feats, q, inputs["item_ids"], meta)
    scores = q @ rec.item_embeddings.T  # (batch, n_items)
    ids = rec.item_ids.astype(str).astype(bytes)
    if sig == "recommend":
        for row, ex in enumerate(inputs["exclude_item_ids"]):
            scores[row, np.isin(ids, ex)] = -np.inf
    if sig != "retrieve" and meta["two_stage"]:
        # Two stages: numpy's top `retrieve_k` by retrieval score, ordered by the in-memory ranker;
        # items that were not retrieved get -inf (never served).
        cands = np.argsort(-scores, axis=1, kind="stable")[:, :meta["retrieve_k"]]
        rel = _rank_reference(rec, feats, ids[cands])
        scores = np.full_like(scores, -np.inf)
        np.put_along_axis(scores, cands, rel, 1)
    k = meta["retrieve_k"] if sig == "retrieve" else meta["k"]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {"item_ids": ids[top], "scores": np.take_along_axis(scores, top, 1), TIES: (ids, scores)}


def _rank_reference(rec, feats, candidates):
    """The in-memory ranker's relevance (`rank_candidates`); padding ("") gets the masked score."""
    from tfrec.export.ann import MASKED_SCORE
    from tfrec.models.two_stage import rank_candidates

    cands = np.asarray(candidates, object)
    rel, _ = rank_candidates(rec.ranker, feats, cands)
    return np.where(cands == b"", MASKED_SCORE, rel).astype(np.float32)


def _explain_reference(rec, feats, q, item_ids, meta):
    """Leave-one-out over the history and occlusion of each attribute, by calling the in-memory
    query tower on every variant and taking dot products with the cached item embeddings."""
    from tfrec.explain.attribution import UNKNOWN_NUMBER, UNKNOWN_USER

    def embed(f):
        return rec.model.query_embedding({k: tf.constant(v) for k, v in f.items()}, training=False).numpy()

    rows = pd.Index(rec.item_ids.astype(str)).get_indexer([x.decode() for x in item_ids])
    v = np.where((rows >= 0)[:, None], rec.item_embeddings[np.maximum(rows, 0)], 0.0)  # unknown item: zeros
    score = (q * v).sum(1)
    hist = feats["history"]
    contrib = np.zeros(hist.shape, np.float32)
    for row in range(len(hist)):  # leave-one-out over the tower's window; the profile keeps the whole history
        for j in np.flatnonzero(hist[row] != b""):
            without = np.array([[b""] + [h for i, h in enumerate(hist[row]) if i != j]], object)
            one = {k: (without if k == "history" else val[row:row + 1]) for k, val in feats.items()}
            contrib[row, j] = score[row] - embed(one)[0] @ v[row]
    qf = rec.query_features
    attr = []
    for name in meta["explain_attribute_names"]:
        unknown = (UNKNOWN_USER if name == "user_id" else int(qf.reference_time) if name == "timestamp"
                   else "" if name in qf.categorical else UNKNOWN_NUMBER)
        x = feats[name]
        occluded = np.full(x.shape, unknown.encode() if isinstance(unknown, str) else unknown,
                           dtype=x.dtype)
        attr.append(score - (embed({**feats, name: occluded}) * v).sum(1))
    # The prior's part of the score: T * w * log(1 + the item's known events in its window), counted here.
    w, days = rec.model.popularity_prior
    t = rec.known["timestamp"].to_numpy()
    recent = rec.known[t > t.max() - days * 86400] if days > 0 else rec.known
    counts = recent["item_id"].astype(str).value_counts()
    prior = np.array([rec.model.temperature * w * np.log1p(counts.get(x.decode(), 0)) if r >= 0 else 0.0
                      for x, r in zip(item_ids, rows)], np.float32)
    assert rec.model.cooccurrence is None  # fixed off, as make demo's validation chooses (tests/conftest.py)
    # The text profile (on by default): its block's part of the score, and its lexical columns' five largest
    # positive word parts, q_k x v_k, largest first (ties: the lower column), "" / 0 after them.
    a, z = rec.model.block_columns("text_profile")
    start, stop, terms = rec.model.lexical_columns()
    assert z == stop == start + len(terms)  # the block: text columns, then one per word
    parts = q[:, start:stop] * v[:, start:stop]
    words = np.full((len(item_ids), 5), b"", object)
    word_parts = np.zeros((len(item_ids), 5), np.float32)
    for row in range(len(item_ids)):
        top = [c for c in np.argsort(-parts[row], kind="stable")[:5] if parts[row, c] > 0]
        words[row, :len(top)] = [terms[c].encode() for c in top]
        word_parts[row, :len(top)] = parts[row, top]
    profile = (q[:, a:z] * v[:, a:z]).sum(1)
    return {"score": score, "history_contributions": contrib, "history_item_ids": hist,
            "attribute_contributions": np.stack(attr, 1), "popularity_prior": prior,
            "text_profile": profile, "text_profile_words": words,
            "text_profile_word_parts": word_parts,
            "cooccurrence": np.zeros(len(item_ids), np.float32)}  # the demo has no co-occurrence block


def _item_reference(rec, inputs):
    """Catalogue items: their index vectors. New items: the path of `Recommender.index_items`
    (Python template -> MiniLM -> item tower with the catalogue's attribute statistics)."""
    from tfrec.models.factory import item_columns
    from tfrec.text.cache import encode_texts
    from tfrec.text.template import item_texts

    ids = [x.decode() for x in inputs["item_id"]]
    rows = pd.Index(rec.item_ids.astype(str)).get_indexer(ids)
    out = rec.item_embeddings[np.maximum(rows, 0)].copy()
    new = rows < 0
    if new.any():
        df = pd.DataFrame({n: [x.decode() if isinstance(x, bytes) else x for x in np.asarray(v)[new]]
                           for n, v in inputs.items()})
        for c in rec.items.columns:  # columns the request lacks, as `index_items` fills them
            if c not in df:
                numeric = pd.api.types.is_numeric_dtype(rec.items[c]) and not pd.api.types.is_bool_dtype(rec.items[c])
                df[c] = np.nan if numeric else ""
        df = df[list(rec.items.columns)]
        emb = encode_texts(rec.text_encoder, item_texts(df, rec.text_template), progress=False)
        cols, _, _ = item_columns(df, emb, rec.model.lookup.item_stats)
        feats = {k: tf.constant(v) for k, v in cols.items()}
        feats["item_id"] = tf.constant(df["item_id"].astype(str).to_numpy(dtype=object))
        v = rec.model.item_tower(feats, training=False).numpy()
        if rec.model.has_popularity_prior:  # the prior's column: 0, a new item has no interactions yet
            v = np.concatenate([v, np.zeros((len(v), 1), v.dtype)], axis=1)
        if rec.model.text_profile is not None:  # its block from the new item's embedding and template text
            block = rec.model.text_profile.item_columns(rec.model.lookup, feats["item_id"], tf.constant(emb),
                                                        tf.constant(item_texts(df, rec.text_template)))
            v = np.concatenate([v, block.numpy()], axis=1)
        out[new] = v
    return out


def assert_same(got, want, what, atol=1e-5):
    want = dict(want)
    ties = want.pop(TIES, None)
    assert sorted(got) == sorted(want), what
    if ties is not None:
        assert_same_top_k(got, want, ties, what)
        want = {"scores": want["scores"]}
    for n in want:
        if np.asarray(want[n]).dtype.kind in "OS":
            np.testing.assert_array_equal(got[n].astype(bytes), np.asarray(want[n]).astype(bytes),
                                          err_msg=f"{what}: {n}")
        else:
            np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=atol, err_msg=f"{what}: {n}")


def assert_same_top_k(got, want, ties, what, tol=1e-5):
    """The served ids are the reference's, position by position. Two items whose scores differ
    by less than float32 round-off (`tol`) may come in either order (TF's matmul and numpy's
    sum in different orders); each served item must then still hold the reference score of
    its position."""
    ids, scores = ties  # the catalogue ids and the reference scores [batch, n_items]
    column = {i: j for j, i in enumerate(ids)}
    got_ids, want_ids = got["item_ids"].astype(bytes), want["item_ids"].astype(bytes)
    assert got_ids.shape == want_ids.shape, what
    np.testing.assert_array_equal(got_ids[:, :10], want_ids[:, :10], err_msg=f"{what}: top 10")
    for row in range(got_ids.shape[0]):
        assert len(set(got_ids[row])) == got_ids.shape[1], f"{what}: repeated item in row {row}"
        for j in np.flatnonzero(got_ids[row] != want_ids[row]):
            own = scores[row, column[got_ids[row, j]]]
            assert abs(own - want["scores"][row, j]) < tol, \
                f"{what}: row {row} position {j}: served {got_ids[row, j]} (score {own}), want {want_ids[row, j]}"
    TIE_SWAPS.append(int((got_ids != want_ids).sum()))


def _export_under_test(request):
    """(export dir, in-memory Recommender): the session's main job, or the run folder named by
    TFREC_PROOF_RUN (e.g. your own `make demo` run), rebuilt with `load_run`."""
    run_dir = os.environ.get("TFREC_PROOF_RUN")
    if not run_dir:
        result, _ = request.getfixturevalue("ml100k_demo")
        return result.export_path, result.recommender
    from tfrec.cli.artifacts import load_run

    metrics = json.loads((pathlib.Path(run_dir) / "metrics.json").read_text())
    assert metrics.get("export_path"), f"{run_dir} exported nothing"
    # A relative export path is relative to where `tfrec run` ran (the repo root, as the
    # usage above); the serving child runs elsewhere, so make it absolute.
    return os.path.abspath(metrics["export_path"]), load_run(run_dir).recommender


@pytest.fixture(scope="module")
def proofs(request, tmp_path_factory):
    path, rec = _export_under_test(request)
    hand, events = _hand_cases(rec, path)
    cases = [("hand", s, i, None) for s, i in hand]
    cases += [("warmup", s, i, None) for _, s, i in read_warmup(path)]
    for ex_id, request, documented in docs_examples(DOCS.read_text()):
        sig, inputs = rest.parse_predict_request(request, rest_inputs(path))
        cases.append((f"rest:{ex_id}", sig, inputs, (request, documented)))
    res = run_child({path: [(s, i) for _, s, i, _ in cases]}, tmp_path_factory.mktemp("child"))
    out = res["exports"][0]
    meta = json.loads((pathlib.Path(path) / "assets.extra" / "tfrec_export.json").read_text())
    ran = [(kind, sig, inputs, extra, {n: decode(v) for n, v in a.items()}, {n: decode(v) for n, v in b.items()})
           for (kind, sig, inputs, extra), a, b in zip(cases, out["tf2"], out["tf1"])]
    return {"cases": ran, "events": events, "meta": meta, "path": path, "rec": rec, "child": res, "export": out}


def test_both_loaders_return_the_in_memory_top_k(proofs):
    rec, meta = proofs["rec"], proofs["meta"]
    seen = set()
    for kind, sig, inputs, _, tf2, tf1 in proofs["cases"]:
        want = reference(rec, sig, inputs, meta)
        # encode_items: in-graph tokenizer + MiniLM vs the cached embeddings; rank/explain: score
        # differences and DCN layers summed in another order than the reference's.
        atol = 1e-4 if sig in ("encode_items", "rank", "explain") else 1e-5
        assert_same(tf2, want, f"{kind} {sig} via tf.saved_model.load", atol)
        assert_same(tf1, want, f"{kind} {sig} via the TF1 session loader", atol)
        seen.add(sig)
        if (kind, sig) == ("hand", "explain"):  # row 2 explains an item without a trained id: not vacuous
            assert abs(want["text_profile"][2]) > 1e-4 and want["text_profile_words"][2, 0] != b""
            assert (want["text_profile"][[0, 1, 3]] == 0).all()  # trained and unknown items: no profile part
    print(f"\n{sum(TIE_SWAPS)} served positions hold a near-tied item in the other order "
          f"(|score difference| < 1e-5), over {len(TIE_SWAPS)} top-k checks")
    sigs = set(proofs["export"]["signature_io"]) - {"__saved_model_init_op"}
    # The main job trains both stages: two-stage serving_default/recommend, rank and explain.
    assert seen == sigs == {"serving_default", "recommend", "retrieve", "encode_query", "encode_items", "rank",
                            "explain"}
    assert meta["k"] == 100 and meta["items"] == 1682 and meta["two_stage"]


def test_served_top_k_equals_the_recommenders_own_recommendations(proofs):
    rec, events = proofs["rec"], proofs["events"]
    _, _, _, _, _, tf1 = next(c for c in proofs["cases"] if c[:2] == ("hand", "serving_default"))
    for row, (user, ts) in enumerate(zip(events["user_id"], events["timestamp"])):
        want = rec.recommend(user, k=20, timestamp=int(ts), exclude_seen=False)["item_id"].astype(str).tolist()
        assert tf1["item_ids"][row, :20].astype(str).tolist() == want, user


def test_warmup_file_replays_through_the_session_loader(proofs):
    warm = [c for c in proofs["cases"] if c[0] == "warmup"]
    sigs = {s for s in proofs["export"]["signature_io"] if not s.startswith("__")}
    assert sorted(c[1] for c in warm) == sorted(sigs)  # one record per signature
    for _, sig, inputs, _, _, tf1 in warm:
        assert all(np.all(np.isfinite(v)) for v in tf1.values() if v.dtype.kind == "f"), sig
        if sig == "serving_default":  # a real test user with a real history, not a placeholder
            assert inputs["user_id"][0] != b"" and (inputs["history"] != b"").any()


def test_every_graph_op_is_registered_by_tf_core_or_tf_text(proofs):
    info, export = proofs["child"], proofs["export"]
    assert info["core_op_count"] > 1000 and info["text_op_count"] > 10  # the registries were read
    assert export["unregistered_ops"] == [], f"ops neither TF core nor TF Text: {export['unregistered_ops']}"
    assert export["python_only_ops_used"] == [], export["python_only_ops_used"]
    assert set(export["text_ops_used"]) == TOKENIZER_OPS
    assert not set(info["imported"]) & {"tfrec", "keras_hub", "keras_nlp", "tensorflow_recommenders"}


def test_docs_ml100k_rest_examples_parse_and_run(proofs):
    ran = [c for c in proofs["cases"] if c[0].startswith("rest:")]
    assert {c[0].split("-")[-1] for c in ran} == {"row", "columnar"}, "docs/serving.md lost an ML-100K example"
    assert {c[1] for c in ran} >= {"serving_default", "recommend"}
    for kind, sig, _, (request, documented), _, tf1 in ran:
        got = json.loads(rest.to_json(rest.predict_response(tf1, row="instances" in request)))
        # Trained weights differ from run to run (CPU training is not bit-reproducible), so the
        # documented values are not this model's; the layout of the response must be the same.
        assert documented is not None, f"docs/serving.md {kind} has no response block"
        assert _layout(got) == _layout(documented), kind
        ids = [x for x in json.dumps(documented).split('"') if x.isdigit()]
        assert set(ids) <= set(proofs["rec"].item_ids.astype(str)), f"{kind}: unknown item ids in the docs"


def _layout(v):
    if isinstance(v, dict):
        return {k: _layout(x) for k, x in v.items()}
    if isinstance(v, list):
        return [len(v), _layout(v[0]) if v else None]
    return type(v).__name__ if not isinstance(v, (int, float)) else "number"


def test_export_is_at_most_1_1x_the_parameter_bytes(proofs):
    rec = proofs["rec"]
    # Parameter bytes, from the in-memory objects: the tf.keras towers and catalogue lookup
    # (strings by their length), MiniLM through Keras 3's own count, the index's item
    # embeddings and the item id strings.
    weights = {id(w): w for part in (rec.model.lookup, rec.model.item_tower, rec.model.query_tower)
               for w in part.weights}
    if rec.ranker is not None:  # the ranking stage's own weights (its retrieval model is rec.model)
        weights.update({id(w): w for w in rec.ranker.weights})
    params = 0
    for w in weights.values():
        if w.dtype == tf.string:
            params += sum(len(b) for b in w.numpy().reshape(-1))
        else:
            params += int(np.prod(w.shape)) * w.dtype.size
    bert = rec.text_encoder.bert.inner.count_params() * 4
    params += bert + rec.item_embeddings.nbytes + sum(len(i) for i in rec.item_ids.astype(str))
    size = export_size(proofs["path"])
    ratio = size["total"] / params
    print(f"\nexport size: {size['total']:,} bytes for {params:,} parameter bytes ({ratio:.3f}x; checkpoint "
          f"{size['checkpoint_parameter_bytes'] / params:.3f}x); "
          f"MiniLM {bert:,}; {size}")
    assert bert > 80_000_000  # the real MiniLM, not a tiny stand-in
    assert ratio <= 1.1, f"export is {ratio:.2f}x the parameter bytes: a weight saved twice? {size}"
    assert size["checkpoint_parameter_bytes"] <= 1.1 * params, size


# -- docs/serving.md ------------------------------------------------------------------

def regenerate_docs(export_dir, doc_path=DOCS):
    """Fills the ML-100K REST responses of docs/serving.md by running each request through
    the TF1 session loader (TF Serving's loading path) on `export_dir`."""
    import tempfile

    md = pathlib.Path(doc_path).read_text()
    examples = docs_examples(md)
    parsed = [rest.parse_predict_request(request, rest_inputs(export_dir)) for _, request, _ in examples]
    with tempfile.TemporaryDirectory() as tmp:
        res = run_child({export_dir: parsed}, tmp)["exports"][0]
    for (ex_id, request, _), tf1 in zip(examples, res["tf1"]):
        response = rest.predict_response({n: decode(v) for n, v in tf1.items()}, row="instances" in request)
        pattern = re.compile(rf"(<!-- ml100k-rest-example: {ex_id} -->\n```json\n.*?```\n.*?```json\n)(.*?)(```)",
                             re.S)
        md = pattern.sub(lambda m: m.group(1) + rest.to_json(response) + "\n" + m.group(3), md)
    pathlib.Path(doc_path).write_text(md)


if __name__ == "__main__":
    regenerate_docs(sys.argv[1])
