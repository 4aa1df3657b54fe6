"""`tfrec recommend --run RUN_DIR --user 42 [--k 10] [...]`: a finished run's recommendations.

Rebuilds the run's trained model (`tfrec.cli.artifacts.load_run`) and asks its `Recommender`,
with the same business rules as `Recommender.recommend`:

    tfrec recommend --run runs/<time>-ml100k --user 42
    tfrec recommend --run RUN --user someone-new --history 50,181 --attribute age=31 --attribute gender=F
    tfrec recommend --run RUN --user 42 --exclude 50,181 --where genres=Comedy,Romance \\
        --max-per-category genres:3 --k 20 --json
    tfrec recommend --run RUN --user 42 --retrieval-only      # no ranker, even if the run has one
"""
import json

from tfrec.errors import DataError


def _ids(text):
    return [] if not text else [s.strip() for s in str(text).split(",") if s.strip()]


def _pairs(items, flag):
    """["col=v", ...] -> {col: v}; a clear error for anything else."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DataError(f"`{flag}` takes COLUMN=VALUE, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def _attribute_values(rec, attributes):
    """Numeric user attributes as floats (the model's numeric inputs), the rest as strings."""
    numeric = set(getattr(rec.query_features, "numeric", ()))
    out = {}
    for name, value in attributes.items():
        if name in numeric:
            try:
                out[name] = float(value)
            except ValueError:
                raise DataError(f"`--attribute {name}` is numeric; got {value!r}.") from None
        else:
            out[name] = value
    return out


def recommend_loaded(loaded, user, k=10, timestamp=None, history=None, attributes=None, exclude=None,
                     where=None, max_per_category=None, retrieval_only=False, keep_seen=False, as_json=False,
                     out=print):
    """Prints (and returns, as a DataFrame) `user`'s top k from an object with `.recommender` (a
    `LoadedRun` or a `RunResult`). String arguments as the command line takes them: `history` and
    `exclude` comma-separated ids; `where` ["column=v1,v2", ...]; `max_per_category` "column:cap";
    `attributes` ["name=value", ...]."""
    rec = getattr(loaded, "recommender", None)
    if rec is None:
        raise DataError("`tfrec recommend` needs a hybrid run (model.kind=hybrid): this run has no Recommender.")
    cap = None
    if max_per_category:
        column, sep, n = str(max_per_category).rpartition(":")
        if not sep or not column or not n.strip().isdigit():
            raise DataError(f"`--max-per-category` takes COLUMN:CAP, e.g. genres:3; got {max_per_category!r}.")
        cap = (column, int(n))
    filters = {c: _ids(v) for c, v in _pairs(where, "--where").items()}
    top = rec.recommend(user, k=k, timestamp=timestamp, history=None if history is None else _ids(history),
                        attributes=_attribute_values(rec, _pairs(attributes, "--attribute")) or None,
                        exclude_seen=not keep_seen, exclude=_ids(exclude), where=filters or None,
                        max_per_category=cap, rank=False if retrieval_only else None)
    if as_json:
        out(json.dumps(top.to_dict(orient="records"), indent=2))
    else:
        stage = "retrieval" if retrieval_only or rec.ranker is None else "two-stage"
        out(f"user {user}: top {len(top)} ({stage}, asked at {timestamp or rec.default_timestamp()})")
        out(top.to_string(index=False))
    return top


def recommend_run(run_dir, user, **kwargs):
    """`tfrec recommend`: loads the run folder, then `recommend_loaded`."""
    from tfrec.cli.artifacts import load_run

    return recommend_loaded(load_run(run_dir), user, **kwargs)
