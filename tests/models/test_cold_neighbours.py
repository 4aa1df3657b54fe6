"""Cold items placed through their nearest trained items (`set_cold_neighbours`),
checked against a plain numpy computation of the same rule."""
import numpy as np
import pytest
import tensorflow as tf

from tests.models.worlds import cold_items_world, seeded_hybrid, unit as _unit
from tfrec.errors import ConfigError


@pytest.fixture(scope="module")
def world():
    return cold_items_world()


def _numpy_placement(model, items, cold_ids, k, temperature, category_weight, content_weight):
    """Naive reference: similarity = text cosine + w x genre-set cosine to every trained
    item; softmax over the k most similar; mix their tower vectors."""
    tower = model.item_tower
    trained = [i for i in model.lookup.item_ids if i in set(tower.item_vocabulary)]
    row = {i: n for n, i in enumerate(model.lookup.item_ids)}
    text = model.lookup.columns["text_embedding"].numpy()
    genres = dict(zip(items["item_id"].astype(str), items["genres"].astype(str)))
    vocab = ["[OOV]"] + tower.categorical["genres"]  # the tower's multi-hot: OOV column first

    def multi_hot(i):
        g = set(genres[i].split("|"))
        return np.array([float(v in g) if v != "[OOV]" else float(bool(g - set(vocab))) for v in vocab])

    vectors = model._tower_on_ids(tf.constant(trained)).numpy()
    out = []
    for c in cold_ids:
        sim = np.array([_unit(text[row[c]]) @ _unit(text[row[t]]) + category_weight
                        * (_unit(multi_hot(c)) @ _unit(multi_hot(t))) for t in trained])
        top = np.argsort(-sim, kind="stable")[:k]
        w = np.exp(sim[top] / temperature)
        mix = _unit((w / w.sum()) @ vectors[top])
        own = model._tower_on_ids(tf.constant([c])).numpy()[0]
        out.append(_unit(content_weight * own + (1 - content_weight) * mix))
    return np.array(out)


def test_cold_items_are_mixed_with_their_nearest_trained_items_and_trained_items_keep_theirs(world):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    cold_ids = [str(i) for i in split.cold_items]
    trained = list(model.item_tower.item_vocabulary)
    before = model.item_vectors(tf.constant(cold_ids)).numpy()
    np.testing.assert_allclose(before, model._tower_on_ids(tf.constant(cold_ids)).numpy(), atol=1e-6)  # off
    settings = {"k": 3, "temperature": 0.2, "category_weight": 0.5, "content_weight": 0.25}
    model.set_cold_neighbours(**settings)
    got = model.item_vectors(tf.constant(cold_ids)).numpy()
    want = _numpy_placement(model, data.items, cold_ids, **settings)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, before, atol=1e-3)  # the placement changed something
    np.testing.assert_allclose(model.item_vectors(tf.constant(trained)).numpy(),
                               model._tower_on_ids(tf.constant(trained)).numpy(), atol=1e-6)
    # Any shape, duplicates and a mix of trained and cold ids give the same rows.
    both = tf.constant([[cold_ids[0], trained[0]], [cold_ids[0], cold_ids[1]]])
    np.testing.assert_allclose(model.item_vectors(both).numpy()[1, 1], got[1], atol=1e-6)
    model.set_cold_neighbours()  # no arguments: off again
    np.testing.assert_allclose(model.item_vectors(tf.constant(cold_ids)).numpy(), before, atol=1e-6)


def test_cold_neighbour_settings_are_checked(world):
    model = seeded_hybrid(world)
    for bad in ({"k": 0}, {"temperature": 0.0}, {"category_weight": -1.0}, {"content_weight": 1.0}):
        with pytest.raises(ConfigError, match="Cold neighbours need"):
            model.set_cold_neighbours(**bad)
    with pytest.raises(ConfigError, match="cold_neighbours"):
        from tfrec.config import ModelConfig

        ModelConfig(cold_neighbours=-1)
    no_ids = seeded_hybrid(world, use_id=False)
    fix = r"cached text embeddings \(`text.finetune=frozen`\).*model.cold_neighbours=0"
    with pytest.raises(ConfigError, match=fix):
        no_ids.set_cold_neighbours(k=3)
