"""Builds the hybrid retrieval model from the config and the fitted features."""
import numpy as np
import pandas as pd

from tfrec.errors import ConfigError
from tfrec.features.vocabulary import Vocabulary


def item_columns(items: pd.DataFrame, text_embeddings, stats: dict = None, texts=None):
    """Catalogue columns the item tower reads: text embedding (or, when `texts` is
    given and `text_embeddings` is None, the raw template text for a fine-tuned
    encoder), multi-valued
    categoricals ("|"-joined strings) and normalised numerics (item metadata, so
    fitted on the whole catalogue: no interaction data involved).

    `stats` (column -> (mean, std)) is filled on the first call and reused when
    new items are indexed later, so existing items' features never shift.
    """
    stats = {} if stats is None else stats
    cols = {}
    if text_embeddings is not None:
        cols["text_embedding"] = np.asarray(text_embeddings, np.float32)
    if texts is not None:
        cols["text"] = np.asarray([str(t) for t in texts], dtype=object)
    categorical, numeric = {}, []
    for c in items.columns:
        if c in ("item_id", "title", "tags", "release_date", "video_release_date", "imdb_url"):
            continue
        col = items[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            v = col.astype(float).to_numpy()
            ok = np.isfinite(v) & (v >= 0) if c == "year" else np.isfinite(v)
            if c not in stats:
                stats[c] = (float(v[ok].mean()), float(v[ok].std() or 1.0)) if ok.any() else (0.0, 1.0)
            mean, std = stats[c]
            cols[c] = np.where(ok, (v - mean) / std, 0.0).astype(np.float32)
            numeric.append(c)
        elif col.astype(str).str.contains("|", regex=False).any() or c == "genres":
            cols[c] = col.fillna("").astype(str).to_numpy(dtype=object)
            categorical[c] = list(Vocabulary.fit_multi(cols[c]).values)
    return cols, categorical, numeric


FINETUNE_MODES = ("frozen", "top_n", "full")


def text_encoder_for(text_cfg, seed=0):
    """The trainable `BertTextEncoder` of `text.finetune` (top_n: the top
    `text.trainable_layers` transformer layers; full: everything), or None for frozen."""
    if text_cfg is None or text_cfg.finetune == "frozen":
        return None
    if text_cfg.finetune not in FINETUNE_MODES:
        raise ConfigError(f"`text.finetune` must be one of {', '.join(FINETUNE_MODES)}, got {text_cfg.finetune!r}.")
    if text_cfg.finetune == "top_n" and text_cfg.trainable_layers < 1:
        raise ConfigError(f"`text.finetune=top_n` needs `text.trainable_layers` >= 1, got {text_cfg.trainable_layers}; "
                          "use `text.finetune=frozen` to train no BERT layer.")
    from tfrec.text.encoder import BertTextEncoder

    n = text_cfg.trainable_layers if text_cfg.finetune == "top_n" else -1
    return BertTextEncoder(text_cfg.preset, sequence_length=text_cfg.sequence_length, pooling=text_cfg.pooling,
                           trainable_layers=n, seed=seed, name="text_encoder")


def query_tower_for(model_cfg, catalogue, query_features, seed=0):
    """The hybrid's `QueryTower` (`build_hybrid` builds it; unbuilt, no weights): also what
    computes a training set's `QueryTower.precomputed_inputs` with the same lookups."""
    from tfrec.models.query_tower import QueryTower

    d = model_cfg.embedding_dim
    return QueryTower(catalogue.user_vocab.values, output_dim=d, id_dim=d,
                      categorical=query_features.categorical, numeric=query_features.numeric,
                      use_id=model_cfg.use_id, use_attributes=model_cfg.use_attributes,
                      use_context=model_cfg.use_context, use_history=model_cfg.use_history,
                      sequence=model_cfg.sequence, reference_time=query_features.reference_time,
                      user_id_dropout=model_cfg.user_id_dropout, seed=seed,
                      prefixes=query_features.prefixes, name="query_tower")


def build_hybrid(model_cfg, catalogue, items, text_embeddings, query_features, train_counts=None, seed=0,
                 text_cfg=None):
    """Returns an uncompiled `HybridRetrieval` (call inside a strategy scope).

    `text_cfg` (a `TextConfig`) selects the fine-tuning mode: with `finetune` top_n or
    full the item tower holds a trainable BERT that encodes each item's template text
    (stored in the catalogue lookup) for the distinct items of every batch, and
    `text_embeddings` are not used, and the history encoder trains on the tower's pass over
    each batch's history items (`model.history_refresh` is ignored); frozen (or None)
    reads the cached embeddings.
    """
    from tfrec.models.catalogue_lookup import CatalogueLookup
    from tfrec.models.hybrid import HybridRetrieval
    from tfrec.models.item_tower import ItemTower

    if text_cfg is not None and text_cfg.finetune not in FINETUNE_MODES:
        raise ConfigError(f"`text.finetune` must be one of {', '.join(FINETUNE_MODES)}, got {text_cfg.finetune!r}.")
    text_encoder = text_encoder_for(text_cfg, seed) if model_cfg.use_text else None
    stats = {}
    if text_encoder is not None:
        from tfrec.text.template import item_texts

        cols, categorical, numeric = item_columns(items, None, stats, texts=item_texts(items, text_cfg.template))
    else:
        cols, categorical, numeric = item_columns(items, text_embeddings, stats)
    lookup = CatalogueLookup(catalogue.item_ids, cols, name="catalogue")
    lookup.item_stats = stats  # reused by `Recommender.index_items`
    d = model_cfg.embedding_dim
    item_tower = ItemTower(catalogue.item_vocab.values, output_dim=d, id_dim=d, categorical=categorical,
                           numeric=numeric, use_id=model_cfg.use_id, use_text=model_cfg.use_text,
                           id_dropout=model_cfg.id_dropout, seed=seed, text_encoder=text_encoder,
                           name="item_tower")
    query_tower = query_tower_for(model_cfg, catalogue, query_features, seed)
    logq = None
    if model_cfg.logq_correction:
        counts = np.asarray(catalogue.item_vocab.counts, np.float64)
        logq = (list(catalogue.item_vocab.values), np.log(counts / counts.sum()))
    return HybridRetrieval(lookup, item_tower, query_tower, item_log_probability=logq,
                           temperature=model_cfg.temperature, remove_accidental_hits=model_cfg.remove_accidental_hits,
                           num_random_negatives=model_cfg.num_random_negatives,
                           history_negatives=model_cfg.history_negatives, seed=seed,
                           content_loss_weight=model_cfg.content_loss_weight,
                           popularity_prior=max(model_cfg.popularity_prior) > 0,
                           repeat_penalty=model_cfg.repeat_penalty, content_prior=model_cfg.content_prior,
                           # A fine-tuned BERT would re-encode the whole catalogue at each refresh.
                           history_refresh=0 if text_encoder is not None else model_cfg.history_refresh)
