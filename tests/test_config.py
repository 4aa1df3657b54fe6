import json

import pytest

from tfrec.config import RunConfig, load_config
from tfrec.errors import ConfigError


def test_defaults_file_and_dotted_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 7\n  batch_size: 512\nsplit:\n  kind: random\n")
    cfg = load_config(f, ["--train.epochs=3", "eval.ks=5,10", "--data.source=none", "--model.logq_correction=false"])
    assert cfg.train.epochs == 3 and cfg.train.batch_size == 512 and cfg.split.kind == "random"
    assert cfg.eval.ks == (5, 10) and cfg.data.source is None and cfg.model.logq_correction is False
    assert json.loads(cfg.to_json())["train"]["epochs"] == 3
    assert RunConfig().train.epochs != 3  # defaults untouched (frozen dataclasses)


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown config key `train.epoch`. Did you mean `train.epochs`"):
        load_config(None, ["--train.epoch=3"])
    with pytest.raises(ConfigError, match=r"`train.epochs` must be of type int, got 'three'"):
        load_config(None, ["--train.epochs=three"])
    with pytest.raises(ConfigError, match=r"must look like `--section.key=value`"):
        load_config(None, ["--train.epochs"])
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"could not be parsed"):
        load_config(bad)


@pytest.mark.parametrize("overrides, message", [
    (["ranking.mode=both"], r"`ranking.mode` must be one of separate, joint, got 'both'"),
    (["ranking.loss=hinge"], r"`ranking.loss` must be one of listwise, bce, rating, got 'hinge'"),
    (["ranking.rating_base=median"], r"`ranking.rating_base` must be one of learned, bias"),
    (["ranking.cold_user_fraction=1.0"], r"`ranking.cold_user_fraction` must be in \[0, 1\), got 1.0"),
    (["ranking.history_rating_shrinkage=-1"], r"`ranking.history_rating_shrinkage` must be >= 0"),
    (["ranking.candidates=0"], r"`ranking.candidates` must be >= 1, got 0"),
    (["ranking.num_random_negatives=-2"], r"`ranking.num_random_negatives` must be >= 0, got -2"),
    (["ranking.popularity_days=-1"], r"`ranking.popularity_days` must be >= 0, got -1"),
    (["ranking.hard_negative_pool=0"],
     r"`ranking.hard_negative_pool` must be >= 1 .* got 0; or set `ranking.num_hard_negatives=0`"),
    (["ranking.learning_rate=0"], r"`ranking.learning_rate` must be > 0"),
    (["ranking.projection_dim=0"], r"`ranking.projection_dim` must be >= 1 .* or null"),
    (["ranking.deep_units=64,0"], r"`ranking.deep_units` must be non-empty layer sizes >= 1, got \(64, 0\)"),
    (["train.epochs=0"], r"`train.epochs` must be >= 1, got 0"),
    (["train.batch_size=-4"], r"`train.batch_size` must be >= 1, got -4"),
    (["train.steps_per_execution=0"], r"`train.steps_per_execution` must be >= 1, got 0"),
    (["train.learning_rate=0"], r"`train.learning_rate` must be > 0"),
    (["train.early_stopping_patience=-1"], r"`train.early_stopping_patience` must be >= 0 \(0 = off\)"),
    (["train.refit=true", "train.early_stopping_patience=0"],
     r"`train.refit` needs `train.early_stopping_patience` >= 1"),
    (["train.strategy=tpu"], r"Unknown `train.strategy` 'tpu'; choose one of mirrored, one_device, multi_worker"),
    (["train.optimizer=rmsprop"], r"Unknown `train.optimizer` 'rmsprop'; choose one of adagrad, adam, sgd"),
    (["model.kind=deep"], r"Unknown `model.kind` 'deep'; choose hybrid or two_tower"),
    (["model.sequence=lstm"], r"`model.sequence` must be mean, gru or sasrec, got 'lstm'"),
    (["model.embedding_dim=0"], r"`model.embedding_dim` must be >= 1"),
    (["model.temperature=0"], r"`model.temperature` must be > 0"),
    (["model.id_dropout=1.5"], r"`model.id_dropout` must be in \[0, 1\], got 1.5"),
    (["model.num_random_negatives=-1"], r"`model.num_random_negatives` must be >= 0"),
    (["model.use_id=false", "model.use_text=false"], r"The item tower needs `model.use_id` or `model.use_text`"),
    (["export.index=hnsw"], r"`export.index` must be one of brute_force, kmeans, got 'hnsw'"),
    (["export.k=0"], r"`export.k` must be >= 1, got 0"),
    (["export.partitions=0"], r"`export.partitions` must be >= 1 or null"),
    (["data.history_length=0"], r"`data.history_length` must be >= 1"),
])
def test_bad_values_are_refused_when_the_config_is_loaded(overrides, message):
    # `tfrec run` loads its config before it reads data: a bad value used to surface only
    # when its stage started (ranking and export after training; model at model build) or
    # as a bare ValueError (`train.epochs=0`, `data.history_length=0`).
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"--{o}" for o in overrides])


def test_ranking_values_are_checked_after_the_whole_section_is_applied():
    # One section's keys are applied at once: switching hard negatives off and the pool
    # to 0 together is fine, though the pool alone would be refused.
    cfg = load_config(None, ["--ranking.hard_negative_pool=0", "--ranking.num_hard_negatives=0"])
    assert (cfg.ranking.num_hard_negatives, cfg.ranking.hard_negative_pool) == (0, 0)


def test_every_optimizer_the_config_accepts_can_be_built():
    from tfrec.config import OPTIMIZERS
    from tfrec.training.trainer import make_optimizer

    for name in OPTIMIZERS:
        assert make_optimizer(name.upper(), 0.1).learning_rate.numpy() == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="rmsprop"):
        make_optimizer("rmsprop", 0.1)


def test_the_config_accepts_exactly_the_export_indexes_there_are():
    from tfrec.config import EXPORT_INDEXES
    from tfrec.export.ann import INDEXES

    assert set(EXPORT_INDEXES) == set(INDEXES)
