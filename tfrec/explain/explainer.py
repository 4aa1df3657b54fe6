"""`Explainer`: why a trained hybrid model recommends an item to a user.

Evidence per (user, item):
(a) history contributions: leave-one-out score drops (exact) and gradient x input
    over the history item vectors (`tfrec.explain.attribution`);
(b) content: genres the item shares with the history, and the history titles most
    similar by text embedding;
(c) collaborative: train users who watched both a history item and the item;
(d) user attributes and request time, by occlusion.
A model with a learned repeat penalty scores its query's own history items that much
lower; explained scores include it (`Explanation.repeat_penalty`).
Plus a sentence built from templates over the positive evidence (`tfrec.explain.text`).

Example:
    explainer = Explainer(result.recommender, result.split.train)
    e = explainer.explain("42", "50")
    e.sentence            # 'Because you watched Return of the Jedi (1983) and ...'
    e.to_dict()           # JSON form
    explainer.recommend_with_explanations("42", k=5)   # [Explanation] best first
"""
import dataclasses
import json
from typing import List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrec.data.history import PAD
from tfrec.errors import DataError
from tfrec.explain.attribution import GradientTimesInput, leave_one_out, occlusion
from tfrec.explain.evidence import CoOccurrence, shared_values, shared_words, split_values, text_similarity
from tfrec.explain.text import sentence


@dataclasses.dataclass
class HistoryEvidence:
    """One history item of the query and what it contributed to the item's score."""

    item_id: str
    title: str
    position: int  # in the padded history [N], oldest first, newest at N - 1
    leave_one_out: float  # score - score without this item (> 0: it raised the score)
    gradient_x_input: float
    co_occurrence: int  # train users who watched both this and the recommended item
    text_similarity: float  # cosine of the two items' text embeddings
    shared_genres: List[str]


@dataclasses.dataclass
class Explanation:
    """Structured evidence for one recommended item; `to_dict()` is its JSON form."""

    user_id: str
    item_id: str
    title: str
    score: float
    rank: Optional[int]
    genres: List[str]
    history: List[HistoryEvidence]  # every real history item, largest leave-one-out first
    shared_genres: List[tuple]  # [(genre, history items having it)], most frequent first
    similar_titles: List[dict]  # [{item_id, title, similarity}] most text-similar history items
    co_occurrence: List[dict]  # [{item_id, title, count}] history items most co-watched with the item
    item_popularity: int  # train users who watched the item
    attributes: dict  # user attribute / user_id / timestamp -> score change when made unknown
    sentence: str = ""
    repeat_penalty: float = 0.0  # already subtracted from `score`: the item is in the history (0: it is not)
    popularity_prior: float = 0.0  # the popularity prior's part of `score`, T * w * log(1 + recent count)
    prior_predicted: bool = False  # the item has no known interactions: the prior is its content's prediction
    text_profile: float = 0.0  # the text profile's part of `score` (items without a trained id; text_profile.py)
    cooccurrence: float = 0.0  # the co-occurrence block's part of `score` (EASE's item-item scores; cooccurrence.py)
    # [(word, its part of `score`)]: the text profile's lexical term by word, largest first (text_profile.py)
    text_profile_words: List[tuple] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["shared_genres"] = [[g, int(n)] for g, n in self.shared_genres]
        d["text_profile_words"] = [[w, float(v)] for w, v in self.text_profile_words]
        return d

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict) -> "Explanation":
        d = dict(d)
        d["history"] = [HistoryEvidence(**h) for h in d["history"]]
        d["shared_genres"] = [(g, int(n)) for g, n in d["shared_genres"]]
        d["text_profile_words"] = [(w, float(v)) for w, v in d.get("text_profile_words", [])]
        return cls(**d)

    def top_history(self, k=3) -> List[HistoryEvidence]:
        """The k history items with the largest positive leave-one-out contribution."""
        return [h for h in self.history if h.leave_one_out > 0][:k]


class Explainer:
    """Explains a `Recommender`'s scores.

    Args:
        recommender: a `tfrec.models.recommender.Recommender` over a `HybridRetrieval`.
        train_interactions: the train split (user_id, item_id): co-occurrence counts
            and popularity come from it only.
        genre_column: the multi-valued ("|"-joined) item column used as content evidence.
        k_similar: how many text-similar history titles / co-watched history items to list.
        k_words: how many of the text profile's lexical words to list (`Explanation.text_profile_words`).
    """

    def __init__(self, recommender, train_interactions: pd.DataFrame, genre_column="genres", k_similar=3,
                 k_words=5):
        self.recommender = recommender
        self.genre_column = genre_column
        self.k_similar, self.k_words = int(k_similar), int(k_words)
        self.cooc = CoOccurrence(train_interactions, recommender.item_ids)
        self._interacted = set(recommender.known["item_id"].astype(str))  # what the prior counts, when it is set
        self._gxi = GradientTimesInput(recommender.model)
        items = recommender.items
        self._titles = (items["title"].astype(str).to_numpy() if "title" in items.columns
                        else items["item_id"].astype(str).to_numpy())
        self._genres = (items[genre_column].to_numpy() if genre_column in items.columns
                        else np.full(len(items), "", dtype=object))
        qf = recommender.query_features
        self.occlusion_names = ["user_id", *qf.attribute_names, "timestamp"]
        self.neutral_time = int(qf.reference_time)

    # -- inputs ---------------------------------------------------------------------
    def features(self, user_id, timestamp=None, history=None, attributes=None) -> dict:
        """Raw query features (batch 1): `Recommender.query_features_of`."""
        return self.recommender.query_features_of(user_id, timestamp, history, attributes)

    def _rows(self, item_ids):
        rows = self.cooc.rows(item_ids)
        bad = [i for i, r in zip(item_ids, rows) if r < 0]
        if bad:
            raise DataError(f"`item_id` {bad[:5]} not in the catalogue ({len(self.cooc.item_ids)} items); "
                            "explain items the recommender can score (see `recommender.item_ids`).")
        return rows

    # -- attribution ------------------------------------------------------------------
    def attribute(self, features: dict, item_ids):
        """Raw attributions for m items of one query: dict with score [m],
        leave_one_out [m, N], gradient_x_input [m, N], occlusion [m, A] (names:
        `self.occlusion_names`), popularity_prior [m] (the prior's part of the score), text_profile
        [m] (the text profile's part: items without a trained id, `tfrec.models.text_profile`),
        cooccurrence [m] (the co-occurrence block's part, `tfrec.models.cooccurrence`), text_profile_words
        [m lists] (the lexical term's words and their parts, `evidence.shared_words`; [] without it)."""
        item_ids = list(item_ids)
        vecs = self.recommender.item_embeddings[self._rows(item_ids)]  # (m, d)
        fn = self.recommender.scorer._query_fn
        penalty = self.repeat_penalty
        score, loo = leave_one_out(fn, features, vecs, item_ids, penalty)
        occ = occlusion(fn, features, vecs, self.occlusion_names, self.neutral_time, score=score,
                        item_ids=item_ids, repeat_penalty=penalty)
        model = self.recommender.model
        prior = model.prior_column(tf.constant(item_ids)).numpy()  # 0 without a prior
        blocks = {name: np.zeros(len(item_ids), np.float32) for name in ("text_profile", "cooccurrence")}
        words = [[] for _ in item_ids]
        if getattr(model, "profile_length", None) is not None:  # the blocks after the towers' (models/space.py)
            q = fn({k: tf.constant(v) for k, v in features.items()}).numpy()[0]
            for name in blocks:
                cols = model.block_columns(name)
                if cols is not None:
                    blocks[name] = vecs[:, cols[0]:cols[1]] @ q[cols[0]:cols[1]]
            lexical = model.lexical_columns()
            if lexical is not None:
                a, z, terms = lexical
                words = shared_words(vecs[:, a:z], q[a:z], terms, self.k_words)
        return {"score": score, "leave_one_out": loo, "gradient_x_input": self._gxi(features, vecs),
                "occlusion": occ, "popularity_prior": prior, **blocks, "text_profile_words": words}

    @property
    def repeat_penalty(self) -> float:
        """The model's learned repeat penalty (0.0 without one): scores are explained with it,
        as `Recommender.recommend` ranks them."""
        p = self.recommender.model.repeat_penalty
        return 0.0 if p is None else float(p)

    # -- explanations ---------------------------------------------------------------------
    def explain(self, user_id, item_id, k_history=3, timestamp=None, history=None, attributes=None) -> Explanation:
        """Explanation of `item_id`'s score for `user_id` (history and attributes as in
        `Recommender.recommend`: defaults are the known ones)."""
        feats = self.features(user_id, timestamp, history, attributes)
        return self._explain(feats, [str(item_id)], k_history)[0]

    def recommend_with_explanations(self, user_id, k=10, k_history=3, timestamp=None, history=None,
                                    attributes=None, **recommend_kwargs) -> List[Explanation]:
        """`Recommender.recommend` + one `Explanation` per item (rank set), best first."""
        ts = self.recommender.default_timestamp() if timestamp is None else int(timestamp)
        top = self.recommender.recommend(user_id, k=k, timestamp=ts, history=history, attributes=attributes,
                                         **recommend_kwargs)
        feats = self.features(user_id, ts, history, attributes)
        out = self._explain(feats, top["item_id"].astype(str).tolist(), k_history)
        for r, e in enumerate(out, start=1):
            e.rank = r
        return out

    def common_words(self):
        """Words of more than half the catalogue's texts (a template's own, e.g. "Genres"), which sentences
        do not name (the text profile's lexical term as set now; none without it)."""
        profile = getattr(self.recommender.model, "text_profile", None)
        return set() if profile is None or profile.lexical is None else set(profile.lexical.common_terms(0.5))

    def _explain(self, feats, item_ids, k_history):
        att = self.attribute(feats, item_ids)
        common = self.common_words()
        hist = [str(h) for h in feats["history"][0]]
        real = [j for j, h in enumerate(hist) if h != PAD]
        known = [j for j in real if self.cooc.rows([hist[j]])[0] >= 0]
        hist_rows = self.cooc.rows([hist[j] for j in known])
        penalty, real_ids = self.repeat_penalty, {hist[j] for j in real}
        out = []
        for m, item in enumerate(item_ids):
            row = self.cooc.rows([item])[0]
            genres = split_values(self._genres[row])
            counts = dict(zip(known, self.cooc.counts(item, [hist[j] for j in known])))
            sims = dict(zip(known, text_similarity(self.recommender.text_embeddings, row, hist_rows)))
            evid = []
            for j in real:
                r = self.cooc.rows([hist[j]])[0]
                hg = split_values(self._genres[r]) if r >= 0 else []
                evid.append(HistoryEvidence(
                    item_id=hist[j], title=str(self._titles[r]) if r >= 0 else hist[j], position=j,
                    leave_one_out=float(att["leave_one_out"][m, j]),
                    gradient_x_input=float(att["gradient_x_input"][m, j]),
                    co_occurrence=int(counts.get(j, 0)), text_similarity=float(sims.get(j, 0.0)),
                    shared_genres=[g for g in genres if g in hg]))
            evid.sort(key=lambda h: -h.leave_one_out)
            by_sim = sorted([h for h in evid if h.position in sims], key=lambda h: -h.text_similarity)
            by_cooc = sorted([h for h in evid if h.co_occurrence > 0], key=lambda h: -h.co_occurrence)
            e = Explanation(
                user_id=str(feats["user_id"][0]), item_id=item, title=str(self._titles[row]),
                score=float(att["score"][m]), rank=None, genres=genres, history=evid,
                shared_genres=shared_values(self._genres[row], [self._genres[self.cooc.rows([hist[j]])[0]]
                                                                 for j in known]),
                similar_titles=[{"item_id": h.item_id, "title": h.title, "similarity": h.text_similarity}
                                for h in by_sim[:self.k_similar]],
                co_occurrence=[{"item_id": h.item_id, "title": h.title, "count": h.co_occurrence}
                               for h in by_cooc[:self.k_similar]],
                item_popularity=int(self.cooc.popularity[row]),
                attributes={n: float(v) for n, v in zip(self.occlusion_names, att["occlusion"][m])},
                repeat_penalty=penalty if item in real_ids else 0.0,
                popularity_prior=float(att["popularity_prior"][m]),
                prior_predicted=bool(att["popularity_prior"][m] > 0 and item not in self._interacted),
                text_profile=float(att["text_profile"][m]), cooccurrence=float(att["cooccurrence"][m]),
                text_profile_words=att["text_profile_words"][m])
            e.sentence = sentence(e, k_history, common)
            out.append(e)
        return out
