"""Tests for replication.report.plots: files are written, are real images with content, and bad input fails."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from replication.report.plots import PlotInputError, group_series, plot_curves, plot_per_class_ap


def _image(path):
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_per_class_ap_png_from_sequence_with_nan(tmp_path):
    path = plot_per_class_ap([0.5, np.nan, 0.9], ["a", "b", "c"], tmp_path / "ap.png", title="t")
    assert path == tmp_path / "ap.png"
    img = _image(path)
    assert img[..., :3].std() > 0.05  # not a blank canvas
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file


def test_per_class_ap_height_grows_with_classes(tmp_path):
    small = _image(plot_per_class_ap(np.linspace(10, 90, 5), None, tmp_path / "s.png"))
    big = _image(plot_per_class_ap(np.linspace(10, 90, 80), None, tmp_path / "b.png"))
    assert big.shape[0] > 2 * small.shape[0]


def test_per_class_ap_from_mapping_and_other_formats(tmp_path):
    plot_per_class_ap({"cat": 70.0, "dog": 40.0}, None, tmp_path / "ap.svg")
    assert (tmp_path / "ap.svg").read_text().lstrip().startswith("<?xml")
    plot_per_class_ap({"cat": 70.0, "dog": 40.0}, ["dog", "cat"], tmp_path / "ap.pdf")
    assert (tmp_path / "ap.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.parametrize("args, match", [
    (([0.1, 0.2], ["a"]), "1 class names for 2"),
    (([], None), "no classes"),
    (({"a": 1.0}, ["b"]), "differ"),
])
def test_per_class_ap_bad_input(tmp_path, args, match):
    with pytest.raises(PlotInputError, match=match):
        plot_per_class_ap(*args, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_unsupported_format(tmp_path):
    with pytest.raises(PlotInputError, match="unsupported"):
        plot_per_class_ap([0.3], ["a"], tmp_path / "x.jpg")


def test_group_series_by_last_word():
    assert group_series(["train/loss", "val/loss", "test/mAP", "lr"]) == {
        "loss": ["train/loss", "val/loss"], "mAP": ["test/mAP"], "lr": ["lr"]}


def test_plot_curves_lists_and_xy_pairs(tmp_path):
    history = {"train/loss": [1.0, 0.7, np.nan, 0.4], "val/loss": ([1, 2, 4], [1.1, 0.8, 0.6]),
               "test/mAP": ([2, 4], [30.0, 41.0])}
    one_panel = _image(plot_curves({"train/loss": [1.0, 0.5]}, tmp_path / "one.png"))
    two_panels = _image(plot_curves(history, tmp_path / "c.png", title="run", xlabel="iteration"))
    assert two_panels.shape[1] > 1.5 * one_panel.shape[1]  # two panels side by side


@pytest.mark.parametrize("history, match", [
    ({}, "empty"),
    ({"loss": []}, "'loss' is empty"),
    ({"loss": ([1, 2], [0.5])}, "2 x values and 1 y values"),
])
def test_plot_curves_bad_input(tmp_path, history, match):
    with pytest.raises(PlotInputError, match=match):
        plot_curves(history, tmp_path / "c.png")
