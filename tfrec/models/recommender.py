"""`Recommender`: the trained hybrid model plus what it needs to answer requests.

It holds the catalogue (items table and cached text embeddings), the fitted query
features, the interactions known so far (histories and seen items), and the text
encoder, so that new items can be added from their text and attributes alone.

Example:
    rec = result.recommender                     # from tfrec.run(config)
    rec.recommend("42", k=10)                    # DataFrame: item_id, title, score
    rec.index_items(new_items_df)                # cold items: text + attributes, no retraining
    rec.recommend("42", k=10, include=new_ids)   # they are retrievable at once
    rec.observe(new_interactions_df)             # in histories and seen items from now on

With a ranker (the ranking stage), `recommend` is two-stage: the top
`n_candidates` (default 200) of the full catalogue are retrieved, re-ranked by the
ranker, and business rules are applied before the top-k is cut:

    rec.recommend("42", k=10, exclude=["50"], where={"genres": "Comedy"},
                  max_per_category=("genres", 3))
"""
import time
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from tfrec.config import ModelConfig
from tfrec.data.history import EVENT_ORDER
from tfrec.errors import DataError
from tfrec.models.catalogue_lookup import column_values
from tfrec.models.scoring import newest
from tfrec.models.text_profile import PROFILE_FEATURE


class Recommender:
    def __init__(self, model, query_features, items: pd.DataFrame, text_embeddings: np.ndarray,
                 known: pd.DataFrame, text_encoder=None, text_template=None, ranker=None, n_candidates=200):
        self.model = model
        self.ranker = ranker
        self.n_candidates = int(n_candidates)
        self.query_features = query_features
        self.items = items.reset_index(drop=True)
        self.text_embeddings = np.asarray(text_embeddings, np.float32)
        self.known = known
        self.text_encoder = text_encoder
        self.text_template = text_template
        self._refresh()

    def _refresh(self):
        from tfrec.models.scoring import HybridScorer

        self._scorer = HybridScorer(self.model, self.query_features, self.known, self.items["item_id"].astype(str))
        self.item_ids = self._scorer.item_ids
        self._index = pd.Index(self.item_ids)
        self._items_by_id = self.items.set_index(self.items["item_id"].astype(str))  # per-request lookups

    @property
    def scorer(self):
        """The `HybridScorer` of this recommender's catalogue and known interactions, rebuilt when the
        model's item vectors have changed since (`model.set_popularity_prior`, `set_cold_neighbours`, ...)."""
        if self._scorer.stale:
            self._refresh()
        return self._scorer

    @property
    def item_embeddings(self) -> np.ndarray:
        return self.scorer.item_embeddings

    def set_text_profile(self, weight=ModelConfig.text_profile, length=1000,
                         shrinkage=ModelConfig.text_profile_shrinkage, lexical=ModelConfig.text_profile_lexical,
                         lexical_terms=ModelConfig.text_profile_lexical_terms, dim=ModelConfig.text_profile_dim):
        """Items without a trained id (held out, or added by `index_items`) also score by their
        text's match with the user's whole history (`tfrec.models.text_profile`; weight 0: off; the
        texts in `dim` principal directions, 0: all), and with `lexical` > 0 by their words' (TF-IDF;
        columns for the `lexical_terms` words of the most texts, 0: every word); this recommender's
        index follows. Nothing is retrained. The defaults are `tfrec run`'s (`ModelConfig`)."""
        from tfrec.models.text_profile import catalogue_texts

        texts = catalogue_texts(self.model.lookup, self.items, self.text_template) if lexical else None
        # `scorer` rebuilds at its next use
        self.model.set_text_profile(weight, length, shrinkage, lexical, texts, lexical_terms, dim)
        return self

    def default_timestamp(self) -> int:
        """The request time when none is given: 1 s after the last known interaction (now if none
        is known). A model is asked about the time its data describes: MovieLens-100K ends in
        April 1998, and "now" would put every request 28 years past anything it trained on. For
        a live request pass `timestamp=` (TF Serving requests always carry one)."""
        return int(self.known["timestamp"].max()) + 1 if len(self.known) else int(time.time())

    def query_features_of(self, user_id, timestamp=None, history: Optional[Sequence[str]] = None, attributes=None):
        """Raw query features (batch of one), the in-memory model's inputs. Defaults: `default_timestamp()`,
        the user's known history, their known attributes. With a block that reads more history than the
        tower (the text profile, on by default; the co-occurrence block) they also hold `profile_history`,
        its newest known items: a serving request sends those as `history` instead (the export keeps the
        tower's newest N of it) and leaves `profile_history` out."""
        ts = self.default_timestamp() if timestamp is None else int(timestamp)
        feats = {"user_id": np.array([str(user_id)], object), "timestamp": np.array([ts], np.int64)}
        n = self.query_features.history_length
        if history is None:
            mine = self.known[(self.known["user_id"].astype(str) == str(user_id)) & (self.known["timestamp"] < ts)]
            history = mine.sort_values("timestamp", kind="mergesort")["item_id"].astype(str).tolist()
        history = [str(h) for h in history]
        feats["history"] = newest([history], n)
        profile = getattr(self.model, "profile_length", None)
        if profile is not None:  # blocks that read more of the history than the tower (models/space.py)
            feats[PROFILE_FEATURE] = newest([history], profile)
        attrs = self.query_features.attributes([str(user_id)])
        for k, v in (attributes or {}).items():
            if k not in attrs:
                raise DataError(f"Unknown user attribute `{k}`; the model knows {sorted(attrs) or 'none'}.")
            attrs[k] = np.array([v], dtype=attrs[k].dtype)
        feats.update(attrs)
        return feats

    def query_embedding(self, user_id, timestamp=None, history: Optional[Sequence[str]] = None, attributes=None):
        """One query vector. Defaults: `default_timestamp()`, the user's known history, their known attributes."""
        return self.scorer._embed(self.query_features_of(user_id, timestamp, history, attributes))[0]

    def _mask(self, user_id, exclude_seen, exclude, include, where, history=None):
        mask = np.zeros(len(self.item_ids), bool)
        if exclude_seen:
            seen = self.known.loc[self.known["user_id"].astype(str) == str(user_id), "item_id"].astype(str)
            mask |= self._index.isin(seen) | self._index.isin([str(h) for h in (() if history is None else history)])
        if len(exclude):
            mask |= self._index.isin([str(e) for e in exclude])
        if include is not None:
            mask |= ~self._index.isin([str(i) for i in include])
        for column, wanted in (where or {}).items():
            if column not in self.items.columns:
                raise DataError(f"`where` filters on `{column}`, which the items table does not have; "
                                f"columns: {list(self.items.columns)}.")
            values = self.items[column]
            wanted = [wanted] if isinstance(wanted, (str, int, float)) else list(wanted)
            if values.dtype == object and values.astype(str).str.contains("|", regex=False).any():
                sets = values.fillna("").astype(str).str.split("|")  # multi-valued: any value matches
                ok = sets.map(lambda vs: any(str(w) in vs for w in wanted)).to_numpy(bool)
            else:
                ok = values.astype(str).isin([str(w) for w in wanted]).to_numpy()
            mask |= ~ok
        return mask

    def recommend(self, user_id, k=10, timestamp=None, history=None, attributes=None, exclude_seen=True,
                  exclude: Sequence[str] = (), include: Optional[Sequence[str]] = None, where: dict = None,
                  max_per_category=None, rank: Optional[bool] = None) -> pd.DataFrame:
        """Top-k items for a user (known or not: attributes and history suffice).

        Args:
            exclude_seen: drop items the user interacted with before: the known ones and those of
                the `history` given.
            exclude: item ids never to return.
            include: restrict to these item ids (e.g. newly indexed ones).
            where: item attribute filters, column -> value or list of values (for
                "|"-joined columns such as genres an item matches if any value does).
            max_per_category: (column, cap): at most `cap` items per value of `column`
                (diversity); an item with several values counts for each and is skipped
                once any of them is full; the list is back-filled from the candidates.
            rank: re-rank the retrieved candidates with the ranker (default: when the
                recommender has one). Columns: item_id, title, score (the final
                order's score), retrieval_score, and rank_score when ranked.
        """
        rank = self.ranker is not None if rank is None else bool(rank)
        if rank and self.ranker is None:
            raise DataError("`rank=True` needs a ranker; train with `ranking.enabled=true`.")
        feats = self.query_features_of(user_id, timestamp, history, attributes)
        scorer = self.scorer
        scores = scorer.penalise(scorer._embed(feats) @ scorer.item_embeddings.T, feats["history"])[0]  # (I,)
        mask = self._mask(user_id, exclude_seen, exclude, include, where, history)
        masked = np.where(mask, -np.inf, scores)
        available = int((~mask).sum())
        n = min(available, max(self.n_candidates if rank else 0, int(k) * (4 if max_per_category else 1)))
        cand = np.argsort(-masked, kind="stable")[:n]
        out = pd.DataFrame({"item_id": self.item_ids[cand], "score": scores[cand], "retrieval_score": scores[cand]})
        if rank and len(cand):
            from tfrec.models.two_stage import rank_candidates

            rel, _ = rank_candidates(self.ranker, feats, self.item_ids[cand][None, :])
            out["rank_score"] = rel[0]
            out["score"] = rel[0]
            out = out.sort_values("score", ascending=False, kind="stable")
        if max_per_category:
            out = _cap_per_category(out, self._items_by_id, *max_per_category)
        out = out.head(int(k)).reset_index(drop=True)
        if "title" in self.items.columns:
            titles = self._items_by_id["title"]
            out.insert(1, "title", titles.loc[out["item_id"]].to_numpy())
        return out

    def observe(self, interactions: pd.DataFrame, popularity=False) -> int:
        """Interactions that happened since the model was trained (columns user_id, item_id,
        timestamp; rating optional): from now on they are in their users' histories and seen
        items, for known and new users alike. Nothing is retrained; items must be in the
        catalogue (`index_items` first). Checked before anything changes. Returns the number of
        interactions added.

        `popularity=True`: the retriever's popularity prior (weight and window kept) and the
        ranker's popularity features count them too. Pass it with *everything* that happened
        since: the prior's window ends at the newest known interaction, so one user's later
        events alone would move it past days the recommender knows nothing of."""
        missing = [c for c in ("user_id", "item_id", "timestamp") if c not in interactions.columns]
        if missing:
            raise DataError(f"`observe` needs columns user_id, item_id and timestamp; missing {missing}.")
        new = interactions.copy()
        new["user_id"], new["item_id"] = new["user_id"].astype(str), new["item_id"].astype(str)
        unknown = new.loc[~new["item_id"].isin(self.item_ids), "item_id"].unique()
        if len(unknown):
            raise DataError(f"`observe`: item ids {list(unknown[:5])} are not in the catalogue; add new items "
                            "with `index_items` first.")
        try:
            new["timestamp"] = new["timestamp"].astype(np.int64)
        except (TypeError, ValueError) as e:
            raise DataError(f"`observe`: timestamps must be Unix seconds (integers): {e}") from None
        table = getattr(self.ranker, "popularity", None) if popularity else None
        if table is not None and not table.covers(new["timestamp"]).all():
            last = table.first_day + table.n_days - 1
            raise DataError(f"`observe`: the ranker's popularity features count days {table.first_day} to {last} "
                            "(Unix days) and these interactions fall outside; pass `popularity=False` (histories "
                            "and seen items still follow) or retrain on data that spans them.")
        if EVENT_ORDER in self.known.columns and EVENT_ORDER not in new.columns:  # same-second order: after
            new[EVENT_ORDER] = int(self.known[EVENT_ORDER].max()) + 1 + np.arange(len(new))  # the known ones
        self.known = pd.concat([self.known, new[[c for c in self.known.columns if c in new.columns]]],
                               ignore_index=True)
        if popularity and getattr(self.model, "has_popularity_prior", False):
            self.model.set_popularity_prior(self.known)
        if table is not None:  # (rows observed with popularity=False beyond its days stay uncounted)
            self.ranker.set_popularity(self.known[table.covers(self.known["timestamp"])])
        self._refresh()
        return len(new)

    def index_items(self, new_items: pd.DataFrame, batch_size=64) -> int:
        """Adds items nobody has interacted with from their text and attributes,
        without retraining: their text goes through BERT, their id maps to the OOV
        embedding (which ID dropout trained for exactly this case). Returns the
        number of items added."""
        from tfrec.models.catalogue_lookup import CatalogueLookup
        from tfrec.models.factory import item_columns
        from tfrec.text.cache import encode_texts
        from tfrec.text.template import item_texts

        if "item_id" not in new_items.columns:
            raise DataError("`new_items` needs an `item_id` column (and the text fields of the template).")
        new = new_items.copy()
        new["item_id"] = new["item_id"].astype(str)
        dup = new["item_id"][new["item_id"].isin(self.item_ids) | new["item_id"].duplicated()]
        if len(dup):
            raise DataError(f"`index_items`: item ids {dup.head(5).tolist()} are already in the catalogue "
                            "(or repeated); give new items new ids.")
        missing = [c for c in self.items.columns if c not in new.columns and c != "item_id"]
        for c in missing:  # attributes the new items lack: "" for categories, NaN (-> the mean) for numbers
            numeric = pd.api.types.is_numeric_dtype(self.items[c]) and not pd.api.types.is_bool_dtype(self.items[c])
            new[c] = np.nan if numeric else ""
        new = new[list(self.items.columns)]
        if self.text_encoder is None:
            raise DataError("`index_items` needs the text encoder; build the Recommender with `text_encoder=`.")
        old = self.model.lookup
        texts = item_texts(new, self.text_template)
        if "text_embedding" in old.column_names:
            emb = encode_texts(self.text_encoder, texts, batch_size=batch_size, progress=len(new) > batch_size)
        else:  # fine-tuned text: the item tower encodes the `text` column itself
            emb = np.zeros((len(new), self.text_embeddings.shape[1]), np.float32)
        new_cols, _, _ = item_columns(new, emb, getattr(old, "item_stats", None), texts=texts)
        # Existing rows are copied as they are (minus the trailing "unknown" row).
        cols = {k: np.concatenate([column_values(old.columns[k])[:-1], np.asarray(new_cols[k])])
                for k in old.column_names}
        self.items = pd.concat([self.items, new], ignore_index=True)
        self.text_embeddings = np.concatenate([self.text_embeddings, emb])
        self.model.lookup = CatalogueLookup(self.items["item_id"].astype(str), cols, name=old.name)
        self.model.lookup.item_stats = getattr(old, "item_stats", None)
        if self.ranker is not None:  # the ranker has its own lookup (frozen, cached text embeddings)
            rold = self.ranker.lookup
            remb = emb if "text_embedding" in old.column_names else encode_texts(
                self.text_encoder, texts, batch_size=batch_size, progress=len(new) > batch_size)
            rnew, _, _ = item_columns(new, remb, getattr(rold, "item_stats", None))
            rcols = {k: np.concatenate([column_values(rold.columns[k])[:-1], np.asarray(rnew[k])])
                     for k in rold.column_names}
            self.ranker.lookup = CatalogueLookup(self.items["item_id"].astype(str), rcols, name=rold.name)
            self.ranker.lookup.item_stats = getattr(rold, "item_stats", None)
            from tfrec.models.two_stage import _FUNCTIONS

            _FUNCTIONS.pop(self.ranker, None)  # re-trace: the traced function captured the old lookup
        from tfrec.models import scoring
        from tfrec.models.content_prior import index_prior

        index_prior(self.model, new["item_id"])  # with the content prior: their popularity prior, predicted
        profile = self.model.text_profile
        if profile is not None:  # the profile's rows for them: their texts' scales (and words)
            profile.add_items(texts, np.asarray(new_cols["text_embedding"]))
        scoring._FUNCTIONS.pop(self.model, None)  # likewise for the retrieval model's traced functions
        self._refresh()
        return len(new)


def _cap_per_category(ranked: pd.DataFrame, items: pd.DataFrame, column: str, cap: int) -> pd.DataFrame:
    """Greedy: keeps items in order while every value of their `column` is under `cap`."""
    if column not in items.columns:
        raise DataError(f"`max_per_category` uses `{column}`, which the items table does not have.")
    if int(cap) < 1:
        raise DataError(f"`max_per_category` cap must be >= 1, got {cap}.")
    counts, keep = {}, []
    for item in ranked["item_id"]:
        values = [v for v in str(items.at[item, column] if item in items.index else "").split("|") if v] or [""]
        if all(counts.get(v, 0) < int(cap) for v in values):
            keep.append(True)
            for v in values:
                counts[v] = counts.get(v, 0) + 1
        else:
            keep.append(False)
    return ranked[np.asarray(keep, bool)]
