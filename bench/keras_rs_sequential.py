"""The Keras-RS sequential-retrieval example's model (GRU4Rec style), measured under `recbole_sequential`.

    .venv/bin/python bench/keras_rs_sequential.py [--tfrec-run runs/RUN ...] [--epochs 10] [--out FILE]

Keras-RS's `examples/sequential_retrieval.py` trains a GRU over a user's last 10 movies
against an id-embedding candidate tower with the in-batch softmax, on ML-1M, and prints
no accuracy. This benchmark trains that model, re-written here from the example (Keras 3,
keras-rs 0.4.0 for the retrieval layer), on ML-100K under tfrec's `recbole_sequential`
protocol (RecBole's time-ordered leave-one-out: each user's last event is the test
query, the second last validation; full ranking; nothing masked) and scores it with
tfrec's evaluator beside RecBole's published GRU4Rec and tfrec's hybrid.

The example's settings: 128-dim id embeddings (row 0 = padding), `GRU(128)` over a
context of up to 10 earlier items padded with 0 AFTER the items and not masked (as the
example does), training examples = every prefix of a user's time-ordered sequence
(users with fewer than 3 events skipped), batch 2,048, AdamW with a learning rate
decaying linearly from 0.05 to 0 over 10 epochs, in-batch softmax. Deviations: training
sequences are the protocol's train events (validation and test events held out), with
every rating kept (the example drops ratings below 2 on ML-1M; `recbole_sequential` keeps
all 100,000, and so do RecBole and tfrec); ids are catalogue indices. A test query's
context is the user's last 10 known (train + validation) events before the test event,
in event order. The final epoch is reported; the validation events are scored too
(not used for anything here).
Hit@10 is computed twice, by `keras_rs.layers.BruteForceRetrieval(k=10)` and by tfrec's
evaluator; the run fails if they disagree. `--tfrec-run` re-scores saved `tfrec run
--eval.protocol=recbole_sequential` folders (must equal their metrics.json).
Writes bench/results/keras_rs_sequential_ml100k.json (atomic).
"""
import argparse
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import machine_info, write_json  # noqa: E402

import numpy as np  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow and Keras)

OUT = REPO / "bench" / "results" / "keras_rs_sequential_ml100k.json"
CONTEXT, MIN_SEQUENCE, DIM, BATCH, LEARNING_RATE = 10, 3, 128, 2048, 0.05
METRICS = ("ndcg@10", "hit_rate@10", "mrr@10")
PUBLISHED = {"RecBole GRU4Rec (published, RecBole quick start)": {"ndcg@10": 0.0513, "hit_rate@10": 0.1103,
                                                                  "mrr@10": 0.0337}}


def ordered(frame, catalogue):
    """Rows of `frame` per user in event order: (user index, item row = catalogue index + 1)."""
    from tfrec.data.history import EVENT_ORDER

    keys = ["user_id", "timestamp"] + ([EVENT_ORDER] if EVENT_ORDER in frame.columns else [])
    frame = frame.sort_values(keys, kind="stable")
    return catalogue.user_index(frame["user_id"]), catalogue.item_index(frame["item_id"]) + 1


def training_examples(train, catalogue):
    """(context [n, 10] right-padded with 0, label [n]) for every prefix of each user's sequence."""
    users, rows = ordered(train, catalogue)
    contexts, labels = [], []
    for seq in np.split(rows, np.flatnonzero(np.diff(users)) + 1):
        if len(seq) < MIN_SEQUENCE:
            continue
        for t in range(1, len(seq)):
            ctx = seq[max(0, t - CONTEXT):t]
            contexts.append(np.concatenate([ctx, np.zeros(CONTEXT - len(ctx), ctx.dtype)]))
            labels.append(seq[t])
    return np.stack(contexts).astype(np.int32), np.asarray(labels, np.int32)


def query_contexts(queries, catalogue):
    """The example's right-padded context from tfrec's left-padded `history` column."""
    out = np.zeros((queries.n, CONTEXT), np.int32)
    for i, hist in enumerate(queries.queries["history"]):
        ids = [h for h in hist if h != ""][-CONTEXT:]
        if ids:
            out[i, :len(ids)] = catalogue.item_index(np.asarray(ids)) + 1
    return out


def train_model(catalogue, contexts, labels, epochs, seed):
    """The example's model and training; returns (query tower, candidate table [n_items + 1, 128])."""
    import keras

    keras.utils.set_random_seed(seed)
    n_rows = catalogue.n_items + 1
    query = keras.Sequential([keras.Input((CONTEXT,), dtype="int32"), keras.layers.Embedding(n_rows, DIM),
                              keras.layers.GRU(DIM)])
    candidate = keras.layers.Embedding(n_rows, DIM)
    candidate.build((None,))
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)

    class Model(keras.Model):
        def __init__(self):
            super().__init__()
            self.query, self.candidate = query, candidate

        def call(self, x):
            return self.query(x)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            cands = self.candidate(y)  # (b, d)
            scores = keras.ops.matmul(y_pred, keras.ops.transpose(cands))  # (b, b): in-batch softmax
            return loss_fn(keras.ops.eye(keras.ops.shape(y_pred)[0]), scores)

    model = Model()
    steps = int(np.ceil(len(labels) / BATCH)) * epochs
    model.compile(optimizer=keras.optimizers.AdamW(
        keras.optimizers.schedules.PolynomialDecay(LEARNING_RATE, decay_steps=steps, end_learning_rate=0.0)))
    order = np.random.default_rng(seed).permutation(len(labels))  # the example shuffles once, then caches
    hist = model.fit(contexts[order], labels[order], batch_size=BATCH, epochs=epochs, shuffle=False, verbose=2)
    return query, np.asarray(candidate.embeddings), [float(v) for v in hist.history["loss"]]


def evaluate(query, table, queries, catalogue, n_boot, seed):
    """NDCG / Hit / MRR @10 with 95% CIs (tfrec's evaluator) and the example's hit@10."""
    import keras_rs

    q = np.asarray(query.predict(query_contexts(queries, catalogue), batch_size=4096, verbose=0))
    items = table[1:]  # catalogue order; row 0 is the padding
    out = score_rows(lambda rows: q[np.asarray(rows)] @ items.T, queries, n_boot, seed)
    retrieval = keras_rs.layers.BruteForceRetrieval(k=10, return_scores=False)
    retrieval.update_candidates(items)
    top = np.asarray(retrieval(q))
    out["example_hit@10"] = float(np.mean((top == queries.relevant.indices[:, None]).any(1)))
    return out


def score_rows(model, queries, n_boot, seed):
    """Per-query metrics of `model` (any `rank_queries` kind) with 95% CIs over users."""
    from tfrec.evaluation.protocol import rank_queries
    from tfrec.evaluation.stats import cluster_bootstrap

    res = rank_queries(model, queries, ks=(10,), return_topk=False)
    out = {}
    for m in METRICS:
        mean, low, high = cluster_bootstrap(res.per_user[m], res.users, n_boot=n_boot, seed=seed)
        out[m] = {"mean": float(mean), "ci95": [float(low), float(high)]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tfrec-run", action="append", default=[], help="a `tfrec run --eval.protocol="
                    "recbole_sequential` folder to re-score (repeatable)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    from bench.keras_rs_example import protocol_split, saved_run_scorer
    from tfrec.evaluation.queries import build_queries, queries_for_test

    start = time.time()
    config, protocol, _, split, catalogue = protocol_split("recbole_sequential")
    n_boot, eval_seed = config.eval.n_bootstrap, config.eval.seed
    test_q = queries_for_test(protocol, split, catalogue, history_length=CONTEXT)
    val_q = build_queries(split.val, split.train, None, catalogue, protocol.mode, CONTEXT)
    contexts, labels = training_examples(split.train, catalogue)
    print(f"recbole_sequential: {len(labels)} training prefixes, {test_q.n} test and {val_q.n} validation queries",
          flush=True)
    t0 = time.perf_counter()
    query, table, losses = train_model(catalogue, contexts, labels, args.epochs, args.seed)
    secs = time.perf_counter() - t0
    test = evaluate(query, table, test_q, catalogue, n_boot, eval_seed)
    if abs(test["example_hit@10"] - test["hit_rate@10"]["mean"]) > 2e-3:
        raise SystemExit(f"hit@10: keras-rs {test['example_hit@10']:.4f}, tfrec {test['hit_rate@10']['mean']:.4f}")
    models = {"Keras-RS sequential_retrieval example (GRU, 10 items)": {
        "test": test, "validation": evaluate(query, table, val_q, catalogue, n_boot, eval_seed),
        "train_seconds": round(secs, 1), "loss_per_epoch": losses}}
    for run_dir in args.tfrec_run:
        scorer, queries, saved, info = saved_run_scorer(run_dir, protocol, test_q)
        out = score_rows(scorer, queries, n_boot, eval_seed)
        if abs(out["ndcg@10"]["mean"] - saved["ndcg@10"]) > 1e-6:
            raise SystemExit(f"{run_dir}: re-scored NDCG@10 {out['ndcg@10']['mean']:.5f}, metrics.json says "
                             f"{saved['ndcg@10']:.5f}")
        models[f"tfrec hybrid ({info['run']})"] = {"test": out, **info}
    doc = {"benchmark": "Keras-RS sequential_retrieval example vs tfrec, ML-100K recbole_sequential",
           "command": "python bench/keras_rs_sequential.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "config": {"epochs": args.epochs, "seed": args.seed, "context": CONTEXT, "embedding_dim": DIM,
                      "batch_size": BATCH, "optimizer": f"AdamW, linear decay {LEARNING_RATE} -> 0"},
           "published": PUBLISHED, "models": models, "seconds": round(time.time() - start, 1),
           "machine": machine_info(packages=("tensorflow", "keras", "keras-rs", "numpy"))}
    write_json(args.out, doc)
    for name, m in models.items():
        print(name, {k: round(m["test"][k]["mean"], 4) for k in METRICS})


if __name__ == "__main__":
    main()
