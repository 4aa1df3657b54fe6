"""Why an item was recommended: faithful, servable explanations of hybrid retrieval scores.

    from tfrec.explain import Explainer
    explainer = Explainer(recommender, train_interactions)
    e = explainer.explain("42", "50")         # Explanation: evidence + e.sentence, e.to_dict()
    explainer.recommend_with_explanations("42", k=5)

`tfrec.explain.serving.hybrid_explainer` builds the in-graph module exported as the
SavedModel's `explain` signature (`export_retrieval(..., explainer=)`).
"""
from tfrec.explain.explainer import Explainer, Explanation, HistoryEvidence

__all__ = ["Explainer", "Explanation", "HistoryEvidence"]
