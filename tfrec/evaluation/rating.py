"""Rating prediction: RMSE / MAE against the global-mean and user/item-bias baselines.

The bias baseline is the classic r_ui = mu + b_u + b_i with L2-regularised biases
(Koren, "Factor in the neighbors", 2008, eq. 2), fitted by alternating exact
minimisation: b_i = sum_u (r - mu - b_u) / (lambda_i + n_i), then b_u likewise.
Unknown users or items get a zero bias. Its regularisation is chosen on the
validation split; it is then refitted on everything known before the test period,
so it is compared at its best.

`BiasBaseline.predict_online` is the same model given what a live system knows at
each request: the user bias re-estimated from every rating the user gave strictly
before the request (earlier test-period ratings included), item biases as fitted.
It is the fair reference for a ranker that reads those prior ratings.
"""
import dataclasses

import numpy as np
import pandas as pd

from tfrec.data.history import prior_totals
from tfrec.errors import DataError
from tfrec.evaluation.stats import bootstrap_ci, cluster_bootstrap, cluster_paired_test, paired_test


def _check(df, what):
    missing = [c for c in ("user_id", "item_id", "rating") if c not in df.columns]
    if missing:
        raise DataError(f"{what} needs columns user_id, item_id, rating; missing {missing}.")


class GlobalMean:
    name = "global_mean"

    def fit(self, train: pd.DataFrame):
        _check(train, "GlobalMean.fit")
        self.mu = float(train["rating"].mean())
        return self

    def predict(self, events: pd.DataFrame) -> np.ndarray:
        return np.full(len(events), self.mu, np.float64)


@dataclasses.dataclass
class BiasBaseline:
    """mu + b_u + b_i with regularisation `reg_user`, `reg_item`."""

    reg_user: float = 10.0
    reg_item: float = 25.0
    iterations: int = 10
    name: str = "user_item_bias"

    def fit(self, train: pd.DataFrame):
        _check(train, "BiasBaseline.fit")
        u = train["user_id"].astype(str).to_numpy()
        i = train["item_id"].astype(str).to_numpy()
        r = train["rating"].to_numpy(np.float64)
        self.mu = float(r.mean())
        uu, ui = np.unique(u, return_inverse=True)
        iu, ii = np.unique(i, return_inverse=True)
        bu, bi = np.zeros(uu.size), np.zeros(iu.size)
        n_u, n_i = np.bincount(ui, minlength=uu.size), np.bincount(ii, minlength=iu.size)
        for _ in range(self.iterations):
            bi = np.bincount(ii, weights=r - self.mu - bu[ui], minlength=iu.size) / (self.reg_item + n_i)
            bu = np.bincount(ui, weights=r - self.mu - bi[ii], minlength=uu.size) / (self.reg_user + n_u)
        self.user_bias = dict(zip(uu, bu))
        self.item_bias = dict(zip(iu, bi))
        return self

    def predict(self, events: pd.DataFrame) -> np.ndarray:
        bu = events["user_id"].astype(str).map(self.user_bias).fillna(0.0).to_numpy(np.float64)
        bi = events["item_id"].astype(str).map(self.item_bias).fillna(0.0).to_numpy(np.float64)
        return self.mu + bu + bi

    def predict_online(self, events: pd.DataFrame, context: pd.DataFrame) -> np.ndarray:
        """mu + b_u(t) + b_i, with b_u(t) = sum (r - mu - b_j) / (reg_user + n) over the
        n ratings of `context` the user gave strictly before the event's timestamp
        (the fit's own user update, on what is known at request time)."""
        _check(context, "BiasBaseline.predict_online context")
        bj = context["item_id"].astype(str).map(self.item_bias).fillna(0.0).to_numpy(np.float64)
        residual = context["rating"].to_numpy(np.float64) - self.mu - bj
        n, total = prior_totals(events, residual, context=context)
        bi = events["item_id"].astype(str).map(self.item_bias).fillna(0.0).to_numpy(np.float64)
        return self.mu + total / (self.reg_user + n) + bi


BIAS_GRID = [{"reg_user": ru, "reg_item": ri} for ru in (2.0, 5.0, 10.0, 25.0) for ri in (5.0, 10.0, 25.0, 50.0)]


def rmse(y, yhat) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - np.asarray(yhat, np.float64)) ** 2)))


def mae(y, yhat) -> float:
    return float(np.mean(np.abs(np.asarray(y, np.float64) - np.asarray(yhat, np.float64))))


def tune_bias(train, val) -> tuple:
    """(params, validation RMSE of each grid point) -> the lowest validation RMSE."""
    trials = []
    for params in BIAS_GRID:
        trials.append({**params, "val_rmse": rmse(val["rating"], BiasBaseline(**params).fit(train).predict(val))})
    best = min(trials, key=lambda t: t["val_rmse"])
    return {k: best[k] for k in ("reg_user", "reg_item")}, trials


def evaluate_ratings(predictions: dict, test: pd.DataFrame, n_boot=1000, seed=0, reference=None) -> dict:
    """RMSE and MAE with 95% bootstrap CIs per model; paired tests of each model's
    squared error against `reference` (a model name).

    `predictions`: name -> float [len(test)] predicted ratings for the rows of `test`.
    The RMSE CI is the bootstrap CI of the mean squared error, square-rooted (the
    square root is monotone, so the percentile interval carries over). With a
    `user_id` column the bootstrap resamples whole users with all their ratings (a
    user's errors are correlated: resampling rows one by one gives too narrow an
    interval), as the ranking metrics do; without one, rows.
    """
    y = test["rating"].to_numpy(np.float64)
    users = test["user_id"].astype(str).to_numpy() if "user_id" in test.columns else None
    out = {}
    for name, p in predictions.items():
        p = np.asarray(p, np.float64)
        if p.shape != y.shape:
            raise DataError(f"Rating predictions of {name!r} have shape {p.shape}; the test set has {y.shape}.")
        se, ae = (y - p) ** 2, np.abs(y - p)
        if users is not None:
            ci_se, ci_ae = (cluster_bootstrap(v, users, n_boot=n_boot, seed=seed)[1:] for v in (se, ae))
        else:
            ci_se, ci_ae = ((c.low, c.high) for c in (bootstrap_ci(v, n_boot=n_boot, seed=seed) for v in (se, ae)))
        out[name] = {"rmse": rmse(y, p), "mae": mae(y, p),
                     "rmse_ci95": [float(np.sqrt(ci_se[0])), float(np.sqrt(ci_se[1]))],
                     "mae_ci95": [float(ci_ae[0]), float(ci_ae[1])], "n": int(y.size),
                     "ci": "users resampled with all their ratings" if users is not None else "rows resampled"}
        if reference is not None and name != reference:
            ref = np.asarray(predictions[reference], np.float64)
            ref_se = (y - ref) ** 2
            pt = (cluster_paired_test(se, ref_se, users, n_boot=n_boot, seed=seed) if users is not None
                  else paired_test(se, ref_se, n_boot=n_boot, seed=seed).to_dict())
            out[name][f"squared_error_vs_{reference}"] = pt
    return out
