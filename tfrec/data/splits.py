"""Train/validation/test splits of an interactions table.

Every split returns a `Split` of three disjoint interaction tables. Everything
fitted later (vocabularies, normalisers, popularity) is fitted on `train` only.

- `temporal` (tfrec's default): a global time cut; nothing from the future of a
  train event leaks into training.
- `leave_last_n`: per user, the last n events (by time) are test, the n before
  are validation (RecBole's sequential protocol with n=1).
- `random`: rows shuffled with a seed (the TFRS tutorial's 80/20).
- `per_user_random`: each user's events split at random by fractions (RecBole's
  general protocol, 80/10/10).
- `cold_items`: a seeded sample of items is held out; their interactions appear
  only in test; the rest is split temporally.
"""
import dataclasses
from typing import Optional

import numpy as np
import pandas as pd

from tfrec.data.history import tie_break
from tfrec.errors import DataError

SPLIT_KINDS = ("temporal", "leave_last_n", "random", "per_user_random", "cold_items")


@dataclasses.dataclass
class Split:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    kind: str
    params: dict
    cold_items: np.ndarray = dataclasses.field(default_factory=lambda: np.array([], dtype=object))

    def summary(self) -> dict:
        out = {"kind": self.kind, **self.params}
        for name in ("train", "val", "test"):
            df = getattr(self, name)
            out[name] = {"interactions": int(len(df)), "users": int(df["user_id"].nunique()),
                         "items": int(df["item_id"].nunique())}
        out["cold_items"] = int(len(self.cold_items))
        out["test_users_not_in_train"] = int((~self.test["user_id"].drop_duplicates().isin(self.train["user_id"])).sum())
        return out


def _check_fractions(val_fraction, test_fraction):
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise DataError(f"`split.{name}` must be in [0, 1), got {v}.")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"`split.val_fraction` + `split.test_fraction` must be below 1 (nothing would be left "
            f"to train on), got {val_fraction} + {test_fraction}."
        )


def _nonempty(split: Split) -> Split:
    if len(split.train) == 0:
        raise DataError(f"The `{split.kind}` split left the train set empty. Fix: lower `split.val_fraction`/`split.test_fraction`.")
    if len(split.test) == 0:
        raise DataError(
            f"The `{split.kind}` split left the test set empty ({split.params}). Fix: raise "
            "`split.test_fraction` (or `split.n_last`), or use more data."
        )
    return split


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    # A stable sort with an explicit tie-break keeps splits reproducible across pandas versions.
    return df.sort_values(["timestamp", "user_id", tie_break(df)], kind="mergesort").reset_index(drop=True)


def temporal_split(interactions: pd.DataFrame, val_fraction=0.1, test_fraction=0.1) -> Split:
    """Global time split: the latest `test_fraction` of events (by timestamp) are
    test, the `val_fraction` before them validation. Events that share the cut
    timestamp all go to the later part, so no test event precedes a train event."""
    _check_fractions(val_fraction, test_fraction)
    ts = np.sort(interactions["timestamp"].to_numpy())
    n = len(ts)
    t_test = ts[min(n - 1, int(np.floor(n * (1 - test_fraction))))] if test_fraction > 0 else np.iinfo(np.int64).max
    t_val = ts[min(n - 1, int(np.floor(n * (1 - test_fraction - val_fraction))))] if val_fraction > 0 else t_test
    t = interactions["timestamp"]
    split = Split(
        train=_sorted(interactions[t < t_val]),
        val=_sorted(interactions[(t >= t_val) & (t < t_test)]),
        test=_sorted(interactions[t >= t_test]),
        kind="temporal",
        params={"val_fraction": val_fraction, "test_fraction": test_fraction,
                "val_start": int(t_val), "test_start": int(t_test)},
    )
    return _nonempty(split)


def leave_last_n_split(interactions: pd.DataFrame, n_last=1, n_val: Optional[int] = None) -> Split:
    """Per user: the last `n_last` events are test, the `n_val` (default n_last)
    before them validation, the rest train. Ties in time are broken by item id, or
    by the `event_order` column where the interactions have one
    (`tfrec.data.history.with_event_order`)."""
    n_val = n_last if n_val is None else n_val
    if n_last < 1:
        raise DataError(f"`split.n_last` must be at least 1, got {n_last}.")
    df = interactions.sort_values(["user_id", "timestamp", tie_break(interactions)],
                                  kind="mergesort").reset_index(drop=True)
    counts = df.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    too_few = df.loc[counts < n_last + n_val + 1, "user_id"].unique()
    if len(too_few):
        raise DataError(
            f"`leave_last_n` with n_last={n_last} and n_val={n_val} would leave {len(too_few)} user(s) "
            f"with an empty train set (e.g. {list(too_few[:5])}: they have at most {n_last + n_val} "
            "interactions). Fix: lower `split.n_last`, or drop users with few interactions first "
            "(`data.min_user_interactions`)."
        )
    # Position counted from each user's end: 0 = last event.
    from_end = df.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    split = Split(
        train=_sorted(df[from_end >= n_last + n_val]),
        val=_sorted(df[(from_end >= n_last) & (from_end < n_last + n_val)]),
        test=_sorted(df[from_end < n_last]),
        kind="leave_last_n",
        params={"n_last": n_last, "n_val": n_val},
    )
    return _nonempty(split)


def random_split(interactions: pd.DataFrame, val_fraction=0.0, test_fraction=0.2, seed=42) -> Split:
    """Rows shuffled with `seed`, then cut by fractions (the TFRS tutorial's split)."""
    _check_fractions(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(interactions))
    n_test = int(round(len(perm) * test_fraction))
    n_val = int(round(len(perm) * val_fraction))
    n_train = len(perm) - n_test - n_val
    df = interactions.reset_index(drop=True)
    split = Split(
        train=_sorted(df.iloc[perm[:n_train]]),
        val=_sorted(df.iloc[perm[n_train:n_train + n_val]]),
        test=_sorted(df.iloc[perm[n_train + n_val:]]),
        kind="random",
        params={"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed},
    )
    return _nonempty(split)


def per_user_random_split(interactions: pd.DataFrame, val_fraction=0.1, test_fraction=0.1, seed=42) -> Split:
    """Each user's events are shuffled with `seed` and cut by fractions (RecBole's
    'RO' ordering with 8:1:1 split), sized as RecBole's `Dataset._calcu_split_ids`:
    validation and test get floor(fraction x n) events, train the rest; a part whose
    fraction x n lies in (0, 1) gets one event from train while train keeps two."""
    _check_fractions(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    df = interactions.reset_index(drop=True)
    # Random rank within user: sort by (user, random key).
    key = rng.random(len(df))
    order = np.lexsort((key, df["user_id"].to_numpy()))
    df = df.iloc[order].reset_index(drop=True)
    pos = df.groupby("user_id", sort=False).cumcount().to_numpy()
    size = df.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    n_val = np.floor(size * val_fraction).astype(int)
    n_test = np.floor(size * test_fraction).astype(int)
    for n_part, fraction in ((n_test, test_fraction), (n_val, val_fraction)):  # RecBole's order: last part first
        lift = (0 < size * fraction) & (size * fraction < 1) & (size - n_val - n_test > 1)
        n_part[lift] += 1
    n_train = size - n_val - n_test
    split = Split(
        train=_sorted(df[pos < n_train]),
        val=_sorted(df[(pos >= n_train) & (pos < n_train + n_val)]),
        test=_sorted(df[pos >= n_train + n_val]),
        kind="per_user_random",
        params={"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed},
    )
    return _nonempty(split)


def cold_item_split(interactions: pd.DataFrame, cold_item_fraction=0.1, val_fraction=0.1, test_fraction=0.1, seed=42) -> Split:
    """Holds out a seeded sample of items (`cold_item_fraction` of the items that
    have interactions): all their interactions go to test, so no model sees them
    in training. The remaining interactions are split temporally."""
    if not 0.0 < cold_item_fraction < 1.0:
        raise DataError(f"`split.cold_item_fraction` must be in (0, 1), got {cold_item_fraction}.")
    items = np.sort(interactions["item_id"].unique())
    rng = np.random.default_rng(seed)
    n_cold = max(1, int(round(len(items) * cold_item_fraction)))
    cold = np.sort(rng.choice(items, size=n_cold, replace=False))
    is_cold = interactions["item_id"].isin(cold)
    warm = temporal_split(interactions[~is_cold], val_fraction, test_fraction)
    test = _sorted(pd.concat([warm.test, interactions[is_cold]], ignore_index=True))
    split = Split(
        train=warm.train, val=warm.val, test=test, kind="cold_items",
        params={**warm.params, "cold_item_fraction": cold_item_fraction, "seed": seed},
        cold_items=cold,
    )
    return _nonempty(split)


def validation_cold_split(split: Split, fraction=0.1, seed=7) -> Split:
    """A validation stand-in for a `cold_items` split, for tuning cold-start models
    without touching the test cold items: a seeded sample (`fraction`) of the TRAIN
    items is held out as "validation-cold" items. Their train and validation
    interactions become the returned split's test (and its `cold_items`); train and
    validation keep everything else, and the test cold items stay out of all three."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"`fraction` of validation-cold items must be in (0, 1), got {fraction}.")
    items = np.sort(split.train["item_id"].unique())
    n_cold = max(1, int(round(len(items) * fraction)))
    cold = np.sort(np.random.default_rng(seed).choice(items, size=n_cold, replace=False))
    in_train, in_val = split.train["item_id"].isin(cold), split.val["item_id"].isin(cold)
    test = _sorted(pd.concat([split.train[in_train], split.val[in_val]], ignore_index=True))
    out = Split(train=split.train[~in_train].reset_index(drop=True), val=split.val[~in_val].reset_index(drop=True),
                test=test, kind="validation_cold",
                params={**split.params, "validation_cold_fraction": fraction, "validation_cold_seed": seed},
                cold_items=cold)
    return _nonempty(out)


def make_split(interactions: pd.DataFrame, kind="temporal", *, val_fraction=0.1, test_fraction=0.1,
               n_last=1, cold_item_fraction=0.1, seed=42) -> Split:
    """Dispatches on `kind` (one of SPLIT_KINDS)."""
    if kind == "temporal":
        return temporal_split(interactions, val_fraction, test_fraction)
    if kind == "leave_last_n":
        return leave_last_n_split(interactions, n_last)
    if kind == "random":
        return random_split(interactions, val_fraction, test_fraction, seed)
    if kind == "per_user_random":
        return per_user_random_split(interactions, val_fraction, test_fraction, seed)
    if kind == "cold_items":
        return cold_item_split(interactions, cold_item_fraction, val_fraction, test_fraction, seed)
    raise DataError(f"Unknown `split.kind` {kind!r}; choose one of {', '.join(SPLIT_KINDS)}.")
