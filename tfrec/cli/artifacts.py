"""A run folder's trained model: saved at the end of `tfrec run`, rebuilt later.

`tfrec run` writes the trained weights into `<run_dir>/model/` (a
`tf.train.Checkpoint` of the model's towers and catalogue lookup, plus
`model.json`). Everything else the model needs is rebuilt deterministically from
the run's `config.json`: the data is re-loaded and re-split, the catalogue and
query features re-fitted on the same train split, the item texts re-encoded
(a text-cache hit), the model re-built with the same seed, and the weights
restored into it. `tfrec export --run RUN_DIR` and `tfrec explain --run RUN_DIR`
start from here.

Example:
    run = load_run("runs/20260101-120000-ml100k")
    run.recommender.recommend("42", k=10)        # the trained model, as `tfrec.run` returned it
"""
import dataclasses
import hashlib
import json
import pathlib

import numpy as np

from tfrec.errors import ConfigError, DataError, TfrecError

MODEL_DIR = "model"
CHECKPOINT = "weights"  # model/weights.index + model/weights.data-*
RANKER_CHECKPOINT = "ranker"  # model/ranker.index + model/ranker.data-*: the ranking stage's own weights
INFO_FILE = "model.json"
# The parts of each model kind that hold weights. The optimizer is left out on purpose:
# a finished run is served or explained, not resumed, and Adam's slots would triple the bytes.
WEIGHT_PARTS = {"hybrid": ("lookup", "item_tower", "query_tower"), "two_tower": ("query_tower", "candidate_tower")}


@dataclasses.dataclass
class LoadedRun:
    """A run folder brought back to life: the config, the data and its split, the
    fitted features, the trained model with its weights restored, and (hybrid) the
    `Recommender` that `tfrec.run` returned."""

    run_dir: str
    config: object  # RunConfig
    data: object  # RecData
    split: object
    catalogue: object
    model: object
    recommender: object = None  # tfrec.models.recommender.Recommender (hybrid only)
    query_features: object = None  # tfrec.features.query_features.QueryFeatures (hybrid only)
    text_encoder: object = None  # tfrec.text.encoder.BertTextEncoder (hybrid with text)
    text_embeddings: np.ndarray = None
    known: object = None  # train + validation interactions: the histories a test-time query sees
    ranker: object = None  # tfrec.models.ranking.HybridRanker, when the run trained the ranking stage


def _kind(model):
    from tfrec.models.hybrid import HybridRetrieval

    return "hybrid" if isinstance(model, HybridRetrieval) else "two_tower"


_PART_ATTRIBUTES = {"repeat_penalty": "_repeat_raw"}  # a saved part held by another attribute


def _weight_parts(model, kind):
    """WEIGHT_PARTS[kind], + the learned repeat penalty (a model-level variable) when the model has one."""
    extra = ("repeat_penalty",) if kind == "hybrid" and model.repeat_penalty is not None else ()
    return WEIGHT_PARTS[kind] + extra


def _unsaved_variables(model, kind):
    """Names of the model's variables that neither a saved part nor a metric holds: the run
    folder would lose them (a model-level variable added without a part; none expected)."""
    import tensorflow as tf

    kept = {v.ref() for m in model.metrics for v in m.variables}
    for part in _weight_parts(model, kind):
        obj = getattr(model, _PART_ATTRIBUTES.get(part, part))
        kept |= {v.ref() for v in ([obj] if isinstance(obj, tf.Variable) else obj.variables)}
    return [v.name for v in model.variables if v.ref() not in kept]


def _checkpoint(model, kind):
    import tensorflow as tf

    return tf.train.Checkpoint(**{part: getattr(model, _PART_ATTRIBUTES.get(part, part))
                                  for part in _weight_parts(model, kind)})


def _ranker_variables(ranker):
    """The ranker's own variables in creation order: its layers' weights without the
    (separately saved) retrieval model's and without optimizer state."""
    shared = {w.ref() for w in ranker.retrieval.weights} if ranker.retrieval is not None else set()
    shared.update({ranker.blend.ref(), ranker.blend_new.ref()})  # chosen on validation, saved in the info file
    return [w for w in ranker.weights if w.ref() not in shared]


def _ranker_checkpoint(variables, ranker):
    """The ranker's variables, and the (user, item) pairs of its frozen rating base if any."""
    import tensorflow as tf

    extra = {"rating_base_pairs": ranker.rating_base_pairs} if ranker.rating_base_pairs is not None else {}
    return tf.train.Checkpoint(**{f"v{i}": w for i, w in enumerate(variables)}, **extra)


def catalogue_fingerprint(catalogue) -> str:
    """sha256 of the catalogue's user and item ids, in order: the weights' row layout."""
    h = hashlib.sha256()
    for ids in (catalogue.user_ids, catalogue.item_ids):
        h.update("\x1f".join(str(i) for i in ids).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


def save_model(run_dir, model, catalogue=None, ranker=None) -> str:
    """Writes the trained model's weights into `<run_dir>/model/` atomically; returns that path.

    Args:
        run_dir: the run folder (holding, or about to hold, `config.json`).
        model: a trained `HybridRetrieval` or `TwoTowerRetrieval`.
        catalogue: the fitted `Catalogue`; its fingerprint lets `load_run` notice
            that the data changed since the run.
        ranker: the trained `HybridRanker` (ranking stage), saved beside the retrieval
            weights (its frozen or jointly trained retrieval model is `model`).
    """
    import tensorflow as tf

    from tfrec.export.versioning import atomic_dir

    kind = _kind(model)
    unsaved = _unsaved_variables(model, kind)
    if unsaved:
        raise TfrecError(f"Internal: the run folder would not hold the model's variables {unsaved[:5]}; "
                         "list them in `tfrec.cli.artifacts` (WEIGHT_PARTS / _weight_parts).")
    final = pathlib.Path(run_dir) / MODEL_DIR
    with atomic_dir(final) as tmp:
        _checkpoint(model, kind).write(str(tmp / CHECKPOINT))
        info = {"kind": kind, "class": type(model).__name__, "checkpoint": CHECKPOINT,
                "parts": list(_weight_parts(model, kind)), "tensorflow": tf.__version__,
                "catalogue_fingerprint": catalogue_fingerprint(catalogue) if catalogue is not None else None}
        if getattr(model, "has_popularity_prior", False):  # chosen on validation; the counts are recomputed
            info["popularity_prior"] = dict(zip(("weight", "days"), model.popularity_prior))
        c = getattr(model, "cooccurrence", None)  # chosen on validation; EASE is refitted on load
        if c is not None:
            info["cooccurrence"] = {"weight": c.weight, "l2": c.l2, "rank": c.rank, "length": c.length}
        if ranker is not None:
            variables = _ranker_variables(ranker)
            _ranker_checkpoint(variables, ranker).write(str(tmp / RANKER_CHECKPOINT))
            info["ranker"] = {"checkpoint": RANKER_CHECKPOINT, "class": type(ranker).__name__,
                              "rating_mean": float(ranker.rating_mean), "retrieval_blend": float(ranker.blend.numpy()),
                              "retrieval_blend_new": float(ranker.blend_new.numpy()),
                              "variables": [[w.name, list(w.shape), w.dtype.name] for w in variables]}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return str(final)


def read_run_config(run_dir):
    """The resolved `RunConfig` of a run folder (its `config.json`)."""
    from tfrec.config import load_config

    run_dir = pathlib.Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise ConfigError(f"`--run` {run_dir} is not a run folder: it has no config.json. Fix: pass a folder that "
                          "`tfrec run` wrote, e.g. runs/<time>-<name>/.")
    config = load_config(path)
    saved = json.loads(path.read_text())
    if "popularity_days" not in saved.get("ranking", {}):
        # Written before the ranker had popularity features: its ranker was trained without them.
        config = dataclasses.replace(config, ranking=dataclasses.replace(config.ranking, popularity_days=0))
    if "popularity_prior" not in saved.get("model", {}):  # before the retrieval prior: served without it
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, popularity_prior=(0.0,)))
    if "content_prior" not in saved.get("model", {}):  # before the content prior: new items' prior was 0
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, content_prior=False))
    return config


def _build(model, kind, catalogue, split, query_features):
    """Calls each tower once so every variable exists before the weights are read."""
    import tensorflow as tf

    if kind == "two_tower":
        model.query_tower(tf.constant(["?"]))
        model.candidate_tower(tf.constant(["?"]))
        return
    feats = query_features.build(split.train.head(2), context=split.train)
    model.query_embedding({k: tf.constant(v) for k, v in feats.items()}, training=False)
    model.item_embeddings(tf.constant(np.asarray(catalogue.item_ids[:2]).astype(str)), training=False)


def load_run(run_dir, log=None) -> LoadedRun:
    """Rebuilds a run's data, features and trained model from its folder; see the module docstring.

    Raises:
        ConfigError: `run_dir` is not a run folder, or holds no saved model.
        DataError: the data the config points to is no longer the data the model was trained on.
    """
    import pandas as pd

    from tfrec.cli.run import encode_item_texts, prepare

    log = log or (lambda *parts: None)
    run_dir = pathlib.Path(run_dir)
    config = read_run_config(run_dir)
    model_dir = run_dir / MODEL_DIR
    if not (model_dir / INFO_FILE).exists():
        raise ConfigError(f"Run folder {run_dir} has no trained model ({MODEL_DIR}/{INFO_FILE} is missing): it was "
                          "written before tfrec saved model weights, or with `model.kind` that saves none. "
                          "Fix: run `tfrec run` again with this config.")
    info = json.loads((model_dir / INFO_FILE).read_text())
    if info["kind"] != config.model.kind:
        raise ConfigError(f"{model_dir}: saved model kind {info['kind']!r} but config.json says "
                          f"`model.kind` {config.model.kind!r}; the run folder was edited. Fix: re-run `tfrec run`.")
    data, _, split, catalogue = prepare(config, log)
    if info.get("catalogue_fingerprint") and info["catalogue_fingerprint"] != catalogue_fingerprint(catalogue):
        raise DataError(f"The data at `data.source` {config.data.source or config.data.dataset!r} is not the data "
                        f"run {run_dir.name} was trained on (its users/items differ). Fix: point `data.source` "
                        "(or TFREC_DATA) at the original data.")
    known = pd.concat([split.train, split.val], ignore_index=True)
    out = LoadedRun(str(run_dir), config, data, split, catalogue, model=None, known=known)
    if config.model.kind == "hybrid":
        from tfrec.features.query_features import QueryFeatures
        from tfrec.models.factory import build_hybrid
        from tfrec.models.recommender import Recommender

        if config.model.use_text:
            out.text_embeddings, out.text_encoder = encode_item_texts(config, data.items, log)
        else:
            out.text_embeddings = np.zeros((catalogue.n_items, 1), np.float32)
        from tfrec.cli.retrieval_stage import refit_parts

        # As in `tfrec.cli.retrieval_stage.train_hybrid`: fitted on the whole train split (`train.refit`: + validation).
        fitted = refit_parts(config, split)
        model_catalogue = catalogue.refitted(fitted) if fitted is not split.train else catalogue
        out.query_features = QueryFeatures.fit(fitted, data.users, config.data.history_length)
        out.model = build_hybrid(config.model, model_catalogue, data.items, out.text_embeddings, out.query_features,
                                 seed=config.train.seed, text_cfg=config.text)
    else:  # "two_tower" (`ModelConfig` accepts only these two kinds)
        from tfrec.models.two_tower import TwoTowerRetrieval

        m = config.model
        logq = None  # as in `tfrec.cli.retrieval_stage.train_two_tower`
        if m.logq_correction:
            counts = np.asarray(catalogue.item_vocab.counts, np.float64)
            logq = dict(zip(catalogue.item_vocab.values, np.log(counts / counts.sum()).tolist()))
        out.model = TwoTowerRetrieval(catalogue.user_vocab.values, catalogue.item_vocab.values, m.embedding_dim,
                                      item_log_probability=logq, remove_accidental_hits=m.remove_accidental_hits)
    _build(out.model, info["kind"], catalogue, split, out.query_features)
    prefix = str(model_dir / info.get("checkpoint", CHECKPOINT))
    saved_parts = info.get("parts", WEIGHT_PARTS[info["kind"]])
    missing = [p for p in _weight_parts(out.model, info["kind"]) if p not in saved_parts]
    if missing:  # e.g. a run trained with the repeat penalty by a tfrec that did not save it yet
        raise DataError(f"{model_dir} holds no {', '.join(missing)} weights, which the model of "
                        f"{run_dir / 'config.json'} has (saved by an older tfrec). Fix: re-run `tfrec run`.")
    try:
        _checkpoint(out.model, info["kind"]).read(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise DataError(f"The weights in {model_dir} do not fit the model rebuilt from {run_dir / 'config.json'} "
                        f"({e}). The data or tfrec changed since the run. Fix: re-run `tfrec run`.") from e
    if config.model.kind == "hybrid":
        from tfrec.cli.retrieval_stage import with_cold_neighbours
        from tfrec.models.text_profile import with_text_profile

        with_cold_neighbours(out.model, config.model, log=lambda *a: None)  # as after training: from the weights
        with_text_profile(out.model, config.model, lambda *a: None, out.data.items, config.text.template)
        c = info.get("cooccurrence")
        if c:  # as after training: the chosen weight, EASE fitted on everything known
            out.model.set_cooccurrence(known, c["weight"], c["l2"], c["rank"], c["length"])
        if out.model.has_popularity_prior:  # as after training: the chosen prior, counting everything known
            prior = info.get("popularity_prior", {"weight": 0.0, "days": 14})
            out.model.set_popularity_prior(known, prior["weight"], prior["days"])
    if config.model.kind == "hybrid" and info.get("ranker"):
        out.ranker = _load_ranker(info["ranker"], model_dir, out, config, model_catalogue)
    if config.model.kind == "hybrid":
        out.recommender = Recommender(out.model, out.query_features, data.items, out.text_embeddings, known,
                                      text_encoder=out.text_encoder, text_template=config.text.template,
                                      ranker=out.ranker, n_candidates=config.ranking.candidates)
    log(f"loaded: {run_dir} ({info['class']}, weights from {prefix})")
    return out


def _load_ranker(info, model_dir, out, config, catalogue):
    """Rebuilds the ranking stage as `tfrec.cli.ranking_stage.train_ranker` (`refit_ranker`) built
    it, on top of the restored retrieval model with the vocabularies of `catalogue` (the
    retriever's), and restores its weights."""
    import tensorflow as tf

    from tfrec.models.ranking import build_ranker

    ranker = build_ranker(config.ranking, config.model, catalogue, out.data.items, out.text_embeddings,
                          out.query_features, retrieval=out.model, rating_mean=info["rating_mean"],
                          seed=config.train.seed, timestamps=out.data.interactions["timestamp"])
    feats = out.query_features.build(out.split.train.head(2), context=out.split.train)
    cands = np.asarray(out.catalogue.item_ids[:2]).astype(str).astype(object)
    ranker.score({k: tf.constant(v) for k, v in feats.items()}, tf.constant(np.stack([cands, cands])))
    variables = _ranker_variables(ranker)
    # Shapes and dtypes in creation order (names carry Keras's per-process counters).
    saved = [(tuple(v[1]), v[2]) for v in info["variables"]]
    rebuilt = [(tuple(w.shape), w.dtype.name) for w in variables]
    if saved != rebuilt:
        i = next((i for i, (a, b) in enumerate(zip(saved, rebuilt)) if a != b), min(len(saved), len(rebuilt)))
        raise DataError(f"The ranker weights in {model_dir} do not fit the ranker rebuilt from config.json: "
                        f"{len(saved)} saved vs {len(rebuilt)} rebuilt variables, first difference at #{i} "
                        f"({info['variables'][i][0] if i < len(saved) else 'none'}). tfrec or the config changed "
                        "since the run. Fix: re-run `tfrec run`.")
    _ranker_checkpoint(variables, ranker).read(str(model_dir / info["checkpoint"])).assert_existing_objects_matched()
    ranker.blend.assign(info.get("retrieval_blend", 0.0))
    ranker.blend_new.assign(info.get("retrieval_blend_new", info.get("retrieval_blend", 0.0)))  # before session 26
    return ranker
