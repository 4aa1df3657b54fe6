"""Small deterministic exports for the serving proofs and for docs/serving.md.

* "demo": a hybrid query tower (user id, occupation, age, timestamp, history of item
  ids), a ranker, and an item encoder with a tiny BERT over titles (40 items, dim 8).
  With `with_explainer=True` it also serves `explain` (`tfrec.explain.serving.QueryExplainer`
  over the same query tower and item embeddings; the serving proofs use that).
* "ids": the id-only tower of `tfrec run`, exported through the backwards-compatible
  call `export_retrieval(query_tower, item_ids, item_embeddings, ...)`.

Weights come from a seeded numpy generator, so exports, and the REST responses in
docs/serving.md, are the same on every machine. Regenerate the docs' generated
blocks (saved_model_cli output, REST responses, config files) after changing the
export with:

    .venv/bin/python -m tests.export.demo docs/serving.md
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np

import tfrec  # noqa: F401  (before tensorflow)
import tensorflow as tf  # noqa: E402

from tfrec.export.retrieval import export_retrieval  # noqa: E402
from tfrec.models.id_tower import IdTower  # noqa: E402

USERS = [f"u{i:02d}" for i in range(1, 13)]
ITEMS = [f"i{i:03d}" for i in range(1, 41)]
OCCUPATIONS = ["artist", "engineer", "student", "writer"]
DIM = 8
K = 5
RETRIEVE_K = 10

QUERY_SPEC = {
    "user_id": tf.TensorSpec([None], tf.string),
    "occupation": tf.TensorSpec([None], tf.string),
    "age": tf.TensorSpec([None], tf.float32),
    "timestamp": tf.TensorSpec([None], tf.int64),
    "history": tf.TensorSpec([None, None], tf.string),  # item ids, "" pads
}
ITEM_SPEC = {"title": tf.TensorSpec([None], tf.string), "year": tf.TensorSpec([None], tf.int64)}


class DemoQueryTower(tf.keras.layers.Layer):
    """user id + occupation + age + hour of day + mean history embedding -> [batch, DIM]."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.user = IdTower(USERS, DIM)
        self.occupation = IdTower(OCCUPATIONS, 4)
        self.history = IdTower(ITEMS, DIM)
        self.dense = tf.keras.layers.Dense(DIM)

    def call(self, features):
        hist = features["history"]  # (batch, h)
        mask = tf.cast(hist != "", tf.float32)[..., None]  # (batch, h, 1)
        h = tf.reduce_sum(self.history(hist) * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        age = (tf.cast(features["age"], tf.float32) - 35.0) / 15.0
        hour = tf.cast(tf.math.floormod(features["timestamp"], 86400), tf.float32) * (2 * np.pi / 86400)
        x = tf.concat([self.user(features["user_id"]), self.occupation(features["occupation"]), h,
                       tf.stack([age, tf.sin(hour), tf.cos(hour)], axis=1)], axis=1)
        return self.dense(x)  # (batch, DIM)


class DemoRanker(tf.keras.layers.Layer):
    """Scores candidates: query tower . item embedding + item bias (shares the query tower)."""

    def __init__(self, query_tower, **kwargs):
        super().__init__(**kwargs)
        self.query_tower = query_tower
        self.items = IdTower(ITEMS, DIM)
        self.bias = IdTower(ITEMS, 1)

    def call(self, features, candidate_item_ids):
        q = self.query_tower(features)  # (batch, DIM)
        e = self.items(candidate_item_ids)  # (batch, n, DIM)
        return tf.einsum("bd,bnd->bn", q, e) + self.bias(candidate_item_ids)[..., 0]  # (batch, n)


class DemoItemEncoder(tf.keras.layers.Layer):
    """Title (tiny BERT) + release year -> L2-normalised [batch, DIM]."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from tfrec.text.encoder import BertTextEncoder

        self.text = BertTextEncoder("tiny", sequence_length=16)
        self.dense = tf.keras.layers.Dense(DIM)

    def call(self, features):
        year = (tf.cast(features["year"], tf.float32) - 1990.0) / 10.0
        x = tf.concat([self.text(features["title"]), year[:, None]], axis=1)  # (batch, 9)
        return tf.math.l2_normalize(self.dense(x), axis=-1)


def _seed(weights, seed):
    rng = np.random.default_rng(seed)
    for w in weights:
        w.assign(rng.normal(0.0, 0.5, w.shape).astype(w.dtype.as_numpy_dtype))


def example_query():
    """A batch of 2 query features (builds the towers' weights)."""
    return {"user_id": tf.constant(["u01", "x"]), "occupation": tf.constant(["artist", "artist"]),
            "age": tf.constant([30.0, 40.0]), "timestamp": tf.constant([0, 3600], tf.int64),
            "history": tf.constant([["i001", ""], ["", ""]])}


def item_embeddings(seed=3):
    return np.random.default_rng(seed).normal(0.0, 1.0, (len(ITEMS), DIM)).astype(np.float32)


def demo_parts(with_text=True):
    """The demo's in-memory models: {query, ranker, item_encoder (or None), item_ids, item_embeddings}."""
    query = DemoQueryTower()
    query(example_query())
    _seed(query.weights, 1)
    ranker = DemoRanker(query)
    ranker(example_query(), tf.constant([["i001", "zz"]] * 2))
    _seed(ranker.items.weights + ranker.bias.weights, 2)  # the query tower is shared, already seeded
    encoder = None
    if with_text:
        encoder = DemoItemEncoder()
        encoder({"title": tf.constant(["a", "b"]), "year": tf.constant([1995, 2000], tf.int64)})
        _seed(encoder.dense.weights, 4)  # the tiny BERT keeps its own seeded initialisation
    return {"query": query, "ranker": ranker, "item_encoder": encoder, "item_ids": np.array(ITEMS),
            "item_embeddings": item_embeddings()}


# `explain`'s "unknown" value of each query feature, as `tfrec.explain.attribution.occlusion` sets them.
EXPLAIN_OCCLUSIONS = {"user_id": "\x00oov", "occupation": "", "age": -1.0, "timestamp": 0}


def demo_explainer(parts):
    from tfrec.explain.serving import QueryExplainer

    return QueryExplainer(parts["query"], parts["item_ids"], parts["item_embeddings"], occlusions=EXPLAIN_OCCLUSIONS)


def build_demo_export(root, name="demo", with_text=True, index="brute_force", index_params=None, parts=None,
                      with_explainer=False):
    """Exports the hybrid demo; returns (path, parts)."""
    parts = parts or demo_parts(with_text)
    path = export_retrieval(parts["query"], QUERY_SPEC, parts["item_ids"], parts["item_embeddings"],
                            item_encoder=parts["item_encoder"], item_encoder_spec=ITEM_SPEC if with_text else None,
                            ranker=parts["ranker"], explainer=demo_explainer(parts) if with_explainer else None,
                            index=index, index_params=index_params, k=K, retrieve_k=RETRIEVE_K, root=root, name=name)
    return path, parts


ID_USERS = [str(i) for i in range(1, 13)]


def build_ids_export(root, name="ids", index="brute_force", index_params=None):
    """The id-only export through the backwards-compatible call of `tfrec run`; returns (path, parts)."""
    tower = IdTower(ID_USERS, DIM)
    tower(tf.constant(["1"]))
    _seed(tower.weights, 5)
    emb = item_embeddings()
    if index == "brute_force" and index_params is None:
        path = export_retrieval(tower, np.array(ITEMS), emb, root=root, name=name, k=K)  # as tfrec/cli/run.py
    else:
        path = export_retrieval(tower, tf.TensorSpec([None], tf.string, name="user_id"), np.array(ITEMS), emb,
                                index=index, index_params=index_params, root=root, name=name, k=K)
    return path, {"query": tower, "item_ids": np.array(ITEMS), "item_embeddings": emb}


# -- docs/serving.md ------------------------------------------------------------------

EXAMPLE = re.compile(r"<!-- rest-example: (\w+) ([\w-]+) -->\n(.*?)<!-- /rest-example -->", re.S)
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.S)


def docs_examples(markdown):
    """[(model, example id, request dict, documented response dict or None)] from docs/serving.md."""
    out = []
    for model, ex_id, body in EXAMPLE.findall(markdown):
        blocks = JSON_BLOCK.findall(body)
        response = json.loads(blocks[1]) if len(blocks) > 1 and blocks[1].strip() else None
        out.append((model, ex_id, json.loads(blocks[0]), response))
    return out


def _replace_block(markdown, marker, lang, text):
    pattern = re.compile(rf"(<!-- {marker} -->\n```{lang}\n)(.*?)(```\n<!-- /{marker} -->)", re.S)
    if not pattern.search(markdown):
        raise SystemExit(f"docs: no block <!-- {marker} --> ... <!-- /{marker} --> found")
    return pattern.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(3), markdown)


def regenerate_docs(doc_path):
    """Rewrites the generated blocks of docs/serving.md from freshly built demo exports."""
    from tfrec.export import rest
    from tfrec.export.inspection import rest_inputs
    from tfrec.export.serving_config import ServedModel, batching_parameters_text, models_config_text

    doc_path = pathlib.Path(doc_path)
    md = doc_path.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"demo": build_demo_export(pathlib.Path(tmp) / "saved_models")[0],
                 "ids": build_ids_export(pathlib.Path(tmp) / "saved_models")[0]}
        cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
        shown = subprocess.run([str(cli), "show", "--dir", paths["demo"], "--all"], capture_output=True,
                               text=True, check=True).stdout
        shown = shown.replace(str(pathlib.Path(tmp)), "")
        # The op list is a printed Python set: sort it so the docs do not change from run to run.
        shown = re.sub(r"contains the following ops: \{(.*?)\}",
                       lambda m: "contains the following ops: {" + ", ".join(sorted(m.group(1).split(", "))) + "}",
                       shown)
        md = _replace_block(md, "saved-model-cli", "text", shown)
        for model, ex_id, request, _ in docs_examples(md):
            loaded = tf.saved_model.load(paths[model])
            response = rest.predict(loaded.signatures, request, rest_inputs(paths[model]))
            pattern = re.compile(rf"(<!-- rest-example: {model} {ex_id} -->\n```json\n.*?```\n.*?```json\n)(.*?)(```)",
                                 re.S)
            md = pattern.sub(lambda m: m.group(1) + rest.to_json(response) + "\n" + m.group(3), md)
        md = _replace_block(md, "models-config", "text", models_config_text([
            ServedModel("retrieval", "/models/retrieval", policy="specific", versions=(1, 2),
                        labels={"stable": 1, "canary": 2}),
            ServedModel("retrieval_ann", "/models/retrieval_ann", policy="latest", latest=1),
        ]))
        md = _replace_block(md, "batching-parameters", "text", batching_parameters_text())
    doc_path.write_text(md)


if __name__ == "__main__":
    regenerate_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/serving.md")
