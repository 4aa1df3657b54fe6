"""The retrieval stage of the main job: the id two-tower or the hybrid model trained
with the run's config (distribution strategy, checkpoints with resume, early stopping
on full-catalogue validation), or retrieval and ranking trained jointly.

`tfrec.cli.run` calls these after loading and splitting the data; benchmarks call
them directly.
"""
import pathlib

import numpy as np
import pandas as pd

from tfrec.config import RunConfig


def early_stopping_parts(split, patience, seed, log=print, stage="train"):
    """(fit part, validation part) of the train data for early stopping: train and the
    validation split, or, without a validation split (the tfrs_tutorial protocol), a
    seeded 10% slice of train (never test), the model then fitting the rest."""
    if len(split.val) or patience <= 0:
        return split.train, split.val
    from tfrec.evaluation.protocols import carve_slice

    fit_part, val_part = carve_slice(split.train, 0.1, seed)
    log(f"{stage}: no validation split; early stopping on a seeded 10% slice of train ({len(val_part):,} events)")
    return fit_part, val_part


def validation_excludes_seen(eval_cfg) -> bool:
    """Whether validation removes the train items from each ranking: as the named
    protocol's test does (its `exclude`), else always."""
    if not eval_cfg.protocol:
        return True
    from tfrec.evaluation.protocols import get_protocol

    return bool(get_protocol(eval_cfg.protocol).exclude)


def _fit(model_fn, ds, config, log, log_dir, callbacks=()):
    from tfrec.training.strategy import make_strategy
    from tfrec.training.trainer import train

    t = config.train
    strategy = make_strategy(t.strategy, collective_timeout_s=t.collective_timeout_s)
    names = {"_DefaultDistributionStrategy": "default strategy (no GPU)",
             "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy"}
    log(f"train: {config.model.kind}, dim {config.model.embedding_dim}, up to {t.epochs} epochs, batch {t.batch_size}, "
        f"{names.get(type(strategy).__name__, type(strategy).__name__)} "
        f"over {strategy.num_replicas_in_sync} replica(s)")
    ckpt_dir = t.checkpoint_dir
    if ckpt_dir is None:  # stable across restarts (the run folder is renamed into place only at the end)
        import hashlib

        digest = hashlib.sha1(config.to_json().encode("utf-8")).hexdigest()[:12]
        ckpt_dir = str(pathlib.Path(config.run_root) / "checkpoints" / f"{config.name}-{digest}")
    if t.data_service:
        from tfrec.training.multi_worker import through_data_service

        ds = through_data_service(ds, config, strategy, log)
    model, history, secs = train(model_fn, ds, strategy=strategy, epochs=t.epochs, optimizer=t.optimizer,
                                 learning_rate=t.learning_rate, seed=t.seed, verbose=t.verbose, log_dir=log_dir,
                                 callbacks=callbacks, checkpoint_dir=ckpt_dir, resume=t.resume, log=log,
                                 steps_per_execution=t.steps_per_execution)
    from tfrec.training.multi_worker import is_chief

    if t.checkpoint_dir is None and is_chief(strategy):  # finished: the default checkpoints were only to resume
        import shutil

        shutil.rmtree(ckpt_dir, ignore_errors=True)
        try:
            pathlib.Path(ckpt_dir).parent.rmdir()  # runs/checkpoints/, when no other run is resumable
        except OSError:
            pass
    curve = history.get("mean_batch_loss", history["loss"])
    log(f"train: {len(curve)} epochs in {secs:.1f} s, mean batch loss {curve[0]:.1f} -> {curve[-1]:.1f}")
    return model, history, secs


def train_two_tower(config: RunConfig, split, catalogue, log=print, log_dir=None):
    """The id-only two-tower (TFRS tutorial architecture with logQ and accidental-hit removal)."""
    from tfrec.data.pipeline import interaction_features, make_dataset
    from tfrec.models.two_tower import TwoTowerRetrieval

    m, t = config.model, config.train
    logq = None
    if m.logq_correction:
        counts = np.asarray(catalogue.item_vocab.counts, np.float64)
        logq = dict(zip(catalogue.item_vocab.values, np.log(counts / counts.sum()).tolist()))
    ds = make_dataset(interaction_features(split.train, columns=["user_id", "item_id"]), t.batch_size,
                      seed=t.seed, shuffle_buffer=t.shuffle_buffer)
    return _fit(lambda: TwoTowerRetrieval(catalogue.user_vocab.values, catalogue.item_vocab.values, m.embedding_dim,
                                          item_log_probability=logq,
                                          remove_accidental_hits=m.remove_accidental_hits),
                ds, config, log, log_dir)


def train_hybrid(config: RunConfig, data, split, catalogue, text_embeddings, log=print, log_dir=None):
    """The hybrid model; early stopping on full-catalogue validation recall@20, then the
    post-training choices on validation (`train.refit` is `tfrec.cli.run.train_separately`'s,
    which calls `refit_hybrid` after this). Returns (model, history, seconds, query features)."""
    import tensorflow as tf

    from tfrec.features.query_features import QueryFeatures
    from tfrec.models.text_profile import with_text_profile

    t = config.train
    qf = QueryFeatures.fit(split.train, data.users, config.data.history_length)
    fit_part, val_part = early_stopping_parts(split, t.early_stopping_patience, t.seed, log, "train")
    callbacks = []
    validation = None
    if len(val_part) and t.early_stopping_patience > 0:
        validation = retrieval_validation(config, qf, fit_part, val_part, catalogue, log)
        callbacks = [validation, tf.keras.callbacks.EarlyStopping(
            monitor="val_recall@20", mode="max", patience=t.early_stopping_patience, restore_best_weights=True)]
    model, history, secs = _fit_hybrid(config, data, fit_part, catalogue, text_embeddings, qf, log, log_dir,
                                       callbacks)
    if validation is not None:
        best = max(validation.history, key=lambda h: h["val_recall@20"])
        log(f"train: best validation recall@20 {best['val_recall@20']:.4f} at epoch {best['epoch']} (weights restored)")
        history["validation"] = validation.history
    with_cold_neighbours(model, config.model, log)  # before the prior is chosen: the vectors it is chosen with
    with_text_profile(model, config.model, log, data.items, config.text.template)
    history["cooccurrence"] = tune_cooccurrence(model, config.model, fit_part, validation, log)
    if model.has_popularity_prior:
        history["popularity_prior"] = tune_popularity_prior(model, config.model, fit_part, validation, log)
    with_popularity_prior(model, split.train, split.val)  # test and serving: everything known
    if model.repeat_penalty is not None:
        history["repeat_penalty"] = float(model.repeat_penalty)
        log(f"train: learned repeat penalty {history['repeat_penalty']:.3f} (a query's history items score that much "
            "lower, in cosine units)")
    return model, history, secs, qf


def _fit_hybrid(config, data, fit_part, catalogue, text_embeddings, qf, log, log_dir, callbacks=(), profiles=None):
    """A fresh hybrid model (`build_hybrid`: vocabularies from `catalogue`) trained on `fit_part`."""
    from tfrec.data.pipeline import make_dataset
    from tfrec.models.factory import build_hybrid

    t = config.train
    feats = training_features(config, fit_part, catalogue, qf, profiles, log)
    # Full batches only: a ragged last batch would also shrink the in-batch negatives.
    ds = make_dataset(feats, t.batch_size, seed=t.seed, shuffle_buffer=t.shuffle_buffer, drop_remainder=True)
    return _fit(lambda: build_hybrid(config.model, catalogue, data.items, text_embeddings, qf, seed=t.seed,
                                     text_cfg=config.text), ds, config, log, log_dir, callbacks)


def training_features(config, fit_part, catalogue, qf, profiles=None, log=print):
    """The hybrid's training examples (name -> array), one per row of `fit_part`: its query
    features at the event (before-event histories from `fit_part`), or under a protocol with
    profile queries the user's profile in `profiles` (default: `fit_part`) without the row's
    item, asked at its end; item ids as rows of `catalogue`'s lookup."""
    from tfrec.evaluation.protocols import query_history_for
    from tfrec.models.hybrid import catalogue_rows
    from tfrec.models.factory import query_tower_for

    feats = qf.build(fit_part, context=fit_part)
    if query_history_for(config.eval) == "profile":
        # Trained as it is asked: the user's whole profile at its end, without the target.
        from tfrec.data.history import profile_histories, profile_times

        profiles = fit_part if profiles is None else profiles
        feats["history"] = profile_histories(fit_part, qf.history_length, context=profiles)
        feats["timestamp"] = profile_times(fit_part["user_id"], profiles)
        log(f"train: profile queries (history: the user's latest {qf.history_length} other train items)")
    feats["item_id"] = fit_part["item_id"].astype(str).to_numpy(dtype=object)
    # The query tower's lookups, buckets and time features computed once here instead of in every
    # step: the same values.
    feats.update(query_tower_for(config.model, catalogue, qf).precomputed_inputs(feats))
    # Item ids as rows of the model's catalogue lookup: the same loss, integer work per step.
    return catalogue_rows(feats, catalogue.item_ids)


def refit_parts(config, split):
    """The interactions the final hybrid model was trained on (`load_run` rebuilds its
    vocabularies and query features from them): `split.train`, or with `train.refit` train +
    validation (early stopping's two parts: the validation split, or without one, the slice
    of train it was carved from)."""
    from tfrec.evaluation.queries import split_parts

    if not config.train.refit or config.train.early_stopping_patience <= 0:
        return split.train
    return split_parts(split, ("train", "val"))


def refit_hybrid(config, data, split, catalogue, text_embeddings, chosen, history, log=print, log_dir=None):
    """`train.refit`: a fresh hybrid model trained on train + validation (early stopping's fit
    and validation parts; `refit_parts`) for the epoch count early stopping chose, with no validation
    left to stop on; the choices made on validation with `chosen` (cold neighbours and
    text profile settings, the co-occurrence weight, the popularity prior's weight and
    window) carried over, the blocks fitted on those parts. Its vocabularies and item
    counts (logQ) are theirs (`Catalogue.refitted`), and so are its query features (the
    time features' end of training included). Under a protocol with profile queries the
    training profiles are built from the parts its test queries know (`recbole_general`:
    train), so a validation item is a target there but never part of a profile, as at test.
    Returns (model, query features, info)."""
    import dataclasses

    from tfrec.evaluation.protocols import get_protocol, query_history_for
    from tfrec.evaluation.queries import split_parts
    from tfrec.features.query_features import QueryFeatures
    from tfrec.models.text_profile import with_text_profile

    known = split_parts(split, ("train", "val"))  # = refit_parts with `train.refit` on
    epochs = int(max(history["validation"], key=lambda h: h["val_recall@20"])["epoch"])
    cfg = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs, refit=False,
                                                                early_stopping_patience=0))
    log(f"refit: a fresh model on train + validation ({len(known):,} interactions) for {epochs} epoch(s), the "
        "best on validation, with the choices made there")
    qf = QueryFeatures.fit(known, data.users, config.data.history_length)
    profiles = None
    if query_history_for(config.eval) == "profile":  # (profile queries need a named protocol)
        profiles = split_parts(split, get_protocol(config.eval.protocol).known)
    model, refit_history, secs = _fit_hybrid(cfg, data, known, catalogue.refitted(known), text_embeddings, qf, log,
                                             None if log_dir is None else str(pathlib.Path(log_dir) / "refit"),
                                             profiles=profiles)
    with_cold_neighbours(model, config.model, log=lambda *a: None)
    with_text_profile(model, config.model, lambda *a: None, data.items, config.text.template)
    c = chosen.cooccurrence
    if c is not None:
        model.set_cooccurrence(known, c.weight, c.l2, c.rank, c.length)
    if chosen.has_popularity_prior:
        model.set_popularity_prior(known, *chosen.popularity_prior)
    curve = refit_history.get("mean_batch_loss", refit_history["loss"])
    return model, qf, {"epochs": epochs, "interactions": int(len(known)), "seconds": secs,
                       "mean_batch_loss": [float(v) for v in curve]}


def with_cold_neighbours(model, model_cfg, log=print):
    """Items without a trained id get mixed with their nearest trained items (`model.cold_neighbours`);
    skipped, with a log line, where the model cannot (fine-tuned text, no item ids)."""
    from tfrec.errors import ConfigError
    from tfrec.models.cold_neighbours import neighbour_settings

    settings = neighbour_settings(model_cfg)
    if settings is None:
        return
    try:
        model.set_cold_neighbours(**settings)
    except ConfigError as e:
        log(f"cold items: tower vectors only ({e})")
        return
    n = len(model.lookup.item_ids) - len(set(model.lookup.item_ids) & set(model.item_tower.item_vocabulary))
    log(f"cold items: {n} catalogue items without a trained id are placed by their {settings['k']} nearest trained "
        "items")


def retrieval_validation(config, query_features, fit_part, val_part, catalogue, log=print):
    """The retriever's full-catalogue validation (an early-stopping callback, also what
    the popularity prior is chosen on), as the run's protocol asks its queries."""
    from tfrec.evaluation.protocols import SELECT_METRIC, get_protocol, query_history_for
    from tfrec.models.scoring import FullCatalogueValidation

    metric = get_protocol(config.eval.protocol).select_metric if config.eval.protocol else SELECT_METRIC
    return FullCatalogueValidation(query_features, fit_part, val_part, catalogue, k=20, log=log,
                                   exclude_seen=validation_excludes_seen(config.eval),
                                   query_history=query_history_for(config.eval), select_metric=metric)


def tune_popularity_prior(model, model_cfg, fit_part, validation, log=print):
    """Chooses the popularity prior's (weight, days) among `model.popularity_prior` x
    `model.popularity_prior_days` by `validation.select_metric` (the run's protocol's
    selection metric, as the baselines are tuned; NDCG@10 under tfrec's default), counts
    from `fit_part`; of equals, the first in (days, weight) order. Without validation the
    prior stays off. Sets it on `model` and returns {"weight", "days", "metric", "trials"}."""
    days = sorted(set(model_cfg.popularity_prior_days))
    model.set_popularity_prior(fit_part, 0.0, days[0])  # the model's own scores (prior column 0)
    if validation is None:
        log("train: no validation to choose the popularity prior on: off")
        return {"weight": 0.0, "days": days[0], "trials": []}
    metric = validation.select_metric
    key = f"val_{metric}"
    trials = _prior_trials(validation, model, _prior_candidates(model, model_cfg, fit_part, validation),
                           validation.vectors(model))
    best = max(trials, key=lambda t: t[key])  # the first of equals
    model.set_popularity_prior(fit_part, best["weight"], best["days"])
    off = trials[0][key]
    window = f"{best['days']} days" if best["days"] else "all time"
    log(f"train: popularity prior chosen on validation {metric}: weight {best['weight']:g}, {window} "
        f"({off:.4f} without -> {best[key]:.4f}; {len(trials)} candidates)")
    return {"weight": best["weight"], "days": best["days"], "metric": metric, "trials": trials}


def _prior_candidates(model, model_cfg, fit_part, validation):
    """[(weight, days, item bias [I] in catalogue order)] of the popularity prior's candidates,
    in (days, weight) order, weight 0 once; [(0, None, None)] for a model without the prior."""
    if not model.has_popularity_prior:
        return [(0.0, None, None)]
    weights, days = sorted(set(model_cfg.popularity_prior)), sorted(set(model_cfg.popularity_prior_days))
    ids = np.asarray(validation.catalogue.item_ids).astype(str)
    out = []
    for n in days:
        item, log_n = model.prior_log_counts(fit_part, n)  # counted (and, with the content prior, predicted)
        logn = pd.Series(log_n, index=item).reindex(ids, fill_value=0.0).to_numpy(np.float64)
        out += [(w, n, w * model.temperature * logn) for w in weights if w or n == days[0]]
    return out


def _prior_trials(validation, model, candidates, vectors):
    """Validation metrics of each `_prior_candidates` entry on the model's `vectors`."""
    metric, trials = validation.select_metric, []
    for w, n, bias in candidates:
        res = validation.evaluate(model, item_bias=bias, vectors=vectors)
        trials.append({"weight": w, "days": n, "val_ndcg@10": float(res["ndcg@10"]),
                       f"val_recall@{validation.k}": float(res[f"recall@{validation.k}"]),
                       f"val_{metric}": float(res[metric])})
    return trials


# The co-occurrence block is switched on only if it gains at least this much of the selection metric on
# validation (seed 1 of the temporal split gained 4e-6 at weight 0.25, a tie that would change the prior).
COOCCURRENCE_MIN_GAIN = 0.001


def tune_cooccurrence(model, model_cfg, fit_part, validation, log=print):
    """Chooses the co-occurrence block's weight (`tfrec.models.cooccurrence`) among
    `model.cooccurrence` by `validation.select_metric`, EASE fitted on `fit_part`, jointly
    with the popularity prior (each weight is scored with its best prior candidate: the two
    overlap, so a weight chosen without the prior can cost more than it gives with it); of
    equals, the smallest weight, and weight 0 unless the best gains `COOCCURRENCE_MIN_GAIN`
    over it. Off (with a log line) without validation or when the catalogue is too large.
    Sets it on `model` (the prior is then chosen by `tune_popularity_prior`) and returns
    {"weight", "metric", "trials"}."""
    from tfrec.models.cooccurrence import MAX_ITEMS

    weights = sorted(set(model_cfg.cooccurrence))
    off = {"weight": 0.0, "trials": []}
    if weights == [0.0]:
        return off
    if validation is None or len(model.lookup.item_ids) > MAX_ITEMS:
        why = "no validation to choose it on" if validation is None else f"more than {MAX_ITEMS:,} items"
        log(f"train: co-occurrence block off ({why})")
        return off
    if model.has_popularity_prior:
        model.set_popularity_prior(fit_part, 0.0, sorted(set(model_cfg.popularity_prior_days))[0])  # column 0
    model.set_cooccurrence(fit_part, 1.0, model_cfg.cooccurrence_l2, model_cfg.cooccurrence_rank)
    users, items, repeat = validation.vectors(model)
    start, stop = model.block_columns("cooccurrence")
    candidates = _prior_candidates(model, model_cfg, fit_part, validation)
    metric, trials = validation.select_metric, []
    key = f"val_{metric}"
    for w in weights:  # the item block is w * Q: the same vectors with its columns scaled
        scaled = items.copy()
        scaled[:, start:stop] *= w
        prior = max(_prior_trials(validation, model, candidates, (users, scaled, repeat)), key=lambda t: t[key])
        trials.append({"weight": w, "prior": [prior["weight"], prior["days"]],
                       **{k: v for k, v in prior.items() if k.startswith("val_")}})
    best = max(trials, key=lambda t: t[key])  # the first (smallest weight) of equals
    if trials[0]["weight"] == 0 and best[key] - trials[0][key] < COOCCURRENCE_MIN_GAIN:
        best = trials[0]  # a gain within validation noise does not add the block
    model.set_cooccurrence_weight(best["weight"])  # B as fitted for the search (weight 1), not refitted
    log(f"train: co-occurrence block chosen on validation {metric} (each weight with its best popularity prior): "
        f"weight {best['weight']:g} ({trials[0][key]:.4f} at weight {trials[0]['weight']:g} -> {best[key]:.4f}; "
        f"EASE l2 {model_cfg.cooccurrence_l2:g}, rank {stop - start})")
    return {"weight": best["weight"], "metric": metric, "trials": trials}


def with_popularity_prior(model, *parts):
    """Points the hybrid model's popularity prior and co-occurrence block (those it has;
    weights and days unchanged) at the interactions of `parts`; returns the model."""
    known = (pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]) if model is not None else None
    if model is not None and getattr(model, "has_popularity_prior", False):
        model.set_popularity_prior(known)
    c = getattr(model, "cooccurrence", None)
    if c is not None:  # EASE refitted on everything known (as the EASE baseline before test)
        model.set_cooccurrence(known, c.weight, c.l2, c.rank, c.length)
    return model


def train_joint(config: RunConfig, data, split, catalogue, text_embeddings, log=print, log_dir=None):
    """Retrieval and ranking trained together as one multi-task model
    (`ranking.mode=joint`); returns what `train_hybrid` returns plus the ranker."""
    from tfrec.cli.ranking_stage import train_ranker
    from tfrec.features.query_features import QueryFeatures
    from tfrec.models.text_profile import with_text_profile

    qf = QueryFeatures.fit(split.train, data.users, config.data.history_length)
    ranker, info = train_ranker(config, data, split, catalogue, text_embeddings, None, qf, log, log_dir)
    history = {"validation": info["validation"]}
    with_cold_neighbours(ranker.retrieval, config.model, log)
    with_text_profile(ranker.retrieval, config.model, log, data.items, config.text.template)
    fit_part, val_part = early_stopping_parts(split, config.train.early_stopping_patience, config.train.seed,
                                              log, "train")
    validation = retrieval_validation(config, qf, fit_part, val_part, catalogue, log) if len(val_part) else None
    history["cooccurrence"] = tune_cooccurrence(ranker.retrieval, config.model, fit_part, validation, log)
    if ranker.retrieval.has_popularity_prior:
        history["popularity_prior"] = tune_popularity_prior(ranker.retrieval, config.model, fit_part, validation, log)
    with_popularity_prior(ranker.retrieval, split.train, split.val)
    return ranker.retrieval, history, info["seconds"], qf, ranker, info
