"""Notebook figures of `tfrec.evaluation.report`: the drawn bars and lines carry the
report's numbers (expected values typed by hand from the dicts below)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfrec.evaluation.report import breakdown_table, plot_beyond_accuracy, plot_breakdown, plot_metric_bars  # noqa: E402

REPORT = {"models": {
    "tfrec hybrid": {"mean": {"ndcg@10": 0.30, "recall@20": 0.15}, "ci95": {"ndcg@10": [0.25, 0.36]},
                     "beyond": {"coverage@10": 0.25, "popularity_lift@10": 4.0, "novelty@10": 2.2},
                     "by_activity": [
                         {"group": "bin 1", "n_users": 3, "activity_min": 1.0, "activity_max": 9.0, "ndcg@10": 0.1},
                         {"group": "bin 2", "n_users": 2, "activity_min": 10.0, "activity_max": 40.0, "ndcg@10": 0.4},
                         {"group": "cold users", "n_users": 4, "activity_min": 0.0, "activity_max": 0.0,
                          "ndcg@10": 0.2}]},
    "ease": {"mean": {"ndcg@10": 0.32, "recall@20": 0.13}, "ci95": {"ndcg@10": [0.28, 0.37]},
             "beyond": {"coverage@10": 0.15, "popularity_lift@10": 5.5, "novelty@10": 1.8},
             "by_activity": [  # no "bin 2" row for this model: NaN there
                 {"group": "bin 1", "n_users": 3, "activity_min": 1.0, "activity_max": 9.0, "ndcg@10": 0.3},
                 {"group": "cold users", "n_users": 4, "activity_min": 0.0, "activity_max": 0.0, "ndcg@10": 0.25}]},
}}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _bars(ax):
    return [(p.get_y() + p.get_height() / 2, p.get_width()) for p in ax.patches]


def test_metric_bars_draw_means_in_order_with_ci_whiskers():
    fig = plot_metric_bars(REPORT["models"], metrics=("ndcg@10", "recall@20"), title="t")
    left, right = fig.axes
    widths = [w for _, w in sorted(_bars(left))]  # sorted by y; y axis inverted: first entry at y=0
    assert widths == pytest.approx([0.30, 0.32])
    assert [w for _, w in sorted(_bars(right))] == pytest.approx([0.15, 0.13])
    assert [t.get_text() for t in left.get_yticklabels()] == ["tfrec hybrid", "ease"]
    assert left.yaxis_inverted()
    # Whiskers: one line segment per bar from the CI's low to its high end.
    segs = sorted(tuple(np.round(s[:, 0], 6)) for s in left.collections[0].get_segments())
    assert segs == [(0.25, 0.36), (0.28, 0.37)]
    # No CI for recall@20: zero-length whiskers at the means.
    segs = sorted(tuple(np.round(s[:, 0], 6)) for s in right.collections[0].get_segments())
    assert segs == [(0.13, 0.13), (0.15, 0.15)]
    assert left.get_xlabel() == "ndcg@10 (95% CI)" and fig._suptitle.get_text() == "t"


def test_beyond_accuracy_panel_per_metric():
    fig = plot_beyond_accuracy(REPORT)
    assert [ax.get_xlabel() for ax in fig.axes] == ["coverage@10", "popularity_lift@10", "novelty@10"]
    assert [w for _, w in sorted(_bars(fig.axes[1]))] == pytest.approx([4.0, 5.5])
    assert [w for _, w in sorted(_bars(fig.axes[2]))] == pytest.approx([2.2, 1.8])


def test_breakdown_table_aligns_groups_across_models():
    t = breakdown_table(REPORT, "ndcg@10")
    assert list(t.index) == ["bin 1", "bin 2", "cold users"]
    assert t["n_users"].tolist() == [3, 2, 4] and t["activity"].tolist() == ["1-9", "10-40", "0-0"]
    assert t["tfrec hybrid"].tolist() == pytest.approx([0.1, 0.4, 0.2])
    assert t["ease"].iloc[0] == pytest.approx(0.3) and np.isnan(t["ease"].iloc[1])
    assert t["ease"].iloc[2] == pytest.approx(0.25)


def test_breakdown_plot_has_a_line_per_model():
    fig = plot_breakdown(REPORT, "ndcg@10")
    (ax,) = fig.axes
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert set(lines) == {"tfrec hybrid", "ease"}
    np.testing.assert_allclose(lines["tfrec hybrid"], [0.1, 0.4, 0.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bin 1\n(n=3)", "bin 2\n(n=2)", "cold users\n(n=4)"]
