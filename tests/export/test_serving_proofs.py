"""What stock TF Serving relies on, checked without its binary (not installable here).

Exports: `demo` (hybrid query tower, ranker, tiny-BERT `encode_items`, `explain`), `ids` (the
id-only call of `tfrec run`) and `ids_kmeans` (the same through the k-means index).
One fresh subprocess (`serving_child.py`, importing only tensorflow and
tensorflow_text) loads each through `tf.saved_model.load` and through the TF1
session loader that TF Serving's C++ SavedModelBundle uses, and runs:
  * hand-written requests covering every signature, unknown ids included;
  * every record of the warm-up file (parsed here with the official PredictionLog proto);
  * every REST example of docs/serving.md, parsed with TF Serving's JSON rules.
It also lists every op type in saved_model.pb against the op registries of TF core
and TF Text. Expected outputs come from the in-memory towers and numpy.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.export import demo
from tfrec.export import rest
from tfrec.export.ann import MASKED_SCORE
from tfrec.export.inspection import export_size, rest_inputs
from tfrec.export.retrieval import RetrievalModule
from tfrec.export.warmup import read_warmup

pytestmark = pytest.mark.slow

HERE = pathlib.Path(__file__).parent
DOCS = HERE.parents[1] / "docs" / "serving.md"
KMEANS = {"partitions": 6, "probes": 3, "seed": 0}


def hybrid_request():
    return {"user_id": np.array([b"u03", b"stranger"], dtype=object),
            "occupation": np.array([b"engineer", b"astronaut"], dtype=object),
            "age": np.array([34.0, 27.5], np.float32), "timestamp": np.array([1700000000, 1700050000], np.int64),
            "history": np.array([[b"i007", b"i012", b""], [b"no-such-item", b"", b""]], dtype=object)}


def hand_cases(name):
    """(signature, inputs) covering every signature of export `name`, with unknown ids."""
    if name == "demo":
        q = hybrid_request()
        return [("serving_default", q), ("retrieve", q), ("encode_query", q),
                ("recommend", {**q, "exclude_item_ids": np.array([[b"i031", b"nope"], [b"", b""]], dtype=object)}),
                ("rank", {**q, "candidate_item_ids": np.array([[b"i001", b"nope", b""], [b"i040", b"i002", b"i003"]],
                                                              dtype=object)}),
                ("encode_items", {"title": np.array([b"Toy Story (1995)", "Café Society".encode()], dtype=object),
                                  "year": np.array([1995, 2016], np.int64)}),
                ("explain", {**q, "item_ids": np.array([b"i005", b"no-such-item"], dtype=object)})]
    users = {"user_id": np.array([b"1", b"12", b"never-seen", b""], dtype=object)}
    return [("serving_default", users), ("retrieve", users), ("encode_query", users),
            ("recommend", {**users, "exclude_item_ids": np.array([[b"i001", b"i029", b"zz"]] * 4, dtype=object)})]


def encode(v):
    v = np.asarray(v)
    if v.dtype == object:
        return {"dtype": "string", "value": np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(v).tolist()}
    return {"dtype": v.dtype.name, "value": v.tolist()}


def decode(spec):
    if spec["dtype"] == "string":
        return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(np.array(spec["value"], dtype=object))
    return np.array(spec["value"], dtype=spec["dtype"])


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("proofs") / "saved_models"
    demo_path, demo_parts = demo.build_demo_export(root, with_text=True, with_explainer=True)
    ids_path, ids_parts = demo.build_ids_export(root)
    km_path, km_parts = demo.build_ids_export(root, name="ids_kmeans", index="kmeans", index_params=KMEANS)
    return {"demo": (demo_path, demo_parts), "ids": (ids_path, ids_parts), "ids_kmeans": (km_path, km_parts)}


@pytest.fixture(scope="module")
def served(exports, tmp_path_factory):
    """Runs the fresh-process child over every case; returns {export: [(kind, sig, inputs, tf2, tf1)]} + info."""
    examples = demo.docs_examples(DOCS.read_text())
    cases = {}
    for name, (path, _) in exports.items():
        c = [("hand", sig, inputs, None) for sig, inputs in hand_cases(name)]
        c += [("warmup", sig, inputs, None) for _, sig, inputs in read_warmup(path)]
        model = "ids" if name == "ids_kmeans" else name
        for m, ex_id, request, documented in examples:
            if m == model:
                sig, inputs = rest.parse_predict_request(request, rest_inputs(path))
                c.append((f"rest:{ex_id}", sig, inputs, (request, documented)))
        cases[name] = c
    plan = {"exports": [{"export_dir": exports[n][0],
                         "cases": [{"signature": s, "inputs": {k: encode(v) for k, v in i.items()}}
                                   for _, s, i, _ in cases[n]]} for n in cases]}
    plan_path = tmp_path_factory.mktemp("plan") / "plan.json"
    plan_path.write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # a server sets no tfrec variables
    r = subprocess.run([sys.executable, str(HERE / "serving_child.py"), str(plan_path)], capture_output=True,
                       text=True, timeout=600, env=env, cwd=str(HERE))
    assert r.returncode == 0, r.stderr[-4000:]
    result = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])
    out = {}
    for name, res in zip(cases, result["exports"]):
        out[name] = {"cases": [(kind, sig, inputs, extra, {n: decode(v) for n, v in a.items()},
                                {n: decode(v) for n, v in b.items()})
                               for (kind, sig, inputs, extra), a, b in zip(cases[name], res["tf2"], res["tf1"])],
                     **{k: res[k] for k in ("text_ops_used", "python_only_ops_used", "unregistered_ops",
                                            "graph_ops", "signature_io")}}
    out["_info"] = {k: result[k] for k in ("core_op_count", "text_op_count", "imported")}
    return out


def reference(name, parts, sig, inputs):
    """The in-memory model's answer: towers called eagerly, top-k by numpy argsort."""
    if sig == "explain":
        return explain_reference(parts, inputs)
    feats = {n: tf.constant(v) for n, v in inputs.items() if n not in ("exclude_item_ids", "candidate_item_ids")}
    if sig == "encode_items":
        return {"embedding": parts["item_encoder"](feats).numpy()}
    if sig == "rank":
        cands = inputs["candidate_item_ids"]
        scores = parts["ranker"](feats, tf.constant(cands)).numpy()
        return {"scores": np.where(cands == b"", MASKED_SCORE, scores)}
    q = parts["query"](feats if name == "demo" else feats["user_id"]).numpy()
    if sig == "encode_query":
        return {"embedding": q}
    scores = q @ parts["item_embeddings"].T  # (batch, n_items)
    if sig == "recommend":
        for row, ex in enumerate(inputs["exclude_item_ids"]):
            scores[row, np.isin(parts["item_ids"].astype(bytes), ex)] = -np.inf
    k = demo.RETRIEVE_K if (sig == "retrieve" and name == "demo") else (40 if sig == "retrieve" else demo.K)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {"item_ids": parts["item_ids"].astype(bytes)[top], "scores": np.take_along_axis(scores, top, 1)}


def explain_reference(parts, inputs):
    """`explain`'s answer from the in-memory Python explainer (`tfrec.explain.attribution`: leave-one-out and
    occlusion, one query row at a time, checked against naive per-deletion loops in tests/explain)."""
    from tfrec.explain.attribution import leave_one_out, occlusion

    names = list(demo.EXPLAIN_OCCLUSIONS)

    def query_fn(f):
        return parts["query"](f)

    rows = {n: [] for n in ("score", "history_contributions", "history_item_ids", "attribute_contributions")}
    index = {i.encode(): r for r, i in enumerate(parts["item_ids"])}
    for b, item in enumerate(inputs["item_ids"]):
        feats = {n: inputs[n][b:b + 1] for n in demo.QUERY_SPEC}
        feats["history"] = np.vectorize(lambda x: x.decode(), otypes=[object])(feats["history"])
        feats["user_id"] = np.array([feats["user_id"][0].decode()], object)
        feats["occupation"] = np.array([feats["occupation"][0].decode()], object)
        vec = (parts["item_embeddings"][index[item]] if item in index
               else np.zeros(demo.DIM, np.float32))[None]  # unknown item: scores 0
        score, loo = leave_one_out(query_fn, feats, vec)
        rows["score"].append(score[0])
        rows["history_contributions"].append(loo[0])
        rows["history_item_ids"].append(inputs["history"][b])
        rows["attribute_contributions"].append(occlusion(query_fn, feats, vec, names, 0, score=score)[0])
    out = {n: np.stack(v) for n, v in rows.items()}
    out["popularity_prior"] = np.zeros(len(inputs["item_ids"]), np.float32)  # the demo's model has no prior
    out["text_profile"] = np.zeros(len(inputs["item_ids"]), np.float32)  # nor a text profile
    out["cooccurrence"] = np.zeros(len(inputs["item_ids"]), np.float32)  # nor a co-occurrence block
    out["text_profile_words"] = np.full((len(inputs["item_ids"]), 5), b"", object)  # nor its lexical term
    out["text_profile_word_parts"] = np.zeros((len(inputs["item_ids"]), 5), np.float32)
    return out


def assert_same(got, want, what):
    assert sorted(got) == sorted(want), what
    for n in want:
        if got[n].dtype == object or np.asarray(want[n]).dtype.kind in "OS":
            np.testing.assert_array_equal(got[n], np.asarray(want[n], dtype=object), err_msg=f"{what}: {n}")
        else:
            np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6, err_msg=f"{what}: {n}")


@pytest.mark.parametrize("name", ["demo", "ids"])
def test_both_loaders_answer_every_signature_like_the_in_memory_model(served, exports, name):
    _, parts = exports[name]
    res = served[name]
    sigs_seen = set()
    for kind, sig, inputs, _, tf2, tf1 in res["cases"]:
        want = reference(name, parts, sig, inputs)
        assert_same(tf2, want, f"{name} {kind} {sig} via tf.saved_model.load")
        assert_same(tf1, want, f"{name} {kind} {sig} via the TF1 session loader")
        sigs_seen.add(sig)
    assert sigs_seen == set(res["signature_io"]) - {"__saved_model_init_op"}
    assert all(s["method_name"] == "tensorflow/serving/predict"
               for n, s in res["signature_io"].items() if not n.startswith("__"))


def test_kmeans_export_answers_like_its_in_memory_module(served, exports):
    _, parts = exports["ids_kmeans"]
    module = RetrievalModule(parts["query"], tf.TensorSpec([None], tf.string, name="user_id"), parts["item_ids"],
                             parts["item_embeddings"], index="kmeans", index_params=KMEANS, k=demo.K)
    sigs = module.signatures()
    for kind, sig, inputs, _, tf2, tf1 in served["ids_kmeans"]["cases"]:
        want = {n: t.numpy() for n, t in sigs[sig](**{n: tf.constant(v) for n, v in inputs.items()}).items()}
        assert_same(tf2, want, f"kmeans {kind} {sig} (tf2)")
        assert_same(tf1, want, f"kmeans {kind} {sig} (tf1)")


def test_warmup_file_replays_through_the_session_loader(served, exports):
    for name in exports:
        warm = [c for c in served[name]["cases"] if c[0] == "warmup"]
        assert sorted(c[1] for c in warm) == sorted(s for s in served[name]["signature_io"] if not s.startswith("__"))
        for _, sig, _, _, _, tf1 in warm:
            assert all(np.all(np.isfinite(v)) for v in tf1.values() if v.dtype.kind == "f"), sig


def test_every_graph_op_is_registered_by_tf_core_or_tf_text(served):
    info = served["_info"]
    assert info["core_op_count"] > 1000 and info["text_op_count"] > 10  # the registries were read
    for name in ("demo", "ids", "ids_kmeans"):
        res = served[name]
        assert res["unregistered_ops"] == [], f"{name}: ops neither TF core nor TF Text: {res['unregistered_ops']}"
        assert res["python_only_ops_used"] == [], f"{name}: Python callback ops: {res['python_only_ops_used']}"
    # The BERT tokenizer is the only TF Text user; the id exports are core TF only.
    assert served["demo"]["text_ops_used"] == ["CaseFoldUTF8", "FastWordpieceTokenizeWithOffsets", "NormalizeUTF8",
                                               "RegexSplitWithOffsets"]
    assert served["ids"]["text_ops_used"] == [] and served["ids_kmeans"]["text_ops_used"] == []
    assert {"RaggedRange", "TopKV2", "LowerBound"} <= set(served["ids_kmeans"]["graph_ops"])


def test_the_serving_process_needs_no_tfrec_or_keras_hub(served):
    imported = set(served["_info"]["imported"])
    assert not imported & {"tfrec", "keras_hub", "keras_nlp", "tensorflow_recommenders", "tensorflow_serving"}


def test_docs_rest_examples_parse_run_and_answer_as_documented(served):
    ran = {}
    for name in ("demo", "ids"):
        for kind, sig, _, extra, _, tf1 in served[name]["cases"]:
            if not kind.startswith("rest:"):
                continue
            request, documented = extra
            got = json.loads(rest.to_json(rest.predict_response(tf1, row="instances" in request)))
            assert documented is not None, f"docs/serving.md {kind} has no response block"
            _assert_json_close(got, documented, f"{name} {kind}")
            ran[(name, kind)] = sig
    # Row and columnar forms both appear, and every signature of the demo is shown.
    assert {kind.split("-")[-1] for _, kind in ran} == {"row", "columnar"}
    assert {s for (n, _), s in ran.items() if n == "demo"} == {"serving_default", "recommend", "rank", "retrieve",
                                                                "encode_items"}
    assert len(ran) == len(demo.docs_examples(DOCS.read_text())), "an example in docs/serving.md did not run"


def _assert_json_close(got, want, where):
    hint = f"{where}: docs/serving.md is stale; regenerate with `.venv/bin/python -m tests.export.demo`"
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), hint
        for k in want:
            _assert_json_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), hint
        for g, w in zip(got, want):
            _assert_json_close(g, w, where)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), hint
    else:
        assert got == want, hint


def test_tiny_bert_export_stores_each_weight_once(exports):
    path, parts = exports["demo"]
    enc = parts["item_encoder"]
    # Parameter bytes, counted from the in-memory models: tf.keras weights (unique), the keras-hub
    # BERT through Keras 3's own count, the catalogue's embeddings and id strings.
    tf_keras = {id(w): w for m in (parts["query"], parts["ranker"], enc.dense) for w in m.weights}
    params = sum(int(np.prod(w.shape)) * w.dtype.size for w in tf_keras.values())
    params += enc.text.bert.inner.count_params() * 4
    params += parts["item_embeddings"].nbytes + sum(len(i) for i in parts["item_ids"])
    size = export_size(path)
    ratio = size["checkpoint_parameter_bytes"] / params
    assert ratio <= 1.1, f"checkpoint holds {ratio:.2f}x the parameter bytes: a weight is saved twice? {size}"
    assert size["variables"] <= 1.1 * params + 16_384, size  # + the checkpoint's index file
    # The rest is the graph: the tokenizer's compiled vocabulary (~1.9 MB) and the functions.
    assert size["saved_model_pb"] < 4_000_000, size
