"""Run configuration: one frozen dataclass per stage, assembled into `RunConfig`.

Values: defaults, then a YAML/JSON file (`--config`), then dotted overrides (`--train.epochs=3`); runs write the
resolved `config.json`. Each section checks its values when made: a bad one stops `tfrec run` before any data is read.
"""
import dataclasses
import difflib
import json
import pathlib
import typing
from typing import Optional, Tuple

from tfrec.errors import ConfigError


def _check_at_least(section, cfg, names, low, *, strict=False, note=""):
    """ConfigError for the first of `names` below `low` (with `strict`: not above it)."""
    for name in names:
        value = getattr(cfg, name)
        if value < low or (strict and value == low):
            raise ConfigError(f"`{section}.{name}` must be {'>' if strict else '>='} {low}{note}, got {value}.")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data comes from. `source`: a folder, a GroupLens zip, "tfds:movielens/100k-ratings"
    or a registered name ("ml-100k"). None: `TFREC_DATA`, then ../shared/datasets/ml-100k, then TFDS."""

    source: Optional[str] = None
    dataset: str = "ml-100k"
    schema: Optional[str] = None  # path to a schema file for your own data
    items: Optional[str] = None  # your own items table (with `source` = interactions)
    users: Optional[str] = None
    history_length: int = 20
    min_rating: Optional[float] = None  # keep interactions rated at least this (None: all)

    def __post_init__(self):
        _check_at_least("data", self, ["history_length"], 1, note=" (items of recent history per query)")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How interactions are split. kind: temporal | leave_last_n | random | per_user_random | cold_items."""

    kind: str = "temporal"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    n_last: int = 1
    cold_item_fraction: float = 0.1
    seed: int = 42


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Item text through BERT. preset: "minilm" (offline all-MiniLM-L6-v2), "tiny" (random, tests), a preset folder
    or a keras-hub preset name. finetune: "frozen" (encode once, cached on disk) | "top_n" (fine-tune the top
    `trainable_layers` over the distinct items of each batch) | "full"."""

    preset: str = "minilm"
    sequence_length: int = 32
    pooling: str = "mean"
    template: Optional[str] = None  # e.g. "{title}. Genres: {genres}."; None: title, genres, tags
    finetune: str = "frozen"
    trainable_layers: int = 1
    batch_size: int = 64
    cache_dir: str = ".tfrec_cache"


MODEL_KINDS, SEQUENCE_ENCODERS = ("hybrid", "two_tower"), ("mean", "gru", "sasrec")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """kind: "hybrid" (ids + BERT text + attributes + context + history) or "two_tower" (ids only, TFRS + logQ)."""

    kind: str = "hybrid"
    embedding_dim: int = 64
    temperature: float = 0.05  # hybrid: softmax over cosine similarities / temperature
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    use_id: bool = True
    use_text: bool = True
    use_attributes: bool = True
    use_context: bool = True
    use_history: bool = True
    sequence: str = "mean"  # mean | gru | sasrec
    id_dropout: float = 0.2
    user_id_dropout: float = 0.1
    num_random_negatives: int = 0
    history_refresh: int = 10  # training: history vectors from a table refreshed every N steps, no gradient; 0 = off
    history_negatives: float = 0.0  # weight of the "own history items are negatives" loss
    content_loss_weight: float = 0.0  # content-only retrieval loss (candidate ids -> OOV, as cold items); 0 = off
    # Hybrid: + w * log(1 + the item's interactions in the last N days), (w, N) chosen on validation; (0,) = off
    popularity_prior: Tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    popularity_prior_days: Tuple[int, ...] = (7, 14, 30, 0)  # 0 = all time
    # Hybrid: + w * EASE's item-item scores from the known items, w chosen on validation; 0 = off (cooccurrence.py)
    cooccurrence: Tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    cooccurrence_l2: float = 250.0
    cooccurrence_rank: int = 256
    content_prior: bool = False  # items without interactions: their prior predicted from content (content_prior.py)
    cold_neighbours: int = 0  # items without a trained id: mixed with K nearest trained ones (cold_neighbours.py)
    cold_neighbour_settings: Tuple[float, ...] = (0.1, 0.5, 0.0)  # softmax temperature, category weight, own share
    text_profile: float = 0.5  # items without a trained id: + w x text match with the whole history (text_profile.py)
    text_profile_shrinkage: float = 40.0  # a profile of n known items counts n / (n + this)
    text_profile_dim: int = 64  # its text columns: the centred texts' top principal directions; 0 = every dimension
    text_profile_lexical: float = 0.5  # with the text profile (off with it): + v x the words' (TF-IDF) match; 0 = off
    text_profile_lexical_terms: int = 1024  # its columns: the words of the most item texts; 0 = every word
    repeat_penalty: bool = False  # learn a score offset for items in the query's own history (models/repeat.py)

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"Unknown `model.kind` {self.kind!r}; choose {' or '.join(MODEL_KINDS)}.")
        if self.sequence not in SEQUENCE_ENCODERS:
            raise ConfigError(f"`model.sequence` must be {', '.join(SEQUENCE_ENCODERS[:-1])} or "
                              f"{SEQUENCE_ENCODERS[-1]}, got {self.sequence!r}.")
        _check_at_least("model", self, ["embedding_dim", "cooccurrence_rank"], 1)
        if not self.popularity_prior or min(self.popularity_prior) < 0 or min(self.popularity_prior_days or [-1]) < 0:
            raise ConfigError("`model.popularity_prior` needs weights >= 0 (0 = off) and `model.popularity_prior_days` "
                              f"days >= 0 (0 = all time), got {self.popularity_prior} / {self.popularity_prior_days}.")
        if not self.cooccurrence or min(self.cooccurrence) < 0:
            raise ConfigError(f"`model.cooccurrence` needs weights >= 0 (0 = off), got {self.cooccurrence}.")
        _check_at_least("model", self, ["temperature", "cooccurrence_l2"], 0, strict=True)
        for name in ("id_dropout", "user_id_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"`model.{name}` must be in [0, 1], got {getattr(self, name)}.")
        _check_at_least("model", self, ["num_random_negatives", "history_negatives", "history_refresh",
                                        "content_loss_weight", "cold_neighbours", "text_profile"], 0, note=" (0 = off)")
        _check_at_least("model", self, ["text_profile_shrinkage", "text_profile_dim", "text_profile_lexical",
                                        "text_profile_lexical_terms"], 0)
        if self.content_loss_weight > 0 and not self.use_id:
            raise ConfigError("`model.content_loss_weight` > 0 needs `model.use_id=true`: without ids the main loss is "
                              "already content-only. Set `model.content_loss_weight=0`.")
        if not (self.use_id or self.use_text):
            raise ConfigError("The item tower needs `model.use_id` or `model.use_text` (or both).")
        if not (self.use_id or self.use_attributes or self.use_context or self.use_history):
            raise ConfigError("The query tower has no input: enable at least one of `model.use_id`, "
                              "`model.use_attributes`, `model.use_context`, `model.use_history`.")


STRATEGIES, OPTIMIZERS = ("mirrored", "one_device", "multi_worker"), ("adagrad", "adam", "sgd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 1024
    steps_per_execution: int = 16  # retrieval: steps per call of Keras's training function (same updates, faster)
    learning_rate: float = 0.003
    optimizer: str = "adam"
    early_stopping_patience: int = 3  # epochs without a better validation recall@20; 0 = off
    refit: bool = False  # then retrain on train + validation for the best epoch count, choices kept (+ the ranker)
    strategy: str = "mirrored"  # mirrored | multi_worker (cluster from TF_CONFIG) | one_device
    seed: int = 42
    shuffle_buffer: int = 100_000
    verbose: int = 2
    # State after every epoch; None: <run_root>/checkpoints/<name>-<config hash> (a killed run leaves no run folder)
    checkpoint_dir: Optional[str] = None
    resume: bool = True  # a restarted run with the same config continues after its last finished epoch
    collective_timeout_s: float = 300.0  # multi_worker: a collective this late on a lost peer fails the job
    data_service: Optional[str] = None  # "grpc://HOST:PORT" of a tf.data service dispatcher; None: this process

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"Unknown `train.strategy` {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
        if self.optimizer.lower() not in OPTIMIZERS:
            raise ConfigError(f"Unknown `train.optimizer` {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        _check_at_least("train", self, ["epochs", "batch_size", "steps_per_execution", "shuffle_buffer"], 1)
        _check_at_least("train", self, ["early_stopping_patience"], 0, note=" (0 = off)")
        _check_at_least("train", self, ["learning_rate", "collective_timeout_s"], 0, strict=True)
        if self.refit and not self.early_stopping_patience:  # it retrains for the epoch count early stopping chose
            raise ConfigError("`train.refit` needs `train.early_stopping_patience` >= 1 (retrains for the best epoch).")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    ks: Tuple[int, ...] = (5, 10, 20, 50, 100)
    exclude_seen: bool = True
    baselines: Tuple[str, ...] = ("random", "most_popular", "recent_popular", "item_knn", "ease", "implicit_als",
                                  "tfidf_content", "tfrs_tutorial")
    n_bootstrap: int = 1000
    seed: int = 0
    # tfrs_tutorial | recbole_general | recbole_sequential | temporal: split, queries, exclusions; None: `split.*`
    protocol: Optional[str] = None
    # The hybrid's queries (queries.QUERY_HISTORIES): "before_event" | "profile"; None: the protocol's
    query_history: Optional[str] = None


RANKING_MODES, RANKING_LOSSES, RATING_BASES = ("separate", "joint"), ("listwise", "bce", "rating"), ("learned", "bias")


def check_ranking_values(*, loss, rating_base, cold_user_fraction, history_rating_shrinkage):
    """Raises ConfigError naming the first bad ranking-stage value (shared by
    `RankingConfig` and `tfrec.models.ranking.HybridRanker`)."""
    if loss not in RANKING_LOSSES:
        raise ConfigError(f"`ranking.loss` must be one of {', '.join(RANKING_LOSSES)}, got {loss!r}.")
    if rating_base not in RATING_BASES:
        raise ConfigError(f"`ranking.rating_base` must be one of {', '.join(RATING_BASES)}, got {rating_base!r}.")
    if not 0.0 <= float(cold_user_fraction) < 1.0:
        raise ConfigError(f"`ranking.cold_user_fraction` must be in [0, 1), got {cold_user_fraction}.")
    if float(history_rating_shrinkage) < 0:
        raise ConfigError(f"`ranking.history_rating_shrinkage` must be >= 0, got {history_rating_shrinkage}.")


@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """The ranking stage (DCN-v2 cross layers + deep MLP over user, context, history and item features incl.
    the BERT text embedding) on the retriever's candidates.

    mode: "separate" (train retrieval, then the ranker on the retriever's hard negatives, retrieval frozen) | "joint"
    (one multi-task model, loss = retrieval_weight * retrieval + relevance_weight * ranking + rating_weight * rating).
    loss: "listwise" (softmax over [positive, negatives]) | "bce" | "rating"."""

    enabled: bool = True
    mode: str = "separate"
    loss: str = "listwise"
    rating_weight: float = 1.0  # rating regression head (data with ratings); 0 = off
    relevance_weight: float = 1.0
    retrieval_weight: float = 1.0  # joint mode only
    embedding_dim: int = 32
    cross_layers: int = 2
    projection_dim: Optional[int] = None  # low-rank cross layers; None = full rank
    deep_units: Tuple[int, ...] = (256, 64)
    num_hard_negatives: int = 8  # from the retriever's top `hard_negative_pool` (separate mode)
    hard_negative_pool: int = 100
    num_random_negatives: int = 8
    candidates: int = 200  # items retrieved per request before ranking
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 0.0003  # chosen on validation: bench/results/ranker_variants_ml100k.json
    early_stopping_patience: int = 2  # on validation two-stage NDCG@10
    history_ratings: bool = True  # rating head: + a term on the ratings of the user's history items
    history_rating_shrinkage: float = 5.0
    rating_user_bias: bool = True  # per-user-id bias b_u in the rating head
    # "learned": mu + b_u + b_i trained with the head; "bias": the closed-form bias model's, frozen (head: residual)
    rating_base: str = "bias"
    cold_user_fraction: float = 0.3  # training examples shown as a new user's (no id, no history); bench/ranker_heldout
    popularity_days: int = 30  # item popularity features: events in the N days before the request's day; 0 = off
    blend_by_history: bool = False  # one blend for queries with an empty history, one for the rest (validation)

    def __post_init__(self):
        if self.mode not in RANKING_MODES:
            raise ConfigError(f"`ranking.mode` must be one of {', '.join(RANKING_MODES)}, got {self.mode!r}.")
        check_ranking_values(loss=self.loss, rating_base=self.rating_base, cold_user_fraction=self.cold_user_fraction,
                             history_rating_shrinkage=self.history_rating_shrinkage)
        _check_at_least("ranking", self, ["embedding_dim", "candidates", "epochs", "batch_size"], 1)
        _check_at_least("ranking", self, ["rating_weight", "relevance_weight", "retrieval_weight", "num_hard_negatives",
                                          "num_random_negatives", "cross_layers", "early_stopping_patience",
                                          "popularity_days"], 0)
        _check_at_least("ranking", self, ["learning_rate"], 0, strict=True)
        if self.num_hard_negatives > 0 and self.hard_negative_pool < 1:
            raise ConfigError(f"`ranking.hard_negative_pool` must be >= 1 (hard negatives come from the retriever's "
                              f"top items), got {self.hard_negative_pool}; or set `ranking.num_hard_negatives=0`.")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ConfigError(f"`ranking.projection_dim` must be >= 1 (low-rank crosses) or null (full rank), "
                              f"got {self.projection_dim}.")
        if not self.deep_units or min(self.deep_units) < 1:
            raise ConfigError(f"`ranking.deep_units` must be non-empty layer sizes >= 1, got {self.deep_units}.")


EXPORT_INDEXES = ("brute_force", "kmeans")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    root: str = "saved_models"
    name: str = "ml100k_retrieval"
    k: int = 100
    enabled: bool = True
    index: str = "brute_force"  # brute_force | kmeans (approximate, core TF ops only)
    probes: int = 8  # kmeans: partitions scored per query
    partitions: Optional[int] = None  # kmeans: default ~sqrt(n_items)

    def __post_init__(self):
        if self.index not in EXPORT_INDEXES:
            raise ConfigError(f"`export.index` must be one of {', '.join(EXPORT_INDEXES)}, got {self.index!r}.")
        _check_at_least("export", self, ["k", "probes"], 1)
        if self.partitions is not None and self.partitions < 1:
            raise ConfigError(f"`export.partitions` must be >= 1 or null (about sqrt(items)), got {self.partitions}.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    text: TextConfig = TextConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    ranking: RankingConfig = RankingConfig()
    export: ExportConfig = ExportConfig()
    run_root: str = "runs"
    name: str = "ml100k"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _coerce(value, tp, where: str):
    """Casts a parsed value (from YAML/JSON or a CLI string) to the field type `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, [a for a in args if a is not type(None)][0], where)
    if origin in (tuple, Tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"`{where}` must be a list, got {value!r}.")
        return tuple(_coerce(v, args[0], where) for v in value)
    try:
        if tp is bool:
            low = value.strip().lower() if isinstance(value, str) else None
            if low in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return low in ("1", "true", "yes", "on")
            if isinstance(value, (bool, int)) and low is None:
                return bool(value)
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value).strip() if isinstance(value, str) else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"`{where}` must be of type {tp.__name__}, got {value!r}.") from None
    return value


def _replace(cfg, updates: dict, prefix: str = ""):
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for key, value in updates.items():
        where = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean `{prefix}{close[0]}`?" if close else ""
            raise ConfigError(f"Unknown config key `{where}`.{hint} Known: {', '.join(prefix + f for f in fields)}.")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"`{where}` is a section; give a mapping or dotted keys like `{where}.<key>=...`.")
            changes[key] = _replace(current, value, where + ".")
        else:
            changes[key] = _coerce(value, hints[key], where)
    return dataclasses.replace(cfg, **changes)


def parse_overrides(args) -> dict:
    """Turns ["train.epochs=3", "--model.embedding_dim=32"] into a nested dict."""
    nested: dict = {}
    for raw in args:
        arg = raw[2:] if raw.startswith("--") else raw
        if "=" not in arg:
            raise ConfigError(f"Override {raw!r} must look like `--section.key=value` (e.g. `--train.epochs=3`).")
        key, value = arg.split("=", 1)
        parts = key.split(".")
        d = nested
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ConfigError(f"Override {raw!r} conflicts with an earlier override of `{p}`.")
        d[parts[-1]] = value
    return nested


def load_config(path=None, overrides=(), base: Optional[RunConfig] = None) -> RunConfig:
    """Defaults <- file (YAML or JSON) <- dotted overrides."""
    cfg = base or RunConfig()
    if path:
        p = pathlib.Path(path)
        if not p.exists():
            raise ConfigError(f"Config file `{p}` does not exist.")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                d = yaml.safe_load(text) or {}
            else:
                d = json.loads(text)
        except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
            raise ConfigError(f"Config file `{p}` could not be parsed: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"Config file `{p}` must hold a mapping of sections, got {type(d).__name__}.")
        try:
            cfg = _replace(cfg, d)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
    if overrides:
        cfg = _replace(cfg, parse_overrides(overrides))
    return cfg
