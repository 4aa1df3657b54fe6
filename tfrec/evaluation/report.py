"""Evaluation reports: a Markdown table with 95% CIs and PNG plots.

Written into the run folder: `metrics.md`, `metric_bars.png` (the protocol's first
two headline metrics with CIs; NDCG@10 and Recall@20 by default),
`recall_vs_k.png`, `popularity.png` (popularity of what is recommended vs the
catalogue's), `coverage.png`. `combined_markdown` puts several protocols' tables
into one document, a section per protocol.
"""
import pathlib

import numpy as np

COLUMNS = ("ndcg@10", "recall@10", "recall@20", "hit_rate@10", "mrr", "auc")


def _fmt(mean, ci):
    return f"{mean:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _label(metric: str, per_interaction: bool) -> str:
    # Per interaction (one relevant item), hit_rate@K is what TFRS calls
    # top_K_categorical_accuracy; say both so the columns read like the tutorial's.
    if per_interaction and metric.startswith("hit_rate@"):
        return f"top-{metric.split('@')[1]} acc (hit_rate@{metric.split('@')[1]})"
    return metric


def markdown_table(report: dict, columns=None) -> str:
    """Rows = models and baselines (best first by the first column), cells = mean [95% CI].

    `columns` defaults to the protocol's headline metrics (`report["protocol"]["metrics"]`),
    else `COLUMNS`.
    """
    p = report["protocol"]
    columns = tuple(columns or p.get("metrics") or COLUMNS)
    per_interaction = p.get("mode") == "per_interaction"
    models = report["models"]
    order = sorted(models, key=lambda n: -models[n]["mean"][columns[0]])
    best = p.get("best_baseline_by_validation")
    select = p.get("select_metric", "ndcg@10")
    # Where seen items stay in the ranking, say how much of the list they take.
    seen = p.get("exclude") == [] and all("seen_share@10" in e["beyond"] for e in models.values())
    head = (["model"] + [_label(c, per_interaction) for c in columns] + ["coverage@10", "novelty@10"]
            + (["seen@10"] if seen else []) + [f"Δ {select} vs {best or 'best'} (95% CI)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in order:
        e = models[name]
        cells = [name + (" (baseline)" if e.get("kind") == "baseline" else "")]
        cells += [_fmt(e["mean"][c], e["ci95"][c]) for c in columns]
        cells += [f"{e['beyond']['coverage@10']:.3f}", f"{e['beyond']['novelty@10']:.2f}"]
        cells += [f"{e['beyond']['seen_share@10']:.2f}"] if seen else []
        vs = e.get(f"vs_{best}")
        cells.append(f"{vs['mean_diff']:+.4f} [{vs['low']:+.3f}, {vs['high']:+.3f}]" if vs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(protocol_sentence(p))
    return "\n".join(lines)


def protocol_sentence(p: dict) -> str:
    """One sentence saying how the table above was computed."""
    unit = ("one query per test interaction" if p.get("mode") == "per_interaction"
            else "one query per test user")
    n_queries = p.get("n_queries", p["n_test_users"])
    exclude = p.get("exclude")
    if exclude is None:
        removed = "seen items excluded" if p["exclude_seen"] else "seen items kept"
    else:
        removed = (f"the user's {' + '.join(exclude)} items excluded" if exclude else "seen items kept")
    known = f"; history known at test time: {' + '.join(p['known'])}" if p.get("known") else ""
    ci = f" ({p['ci']})" if p.get("ci") else ""
    name = f"`{p['name']}`: " if p.get("name") and p["name"] != p["split"] else ""
    seen = " seen@10: share of the top-10 slots taken by items the user already has." if exclude == [] else ""
    return (f"Protocol {name}`{p['split']}` split, {unit}, full catalogue ({p['n_items']} items), {n_queries} queries "
            f"from {p['n_test_users']} test users, {removed}{known}; baselines tuned on "
            f"{p['baselines_tuned_on']}; 95% percentile-bootstrap CIs{ci}, {p['n_bootstrap']} resamples, "
            f"seed {p['seed']}.{seen}")


def combined_markdown(reports: dict, title: str, preamble: str = "") -> str:
    """One Markdown document with a section per protocol: its anchor, table, grids and time.

    Args:
        reports: protocol name -> report dict of `evaluate_models` (with "table").
        title: the document's heading.
        preamble: text put under the heading (data, command, machine).
    """
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    if len(reports) > 1:
        lines += ["## Summary", "", _summary_table(reports), ""]
    for name, report in reports.items():
        p = report["protocol"]
        lines += [f"## `{name}`", "", p.get("title", ""), ""]
        if p.get("anchor"):
            lines += [f"Anchor: {p['anchor']}", ""]
        lines += [report["table"], ""]
        grids = {m: e["grid"] for m, e in report["models"].items() if e.get("kind") == "baseline"}
        if grids:
            lines += ["Grids searched (chosen parameters):", ""]
            for m, grid in grids.items():
                e = report["models"][m]
                lines.append(f"- `{m}`: {_grid_text(grid)} -> {e['params'] or 'defaults'} ({e['seconds']:.0f} s)")
            lines.append("")
        if report.get("seconds") is not None:
            lines += [f"Protocol wall time: {report['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _grid_text(grid: dict) -> str:
    if not grid:
        return "no hyperparameters"
    return ", ".join(f"{k} in {list(v)}" for k, v in sorted(grid.items()))


def _summary_table(reports: dict) -> str:
    """Rows = models, columns = each protocol's first two headline metrics (mean only)."""
    cols = [(name, m) for name, r in reports.items() for m in r["protocol"]["metrics"][:2]]
    names = list(dict.fromkeys(n for r in reports.values() for n in r["models"]))
    head = ["model"] + [f"{name}: {m}" for name, m in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        cells = [n]
        for name, m in cols:
            e = reports[name]["models"].get(n)
            cells.append(f"{e['mean'][m]:.4f}" if e else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(report: dict, results: dict, catalogue, out_dir) -> None:
    """Writes metrics.md and the plots into `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.md").write_text(report["table"] + "\n", encoding="utf-8")
    models = report["models"]
    first = (report["protocol"].get("metrics") or ["ndcg@10"])[0]
    names = sorted(models, key=lambda n: -models[n]["mean"][first])

    bars = tuple((report["protocol"].get("metrics") or ("ndcg@10", "recall@20"))[:2])
    if bars[0] == "ndcg@10" and "recall@20" in models[names[0]]["ci95"]:
        bars = ("ndcg@10", "recall@20")  # tfrec's usual pair: top of the list, and a deeper cut
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5))
    for ax, metric in zip(axes, bars):
        means = np.array([models[n]["mean"][metric] for n in names])
        lo = np.array([models[n]["ci95"][metric][0] for n in names])
        hi = np.array([models[n]["ci95"][metric][1] for n in names])
        ax.barh(names, means, xerr=[means - lo, hi - means], color="tab:blue", alpha=0.7, capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric} (95% CI)")
    fig.tight_layout()
    fig.savefig(out / "metric_bars.png", dpi=110)
    plt.close(fig)

    ks = sorted(int(k.split("@")[1]) for k in models[names[0]]["mean"] if k.startswith("recall@"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        ax.plot(ks, [models[n]["mean"][f"recall@{k}"] for k in ks], marker="o", label=n)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "recall_vs_k.png", dpi=110)
    plt.close(fig)

    pop = catalogue.train_item_counts.astype(np.float64)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.logspace(0, np.log10(max(2.0, pop.max() + 1)), 30)
    ax.hist(pop + 1, bins=bins, density=True, histtype="step", color="black", lw=2, label="catalogue")
    for n in names:
        top = results[n].topk[:, :10]
        ax.hist(pop[top[top >= 0]] + 1, bins=bins, density=True, histtype="step", label=n)
    ax.set_xscale("log")
    ax.set_xlabel("train popularity of item + 1")
    ax.set_ylabel("density")
    ax.set_title("Popularity of top-10 recommendations vs the catalogue")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "popularity.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    ax.barh(names, [models[n]["beyond"]["coverage@10"] for n in names], color="tab:green", alpha=0.7)
    ax.invert_yaxis()
    ax.set_xlabel("catalogue coverage@10")
    fig.tight_layout()
    fig.savefig(out / "coverage.png", dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------
# Figures for notebooks: each returns a matplotlib Figure (shown inline by Jupyter).

def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def plot_metric_bars(entries: dict, metrics=("ndcg@10", "recall@20"), title: str = None):
    """Horizontal bars with 95% CI whiskers: a row per entry, a panel per metric.

    Args:
        entries: name -> {"mean": {metric: float}, "ci95": {metric: [low, high]}}, e.g.
            `report["models"]`, or the tfrec rows of several runs (an ablation). Rows keep
            the order of `entries`; a metric without a CI is drawn without whiskers.
        metrics: one panel each.
        title: the figure's title.
    """
    plt = _pyplot()
    names = list(entries)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 0.45 * len(names) + 1.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        means = np.array([entries[n]["mean"][metric] for n in names], np.float64)
        cis = [entries[n].get("ci95", {}).get(metric) for n in names]
        lo = np.array([m - c[0] if c else 0.0 for m, c in zip(means, cis)])
        hi = np.array([c[1] - m if c else 0.0 for m, c in zip(means, cis)])
        ax.barh(names, means, xerr=[lo, hi], color="tab:blue", alpha=0.7, capsize=3)
        ax.invert_yaxis()  # first entry on top
        ax.set_xlabel(f"{metric} (95% CI)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_beyond_accuracy(report: dict, metrics=("coverage@10", "popularity_lift@10", "novelty@10")):
    """Bars of beyond-accuracy metrics (`report["models"][name]["beyond"]`), a panel per metric.

    coverage: share of the catalogue recommended to anyone (higher = broader);
    popularity_lift: mean train popularity of the recommended items over the
    catalogue's mean popularity (1 = no bias towards popular items); novelty: mean
    self-information -log2(popularity / users) of recommended items (higher = less
    obvious).
    """
    plt = _pyplot()
    models = report["models"]
    names = list(models)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 0.45 * len(names) + 1.6),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        ax.barh(names, [models[n]["beyond"][metric] for n in names], color="tab:green", alpha=0.7)
        ax.set_xlabel(metric)
    axes[0][0].invert_yaxis()  # shared y axis: once
    fig.tight_layout()
    return fig


def breakdown_table(report: dict, metric: str = "ndcg@10"):
    """DataFrame of `metric` by user-activity group (rows: "bin 1" .. "cold users",
    with n_users and the activity range of the first model) and model (columns)."""
    import pandas as pd

    models = report["models"]
    if not models:
        return pd.DataFrame()
    first = next(iter(models.values()))["by_activity"]
    out = pd.DataFrame({"group": [r["group"] for r in first], "n_users": [r["n_users"] for r in first],
                        "activity": [f"{r['activity_min']:.0f}-{r['activity_max']:.0f}" for r in first]})
    for name, e in models.items():
        values = {r["group"]: r.get(metric, float("nan")) for r in e["by_activity"]}
        out[name] = [values.get(g, float("nan")) for g in out["group"]]
    return out.set_index("group")


def plot_breakdown(report: dict, metric: str = "ndcg@10"):
    """`metric` by user-activity decile (bin 1 = least active in train) and for cold
    users (no train interaction), a line per model."""
    plt = _pyplot()
    table = breakdown_table(report, metric)
    models = [c for c in table.columns if c not in ("n_users", "activity")]
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(table) + 2), 4.5))
    for name in models:
        ax.plot(x, table[name].to_numpy(), marker="o", label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{g}\n(n={n})" for g, n in zip(table.index, table["n_users"])], fontsize=8)
    ax.set_ylabel(metric)
    ax.set_xlabel("users by train activity (bin 1 = least active)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
