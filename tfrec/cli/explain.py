"""`tfrec explain --run RUN_DIR --user 42 [--k 5] [--item ID] [--json]`: why these items.

Rebuilds the run's trained model (`tfrec.cli.artifacts.load_run`), then prints the
user's top-k recommendations with their evidence (or one item's, with `--item`):
a sentence, the history items whose removal lowers the score most, shared genres,
co-watching counts from the train split, the most text-similar history titles, and
the user attributes / request time that raised or lowered the score.
"""
import json

from tfrec.errors import DataError


def _signed(v):
    return f"{v:+.4f}"


def format_explanation(e, rank=None, k_history=3) -> str:
    """Human-readable lines for one `Explanation`."""
    head = f"{rank}. " if rank is not None else ""
    lines = [f"{head}{e.title} [{e.item_id}]  score {e.score:.4f}", f"   {e.sentence}"]
    if e.repeat_penalty:
        lines.append(f"   already in the history: the score includes the repeat penalty -{e.repeat_penalty:.4f}")
    if e.popularity_prior and e.prior_predicted:
        lines.append(f"   no interactions yet: the popularity prior its content predicts (content prior) adds "
                     f"{_signed(e.popularity_prior)} to the score")
    elif e.popularity_prior:
        lines.append(f"   popular lately: the popularity prior adds {_signed(e.popularity_prior)} to the score")
    if e.text_profile:
        lines.append(f"   no trained id: its text's match with the whole history (text profile) adds "
                     f"{_signed(e.text_profile)} to the score")
    if e.text_profile_words:
        lines.append("   words shared with the history (text profile's lexical term; each one's part of the score): "
                     + ", ".join(f'"{w}" {_signed(v)}' for w, v in e.text_profile_words))
    if e.cooccurrence:
        lines.append(f"   item-item: EASE's scores from the whole history (co-occurrence block) add "
                     f"{_signed(e.cooccurrence)} to the score")
    top = e.top_history(k_history)
    if top:
        lines.append("   history (score drop without it / gradient x input): " + "; ".join(
            f"{h.title} {_signed(h.leave_one_out)} / {_signed(h.gradient_x_input)}" for h in top))
    if e.shared_genres:
        lines.append("   shared genres (history items): " + ", ".join(f"{g} ({n})" for g, n in e.shared_genres))
    if e.co_occurrence:
        lines.append("   also watched by train users who watched: " + "; ".join(
            f"{c['title']} ({c['count']})" for c in e.co_occurrence))
    if e.similar_titles:
        lines.append("   most similar history titles (text): " + "; ".join(
            f"{c['title']} ({c['similarity']:.2f})" for c in e.similar_titles))
    if e.attributes:
        lines.append("   user attributes / context (score change when unknown): " + ", ".join(
            f"{n} {_signed(v)}" for n, v in e.attributes.items()))
    return "\n".join(lines)


def explain_loaded(loaded, user, k=5, item=None, as_json=False, timestamp=None, k_history=3, out=print):
    """Explains for an object with `.recommender` and `.split` (a `LoadedRun` or a `RunResult`).

    `timestamp` defaults to one second after the last interaction the run knows (train +
    validation; `Recommender.default_timestamp`, the Explainer's own default), not "now": the time features of a model trained on old data would
    extrapolate far outside their training range and dominate the score.
    """
    from tfrec.explain.explainer import Explainer

    if getattr(loaded, "recommender", None) is None:
        raise DataError("`tfrec explain` needs a hybrid run (model.kind=hybrid): this run has no Recommender.")
    explainer = Explainer(loaded.recommender, loaded.split.train)
    if item is not None:
        explanations = [explainer.explain(user, item, k_history=k_history, timestamp=timestamp)]
    else:
        explanations = explainer.recommend_with_explanations(user, k=k, k_history=k_history, timestamp=timestamp)
    if as_json:
        out(json.dumps([e.to_dict() for e in explanations], indent=2))
    else:
        title = f"user {user}: " + (f"item {item}" if item is not None else f"top {len(explanations)}")
        out(title)
        for e in explanations:
            out(format_explanation(e, e.rank, k_history))
    return explanations


def explain_run(run_dir, user, k=5, item=None, as_json=False, timestamp=None, out=print):
    """`tfrec explain`: loads the run folder, then `explain_loaded`."""
    from tfrec.cli.artifacts import load_run

    loaded = load_run(run_dir)
    return explain_loaded(loaded, user, k=k, item=item, as_json=as_json, timestamp=timestamp, out=out)
