"""The interface every baseline shares: fit on a user x item matrix, score users.

Baselines answer "is the two-tower model worth it?": each one is a known
reference point (random, popularity, neighbourhood, linear autoencoder,
matrix factorisation, content-only, the TFRS tutorial) fitted on the same
integer-indexed train matrix and scored over the full catalogue by the same
evaluator.
"""
import inspect

import numpy as np
import scipy.sparse as sp

from tfrec.errors import ConfigError, DataError


class Baseline:
    """Base class: `fit(train)` then `score(user_idx) -> [b, I]`.

    Subclasses set `name` (the registry key) and `grid` (hyperparameter values
    to tune on the validation split), take their hyperparameters as keyword
    arguments of `__init__` and keep each as a same-named attribute, so that
    `get_params()` and `type(b)(**b.get_params())` round-trip.

    Scores are "higher = better" and do NOT mask the user's train items: the
    evaluator masks seen items, so every baseline is compared under one rule.

    Example:
        model = EASE(l2=500.0).fit(train)          # train: csr [U, I]
        scores = model.score(np.arange(10))        # (10, I) float32
    """

    name = "baseline"
    grid = {}
    needs_times = False  # True: `fit` / `fold_in` need `times` (see RecentPopular)

    def fit(self, train, *, item_text=None, seed=0, times=None):
        """Learns from `train` (csr [U, I], nonzero = interaction, value = weight).

        Args:
            train: scipy sparse matrix [U, I]; users 0..U-1, items 0..I-1.
            item_text: one string per item (only content baselines use it).
            seed: makes stochastic baselines reproducible.
            times: csr [U, I], each interaction's latest timestamp (seconds), for
                baselines with `needs_times`; the others ignore it.

        Returns:
            self.
        """
        self.train_ = _check_train(train)
        self.times_ = _check_times(times)
        self.n_users_, self.n_items_ = self.train_.shape
        self.seed_ = int(seed)
        self._fit(self.train_, item_text=item_text, seed=self.seed_)
        self.history_ = self.train_
        return self

    def fold_in(self, history, times=None):
        """Scores users from `history` (csr [U, I]) instead of their train rows,
        without refitting: the interactions known at request time (e.g. train +
        validation when testing after a temporal split). Models that hold per-user
        parameters (ALS) solve them again from `history`; id-only models ignore it.

        Returns:
            self.
        """
        if not hasattr(self, "train_"):
            raise DataError(f"`{type(self).__name__}.fold_in` was called before `fit`. Fix: call `fit(train)` first.")
        history = _check_train(history)
        if history.shape != self.train_.shape:
            raise DataError(
                f"`history` must have the train matrix's shape {self.train_.shape}, got {history.shape}."
            )
        self.history_ = history
        self.history_times_ = _check_times(times)
        self._fold_in(history)
        return self

    def _fold_in(self, history):
        """Hook for models with per-user parameters; row-based models need nothing."""

    def score(self, user_idx):
        """Scores every item for each user: float32 [b, I], higher = better."""
        if not hasattr(self, "train_"):
            raise DataError(
                f"`{type(self).__name__}.score` was called before `fit`. "
                "Fix: call `fit(train)` first."
            )
        users = np.asarray(user_idx)
        if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
            raise DataError(
                f"`user_idx` must be a 1-D array of integer user indices, got "
                f"dtype {users.dtype} and shape {users.shape}."
            )
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise DataError(
                f"`user_idx` must lie in [0, {self.n_users_}) (the train matrix has "
                f"{self.n_users_} rows), got values in [{users.min()}, {users.max()}]."
            )
        scores = self._score(users.astype(np.int64))  # (b, I)
        return np.asarray(scores, dtype=np.float32)

    def get_params(self):
        """The `__init__` hyperparameters as a dict (JSON-friendly values)."""
        names = [
            p for p in inspect.signature(type(self).__init__).parameters
            if p not in ("self", "args", "kwargs")
        ]
        return {p: getattr(self, p) for p in names}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # Subclasses implement these two.
    def _fit(self, train, *, item_text, seed):
        raise NotImplementedError

    def _score(self, users):
        raise NotImplementedError


def _check_train(train):
    """Returns `train` as csr float32 [U, I] with sorted indices, or raises."""
    if not sp.issparse(train):
        raise DataError(
            "`train` must be a scipy.sparse matrix [users, items] (e.g. "
            f"`scipy.sparse.csr_matrix`), got {type(train).__name__}. "
            "Fix: wrap a dense array with `scipy.sparse.csr_matrix(x)`."
        )
    if train.ndim != 2 or 0 in train.shape:
        raise DataError(f"`train` must be a non-empty 2-D [users, items] matrix, got shape {train.shape}.")
    train = sp.csr_matrix(train, dtype=np.float32, copy=True)
    train.sum_duplicates()
    train.sort_indices()
    if not np.all(np.isfinite(train.data)) or np.any(train.data < 0):
        raise DataError(
            "`train` values must be finite and >= 0 (1 for an interaction, or a "
            "non-negative weight); found negative or non-finite entries."
        )
    train.eliminate_zeros()
    return train


def _check_times(times):
    if times is None:
        return None
    if not sp.issparse(times):
        raise DataError(f"`times` must be a scipy.sparse [users, items] matrix of timestamps, got "
                        f"{type(times).__name__}. Fix: `Catalogue.time_matrix(interactions)`.")
    times = sp.csr_matrix(times, dtype=np.float64, copy=True)
    times.sort_indices()
    return times


def check_positive(name, value, *, integer=False, allow_zero=False):
    """Validates one hyperparameter; returns it as int or float."""
    cast = int if integer else float
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and integer and float(value) != int(value):
        ok = False
    if ok:
        value = cast(value)
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        rule = ">= 0" if allow_zero else "> 0"
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"`{name}` must be {kind} {rule}, got {value!r}.")
    return value
