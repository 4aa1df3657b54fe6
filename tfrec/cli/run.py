"""The main job: load -> split -> fit features -> train -> evaluate -> export.

`tfrec run` (and `tfrec.run(config)` from Python) writes everything into its own
run folder `runs/<time>-<name>/` (config.json, the trained weights in model/,
metrics.json, metrics.md, run.log, TensorBoard logs), built in a temporary folder
and renamed at the end, so a killed run leaves nothing half-written.
"""
import dataclasses
import datetime
import json
import pathlib
import sys
import time

import numpy as np
import pandas as pd

from tfrec.cli.retrieval_stage import train_hybrid, train_joint, train_two_tower
from tfrec.config import RunConfig
from tfrec.errors import ConfigError, DataError


@dataclasses.dataclass
class RunResult:
    """What `run` returns: the metrics (as in metrics.json) and the live objects."""

    metrics: dict
    model: object
    catalogue: object
    split: object
    data: object
    run_dir: str
    export_path: str = None
    recommender: object = None  # a `tfrec.models.recommender.Recommender` for the hybrid model


class _Tee:
    """Prints to the console and to the run log."""

    def __init__(self, path):
        self.fh = open(path, "a", encoding="utf-8")

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()

    def close(self):
        self.fh.close()


def load_data(cfg):
    """`data` config -> RecData (a registered/MovieLens source, or your own tables)."""
    from tfrec.data.loaders import load_dataset

    if cfg.schema:
        from tfrec.data.tables import load_tables

        if not cfg.source:
            raise DataError("`data.schema` is set, so `data.source` must name your interactions file.")
        return load_tables(cfg.source, items=cfg.items, users=cfg.users, schema=cfg.schema)
    return load_dataset(cfg.source or cfg.dataset)


def prepare(config: RunConfig, log=print):
    """Loads, filters and splits the data; fits the catalogue on train."""
    from tfrec.data.splits import make_split
    from tfrec.features.catalogue import Catalogue

    data = load_data(config.data)
    log(f"data: {data!r} from {data.source}")
    ia = data.interactions
    if config.data.min_rating is not None:
        if "rating" not in ia.columns:
            raise DataError("`data.min_rating` is set but the interactions have no `rating` column.")
        ia = ia[ia["rating"] >= config.data.min_rating].reset_index(drop=True)
    s = config.split
    if config.eval.protocol:
        from tfrec.evaluation.protocols import get_protocol

        protocol = get_protocol(config.eval.protocol)
        ia = protocol.interactions(ia)
        split = protocol.make_split(ia)
        log(f"protocol: {protocol.name}: {protocol.title}")
    else:
        split = make_split(ia, s.kind, val_fraction=s.val_fraction, test_fraction=s.test_fraction,
                           n_last=s.n_last, cold_item_fraction=s.cold_item_fraction, seed=s.seed)
    summ = split.summary()
    log(f"split: {split.kind}: train {summ['train']['interactions']:,} / val {summ['val']['interactions']:,} / "
        f"test {summ['test']['interactions']:,} interactions; {summ['test_users_not_in_train']} test users unseen in train")
    catalogue = Catalogue.fit(data.items, split.train, ia, data.users)
    return data, ia, split, catalogue


def encode_item_texts(config: RunConfig, items, log=print):
    """Catalogue text embeddings through BERT, encoded once and cached on disk."""
    from tfrec.text.cache import TextEmbeddingCache
    from tfrec.text.encoder import BertTextEncoder
    from tfrec.text.template import item_texts

    t = config.text
    texts = item_texts(items, t.template)
    encoder = BertTextEncoder(t.preset, sequence_length=t.sequence_length, pooling=t.pooling)
    cache = TextEmbeddingCache(t.cache_dir)
    start = time.perf_counter()
    emb = cache.encode(encoder, texts, batch_size=t.batch_size)
    log(f"text: {len(texts):,} item texts through {t.preset} ({encoder.num_layers} layers, {encoder.output_dim}-d), "
        f"{'cache hit' if cache.hits else 'encoded and cached'} in {time.perf_counter() - start:.1f} s; "
        f"e.g. {texts[0]!r}")
    if t.finetune != "frozen":
        log(f"text: fine-tuning ({t.finetune}"
            f"{f', top {t.trainable_layers} layer(s)' if t.finetune == 'top_n' else ', all layers'}): the item tower "
            "runs BERT on the distinct items of each batch; the cached embeddings are not used in training")
    return emb, encoder


def run(config: RunConfig = None, *, log=None) -> RunResult:
    """Runs the main job; returns a `RunResult` (metrics also in metrics.json)."""
    import tensorflow as tf

    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.export.versioning import atomic_dir

    config = config or RunConfig()
    _check_refit(config)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    final_dir = pathlib.Path(config.run_root) / f"{stamp}-{config.name}"
    if config.train.strategy == "multi_worker":
        from tfrec.training.strategy import make_strategy

        # First: the strategy configures the collective runtime, which must precede any TF op.
        make_strategy("multi_worker", collective_timeout_s=config.train.collective_timeout_s)
    from tfrec.training.multi_worker import worker_scratch

    # A multi-worker job's other workers run the same steps (the same collectives) but
    # write their run folder and export into a temporary folder, deleted at the end.
    scratch = worker_scratch(config.train.strategy)
    if scratch is not None:
        final_dir = pathlib.Path(scratch.name) / final_dir.name
    started = time.perf_counter()
    with atomic_dir(final_dir) as run_dir:
        tee = _Tee(run_dir / "run.log")
        log = log or tee
        try:
            (run_dir / "config.json").write_text(config.to_json())
            data, ia, split, catalogue = prepare(config, log)
            log_dir = str(run_dir / "tensorboard")
            recommender = None
            if config.model.kind == "two_tower":
                model, history, train_secs = train_two_tower(config, split, catalogue, log, log_dir)
                user_emb = model.query_tower(tf.constant(catalogue.user_ids.astype(str))).numpy()
                item_emb = model.candidate_tower(tf.constant(catalogue.item_ids.astype(str))).numpy()
                label, query_features = "tfrec two-tower (ids)", None
                evaluated = (user_emb, item_emb)
            else:  # "hybrid" (`ModelConfig` accepts only these two kinds)
                from tfrec.models.scoring import HybridScorer

                from tfrec.models.recommender import Recommender

                text_emb, text_encoder = encode_item_texts(config, data.items, log) if config.model.use_text else \
                    (np.zeros((catalogue.n_items, 1), np.float32), None)
                ranker = ranking_info = None
                ranking_on = config.ranking.enabled
                if ranking_on:
                    from tfrec.evaluation.protocols import query_history_for

                    if query_history_for(config.eval) != "before_event":
                        # The ranker is trained and evaluated on queries at an event's time; a
                        # protocol asking whole-profile queries would rank with mismatched inputs.
                        ranking_on = False
                        log(f"rank: skipped: `eval.protocol={config.eval.protocol}` asks profile queries, and the "
                            "ranking stage is trained on before-event queries (set `--ranking.enabled=false` to "
                            "silence this)")
                if ranking_on and config.ranking.mode == "joint":
                    model, history, train_secs, query_features, ranker, ranking_info = train_joint(
                        config, data, split, catalogue, text_emb, log, log_dir)
                else:
                    model, history, train_secs, query_features, ranker, ranking_info = train_separately(
                        config, data, split, catalogue, text_emb, ranking_on, log, log_dir)
                # Test queries see everything known before the test period (train + validation).
                known = pd.concat([split.train, split.val], ignore_index=True)
                scorer = HybridScorer(model, query_features, known, catalogue.item_ids)
                user_emb, item_emb = scorer.user_matrix(catalogue, split.test), scorer.item_embeddings
                label = "tfrec hybrid"
                evaluated = scorer if config.eval.protocol else (user_emb, item_emb)
                if model.repeat_penalty is not None and not config.eval.protocol and not config.eval.exclude_seen:
                    log("evaluate: user vectors cannot carry the repeat penalty, and seen items are kept: the "
                        "table is without it (name an `eval.protocol` to score queries with it)")
                recommender = Recommender(model, query_features, data.items, text_emb, known,
                                          text_encoder=text_encoder, text_template=config.text.template,
                                          ranker=ranker, n_candidates=config.ranking.candidates)
            from tfrec.cli.artifacts import save_model

            # run_dir/model/ (retrieval and ranker weights): `tfrec.cli.artifacts.load_run` rebuilds them
            save_model(run_dir, model, catalogue, ranker=ranker if config.model.kind == "hybrid" else None)
            protocol = None
            if config.eval.protocol:
                from tfrec.evaluation.protocols import get_protocol

                protocol = get_protocol(config.eval.protocol)
            from tfrec.cli.evaluate import EVALUATE_GRIDS  # bounded grids, as `tfrec evaluate` uses

            models, compare = {label: evaluated}, ()
            if config.model.kind == "hybrid" and ranker is not None:
                from tfrec.cli.ranking_stage import two_stage_for_test

                models["tfrec two-stage"] = two_stage_for_test(model, ranker, query_features, known, split,
                                                               catalogue, config.eval, config.ranking.candidates,
                                                               protocol=protocol)
                compare = [("tfrec two-stage", label)]
            report = evaluate_models(models, data, split, catalogue, config.eval, protocol=protocol,
                                     out_dir=run_dir, log=log, item_embeddings={label: item_emb,
                                                                               "tfrec two-stage": item_emb},
                                     history_length=config.data.history_length, grids=EVALUATE_GRIDS,
                                     compare=compare)
            if config.model.kind == "hybrid" and ranker is not None:
                from tfrec.cli.ranking_stage import evaluate_rating_stage
                from tfrec.cli.retrieval_stage import early_stopping_parts

                # The baseline is tuned on the interactions the ranker's rating base was tuned on.
                parts = early_stopping_parts(split, config.ranking.early_stopping_patience, config.train.seed,
                                             log=lambda *a: None)
                report["ranking"] = {"train": ranking_info,
                                     "ratings": evaluate_rating_stage(ranker, query_features, split, known,
                                                                      n_boot=config.eval.n_bootstrap,
                                                                      seed=config.eval.seed, log=log,
                                                                      tuning_parts=parts)}
            if len(split.cold_items):
                from tfrec.evaluation.cold_start import evaluate_cold_items

                from tfrec.evaluation.cold_start import cold_queries

                # Every model knows the same of each user: train + validation (the baselines fold
                # it in; the hybrid is asked just after the user's last known event).
                cold_events, cold_history = cold_queries(split, "known")
                cold_users = user_emb
                if config.model.kind == "hybrid":
                    cold_users = scorer.user_matrix(catalogue, cold_events)
                log(f"evaluate: cold-start, {len(split.cold_items)} held-out items ranked among themselves")
                report["cold_start"] = evaluate_cold_items({label: (cold_users, item_emb)}, data, split, catalogue,
                                                           config.eval, log=log, history=cold_history)
            metrics = {"config": config.to_dict(), "split": split.summary(), "data": data.summary(),
                       "train": {"seconds": train_secs, "mean_batch_loss": history.get("mean_batch_loss"),
                                 "validation": history.get("validation"),
                                 "popularity_prior": history.get("popularity_prior"),
                                 "cooccurrence": history.get("cooccurrence"), "refit": history.get("refit"),
                                 "repeat_penalty": history.get("repeat_penalty")}, **report}
            if config.export.enabled:
                from tfrec.cli.export import export_model

                export_cfg = config if scratch is None else dataclasses.replace(config, export=dataclasses.replace(
                    config.export, root=str(pathlib.Path(scratch.name) / "saved_models")))  # non-chief: scratch
                metrics["export_path"] = export_model(
                    export_cfg, model, data=data, split=split, catalogue=catalogue, query_features=query_features,
                    text_encoder=text_encoder if config.model.kind == "hybrid" else None, item_embeddings=item_emb,
                    known=known if config.model.kind == "hybrid" else None,
                    ranker=ranker if config.model.kind == "hybrid" else None, log=log)
            metrics["wall_seconds"] = time.perf_counter() - started
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
            log(f"\nrun folder: {final_dir}  (config.json, model/, metrics.json, metrics.md, plots, run.log)")
            log(f"wall time: {metrics['wall_seconds']:.1f} s")
        finally:
            tee.close()
    if scratch is not None:  # (after a failure, TemporaryDirectory removes it at exit)
        scratch.cleanup()
    return RunResult(metrics, model, catalogue, split, data, str(final_dir), metrics.get("export_path"), recommender)


def train_separately(config, data, split, catalogue, text_emb, ranking_on, log=print, log_dir=None):
    """The hybrid retriever (`train_hybrid`), then with `ranking_on` the ranker on it (`train_ranker`).
    With `train.refit`, both are chosen on validation first, then the retriever is refitted on
    train + validation (`refit_hybrid`) and the ranker, if any, on the refitted retriever
    (`refit_ranker`). Returns (model, history, seconds, query features, ranker, ranker info)."""
    from tfrec.cli.ranking_stage import refit_ranker, train_ranker
    from tfrec.cli.retrieval_stage import refit_hybrid

    model, history, secs, query_features = train_hybrid(config, data, split, catalogue, text_emb, log, log_dir)
    ranker = info = None
    if ranking_on:
        ranker, info = train_ranker(config, data, split, catalogue, text_emb, model, query_features, log, log_dir)
    if config.train.refit and history.get("validation"):
        model, query_features, history["refit"] = refit_hybrid(config, data, split, catalogue, text_emb, model,
                                                               history, log, log_dir)
        secs += history["refit"]["seconds"]
        if model.repeat_penalty is not None:
            history["repeat_penalty"] = float(model.repeat_penalty)
        if ranker is not None:
            ranker, info["refit"] = refit_ranker(config, data, split, catalogue, text_emb, model, query_features,
                                                 ranker, info, log, log_dir)
    return model, history, secs, query_features, ranker, info


def _check_refit(config):
    """`train.refit` is for the hybrid retriever and a separately trained ranker (before any data is read)."""
    if not config.train.refit:
        return
    if config.model.kind != "hybrid":
        raise ConfigError("`train.refit` refits the hybrid model; the two-tower is not refitted. Fix: drop it.")
    from tfrec.evaluation.protocols import query_history_for

    if config.ranking.enabled and config.ranking.mode == "joint" and query_history_for(config.eval) == "before_event":
        raise ConfigError("`train.refit` refits the retriever, then a separately trained ranker on it; "
                          "`ranking.mode=joint` trains both as one model. Fix: add `--ranking.mode=separate` or "
                          "`--ranking.enabled=false`.")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pathlib.Path):
        return str(o)
    raise TypeError(type(o))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
