"""`tfrec recommend` on a real run folder (the session's ML-100K demo run, shared with tests/test_run.py):
the rebuilt model's lists equal the trained Recommender's, business rules included."""
import json

import pytest

from tfrec.cli.main import main

pytestmark = pytest.mark.slow


def _cli(capsys, *args):
    assert main(["recommend", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _same(parsed, frame):
    assert [r["item_id"] for r in parsed] == frame["item_id"].tolist()
    assert [r["score"] for r in parsed] == pytest.approx(frame["score"].tolist(), abs=1e-3)


def test_tfrec_recommend_lists_what_the_trained_recommender_lists(ml100k_demo, capsys):
    result, _ = ml100k_demo
    rec, run = result.recommender, result.run_dir
    user = str(result.split.test["user_id"].iloc[0])
    top = rec.recommend(user, k=5)  # in memory, at the same default time (1 s after the last known interaction)
    parsed = _cli(capsys, "--run", run, "--user", user, "--k", "5")
    _same(parsed, top)
    assert "rank_score" in parsed[0]  # the run has a ranker: two-stage by default
    # Business rules, retrieval alone.
    genre = "Comedy"
    want = rec.recommend(user, k=6, exclude=[top["item_id"][0]], where={"genres": [genre, "Drama"]},
                         max_per_category=("genres", 2), rank=False)
    _same(_cli(capsys, "--run", run, "--user", user, "--k", "6", "--exclude", top["item_id"][0],
               "--where", f"genres={genre},Drama", "--max-per-category", "genres:2", "--retrieval-only"), want)
    # Someone new, described by a history and attributes.
    want = rec.recommend("someone-new", k=5, history=["50", "181"], attributes={"age": 31.0, "gender": "F"})
    _same(_cli(capsys, "--run", run, "--user", "someone-new", "--k", "5", "--history", "50,181",
               "--attribute", "age=31", "--attribute", "gender=F"), want)
    # The plain-text form names the stage and the request time.
    assert main(["recommend", "--run", run, "--user", user, "--k", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"user {user}: top 3 (two-stage, asked at {rec.default_timestamp()})")


@pytest.mark.parametrize("args, message", [
    (["--max-per-category", "genres"], "takes COLUMN:CAP"),
    (["--where", "genres"], "takes COLUMN=VALUE"),
    (["--attribute", "age=old"], "is numeric"),
    (["--attribute", "shoe_size=42"], "Unknown user attribute `shoe_size`"),
])
def test_tfrec_recommend_explains_bad_arguments(ml100k_demo, capsys, args, message):
    result, _ = ml100k_demo
    assert main(["recommend", "--run", result.run_dir, "--user", "1", *args]) == 2
    assert message in capsys.readouterr().err


def test_unknown_flags_are_refused_not_ignored(capsys):
    with pytest.raises(SystemExit) as e:
        main(["recommend", "--run", "x", "--user", "1", "--filter", "genres=Comedy"])
    assert e.value.code == 2 and "unrecognized arguments for `recommend`: --filter genres=Comedy" in capsys.readouterr().err
