"""Vocabularies fitted on the train split only, and their in-graph lookups.

Index convention of every id lookup (`StringLookup(mask_token="", num_oov_indices=1)`):
0 = padding (""), 1 = out-of-vocabulary (unknown or cold id), 2.. = known ids, most
frequent first. Serving therefore never fails on an unknown id: it gets the OOV row.
"""
import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from tfrec.data.history import PAD

N_RESERVED = 2  # padding + OOV rows ahead of the vocabulary


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Distinct values seen in training, most frequent first (ties by value)."""

    values: tuple
    counts: tuple

    @classmethod
    def fit(cls, values: Sequence, min_count: int = 1) -> "Vocabulary":
        s = pd.Series(np.asarray(values, dtype=object))
        s = s[s.notna() & (s != PAD)].astype(str)
        vc = s.value_counts()
        vc = vc[vc >= min_count]
        df = pd.DataFrame({"v": vc.index, "c": vc.to_numpy()}).sort_values(["c", "v"], ascending=[False, True], kind="mergesort")
        return cls(tuple(df["v"].tolist()), tuple(int(c) for c in df["c"]))

    @classmethod
    def from_counts(cls, values: Sequence, counts: Sequence, min_count: int = 1, max_tokens=None) -> "Vocabulary":
        """Builds the vocabulary `fit` would give from distinct values and their counts
        (e.g. counted in a streaming pass): most frequent first, ties by value; keeps
        values seen at least `min_count` times, then at most `max_tokens` of them."""
        counts = np.asarray(counts, dtype=np.int64)
        if len(values) != len(counts):
            raise ValueError(f"`values` and `counts` must have the same length, got {len(values)} and {len(counts)}.")
        df = pd.DataFrame({"v": pd.Series(list(values), dtype=object).astype(str), "c": counts})
        if df["v"].duplicated().any():
            raise ValueError(f"`values` must be distinct; repeated: {df['v'][df['v'].duplicated()].head(3).tolist()}.")
        df = df[(df["c"] >= min_count) & (df["v"] != PAD)]
        df = df.sort_values(["c", "v"], ascending=[False, True], kind="mergesort")
        if max_tokens is not None:
            df = df.iloc[:max_tokens]
        return cls(tuple(df["v"].tolist()), tuple(int(c) for c in df["c"]))

    @classmethod
    def fit_multi(cls, joined: Sequence[str], separator: str = "|") -> "Vocabulary":
        """Fits on multi-valued strings ("Action|Comedy")."""
        parts = [p for s in joined if isinstance(s, str) and s for p in s.split(separator)]
        return cls.fit(parts)

    def __len__(self):
        return len(self.values)

    @property
    def size(self) -> int:
        """Rows an embedding over this vocabulary needs (padding + OOV + values)."""
        return len(self.values) + N_RESERVED

    def lookup_layer(self, name=None):
        import tensorflow as tf

        return tf.keras.layers.StringLookup(
            vocabulary=list(self.values) or ["<none>"], mask_token=PAD, num_oov_indices=1, name=name
        )

    def index(self, values) -> np.ndarray:
        """NumPy mirror of `lookup_layer` (0 pad, 1 OOV, 2.. known)."""
        table = {v: i + N_RESERVED for i, v in enumerate(self.values)}
        return np.array([0 if v == PAD else table.get(str(v), 1) for v in values], dtype=np.int64)

    def to_dict(self):
        return {"values": list(self.values), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, d):
        return cls(tuple(d["values"]), tuple(d["counts"]))
