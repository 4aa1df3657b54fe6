"""The retrieval space of a hybrid model: the towers' vectors, then the blocks set after training.

An item's vector and a query's are, in this order (each block only when it is set):

    item:  [tower vector (d) | T * w * log(1 + n_i) | w_c * Q_i (r)          | w_t * t_i (t)]
    query: [tower vector (d) | 1                    | sum_j P_j over history | text profile (t)]

the popularity prior's column (`set_popularity_prior`), the co-occurrence block
(`set_cooccurrence`, `tfrec.models.cooccurrence`) and the text profile's block
(`set_text_profile`, `tfrec.models.text_profile`), so one dot product scores them all,
in evaluation, in `Recommender`, in exported indexes and signatures. The last two read
the query's `profile_history` feature (the user's newest `profile_length` known items;
`history` where it is absent), which callers build beside `history`.
"""
import tensorflow as tf

from tfrec.config import ModelConfig
from tfrec.models.text_profile import PROFILE_FEATURE


class RetrievalSpace:
    """Mixin of `HybridRetrieval`: its retrieval-space vectors and the blocks set after training."""

    def item_embeddings(self, item_ids, training=False):
        """Retrieval-space vectors of item ids [...] -> [..., d + blocks] (module docstring)."""
        parts = [self.item_vectors(item_ids, training=training)]
        parts += [self.prior_column(item_ids)[..., None]] if self._prior is not None else []
        parts += [self.cooccurrence.item_columns(item_ids)] if self.cooccurrence is not None else []
        parts += [self.text_profile.item_columns(self.lookup, item_ids)] if self.text_profile is not None else []
        return tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]

    def query_embedding(self, features, training=False, history_vectors=None):
        """Retrieval-space query vectors [b, d + blocks] (module docstring)."""
        parts = [self.query_vector(features, training=training, history_vectors=history_vectors)]
        parts += [tf.ones_like(parts[0][:, :1])] if self._prior is not None else []
        if self.profile_length is not None:
            known = features.get(PROFILE_FEATURE, features["history"])  # (b, L) item ids, "" = padding
            if self.cooccurrence is not None:
                parts.append(self.cooccurrence.query_columns(known[:, -self.cooccurrence.length:]))
            if self.text_profile is not None:
                window = self.text_profile.newest(known)
                parts.append(self.text_profile.query_columns(self.lookup, {PROFILE_FEATURE: window, "history": window}))
        return tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]

    @property
    def profile_length(self):
        """How many of a user's newest known items the query's `profile_history` needs
        (the longest window of the co-occurrence block and the text profile), or None."""
        lengths = [b.length for b in (self.cooccurrence, self.text_profile) if b is not None]
        return max(lengths) if lengths else None

    def block_columns(self, name):
        """(start, stop): where block "cooccurrence" or "text_profile" lies in both vectors, or None if unset."""
        start = self.item_tower.output_dim + (self._prior is not None)
        for block in ("cooccurrence", "text_profile"):
            b = getattr(self, block)
            width = 0 if b is None else (b.rank if block == "cooccurrence" else b.dim)
            if block == name:
                return (start, start + width) if b is not None else None
            start += width
        raise ValueError(f"No retrieval-space block {name!r}; the blocks are 'cooccurrence' and 'text_profile'.")

    def lexical_columns(self):
        """(start, stop, terms): where the text profile's lexical term lies in both vectors and the word of
        each of its columns (an item's v x l_i against the query's lexical profile), or None if unset."""
        tp = self.text_profile
        if tp is None or tp.lexical is None:
            return None
        start = self.block_columns("text_profile")[0] + tp.text_dim
        return start, start + tp.lexical.dim, tp.lexical.terms

    def set_text_profile(self, weight=0.0, length=1000, shrinkage=ModelConfig.text_profile_shrinkage, lexical=0.0,
                         item_texts=None, lexical_terms=ModelConfig.text_profile_lexical_terms,
                         dim=ModelConfig.text_profile_dim):
        """Items without a trained id also score w x their text's match with the user's history, and with
        `lexical` > 0 v x their words' (TF-IDF) match; `item_texts`: the lookup's items'; `lexical_terms`:
        the most words given columns; `dim`: the text part's columns, 0: all (text_profile.py)."""
        from tfrec.models.text_profile import TextProfile

        self.text_profile = (TextProfile(self, weight, length, shrinkage, lexical, item_texts, lexical_terms, dim)
                             if weight else None)
        self._space_changed()

    def set_cooccurrence(self, interactions=None, weight=0.0, l2=250.0, rank=256, length=1000):
        """Every item also scores w x EASE's item-item scores from the user's known items,
        fitted in closed form on `interactions` (`tfrec.models.cooccurrence`). Weight 0: off."""
        from tfrec.models.cooccurrence import Cooccurrence

        self.cooccurrence = (Cooccurrence(self.lookup.item_ids, interactions, weight, l2, rank, length)
                             if weight else None)
        self._space_changed()

    def set_cooccurrence_weight(self, weight):
        """The co-occurrence block's B as fitted, with another weight (0: off), without refitting."""
        if weight:
            self.cooccurrence.reweight(weight)
        else:
            self.cooccurrence = None
        self._space_changed()

    def set_cold_neighbours(self, **settings):
        """Items without a trained id get their vectors mixed with their nearest trained
        items' (`tfrec.models.cold_neighbours.ColdNeighbours`; its keyword arguments).
        A snapshot of the trained items: call it after training. No arguments: off."""
        from tfrec.models.cold_neighbours import ColdNeighbours

        self.cold_neighbours = ColdNeighbours(self, **settings) if settings else None
        self._space_changed()

    def _space_changed(self):
        from tfrec.models import scoring

        scoring._FUNCTIONS.pop(self, None)  # functions traced before captured the previous space
        self.space_version += 1
