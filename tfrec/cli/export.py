"""`tfrec export`: a trained model -> `<root>/<name>/<version>/` for stock TF Serving.

`tfrec run` calls `export_model` at its end; `tfrec export --run RUN_DIR` (and
`export_run` from Python) rebuilds a finished run's model from its folder
(`tfrec.cli.artifacts.load_run`) and exports it again, e.g. as a new version, to
another model name, or with the k-means index:

    tfrec export --run runs/20260101-120000-ml100k                     # next free version
    tfrec export --run runs/20260101-120000-ml100k --export.index=kmeans --export.name=ml100k_ann
    tfrec export --run runs/20260101-120000-ml100k --version 7         # refused if 7 exists

Versions are integers, written to a hidden temporary folder and renamed into place
(`tfrec.export.versioning`): an existing version is never overwritten and a killed
export leaves the earlier versions as they were.
"""
import pathlib

import numpy as np

from tfrec.errors import ConfigError


def export_model(config, model, *, data, split, catalogue, query_features=None, text_encoder=None,
                 item_embeddings=None, known=None, version=None, ranker=None, log=print) -> str:
    """Exports a trained model with `config.export`'s settings; returns `<root>/<name>/<version>`.

    Args:
        config: the run's `RunConfig` (`export` section: root, name, k, index, probes, partitions).
        model: a trained `HybridRetrieval` (`model.kind` hybrid) or `TwoTowerRetrieval`.
        data, split, catalogue: the run's data, split and fitted catalogue.
        query_features: the fitted `QueryFeatures` (hybrid).
        text_encoder: the item-text BERT (hybrid with text): served as `encode_items`.
        item_embeddings: the catalogue's embeddings in `catalogue.item_ids` order;
            computed from the model when None.
        known: interactions known at test time (histories of the warm-up request);
            default train + validation.
        version: an integer version; default the next free one. Never overwrites.
        ranker: the trained `HybridRanker` (hybrid), served as `rank`; `serving_default` and
            `recommend` then retrieve `ranking.candidates` items and return the ranker's top k.

    A hybrid export also serves `explain` (history leave-one-out and attribute occlusion
    for one item per query, `tfrec.explain.serving`).
    """
    import pandas as pd
    import tensorflow as tf

    from tfrec.export.retrieval import export_retrieval

    e = config.export
    index_params = {"probes": e.probes, **({"partitions": e.partitions} if e.partitions else {})}
    if config.model.kind == "two_tower":
        if item_embeddings is None:
            item_embeddings = model.candidate_tower(tf.constant(catalogue.item_ids.astype(str))).numpy()
        path = export_retrieval(model.query_tower, catalogue.item_ids, item_embeddings, root=e.root, name=e.name,
                                k=e.k, version=version)
    else:  # "hybrid" (`ModelConfig` accepts only these two kinds)
        from tfrec.models.serving import hybrid_serving_parts

        if known is None:
            known = pd.concat([split.train, split.val], ignore_index=True)
        if item_embeddings is None:
            from tfrec.models.scoring import HybridScorer

            item_embeddings = HybridScorer(model, query_features, known, catalogue.item_ids).item_embeddings
        query_model, qspec, item_encoder, ispec = hybrid_serving_parts(
            model, query_features, data.items, text_encoder, config.text.template)
        # Warm-up requests from a real test query, so TF Serving warms realistic shapes.
        example = query_features.build(split.test.head(1), context=known)
        for name, spec in (ispec or {}).items():  # and a real catalogue item for encode_items
            value = data.items[name].iloc[:1]
            example[name] = (value.astype(str).to_numpy(dtype=object) if spec.dtype == tf.string
                             else value.astype(np.float32).to_numpy())
        from tfrec.explain.serving import hybrid_explainer

        # `explain`: leave-one-out history and attribute occlusion, in-graph (tfrec.explain.serving).
        explainer = hybrid_explainer(model, query_features, catalogue.item_ids, item_embeddings)
        ranker_model = None
        if ranker is not None:
            from tfrec.models.serving import HybridRankerModel

            ranker_model = HybridRankerModel(ranker, query_features.history_length)
        path = export_retrieval(query_model, qspec, catalogue.item_ids, item_embeddings,
                                item_encoder=item_encoder, item_encoder_spec=ispec, k=e.k, ranker=ranker_model,
                                explainer=explainer,
                                retrieve_k=config.ranking.candidates, two_stage=ranker is not None,
                                example_inputs=example,
                                index=e.index, index_params=index_params if e.index == "kmeans" else None,
                                root=e.root, name=e.name, version=version,
                                repeat_penalty=None if model.repeat_penalty is None else
                                (float(model.repeat_penalty), query_features.history_length))
    log(f"export: {path}  (signatures: serving_default, recommend, retrieve, encode_query"
        f"{', encode_items' if config.model.kind == 'hybrid' and text_encoder is not None else ''}"
        f"{', rank' if ranker is not None else ''}{', explain' if config.model.kind == 'hybrid' else ''})")
    return path


def _check_version(version, root, name):
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, (int, np.integer, str)) or \
            not str(version).isdigit() or int(version) < 1:
        raise ConfigError(f"`--version` must be a positive integer (TF Serving's version folders), got {version!r}.")
    version = int(version)
    target = pathlib.Path(root) / name / str(version)
    if target.exists():
        raise ConfigError(f"Export version {target} already exists; tfrec never overwrites a version. Fix: omit "
                          "`--version` to get the next free one, or pick another number.")
    return version


def export_config(run_config, overrides=(), **export):
    """The run's config with its `export` section overridden (`--export.key=value` strings or keywords)."""
    from tfrec.config import load_config

    overrides = list(overrides) + [f"--export.{k}={v}" for k, v in export.items() if v is not None]
    for raw in overrides:
        key = (raw[2:] if raw.startswith("--") else raw).split("=", 1)[0]
        if not key.startswith("export."):
            raise ConfigError(f"`tfrec export` takes `--export.<key>=value` overrides only, got {raw!r}: the model "
                              "was trained with the run's config.json. Fix: drop it, or train again with `tfrec run`.")
    return load_config(None, overrides, base=run_config)


def export_run(run, *, version=None, overrides=(), log=None, **export) -> str:
    """Exports a finished run's trained model; returns `<root>/<name>/<version>`.

    Args:
        run: a run folder written by `tfrec run`, or a `tfrec.cli.artifacts.LoadedRun`.
        version: an integer version; default the next free one. An existing version
            is refused before anything is loaded.
        overrides: `--export.key=value` strings, as on the command line.
        **export: `export` section values, e.g. `root="saved_models"`, `name="ml100k_ann"`,
            `index="kmeans"`, `probes=16`, `k=50`.

    Example:
        path = export_run("runs/20260101-120000-ml100k", index="kmeans", name="ml100k_ann")
    """
    from tfrec.cli.artifacts import LoadedRun, load_run, read_run_config

    log = log or print
    loaded = run if isinstance(run, LoadedRun) else None
    run_config = loaded.config if loaded is not None else read_run_config(run)
    config = export_config(run_config, overrides, **export)
    version = _check_version(version, config.export.root, config.export.name)
    if loaded is None:
        log(f"export: rebuilding the trained model of {run}")
        loaded = load_run(run, log=log)
    return export_model(config, loaded.model, data=loaded.data, split=loaded.split, catalogue=loaded.catalogue,
                        query_features=loaded.query_features, text_encoder=loaded.text_encoder, known=loaded.known,
                        ranker=loaded.ranker, version=version, log=log)
