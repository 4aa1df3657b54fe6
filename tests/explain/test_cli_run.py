"""`tfrec explain` on a real run folder (the session's ML-100K demo run, shared with tests/test_run.py)."""
import json

import numpy as np
import pytest

from tfrec.cli.main import main

pytestmark = pytest.mark.slow


def test_tfrec_explain_on_a_real_run_folder_scores_like_the_trained_model(ml100k_demo, capsys):
    result, _ = ml100k_demo
    rec = result.recommender
    user = str(result.split.test["user_id"].iloc[0])
    assert main(["explain", "--run", result.run_dir, "--user", user, "--k", "3", "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert len(parsed) == 3 and [e["rank"] for e in parsed] == [1, 2, 3]
    # The rebuilt model explains the trained model's retrieval scores: recompute them in memory,
    # at the CLI's default request time (1 s after the last known interaction).
    q = rec.query_embedding(user, int(rec.known["timestamp"].max()) + 1)
    for e in parsed:
        want = float(rec.item_embeddings[rec._index.get_loc(e["item_id"])] @ q)
        assert e["score"] == pytest.approx(want, abs=1e-4)
        assert e["sentence"] and np.isfinite([h["leave_one_out"] for h in e["history"]]).all()
    assert main(["explain", "--run", result.run_dir, "--user", user, "--item", parsed[0]["item_id"]]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"user {user}: item {parsed[0]['item_id']}") and parsed[0]["sentence"] in text
