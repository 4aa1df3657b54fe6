"""The ranking stage of the main job: train the ranker on the retriever's
candidates, evaluate two-stage against retrieval alone and the rating baselines.

    ranker, info = train_ranker(config, data, split, catalogue, text_emb, retrieval, query_features)
"""
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrec.cli.ranker_inputs import ranker_ratings, ranking_features, rating_inputs, with_history_ratings  # noqa: F401
from tfrec.errors import DataError


# Candidate weights of the retriever's full score in the final order (`TwoStageValidation.tune_blend`): 0 =
# the ranker alone; the largest is close to retrieval order.
BLENDS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class TwoStageValidation(tf.keras.callbacks.Callback):
    """Adds `val_two_stage_ndcg@10` (full catalogue, train items excluded) to the
    epoch logs: each validation user's query at their first validation event,
    top-N retrieved, re-ranked by the model being trained. With ratings, also the
    rating head's RMSE on every validation event, with histories from train only
    (`val_rating_rmse`, as the test's static comparison) and from everything strictly
    before the event (`val_rating_rmse_online`)."""

    def __init__(self, retrieval, query_features, train, val, catalogue, n_candidates=200, log=print,
                 exclude_seen=True):
        super().__init__()
        self.retrieval, self.query_features, self.train, self.val = retrieval, query_features, train, val
        self.catalogue, self.n_candidates, self.log = catalogue, int(n_candidates), log
        self.val_matrix = catalogue.matrix(val)
        self.train_matrix = catalogue.matrix(train)
        self.users = np.unique(self.val_matrix.nonzero()[0])
        self.ratings = "rating" in val.columns and "rating" in train.columns
        # The rating inputs do not change between epochs: built once (histories from train
        # only, and from everything strictly before each validation event).
        self.rating_inputs = {}
        if self.ratings:
            live = pd.concat([train, val], ignore_index=True)
            self.rating_inputs = {key: rating_inputs(query_features, val, ctx)
                                  for key, ctx in (("val_rating_rmse", train), ("val_rating_rmse_online", live))}
        self.exclude_seen = bool(exclude_seen)
        self.history = []

    def _scorer(self, ranker):
        from tfrec.models.two_stage import TwoStageScorer

        retrieval = self.retrieval if self.retrieval is not None else ranker.retrieval
        return TwoStageScorer(retrieval, ranker, self.query_features, self.train, self.catalogue,
                              exclude=self.train if self.exclude_seen else None, n_candidates=self.n_candidates)

    def _evaluate(self, score_fn, result=False):
        """The metrics' means (`result`: the whole `RankingResult`, per user)."""
        from tfrec.evaluation.ranking import evaluate_ranking

        res = evaluate_ranking(score_fn, self.users, self.val_matrix, ks=(10, 20), return_topk=False,
                               exclude=self.train_matrix if self.exclude_seen else None)
        return res if result else res.mean()

    def tune_blend(self, ranker, blends=BLENDS, by_history=False):
        """Chooses the ranker's `blend` (relevance = head + blend x the retriever's full
        score) by validation two-stage NDCG@10 (ties: the smaller), sets it; returns
        {"blend", "blend_new", "trials"}. The candidates and the head are scored once (blend 0).
        `by_history`: `blend_new`, for queries with an empty history (as the ranker tells them apart),
        is chosen on those users and `blend` on the others (NDCG@10 is a mean over users, so each
        part's best is the best pair); otherwise both are the one blend."""
        from tfrec.models.scoring import first_events
        from tfrec.models.two_stage import TwoStageScorer, rank_candidates

        ranker.blend.assign(0.0)
        ranker.blend_new.assign(0.0)
        scorer = self._scorer(ranker)
        first = first_events(self.catalogue, self.val).reset_index(drop=True)
        scores, cand, feats = scorer.candidates(first)  # `ranked_candidates`, keeping the query features
        head, _ = rank_candidates(ranker, feats, scorer.item_ids[cand], scorer.batch_size)
        full = np.take_along_axis(scores, cand, axis=1) / scorer.retrieval.model.temperature  # (n, N)
        rows = pd.Series(np.arange(len(first)), index=first["user_idx"].to_numpy())
        history = feats.get("history")  # (n, N); none: no query is told apart
        empty = np.zeros(len(first), bool) if history is None else (np.asarray(history).astype(str) == "").all(axis=1)
        trials = []
        for b in blends:
            out = TwoStageScorer.assemble(scores, cand, head + b * full)
            res = self._evaluate(lambda u: out[rows.loc[np.asarray(u)].to_numpy()], result=True)
            ndcg, user_new = res.per_user["ndcg@10"], empty[rows.loc[res.users].to_numpy()]
            trials.append({"blend": float(b), "val_two_stage_ndcg@10": res.mean()["ndcg@10"],
                           "val_two_stage_recall@20": res.mean()["recall@20"], "users_new": int(user_new.sum()),
                           **{f"val_ndcg@10_{g}_users": float(ndcg[m].mean()) if m.any() else None
                              for g, m in (("new", user_new), ("known", ~user_new))}})
        best = max(trials, key=lambda t: t["val_two_stage_ndcg@10"])  # the first (smallest) of equals
        chosen = {"blend": best["blend"], "blend_new": best["blend"]}
        if by_history:
            for key, group in (("blend", "known"), ("blend_new", "new")):
                scored = [t for t in trials if t[f"val_ndcg@10_{group}_users"] is not None]
                if scored:
                    chosen[key] = max(scored, key=lambda t: t[f"val_ndcg@10_{group}_users"])["blend"]
        ranker.blend.assign(chosen["blend"])
        ranker.blend_new.assign(chosen["blend_new"])
        self.log(f"rank: blend with the retriever's score chosen on validation: {best['blend']:g} (val two-stage "
                 f"ndcg@10 {trials[0]['val_two_stage_ndcg@10']:.4f} at 0 -> {best['val_two_stage_ndcg@10']:.4f})"
                 + (f"; by history: {chosen['blend']:g} for users with one, {chosen['blend_new']:g} for an empty "
                    f"history ({trials[0]['users_new']} of the validation users)" if by_history else ""))
        return {**chosen, "trials": trials}

    def on_epoch_end(self, epoch, logs=None):
        fn = self._scorer(self.model).user_matrix_scorer(self.catalogue, self.val)
        res = self._evaluate(fn)
        logs = logs if logs is not None else {}
        logs["val_two_stage_ndcg@10"] = res["ndcg@10"]
        loss = float(logs.get("relevance_loss", logs.get("loss", np.nan)))
        entry = {"epoch": epoch + 1, "val_two_stage_ndcg@10": res["ndcg@10"],
                 "val_two_stage_recall@20": res["recall@20"], "relevance_loss": loss,
                 "rating_rmse": float(logs.get("rating_rmse", np.nan))}
        msg = ""
        if self.ratings:
            from tfrec.evaluation.rating import rmse

            y = self.val["rating"].to_numpy()
            for key, inputs in self.rating_inputs.items():
                entry[key] = rmse(y, ranker_ratings(self.model, inputs=inputs))
            msg = f"  val rating rmse {entry['val_rating_rmse']:.4f} (online {entry['val_rating_rmse_online']:.4f})"
        self.history.append(entry)
        self.log(f"  ranker epoch {epoch + 1}: relevance loss {loss:.1f}  "
                 f"val two-stage ndcg@10 {res['ndcg@10']:.4f}  recall@20 {res['recall@20']:.4f}{msg}")


def two_stage_for_test(retrieval, ranker, query_features, known, split, catalogue, eval_cfg, n_candidates,
                       protocol=None):
    """The two-stage model as the test evaluation asks it: histories from `known`,
    candidates without the items the protocol excludes for each user (`protocol`, or
    the one `eval_cfg` describes)."""
    from tfrec.evaluation.protocols import protocol_from_config
    from tfrec.evaluation.queries import split_parts
    from tfrec.models.two_stage import TwoStageScorer

    excluded = (protocol or protocol_from_config(split, eval_cfg)).exclude
    return TwoStageScorer(retrieval, ranker, query_features, known, catalogue,
                          exclude=split_parts(split, excluded) if excluded else None, n_candidates=n_candidates)


def rating_base(ranking_cfg, fit_part, val_part, log=print):
    """The frozen rating base of `ranking.rating_base=bias`: the bias model fitted on
    `fit_part`, its regularisation tuned on `val_part` (as the rating baseline's), or
    None for `rating_base=learned`."""
    if ranking_cfg.rating_base != "bias":
        return None
    from tfrec.evaluation.rating import BiasBaseline, tune_bias

    params = tune_bias(fit_part, val_part)[0] if len(val_part) else {}
    base = BiasBaseline(**params).fit(fit_part)
    log(f"rank: rating base mu + b_u + b_i (reg_user {base.reg_user:g}, reg_item {base.reg_item:g}, tuned on "
        f"validation), frozen; the rating head learns the residual")
    return base


def _ranker_dataset(config, query_features, part, catalogue, retrieval, joint, log):
    """The ranker's training examples from the interactions `part` (histories from `part`;
    hard negatives from `retrieval`'s top candidates unless `joint`), batched."""
    from tfrec.data.pipeline import make_dataset
    from tfrec.models.negatives import hard_negatives
    from tfrec.models.scoring import HybridScorer

    r, t = config.ranking, config.train
    has_ratings = "rating" in part.columns and r.rating_weight > 0
    feats = ranking_features(query_features, part, part, ratings=has_ratings or r.loss == "rating")
    start = time.perf_counter()
    if not joint and r.num_hard_negatives > 0:
        scorer = HybridScorer(retrieval, query_features, part, catalogue.item_ids)
        feats["negatives"] = hard_negatives(scorer, part, catalogue, part, r.num_hard_negatives,
                                            r.hard_negative_pool, seed=t.seed)
        log(f"rank: {r.num_hard_negatives} hard negatives per example from the retriever's top "
            f"{r.hard_negative_pool} ({time.perf_counter() - start:.1f} s)")
    return make_dataset(feats, r.batch_size, seed=t.seed, shuffle_buffer=t.shuffle_buffer, drop_remainder=True)


def _ranker_builder(config, data, catalogue, text_embeddings, query_features, retrieval, base, part, joint):
    """A function building a fresh ranker on `retrieval` (joint: a fresh retrieval model), its
    frozen rating `base` and popularity table counting the interactions `part`."""
    from tfrec.cli.retrieval_stage import with_popularity_prior
    from tfrec.models.factory import build_hybrid
    from tfrec.models.ranking import build_ranker

    r, t = config.ranking, config.train
    rating_mean = float(part["rating"].mean()) if "rating" in part.columns else 0.0

    def build():
        ret = retrieval
        if joint:
            ret = with_popularity_prior(build_hybrid(config.model, catalogue, data.items, text_embeddings,
                                                     query_features, seed=t.seed), part)
        ranker = build_ranker(r, config.model, catalogue, data.items, text_embeddings, query_features,
                              retrieval=ret, rating_mean=rating_mean, seed=t.seed,
                              timestamps=data.interactions["timestamp"])
        if base is not None:
            ranker.set_rating_base(base, fitted_on=part)
        if ranker.popularity is not None:
            ranker.set_popularity(part)
        return ranker

    return build


def train_ranker(config, data, split, catalogue, text_embeddings, retrieval, query_features, log=print,
                 log_dir=None):
    """Trains the ranking stage. `retrieval` is the trained retrieval model (separate
    mode), or None for joint mode, where a fresh retrieval model is trained with the
    ranker. Returns (ranker, info dict)."""
    from tfrec.cli.retrieval_stage import early_stopping_parts, validation_excludes_seen, with_popularity_prior
    from tfrec.training.strategy import make_strategy
    from tfrec.training.trainer import train

    r, t = config.ranking, config.train
    joint = r.mode == "joint"
    if joint and retrieval is not None:
        raise DataError("Joint ranking trains its own retrieval model; pass retrieval=None.")
    fit_part, val_part = early_stopping_parts(split, r.early_stopping_patience, t.seed, log, "rank")
    # While the ranker trains, the retriever's popularity prior counts only what training knows (hard
    # negatives, validation candidates); it is set back to everything known at the end.
    with_popularity_prior(retrieval, fit_part)
    has_ratings = "rating" in fit_part.columns and r.rating_weight > 0
    if r.history_ratings and "rating" not in fit_part.columns:
        raise DataError("`ranking.history_ratings=true` needs a `rating` column in the interactions; set "
                        "`ranking.history_ratings=false` or use data with ratings.")
    ds = _ranker_dataset(config, query_features, fit_part, catalogue, retrieval, joint, log)
    callbacks = []
    validation = None
    if len(val_part) and r.early_stopping_patience > 0:
        validation = TwoStageValidation(retrieval, query_features, fit_part, val_part, catalogue,
                                        n_candidates=r.candidates, log=log,
                                        exclude_seen=validation_excludes_seen(config.eval))
        callbacks = [validation, tf.keras.callbacks.EarlyStopping(
            monitor="val_two_stage_ndcg@10", mode="max", patience=r.early_stopping_patience,
            restore_best_weights=True)]

    base = rating_base(r, fit_part, val_part, log) if has_ratings else None
    build = _ranker_builder(config, data, catalogue, text_embeddings, query_features, retrieval, base, fit_part,
                            joint)
    strategy = make_strategy(t.strategy)
    log(f"rank: {r.mode} {r.loss} ranker (DCN-v2, {r.cross_layers} cross layers, deep {list(r.deep_units)}), "
        f"rating weight {r.rating_weight if has_ratings else 0}, up to {r.epochs} epochs, batch {r.batch_size}, "
        f"{r.num_hard_negatives if not joint else 0} hard + {r.num_random_negatives} random negatives"
        + (f", item popularity over {r.popularity_days} days" if r.popularity_days else ""))
    ranker, history, secs = train(build, ds, strategy=strategy, epochs=r.epochs, optimizer=t.optimizer,
                                  learning_rate=r.learning_rate, seed=t.seed, verbose=t.verbose, log_dir=log_dir,
                                  callbacks=callbacks)
    info = {"seconds": secs, "mode": r.mode, "loss": r.loss, "epochs": len(history.get("loss", [])),
            "relevance_loss": history.get("relevance_loss"), "validation": validation.history if validation else None}
    if validation is not None and ranker.retrieval is not None:
        info["retrieval_blend"] = validation.tune_blend(ranker, by_history=r.blend_by_history)
    _count_everything_known(ranker, base, pd.concat([split.train, split.val], ignore_index=True), info, r, log)
    if validation is not None and validation.history:
        best = max(validation.history, key=lambda h: h["val_two_stage_ndcg@10"])
        log(f"rank: {info['epochs']} epochs in {secs:.1f} s; best validation two-stage ndcg@10 "
            f"{best['val_two_stage_ndcg@10']:.4f} at epoch {best['epoch']} (weights restored)")
    return ranker, info


def refitted_base(reg_user, reg_item, interactions):
    """The frozen rating base with a chosen regularisation, fitted on `interactions`."""
    from tfrec.evaluation.rating import BiasBaseline

    return BiasBaseline(reg_user=reg_user, reg_item=reg_item).fit(interactions)


def _count_everything_known(ranker, base, known, info, ranking_cfg, log):
    """Like the bias baseline it is compared with, the frozen rating base is refitted on everything
    known before the test period, and the retriever's prior and the popularity table count it (the
    heads stay as trained)."""
    from tfrec.cli.retrieval_stage import with_popularity_prior

    with_popularity_prior(ranker.retrieval, known)
    if base is not None:
        ranker.set_rating_base(refitted_base(base.reg_user, base.reg_item, known), fitted_on=known)
        info["rating_base"] = {"reg_user": base.reg_user, "reg_item": base.reg_item,
                               "refitted_on": f"train + validation ({len(known):,} ratings)"}
        log(f"rank: rating base (mu + b_u + b_i) refitted on train + validation ({len(known):,} ratings)")
    if ranker.popularity is not None:
        ranker.set_popularity(known)
        info["popularity"] = {"window_days": ranking_cfg.popularity_days, "counted_on": "train + validation"}


def refit_ranker(config, data, split, catalogue, text_embeddings, retrieval, query_features, chosen, info,
                 log=print, log_dir=None):
    """`train.refit` with the ranking stage: a fresh ranker on train + validation (early
    stopping's two parts) for the epoch count its validation chose, on the refitted
    `retrieval` and its `query_features`, with what was chosen with `chosen` (trained by
    `train_ranker` on the retriever before its refit; `info` its info): the blend with the
    retriever's score and the rating base's regularisation. Hard negatives come from the
    refitted retriever, its prior counting train + validation; the ranker's vocabularies
    are those of the refitted catalogue, as the retriever's. Returns (ranker, refit info)."""
    from tfrec.evaluation.queries import split_parts
    from tfrec.training.strategy import make_strategy
    from tfrec.training.trainer import train

    r, t = config.ranking, config.train
    if r.mode == "joint":
        raise DataError("`train.refit` refits a separately trained ranker; joint mode trains its own retriever.")
    known = split_parts(split, ("train", "val"))
    validation = info.get("validation")
    epochs = int(max(validation, key=lambda h: h["val_two_stage_ndcg@10"])["epoch"]) if validation else info["epochs"]
    log(f"refit: a fresh ranker on train + validation ({len(known):,} interactions) for {epochs} epoch(s), the "
        "best on validation, with the blend chosen there")
    model_catalogue = catalogue.refitted(known)
    has_ratings = "rating" in known.columns and r.rating_weight > 0
    tuned = info.get("rating_base")  # the regularisation tuned with `chosen` (train_ranker's base), if it had one
    base = refitted_base(tuned["reg_user"], tuned["reg_item"], known) if has_ratings and tuned else None
    ds = _ranker_dataset(config, query_features, known, model_catalogue, retrieval, False, log)
    build = _ranker_builder(config, data, model_catalogue, text_embeddings, query_features, retrieval, base, known,
                            False)
    ranker, history, secs = train(build, ds, strategy=make_strategy(t.strategy), epochs=epochs, optimizer=t.optimizer,
                                  learning_rate=r.learning_rate, seed=t.seed, verbose=t.verbose,
                                  log_dir=None if log_dir is None else f"{log_dir}/refit_ranker")
    ranker.blend.assign(float(chosen.blend.numpy()))
    ranker.blend_new.assign(float(chosen.blend_new.numpy()))
    return ranker, {"epochs": epochs, "interactions": int(len(known)), "seconds": secs,
                    "retrieval_blend": float(chosen.blend.numpy()),
                    "retrieval_blend_new": float(chosen.blend_new.numpy()),
                    "relevance_loss": [float(v) for v in history.get("relevance_loss", [])]}


def evaluate_rating_stage(ranker, query_features, split, known, n_boot=1000, seed=0, log=print, tuning_parts=None):
    """Test RMSE/MAE of the ranker's rating head vs global mean and user/item bias
    (regularisation tuned on validation, refitted on train + validation).
    `tuning_parts`: the (fit, validation) interactions the bias model's regularisation
    is tuned on, default (train, validation); without a validation split pass the
    slice of train the ranker's own rating base was tuned on (`tfrec run` does), so
    the baseline is tuned as much as the ranker's base.

    Each model sees (`sees` in the result):
    - top level: only `known` (train + validation) for every test event: the bias
      model's fit, the ranker's history and history ratings; test users absent
      from `known` get a zero user bias / an empty history;
    - `online` (under `user_item_bias` and `tfrec ranker`): also the test ratings
      given strictly before each event, as a live system would know them: the bias
      model's user bias re-estimated from all of them, the ranker's last N;
    - `user_item_bias.train_only`: the bias model fitted on train alone.
    """
    from tfrec.evaluation.rating import BiasBaseline, GlobalMean, evaluate_ratings, tune_bias

    test = split.test.reset_index(drop=True)
    if "rating" not in test.columns:
        return None
    fit, val = tuning_parts if tuning_parts is not None else (split.train, split.val)
    if len(val):
        params, trials = tune_bias(fit, val)
    else:
        params, trials = {"reg_user": 10.0, "reg_item": 25.0}, []
    bias = BiasBaseline(**params).fit(known)
    live = pd.concat([known, test], ignore_index=True)
    preds = {"global_mean": GlobalMean().fit(known).predict(test), "user_item_bias": bias.predict(test),
             "tfrec ranker": ranker_ratings(ranker, query_features, test, known)}
    out = evaluate_ratings(preds, test, n_boot=n_boot, seed=seed, reference="user_item_bias")
    out["user_item_bias"]["params"] = params
    out["user_item_bias"]["tuning"] = trials
    out["user_item_bias"]["tuned_on"] = f"{len(fit):,} fit / {len(val):,} validation interactions"
    online = {"user_item_bias": bias.predict_online(test, live),
              "tfrec ranker": ranker_ratings(ranker, query_features, test, live)}
    online = evaluate_ratings(online, test, n_boot=n_boot, seed=seed, reference="user_item_bias")
    train_only = evaluate_ratings({"train_only": BiasBaseline(**params).fit(split.train).predict(test)}, test,
                                  n_boot=n_boot, seed=seed)["train_only"]
    sees = {"global_mean": "mean of train + validation ratings",
            "user_item_bias": "biases fitted on train + validation; test users absent from them get b_u = 0",
            "tfrec ranker": "history and history ratings from train + validation only"}
    for name, text in sees.items():
        out[name]["sees"] = text
    online["user_item_bias"]["sees"] = ("item biases fitted on train + validation; user bias from every rating "
                                        "the user gave strictly before the event, test period included")
    online["tfrec ranker"]["sees"] = ("history and history ratings (last N) from train + validation + test "
                                      "events strictly before the event")
    train_only["sees"] = "biases fitted on train only"
    out["user_item_bias"]["online"] = online["user_item_bias"]
    out["user_item_bias"]["train_only"] = train_only
    out["tfrec ranker"]["online"] = online["tfrec ranker"]
    log("evaluate: ratings on the test split (RMSE / MAE, 95% CI)")
    rows = [(n, m) for n, m in out.items()] + [("bias, train only", train_only),
                                               ("bias, online", online["user_item_bias"]),
                                               ("ranker, online", online["tfrec ranker"])]
    for name, m in rows:
        log(f"  {name:<16} RMSE {m['rmse']:.4f} [{m['rmse_ci95'][0]:.4f}, {m['rmse_ci95'][1]:.4f}]  MAE {m['mae']:.4f}")
    return out
