"""Uncertainty of evaluation results: is model A's NDCG@10 really better than B's?

`bootstrap_ci` and `paired_test` work on per-user metric arrays
(`RankingResult.per_user[...]`), which are what the users actually experience; their
`cluster_` counterparts on per-query (or per-rating) values grouped by user; a mean over 943 MovieLens users easily moves
by +-0.01 from sampling noise alone. Resampling is vectorised with numpy in blocks of
replicates, so memory stays bounded for 100,000 users x 10,000 replicates. Every
result records its seed so that a reported interval can be reproduced exactly.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tfrec.errors import ConfigError, DataError

__all__ = ["BootstrapCI", "PairedTestResult", "bootstrap_ci", "cluster_bootstrap", "cluster_paired_test", "paired_test"]

# Replicates per block: keeps the [block, n] index matrix near 8M entries (64 MB).
_BLOCK_ENTRIES = 8_000_000


@dataclasses.dataclass(frozen=True)
class BootstrapCI:
    """Mean with a percentile-bootstrap (1 - alpha) confidence interval."""

    mean: float
    low: float
    high: float
    alpha: float
    n: int
    n_boot: int
    seed: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PairedTestResult:
    """Paired comparison of two models on the same users (difference = a - b).

    Attributes:
        mean_diff: mean of a - b.
        low, high: percentile-bootstrap (1 - alpha) interval of the mean difference.
        p_value: two-sided paired randomisation (sign-flip) test p-value.
        p_value_wilcoxon: two-sided Wilcoxon signed-rank p-value (scipy), or None when
            scipy is not installed.
    """

    mean_diff: float
    low: float
    high: float
    p_value: float
    p_value_wilcoxon: float | None
    alpha: float
    n: int
    n_boot: int
    seed: int
    method: str = "percentile bootstrap CI; sign-flip randomisation test"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _values(name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise DataError(f"`{name}` is empty; there is nothing to resample.")
    if np.isnan(v).any():
        raise DataError(
            f"`{name}` holds {int(np.isnan(v).sum())} NaN values (e.g. AUC of users with "
            "no negatives). Fix: drop them first, e.g. `v[~np.isnan(v)]` (and the same "
            "users from the other model for a paired test)."
        )
    return v


def _check(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise ConfigError(f"`n_boot` must be a positive integer, got {n_boot}.")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"`alpha` must be in (0, 1), got {alpha}.")


def _bootstrap_means(v: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot] means of resamples (with replacement) of v, in bounded-memory blocks."""
    n = v.size
    block = max(1, _BLOCK_ENTRIES // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))  # (m, n)
        means[start:start + m] = v[idx].mean(axis=1)
    return means


def bootstrap_ci(values, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> BootstrapCI:
    """Percentile bootstrap confidence interval of the mean of `values`.

    Args:
        values: float [n], one value per user (no NaN).
        n_boot: bootstrap replicates.
        alpha: 1 - confidence level (0.05 -> 95 % interval).
        seed: seed of `np.random.default_rng`; stored in the result.

    Example:
    >>> ci = bootstrap_ci(np.array([0.0, 1.0, 1.0, 0.0]), n_boot=200)
    >>> ci.mean
    0.5
    """
    _check(n_boot, alpha)
    v = _values("values", values)
    means = _bootstrap_means(v, int(n_boot), np.random.default_rng(seed))
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(v.mean()), float(low), float(high), alpha, v.size, int(n_boot), seed)


def paired_test(
    a, b, n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0
) -> PairedTestResult:
    """Paired comparison of two models' per-user values on the same users.

    The p-value is a two-sided sign-flip randomisation test: under H0 (no difference)
    each user's difference d_i = a_i - b_i is as likely to be -d_i, so the observed
    |mean(d)| is compared with |mean(s * d)| for n_boot random sign vectors s:
    p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + n_boot), which is never 0
    (Phipson & Smyth, 2010). The CI is a percentile bootstrap of mean(d). The
    bootstrap and the sign flips use independent streams spawned from `seed`.

    Args:
        a, b: float [n] per-user values of the two models, aligned user by user.
        n_boot: replicates for both the bootstrap and the randomisation test.
        alpha: 1 - confidence level of the interval.
        seed: seed recorded in the result.
    """
    _check(n_boot, alpha)
    a, b = _values("a", a), _values("b", b)
    if a.size != b.size:
        raise DataError(
            f"`a` and `b` must hold one value per user for the same users, got {a.size} "
            f"and {b.size} values. Fix: evaluate both models on the same `users`."
        )
    d = a - b
    n_boot = int(n_boot)
    boot_rng, flip_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    low, high = np.quantile(_bootstrap_means(d, n_boot, boot_rng), [alpha / 2, 1 - alpha / 2])

    observed = abs(d.mean())
    # Flipped means equal to the observed one up to float rounding must count as ">=".
    tolerance = 1e-12 * max(1.0, float(np.abs(d).mean()))
    block = max(1, _BLOCK_ENTRIES // d.size)
    extreme = 0
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        signs = flip_rng.integers(0, 2, size=(m, d.size)) * 2 - 1  # (m, n) of +-1
        extreme += int((np.abs((signs * d).mean(axis=1)) >= observed - tolerance).sum())
    p_value = (1 + extreme) / (1 + n_boot)

    return PairedTestResult(
        mean_diff=float(d.mean()),
        low=float(low),
        high=float(high),
        p_value=float(p_value),
        p_value_wilcoxon=_wilcoxon(d),
        alpha=alpha,
        n=d.size,
        n_boot=n_boot,
        seed=seed,
    )


def _wilcoxon(d: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value, None without scipy (a dev dependency)."""
    try:
        from scipy import stats
    except ImportError:
        return None
    if not np.any(d != 0):  # identical models: scipy cannot rank all-zero differences
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def cluster_bootstrap(values, clusters, n_boot=1000, alpha=0.05, seed=0):
    """(mean, low, high): percentile bootstrap of the mean of per-query `values`
    that resamples whole clusters (users) with replacement.

    Queries of one user are correlated, so resampling them one by one would give
    too narrow an interval; the mean of a resample is sum(values) / count over the
    drawn users' queries.
    """
    values = np.asarray(values, np.float64)
    _, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=values)  # (C,)
    counts = np.bincount(inverse).astype(np.float64)  # (C,)
    rng = np.random.default_rng(seed)
    n_c = sums.size
    means = np.empty(n_boot)
    block = max(1, 4_000_000 // n_c)
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        draws = rng.integers(0, n_c, size=(m, n_c))  # (m, C) drawn cluster ids
        means[start:start + m] = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(values.mean()), float(low), float(high)


def cluster_paired_test(a, b, clusters, n_boot=10_000, alpha=0.05, seed=0) -> dict:
    """Paired comparison a - b on the same queries, resampling and sign-flipping whole
    users (clusters): the per-interaction counterpart of `stats.paired_test`."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mean, low, high = cluster_bootstrap(d, clusters, n_boot, alpha, seed)
    _, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=d)  # (C,)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    observed = abs(sums.sum())
    tolerance = 1e-12 * max(1.0, float(np.abs(sums).sum()))
    extreme = 0
    block = max(1, 4_000_000 // sums.size)
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        signs = rng.integers(0, 2, size=(m, sums.size)) * 2 - 1  # (m, C)
        extreme += int((np.abs(signs @ sums) >= observed - tolerance).sum())
    return {"mean_diff": mean, "low": low, "high": high, "p_value": (1 + extreme) / (1 + n_boot),
            "p_value_wilcoxon": None, "alpha": alpha, "n": int(d.size), "n_boot": int(n_boot), "seed": seed,
            "method": "user-cluster percentile bootstrap CI; user-level sign-flip randomisation test"}
