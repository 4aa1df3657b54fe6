"""Reference recommenders on integer indices, for the full-catalogue evaluator.

Each baseline has `fit(train csr [U, I], *, item_text=None, seed=0, times=None)`,
`score(user_idx) -> float32 [b, I]` (seen items not masked), `get_params()`,
a registry `name` and a tuning `grid`.

Example:
    cls = BASELINES["ease"]
    for l2 in cls.grid["l2"]:
        scores = cls(l2=l2).fit(train).score(val_users)
"""
from tfrec.evaluation.baselines.base import Baseline
from tfrec.evaluation.baselines.ease import EASE
from tfrec.evaluation.baselines.item_knn import ItemKNN
from tfrec.evaluation.baselines.mf import ImplicitALS
from tfrec.evaluation.baselines.most_popular import MostPopular
from tfrec.evaluation.baselines.random import Random
from tfrec.evaluation.baselines.recent_popular import RecentPopular
from tfrec.evaluation.baselines.tfidf_content import TfidfContent
from tfrec.evaluation.baselines.tfrs_tutorial import TfrsTutorial

BASELINES = {
    cls.name: cls
    for cls in (Random, MostPopular, RecentPopular, ItemKNN, EASE, ImplicitALS, TfidfContent, TfrsTutorial)
}

__all__ = [
    "BASELINES",
    "Baseline",
    "EASE",
    "ImplicitALS",
    "ItemKNN",
    "MostPopular",
    "Random",
    "RecentPopular",
    "TfidfContent",
    "TfrsTutorial",
]
