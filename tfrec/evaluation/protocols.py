"""Evaluation protocols named after published anchors, and the queries they ask.

A number like "NDCG@10 = 0.29 on MovieLens-100K" means nothing without its
protocol: how the interactions were split, whether a query is a user or a single
held-out interaction, which items are removed from the ranking, and what the
model may know when it answers. Each `Protocol` below fixes all four after a
published reference, so that tfrec's numbers can sit beside the reference's:

- `tfrs_tutorial`: the TensorFlow Recommenders basic/deep retrieval tutorials
  (the Keras-RS deep-retrieval example splits the same way but counts 5-star
  test ratings only; `bench/keras_rs_example.py` scores it both ways). ML-100K
  ratings, shuffled with seed 42 and cut 80/20 (tfrec shuffles with NumPy, the tutorial with
  `tf.data.Dataset.shuffle(seed=42)`, so the cut is of the same kind, not the
  same rows). The metric is `FactorizedTopK`'s top-K categorical accuracy: for
  EACH test rating, is its movie among the user's top K of all 1,682 movies?
  Seen movies are KEPT in the ranking. There is no validation split, so tfrec
  tunes baselines on a validation slice carved from train with a fixed seed
  (never on test), then refits the chosen configuration on the whole train set.
  Known history: train, as the tutorial's model knows it. The split is random in
  time, so baselines (and embedding pairs) score a user from ALL their train
  ratings, later ones included, exactly like the tutorial; a `score_queries`
  model is stricter: its `history` holds only train ratings strictly before the
  test rating.
- `recbole_general`: RecBole's general-recommendation set-up ("RO" order,
  `split: {'RS': [0.8, 0.1, 0.1]}` grouped by user, full ranking). What RecBole
  does, from its source (RUCAIBox/RecBole):
    * masking: `recbole/data/utils.py::_create_sampler` builds one `Sampler` over
      the phases ["train", "valid", "test"]; `recbole/sampler/sampler.py::
      Sampler.get_used_ids` accumulates each phase's items on top of the previous
      phases, and `recbole/data/dataloader/general_dataloader.py::
      FullSortEvalDataLoader._set_user_property` masks `used_item - positive_item`:
      at test time the user's TRAIN + VALID items are set to -inf
      (`recbole/trainer/trainer.py::_full_sort_batch_eval`), at validation time
      the train items;
    * filtering: `recbole/properties/dataset/ml-100k.yaml` has `val_interval: ~`
      (no rating threshold) and `user_inter_num_interval`/`item_inter_num_interval`
      "[0,inf)" (no k-core), so all 100,000 ratings are used; the quick-start log
      agrees ("The number of inters: 100000");
    * metrics (`recbole/evaluator/metrics.py`): Recall@K = hits / |test items|;
      NDCG@K with binary gains, 1/log2(rank+1), ideal DCG over min(|test items|, K);
      MRR@K = 1 / rank of the first hit within K, else 0; Hit@K = any hit in K.
      These are tfrec's `recall@K`, `ndcg@K`, `mrr@K` and `hit_rate@K`
      (`tfrec.evaluation.ranking`);
    * the anchor: RecBole's quick start (`docs/source/get_started/started/
      general.rst`) trains BPR on ml-100k with exactly this set-up and
      `valid_metric: MRR@10` and logs test recall@10 0.2523, mrr@10 0.4855,
      ndcg@10 0.292, hit@10 0.7953, precision@10 0.1962;
    * known history: RecBole's models score test users from what they learned on
      train only (the validation interactions are masked, not folded in), so here
      too baselines score test users from train;
    * query history "profile": RecBole's general models score a user from their whole
      train profile, and the test items lie anywhere in the user's timeline, so a
      `score_queries` model is asked with the user's latest N train items whatever
      their time, at the end of the train profile (`request_time`), and trained on
      the same kind of query (each train item's query: the user's other train items);
    * split sizes: per user, validation and test get int(0.1 n) events and train the
      rest, as RecBole's `Dataset._calcu_split_ids` (session 11; before, tfrec rounded
      the cut points, which gave 39% of ML-100K users one more test event). Which
      events fall in each part is tfrec's own seeded shuffle, not RecBole's.
- `recbole_sequential`: RecBole's sequential set-up ("TO" order, `split: {'LS':
  'valid_and_test'}`, full ranking): per user, the last interaction (by time) is
  the test query and the one before it the validation query; the model knows
  every earlier interaction (train + the validation one). For sequential models
  RecBole masks NOTHING: `FullSortEvalDataLoader.collate_fn` returns no history
  index when `MODEL_TYPE == SEQUENTIAL`, so already-seen items stay in the
  ranking (general models run under the same split are masked with train + valid;
  tfrec applies the anchor's rule, nothing masked, to every model, and reports
  `seen@10`, the share of top-10 slots taken by already-seen items). Order:
  RecBole sorts the file stably by time (`Interaction.sort`, numpy's stable
  argsort), so events of the same second keep the file's row order, and a
  model reads every earlier event of the sequence, same-second ones included;
  here too (`event_order=True`: 44% of ML-100K users' last two ratings share a
  second, and ordering them by item id, as tfrec did before session 11, picked
  another test item for 30% of the users). Metrics
  Hit@10 / NDCG@10 / MRR@10 as above. Anchor: the quick start
  (`docs/source/get_started/started/sequential.rst`) logs GRU4Rec test hit@10
  0.1103, ndcg@10 0.0513, mrr@10 0.0337.
- `temporal`: tfrec's default (`tfrec run`): one global time cut, 80/10/10,
  one query per test user, train + validation known and excluded.

Queries. `queries_for_test` / `queries_for_validation` turn a split into a `QuerySet`: a
`queries` table with one row per query (`user_id`, `user_idx`, `timestamp`, and
optionally `history`), the relevant items of each row, the items excluded from
each row's ranking, and the user x item matrix of the history known at query
time (what baselines fold in). Per-user queries are stamped with the user's first
target event; per-interaction queries with the event's own time.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from tfrec.errors import ConfigError
# The query builders live in `tfrec.evaluation.queries`; importable from here too.
from tfrec.evaluation.queries import (  # noqa: F401
    MODES, QUERY_HISTORIES, QuerySet, ValidationTask, build_queries, carve_slice, check_query_history,
    queries_for_test, queries_for_validation)
PARTS = ("train", "val")


# What tuning maximises on validation unless a protocol names another (tfrec's default protocol).
SELECT_METRIC = "ndcg@10"


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: split, query unit, exclusions, known history, metrics.

    Args:
        name: registry key ("recbole_general").
        title: the published anchor it follows, in words.
        split: a `tfrec.data.splits.make_split` kind.
        split_params: keyword arguments of `make_split` (fractions, seed, n_last).
        mode: "per_user" (one query per test user, relevant = all their test items)
            or "per_interaction" (one query per test interaction, relevant = its item).
        known: split parts a test query may use as history ("train", "val"); the
            validation queries know "train" only.
        exclude: split parts whose items are removed from a test query's ranking
            (the user's items in them); () keeps seen items. Validation queries
            exclude the same parts minus "val".
        metrics: headline metrics, the first one orders the report.
        ks: cut-offs computed (the headline's and the usual ones).
        select_metric: what tuning maximises on validation (and what the paired
            test against the best baseline compares).
        tune_on: "val" (the split's validation part) or "train_slice" (a slice of
            train carved with `slice_seed`, for protocols without validation).
        slice_fraction: size of that slice, as a fraction of train.
        slice_seed: its seed.
        anchor: the reference's published numbers and where they come from.
        query_history: what a query's history is (`QUERY_HISTORIES`): "before_event"
            (a time-ordered request: known items strictly before the event) or
            "profile" (the user's whole known profile, asked at its end; the hybrid
            is then trained on profile queries too).
        event_order: same-timestamp events keep the data's row order (an
            `event_order` column, `tfrec.data.history.with_event_order`): the split
            breaks ties by it and a history holds the earlier events of the same
            second, as RecBole's stable sort of its file does; otherwise ties go by
            item id and a history holds strictly earlier timestamps only.

    Example:
        protocol = get_protocol("recbole_general")
        split = protocol.make_split(data.interactions)
        test = queries_for_test(protocol, split, catalogue)   # QuerySet
    """

    name: str
    title: str
    split: str
    split_params: dict
    mode: str
    known: tuple
    exclude: tuple
    metrics: tuple
    ks: tuple
    select_metric: str = SELECT_METRIC
    tune_on: str = "val"
    slice_fraction: float = 0.1
    slice_seed: int = 42
    anchor: str = ""
    query_history: str = "before_event"
    event_order: bool = False

    def __post_init__(self):
        check_query_history(self.query_history)
        if self.mode not in MODES:
            raise ConfigError(f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}.")
        for field in ("known", "exclude"):
            bad = [p for p in getattr(self, field) if p not in PARTS]
            if bad:
                raise ConfigError(f"`{field}` may only name the parts {PARTS}, got {bad}.")
        if "train" not in self.known:
            raise ConfigError(f"`known` must include 'train' (models are fitted on it), got {self.known}.")
        if self.tune_on not in ("val", "train_slice"):
            raise ConfigError(f"`tune_on` must be 'val' or 'train_slice', got {self.tune_on!r}.")

    @property
    def validation_exclude(self) -> tuple:
        """What validation queries exclude: the test rule, without the validation part itself."""
        return tuple(p for p in self.exclude if p != "val")

    def interactions(self, interactions: pd.DataFrame) -> pd.DataFrame:
        """`interactions` as this protocol reads them: with an `event_order` column
        (their row order) where it orders same-timestamp events by the data."""
        from tfrec.data.history import with_event_order

        return with_event_order(interactions) if self.event_order else interactions

    def make_split(self, interactions: pd.DataFrame):
        """Splits `interactions` as this protocol says (`tfrec.data.splits.make_split`)."""
        from tfrec.data.splits import make_split

        return make_split(self.interactions(interactions), self.split, **self.split_params)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ("known", "exclude", "metrics", "ks"):
            out[key] = list(out[key])
        return out


_RECBOLE_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit_rate@10", "precision@10")

PROTOCOLS = {
    p.name: p
    for p in (
        Protocol(
            name="tfrs_tutorial",
            title="TFRS basic/deep retrieval tutorials (and the Keras-RS example's split): ML-100K ratings "
                  "shuffled with seed 42, 80/20; per test rating, is its movie in the user's top K of all "
                  "movies (FactorizedTopK top-K categorical accuracy); seen movies kept",
            split="random",
            split_params={"val_fraction": 0.0, "test_fraction": 0.2, "seed": 42},
            mode="per_interaction",
            known=("train",),
            exclude=(),
            metrics=("hit_rate@100", "hit_rate@50", "hit_rate@10", "hit_rate@5", "hit_rate@1", "ndcg@10"),
            ks=(1, 5, 10, 20, 50, 100),
            select_metric="hit_rate@100",
            tune_on="train_slice",
            anchor="The tutorials print `factorized_top_k/top_100_categorical_accuracy` on the 20,000 test "
                   "ratings (id towers, 32 dims, 3 epochs); hit_rate@K here is that accuracy at K.",
        ),
        Protocol(
            name="recbole_general",
            title="RecBole general recommendation: per-user random 80/10/10 (RO, RS 8:1:1), full ranking, "
                  "train + valid items masked at test",
            split="per_user_random",
            split_params={"val_fraction": 0.1, "test_fraction": 0.1, "seed": 42},
            mode="per_user",
            known=("train",),
            exclude=("train", "val"),
            metrics=_RECBOLE_METRICS,
            ks=(5, 10, 20, 50, 100),
            select_metric="mrr@10",
            anchor="RecBole quick start (docs/source/get_started/started/general.rst), BPR on ml-100k: "
                   "test recall@10 0.2523, mrr@10 0.4855, ndcg@10 0.292, hit@10 0.7953, precision@10 0.1962.",
            query_history="profile",
        ),
        Protocol(
            name="recbole_sequential",
            title="RecBole sequential recommendation: time-ordered leave-one-out (TO, LS valid_and_test), "
                  "full ranking, one test interaction per user, nothing masked",
            split="leave_last_n",
            split_params={"n_last": 1},
            mode="per_interaction",
            known=("train", "val"),
            exclude=(),
            metrics=("ndcg@10", "hit_rate@10", "mrr@10"),
            ks=(5, 10, 20, 50, 100),
            select_metric="mrr@10",
            anchor="RecBole quick start (docs/source/get_started/started/sequential.rst), GRU4Rec on ml-100k: "
                   "test hit@10 0.1103, ndcg@10 0.0513, mrr@10 0.0337.",
            event_order=True,
        ),
        Protocol(
            name="temporal",
            title="tfrec default (`tfrec run`): global time split 80/10/10, one query per test user, "
                  "train + validation known and excluded",
            split="temporal",
            split_params={"val_fraction": 0.1, "test_fraction": 0.1},
            mode="per_user",
            known=("train", "val"),
            exclude=("train", "val"),
            metrics=("ndcg@10", "recall@10", "recall@20", "hit_rate@10", "mrr", "auc"),
            ks=(5, 10, 20, 50, 100),
            anchor="No external anchor: the honest default, where nothing from the test period is known.",
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    """The protocol registered as `name`; unknown names raise `ConfigError` listing the known ones."""
    if name not in PROTOCOLS:
        raise ConfigError(
            f"Unknown evaluation protocol `{name}`; known: {', '.join(PROTOCOLS)} (or `all`). "
            "Fix: pass e.g. `--protocol recbole_general`."
        )
    return PROTOCOLS[name]


def query_history_for(eval_cfg) -> str:
    """The query history a run trains and evaluates with: `eval.query_history` when set,
    else the named protocol's, else "before_event". A named protocol fixes its own
    (its test queries are built from the registry), so a different override is refused."""
    override = getattr(eval_cfg, "query_history", None)
    if override is not None:
        check_query_history(override)
    if not eval_cfg.protocol:
        if override == "profile":
            # `tfrec run` without a named protocol evaluates at each user's first test event
            # (before_event); training on profiles would not match what is evaluated.
            raise ConfigError("`eval.query_history=profile` needs a named protocol whose test queries are profile "
                              "queries. Fix: add `--eval.protocol=recbole_general`, or drop `eval.query_history`.")
        return override or "before_event"
    own = get_protocol(eval_cfg.protocol).query_history
    if override is not None and override != own:
        raise ConfigError(
            f"`eval.query_history={override}` conflicts with `eval.protocol={eval_cfg.protocol}`, whose queries are "
            f"{own!r}. Fix: drop `eval.query_history`, or use `--split.kind=...` without a named protocol.")
    return own


def protocol_from_config(split, eval_cfg) -> Protocol:
    """The protocol `tfrec run` has always used, for any configured split: one query per
    test user, train + validation known, and excluded when `eval.exclude_seen`; its
    queries' history is `eval.query_history` (default "before_event")."""
    return Protocol(
        name=split.kind,
        title=f"`tfrec run`: `{split.kind}` split, one query per test user",
        split=split.kind,
        split_params=dict(split.params),
        mode="per_user",
        known=("train", "val"),
        exclude=("train", "val") if eval_cfg.exclude_seen else (),
        metrics=("ndcg@10", "recall@10", "recall@20", "hit_rate@10", "mrr", "auc"),
        ks=tuple(eval_cfg.ks),
        query_history=getattr(eval_cfg, "query_history", None) or "before_event",
    )

