"""The embedded digits-mosaic dataset: determinism, label statistics, no train/test leakage."""
from __future__ import annotations

import numpy as np

from replication.data.build import summarize
from replication.data.shards import ShardSet
from replication.data.sources import digits_mosaic as dm


def test_pools_are_disjoint_and_cover_all_digits():
    from sklearn.datasets import load_digits

    pools = dm.digit_pools()
    tr, te = pools["train"][0].reshape(len(pools["train"][0]), -1), pools["test"][0].reshape(len(pools["test"][0]), -1)
    assert len(tr) + len(te) == len(load_digits().images) == 1797
    train_rows = {r.tobytes() for r in tr}
    # load_digits has a handful of exact duplicate images; count instances, not pixel patterns.
    assert sum(r.tobytes() in train_rows for r in te) <= 5
    assert set(pools["train"][1]) == set(pools["test"][1]) == set(range(10))


def test_generation_is_deterministic_and_seed_dependent():
    a_img, a_lab = dm.generate("train", 30, seed=3)
    b_img, b_lab = dm.generate("train", 30, seed=3)
    c_img, _ = dm.generate("train", 30, seed=4)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


def test_label_statistics_and_cooccurrence():
    _, labels = dm.generate("train", 3000, seed=0)
    per_image = labels.sum(1)
    assert per_image.min() == 1 and per_image.max() == 4
    assert abs(per_image.mean() - 2.9) < 0.08  # COCO's 2.9 labels per image
    # Scene structure: digits of one scene co-occur more often than independence predicts.
    p = labels.mean(0)
    joint = labels.T @ labels / len(labels)
    lift = joint / np.outer(p, p)
    same = [lift[a, b] for s in dm.SCENES for a in s for b in s if a < b]
    cross = [lift[a, b] for a in range(10) for b in range(a + 1, 10)
             if not any(a in s and b in s for s in dm.SCENES)]
    assert np.mean(same) > np.mean(cross) + 0.2


def test_canvas_contains_bright_pixels_for_each_digit():
    rng = np.random.default_rng(0)
    imgs, targets = dm.digit_pools()["train"]
    canvas = dm.compose_canvas(rng, [1], imgs, targets)
    assert canvas.shape == (32, 32, 3) and canvas.dtype == np.uint8
    assert (canvas.max(2) > 150).sum() >= 10      # a coloured digit is drawn
    assert np.median(canvas) < 40                 # on a dark background


def test_tiny_shards_from_fixture(tiny_digits):
    train, test = tiny_digits
    s = ShardSet(train)
    assert len(s) == dm.TINY_COUNTS["train"] and s.class_names == dm.CLASS_NAMES
    assert s[0].image.shape == (32, 32, 3)
    img, lab = dm.generate("train", dm.TINY_COUNTS["train"], seed=0)
    np.testing.assert_array_equal(s[5].image, img[5])  # PNG is lossless
    np.testing.assert_array_equal(s.labels(), lab)
    info = summarize(test)
    assert info["records"] == dm.TINY_COUNTS["test"] and info["labelled"]
