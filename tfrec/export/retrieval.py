"""SavedModel export of a retrieval model for stock TF Serving: raw features in, item ids out.

The exported module holds the query model (with its in-graph preprocessing), the
catalogue's embeddings in an index (`tfrec.export.ann`), the item ids, and
optionally an item encoder and a ranker. A request sends raw features (strings,
ints, floats) and gets item ids back: no Python and no preprocessing outside the
graph, so the stock `tensorflow/serving` binary serves it.

Signatures (`Q` = the query features of `query_spec`, each batched along dim 0):

    serving_default(Q)                    -> item_ids string [batch, k], scores float32 [batch, k]
    recommend(Q, exclude_item_ids)        -> the same, never returning an excluded item;
                                             exclude_item_ids string [batch, n], "" pads
    retrieve(Q)                           -> item_ids, scores [batch, retrieve_k] (candidates for a ranker)
    encode_query(Q)                       -> embedding float32 [batch, dim]
    encode_items(item features)           -> embedding float32 [batch, item_dim]   (with `item_encoder`)
    rank(Q, candidate_item_ids)           -> scores float32 [batch, n]              (with `ranker`)

With `two_stage=True` (and a ranker), `serving_default` and `recommend` retrieve
`retrieve_k` candidates (exclusions applied), rank them and return the ranker's top
k with the ranker's scores; `retrieve` stays retrieval only.
    explain(Q, item_ids)                  -> score [batch], history_contributions [batch, N],
                                             history_item_ids [batch, N], attribute_contributions
                                             [batch, A] (with `explainer`; see tfrec.explain.serving)

Unknown user ids are the query model's business (its lookups map them to an OOV
row); unknown item ids are ignored in `exclude_item_ids` and handed to the ranker
as they are in `candidate_item_ids`. A result slot that cannot be filled (fewer
items left than k) holds item id "" and score `MASKED_SCORE` (float32 min).
"""
import collections.abc
import json
import pathlib

import numpy as np
import tensorflow as tf

from tfrec.errors import ConfigError, TfrecError
from tfrec.export.ann import MASKED_SCORE, make_index
from tfrec.export.id_lookup import IdLookup
from tfrec.export.specs import _Untracked, _call, collect_resources, example_value, normalize_spec  # noqa: F401
from tfrec.export.versioning import atomic_version_dir
from tfrec.models.repeat import rerank_with_penalty

# The id-only query tower of `tfrec run`: one string user id per row.
USER_ID_SPEC = tf.TensorSpec([None], tf.string, name="user_id")
ITEM_TEXT_SPEC = tf.TensorSpec([None], tf.string, name="item_text")
EXCLUDE = "exclude_item_ids"
CANDIDATES = "candidate_item_ids"
EXPLAIN_ITEMS = "item_ids"  # input of `explain`: the item to explain, one per query row
METADATA_FILE = "tfrec_export.json"  # in assets.extra/, beside the warm-up requests
class RetrievalModule(tf.Module):
    """Query model + index + item ids (+ item encoder, + ranker) with raw-feature signatures.

    Retrieval serves O(hundreds) of candidates from O(millions) of items per
    request; this module is what TF Serving runs for it. See the module docstring
    for the signatures and `export_retrieval` for the arguments.

    Example:
        module = RetrievalModule(query_model, {"user_id": tf.TensorSpec([None], tf.string)},
                                 item_ids, item_embeddings, k=10)
        module.signatures()["serving_default"](user_id=tf.constant(["42"]))["item_ids"]   # (1, 10)
    """

    def __init__(self, query_model, query_spec, item_ids, item_embeddings, *, item_encoder=None,
                 item_encoder_spec=None, ranker=None, explainer=None, index="brute_force", index_params=None,
                 k=100, retrieve_k=200, two_stage=False, repeat_penalty=None):
        super().__init__(name="tfrec_retrieval")
        if two_stage and ranker is None:
            raise ConfigError("`two_stage=True` needs a `ranker`.")
        self.two_stage = bool(two_stage)
        self.query_spec, self._query_single = normalize_spec(query_spec, USER_ID_SPEC.name, "query_spec")
        for reserved in (EXCLUDE, CANDIDATES) + ((EXPLAIN_ITEMS,) if explainer is not None else ()):
            if reserved in self.query_spec:
                raise ConfigError(f"`query_spec` may not name a feature {reserved!r}: the export adds that input. "
                                  "Fix: rename the feature.")
        if item_encoder is None and item_encoder_spec is not None:
            raise ConfigError("`item_encoder_spec` given without `item_encoder`.")
        self.item_encoder_spec, self._items_single = (
            normalize_spec(item_encoder_spec if item_encoder_spec is not None else ITEM_TEXT_SPEC,
                           ITEM_TEXT_SPEC.name, "item_encoder_spec") if item_encoder is not None else (None, False))
        item_ids = np.asarray(item_ids, dtype=object).reshape(-1)
        item_embeddings = np.asarray(item_embeddings, np.float32)
        if item_embeddings.ndim != 2 or item_embeddings.shape[0] != item_ids.size:
            raise ConfigError(f"`item_embeddings` must be [n_items, dim] with n_items = len(item_ids) = "
                              f"{item_ids.size}, got shape {item_embeddings.shape}.")
        if int(k) < 1 or int(retrieve_k) < 1:
            raise ConfigError(f"`k` and `retrieve_k` must be >= 1, got k={k}, retrieve_k={retrieve_k}.")
        self.dim = int(item_embeddings.shape[1])
        self.k = min(int(k), item_ids.size)
        self.retrieve_k = min(int(retrieve_k), item_ids.size)
        self.index = make_index(index, item_embeddings, index_params)
        self._repeat = None if repeat_penalty is None else (float(repeat_penalty[0]), int(repeat_penalty[1]))
        if self._repeat is not None and (self._query_single or "history" not in self.query_spec):
            raise ConfigError("`repeat_penalty` lowers the scores of the query's `history` items: the query_spec "
                              "needs a `history` input.")
        self.items = IdLookup(item_ids[self.index.order])
        if explainer is not None and hasattr(explainer, "read_from_index"):  # the catalogue's matrix saved once
            explainer = explainer.read_from_index(self.index.embeddings, item_ids[self.index.order])
        self._models = _Untracked(query=query_model, item_encoder=item_encoder, ranker=ranker, explainer=explainer)
        self._check_models()
        self.model_resources = collect_resources(query_model, item_encoder, ranker, explainer)
        # Untracked too: the SavedModel keeps only the signatures' functions (tracked
        # tf.functions would be written a second time as attributes of the object).
        self._functions = _Untracked(
            serve=tf.function(self._serve), recommend=tf.function(self._recommend),
            retrieve=tf.function(self._retrieve), encode_query=tf.function(self._encode_query),
            encode_items=tf.function(self._encode_items) if item_encoder is not None else None,
            rank=tf.function(self._rank) if ranker is not None else None,
            explain=tf.function(self._explain) if explainer is not None else None)

    # -- building -------------------------------------------------------------------

    def _check_models(self):
        """Calls each model once eagerly: builds lazy weights and checks output shapes."""
        q = self._query({n: tf.constant(example_value(s, 2)) for n, s in self.query_spec.items()})
        if q.shape.rank != 2 or q.shape[0] != 2 or q.shape[1] != self.dim:
            raise ConfigError(f"`query_model` must map a batch of 2 to [2, {self.dim}] (the item embedding "
                              f"dim), got shape {q.shape}.")
        if self._models.item_encoder is not None:
            e = self._encode_items(**{n: tf.constant(example_value(s, 2)) for n, s in self.item_encoder_spec.items()})
            e = e["embedding"]
            if e.shape.rank != 2 or e.shape[0] != 2:
                raise ConfigError(f"`item_encoder` must map a batch of 2 to [2, dim], got shape {e.shape}.")
        if self._models.ranker is not None:
            feats = {n: tf.constant(example_value(s, 2)) for n, s in self.query_spec.items()}
            r = self._rank(**feats, candidate_item_ids=tf.constant([[b"", b""]] * 2))["scores"]
            if r.shape.as_list() != [2, 2]:
                raise ConfigError(f"`ranker(features, candidate_item_ids)` must map [2, 2] candidate ids to "
                                  f"[2, 2] scores, got shape {r.shape}.")
        if self._models.explainer is not None:
            feats = {n: tf.constant(example_value(s, 2)) for n, s in self.query_spec.items()}
            r = self._explain(**feats, item_ids=tf.constant([b"", b""]))["score"]
            if r.shape.as_list() != [2]:
                raise ConfigError(f"`explainer(features, item_ids)` must map 2 item ids to a `score` of shape [2], "
                                  f"got shape {r.shape}.")

    def signatures(self):
        """{signature name: concrete function}, traced with named raw-feature inputs."""
        f, q = self._functions, dict(self.query_spec)
        exclude = tf.TensorSpec([None, None], tf.string, name=EXCLUDE)
        sigs = {
            "serving_default": f.serve.get_concrete_function(**q),
            "recommend": f.recommend.get_concrete_function(**q, exclude_item_ids=exclude),
            "retrieve": f.retrieve.get_concrete_function(**q),
            "encode_query": f.encode_query.get_concrete_function(**q),
        }
        if f.encode_items is not None:
            sigs["encode_items"] = f.encode_items.get_concrete_function(**self.item_encoder_spec)
        if f.rank is not None:
            cands = tf.TensorSpec([None, None], tf.string, name=CANDIDATES)
            sigs["rank"] = f.rank.get_concrete_function(**q, candidate_item_ids=cands)
        if f.explain is not None:
            sigs["explain"] = f.explain.get_concrete_function(
                **q, item_ids=tf.TensorSpec([None], tf.string, name=EXPLAIN_ITEMS))
        return sigs

    def example_requests(self, example_inputs=None, batch=1):
        """[(signature name, {input: numpy array})]: one request per signature.

        `example_inputs` may give any input by name (query features, item encoder
        features, `exclude_item_ids`, `candidate_item_ids`); the rest are filled with
        "" / 0 (unknown ids exercise the OOV path) and catalogue item ids.
        """
        ex = {n: np.asarray(v) for n, v in (example_inputs or {}).items()}
        known = set(self.query_spec) | set(self.item_encoder_spec or {}) | {EXCLUDE, CANDIDATES, EXPLAIN_ITEMS}
        unknown = sorted(set(ex) - known)
        if unknown:
            raise ConfigError(f"`example_inputs` has unknown input(s) {unknown}; signature inputs are {sorted(known)}.")

        given = [len(ex[n]) for n in self.query_spec if n in ex]
        b = given[0] if given else batch  # the query features' batch, also for the filled ones

        def value(name, spec, rows):
            v = ex.get(name)
            if v is None:
                return example_value(spec, rows)
            if spec.dtype == tf.string:
                return np.vectorize(lambda s: s.encode("utf-8") if isinstance(s, str) else s, otypes=[object])(v)
            return v.astype(spec.dtype.as_numpy_dtype)

        ids = tf.TensorSpec([None, None], tf.string)
        q = {n: value(n, s, b) for n, s in self.query_spec.items()}
        first = self.items.ids.numpy()[:3]
        exclude = value(EXCLUDE, ids, b) if EXCLUDE in ex else np.array([first[:1]] * b, dtype=object)
        reqs = [("serving_default", q), ("retrieve", q), ("encode_query", q), ("recommend", {**q, EXCLUDE: exclude})]
        if self._models.item_encoder is not None:
            given = [len(ex[n]) for n in self.item_encoder_spec if n in ex]
            rows = given[0] if given else batch
            reqs.append(("encode_items", {n: value(n, s, rows) for n, s in self.item_encoder_spec.items()}))
        if self._models.ranker is not None:
            cands = value(CANDIDATES, ids, b) if CANDIDATES in ex else np.array([first] * b, dtype=object)
            reqs.append(("rank", {**q, CANDIDATES: cands}))
        if self._models.explainer is not None:
            items = (value(EXPLAIN_ITEMS, tf.TensorSpec([None], tf.string), b) if EXPLAIN_ITEMS in ex
                     else np.array([first[0]] * b, dtype=object))
            reqs.append(("explain", {**q, EXPLAIN_ITEMS: items}))
        return reqs

    def metadata(self):
        def io(spec):
            return {n: {"dtype": s.dtype.name, "shape": [d for d in s.shape]} for n, s in spec.items()}

        return {"k": self.k, "retrieve_k": self.retrieve_k, "items": self.items.size, "dim": self.dim,
                "index": self.index.config(), "query_spec": io(self.query_spec),
                "item_encoder_spec": io(self.item_encoder_spec) if self.item_encoder_spec else None,
                "ranker": self._models.ranker is not None, "two_stage": self.two_stage,
                "repeat_penalty": list(self._repeat) if self._repeat is not None else None,
                "signatures": sorted(self.signatures()),
                "explain_attribute_names": (list(getattr(self._models.explainer, "attribute_names", []))
                                            if self._models.explainer is not None else None),
                # A hybrid query model with blocks that read more of `history` than its tower (text profile,
                # co-occurrence, `tfrec.models.space`): how many of the newest items they read; None: none.
                "profile_history_length": getattr(getattr(self._models.query, "model", None), "profile_length",
                                                  None)}

    # -- graph ----------------------------------------------------------------------

    def _query(self, features):
        return tf.cast(_call(self._models.query, features, self._query_single), tf.float32)  # (batch, dim)

    def _search(self, features, k, exclude_rows):
        """The index's top k for the queries; with a repeat penalty (p, N), its top k + N
        re-ranked with the last N history items p lower (exact: `tfrec.models.repeat`)."""
        if self._repeat is None:
            return self.index.search(self._query(features), k, exclude_rows)
        penalty, window = self._repeat
        scores, rows = self.index.search(self._query(features), min(k + window, self.items.size), exclude_rows)
        history = self.items.lookup(features["history"][:, -window:])  # (batch, <= N), -1 = pad/unknown
        return rerank_with_penalty(scores, rows, history, penalty, min(k, self.items.size))

    def _top_k(self, features, k, exclude=None, two_stage=False):
        exclude_rows = None if exclude is None else self.items.lookup(exclude)  # (batch, n), -1 = pad/unknown
        if two_stage and self.two_stage:
            # Retrieve `retrieve_k`, rank them, keep the ranker's top k.
            _, rows = self._search(features, self.retrieve_k, exclude_rows)  # (batch, R)
            ids = self.items.ids_of(rows)
            feats = next(iter(features.values())) if self._query_single else dict(features)
            rel = tf.cast(self._models.ranker(feats, ids), tf.float32)
            rel = tf.where(ids == "", MASKED_SCORE, rel)
            top = tf.math.top_k(rel, k=min(k, self.retrieve_k))
            return {"item_ids": tf.gather(ids, top.indices, batch_dims=1), "scores": top.values}
        scores, rows = self._search(features, k, exclude_rows)  # (batch, k) each
        return {"item_ids": self.items.ids_of(rows), "scores": scores}

    def _serve(self, **features):
        return self._top_k(features, self.k, two_stage=True)

    def _recommend(self, exclude_item_ids, **features):
        return self._top_k(features, self.k, exclude_item_ids, two_stage=True)

    def _retrieve(self, **features):
        return self._top_k(features, self.retrieve_k)

    def _encode_query(self, **features):
        return {"embedding": self._query(features)}

    def _encode_items(self, **features):
        out = _call(self._models.item_encoder, features, self._items_single)
        return {"embedding": tf.cast(out, tf.float32)}  # (batch, item_dim)

    def _rank(self, candidate_item_ids, **features):
        feats = next(iter(features.values())) if self._query_single else dict(features)
        scores = tf.cast(self._models.ranker(feats, candidate_item_ids), tf.float32)  # (batch, n)
        return {"scores": tf.where(candidate_item_ids == "", MASKED_SCORE, scores)}

    def _explain(self, item_ids, **features):
        feats = next(iter(features.values())) if self._query_single else dict(features)
        out = self._models.explainer(feats, item_ids)
        return {k: tf.cast(v, tf.float32) if v.dtype != tf.string else v for k, v in out.items()}


def _run_requests(signatures, requests):
    """Runs each request through the in-memory signature; wraps failures with the request."""
    outputs = []
    for sig, inputs in requests:
        try:
            out = signatures[sig](**{n: tf.constant(v) for n, v in inputs.items()})
        except Exception as e:  # noqa: BLE001 - re-raised with the request that failed
            raise TfrecError(f"Signature {sig!r} failed on example inputs "
                             f"{ {n: np.asarray(v).tolist() for n, v in inputs.items()} }: {e}") from e
        outputs.append({n: t.numpy() for n, t in out.items()})
    return outputs


def save_module(module, export_dir, *, model_name, warmup=True, example_inputs=None):
    """Writes `module` as a SavedModel into `export_dir` (+ warm-up file and metadata)."""
    from tfrec.export.warmup import write_warmup

    signatures = module.signatures()
    requests = module.example_requests(example_inputs)
    _run_requests(signatures, requests)  # a bad example fails here, not at server start
    try:
        tf.saved_model.save(module, str(export_dir), signatures=signatures)
    except (AssertionError, ValueError) as e:
        if "untracked" not in str(e).lower():
            raise
        raise TfrecError(
            f"SavedModel export failed: a signature captures a resource that the export cannot reach ({e}). "
            "Fixes: (1) create every variable/lookup table as an attribute of a layer or tf.Module of the "
            "model, not a local; (2) build the model before exporting; (3) do not create tables inside "
            "`call`.") from e
    extra = pathlib.Path(export_dir) / "assets.extra"
    extra.mkdir(exist_ok=True)
    if warmup:
        write_warmup(export_dir, requests, model_name=model_name)
    (extra / METADATA_FILE).write_text(json.dumps(module.metadata(), indent=2) + "\n")


def export_retrieval(query_model, query_spec=None, item_ids=None, item_embeddings=None, *, item_encoder=None,
                     item_encoder_spec=None, ranker=None, explainer=None, index="brute_force", index_params=None,
                     k=100, retrieve_k=200, root="saved_models", name="retrieval", version=None, warmup=True,
                     example_inputs=None, two_stage=False, repeat_penalty=None) -> str:
    """Exports a retrieval SavedModel to `<root>/<name>/<version>/` atomically; returns its path.

    Args:
        query_model: `query_model(features) -> float [batch, dim]`, where `features`
            is a dict name -> tensor following `query_spec`; with a single
            `tf.TensorSpec` as `query_spec`, it is called with that one tensor.
        query_spec: dict feature name -> `tf.TensorSpec([None, ...], dtype)` (string,
            int32/64, float32/64, bool); these names are the signatures' inputs.
        item_ids: the catalogue's ids, [n_items], unique and non-empty.
        item_embeddings: float [n_items, dim] (the candidate tower's output).
        item_encoder: optional `item_encoder(features) -> [batch, item_dim]` served as
            `encode_items`; e.g. a `BertTextEncoder` with a single string spec.
        item_encoder_spec: its inputs, like `query_spec`; default one string `item_text`.
        ranker: optional `ranker(features, candidate_item_ids) -> [batch, n]` served as
            `rank`; `features` as for `query_model`, ids string [batch, n].
        two_stage: `serving_default` and `recommend` retrieve `retrieve_k` candidates and
            return the ranker's top k (needs `ranker`).
        explainer: optional `explainer(features, item_ids) -> dict of tensors` served as
            `explain` (e.g. `tfrec.explain.serving.hybrid_explainer(...)`); item_ids
            string [batch], one item to explain per query row.
        index: "brute_force" (exact) or "kmeans" (approximate, `tfrec.export.ann`).
        index_params: for "kmeans": partitions, probes, iterations, seed, sample_size.
        k: results of `serving_default` and `recommend`.
        retrieve_k: candidates returned by `retrieve`.
        root, name, version: TF Serving layout `<root>/<name>/<version>/`; `version`
            defaults to the next integer; an existing version is never overwritten.
        warmup: write `assets.extra/tf_serving_warmup_requests` (one request per signature).
        example_inputs: dict input name -> array for the warm-up requests (see
            `RetrievalModule.example_requests`).
        repeat_penalty: optional (p, N): the items among the last N of the `history`
            input score p lower (`tfrec.models.repeat`; a hybrid model's learned penalty).

    Backwards compatible: `export_retrieval(query_tower, item_ids, item_embeddings, ...)`
    (no spec) exports an id-only tower taking `user_id` string [batch].

    Example:
        spec = {"user_id": tf.TensorSpec([None], tf.string),
                "history": tf.TensorSpec([None, None], tf.string)}
        path = export_retrieval(query_model, spec, catalogue.item_ids, item_embeddings,
                                index="kmeans", index_params={"probes": 8}, root="saved_models",
                                name="retrieval")
    """
    if not isinstance(query_spec, (collections.abc.Mapping, tf.TensorSpec)):
        if item_embeddings is not None or query_spec is None:
            raise ConfigError("`query_spec` must be a dict of tf.TensorSpec (or one tf.TensorSpec), got "
                              f"{type(query_spec).__name__}. Call export_retrieval(query_model, query_spec, "
                              "item_ids, item_embeddings, ...), or the id-only form "
                              "export_retrieval(query_tower, item_ids, item_embeddings, ...).")
        query_spec, item_ids, item_embeddings = USER_ID_SPEC, query_spec, item_ids  # the id-only form
    module = RetrievalModule(query_model, query_spec, item_ids, item_embeddings, item_encoder=item_encoder,
                             item_encoder_spec=item_encoder_spec, ranker=ranker, explainer=explainer, index=index,
                             index_params=index_params, k=k, retrieve_k=retrieve_k, two_stage=two_stage,
                             repeat_penalty=repeat_penalty)
    with atomic_version_dir(root, name, version) as (tmp, version):
        save_module(module, tmp, model_name=name, warmup=warmup, example_inputs=example_inputs)
    return str(pathlib.Path(root) / name / str(version))
