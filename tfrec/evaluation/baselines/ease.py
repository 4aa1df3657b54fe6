"""EASE^R: the closed-form linear item-item autoencoder (Steck, 2019)."""
import numpy as np

from tfrec.evaluation.baselines.base import Baseline, check_positive


class EASE(Baseline):
    """Embarrassingly Shallow AutoEncoder: score = x_u B with diag(B) = 0.

    B minimises `||X - X B||^2 + l2 ||B||^2` subject to `diag(B) = 0`; the
    zero diagonal stops the trivial solution B = I (an item predicting
    itself). The closed form is `P = (X^T X + l2 I)^-1`,
    `B = I - P diag(1 / diag(P))`, i.e. `B[i, j] = -P[i, j] / P[j, j]` off
    the diagonal. A strong baseline on MovieLens, often beating deep models.

    Fitting inverts a dense I x I matrix: O(I^3) time and O(I^2) memory, fine
    up to ~20k items.

    Args:
        l2: the L2 penalty (lambda in the paper); larger for denser data.

    Example:
        scores = EASE(l2=500.0).fit(train).score(np.arange(4))  # (4, I)
    """

    name = "ease"
    grid = {"l2": [50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0]}

    def __init__(self, l2=500.0):
        self.l2 = check_positive("l2", l2)

    def _fit(self, train, *, item_text, seed):
        self.weights_ = ease_weights(train, self.l2).astype(np.float32)  # B, (I, I)

    def _score(self, users):
        return self.history_[users] @ self.weights_  # (b, I), sparse @ dense -> dense


def ease_weights(matrix, l2) -> np.ndarray:
    """B [I, I] (float64) of EASE for a users x items matrix (scipy sparse or dense): the
    closed form above, P = (X^T X + l2 I)^-1, B[i, j] = -P[i, j] / P[j, j], diag(B) = 0.
    Also the co-occurrence block's fit (`tfrec.models.cooccurrence`)."""
    x = matrix.astype(np.float64)
    gram = np.asarray((x.T @ x).todense() if hasattr(x, "todense") else x.T @ x)  # (I, I)
    gram[np.diag_indices_from(gram)] += float(l2)
    precision = np.linalg.inv(gram)  # P
    weights = precision / -np.diag(precision)[None, :]  # column j divided by -P[j, j]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights
