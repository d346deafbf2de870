"""replication/vocabulary.py: one set of names, and the copies that must agree with it."""
from __future__ import annotations

import ast
from pathlib import Path

import gan_tf_port
from replication import vocabulary as V
from replication.data.sources import SOURCES
from replication.metrics import PRESETS
from replication.training.config import CHOICES


def test_other_packages_agree_with_the_vocabulary():
    assert tuple(gan_tf_port.ARCHS) == V.GENERATORS  # gan_tf_port never imports replication
    assert tuple(PRESETS) == V.CONVENTIONS
    assert tuple(SOURCES) == V.DATASETS
    assert CHOICES["top3"] == V.TOP3_CHOICES and CHOICES["convention"] == V.CONVENTIONS


def test_row_and_metric_labels():
    assert V.parse_row("baseline") == ("baseline", None) and V.parse_row("spl/wgan-gp") == ("spl", "wgan-gp")
    assert V.row_label("spl/dcgan") == "Our SPL (DCGAN)" and V.row_label("baseline") == "Baseline"
    assert V.metric_label("top3/F1-C") == "Top-3 F1-C" and V.metric_label("mAP") == "mAP"
    assert V.METRIC_KEYS == ("mAP", "F1-C", "P-C", "R-C", "F1-O", "P-O", "R-O", "top3/F1-C", "top3/P-C",
                             "top3/R-C", "top3/F1-O", "top3/P-O", "top3/R-O")
    assert set(V.ROW_LABELS) == set(V.RULES) and set(V.GEN_LABELS) == set(V.GENERATORS)


def test_vocabulary_imports_nothing_from_replication():
    tree = ast.parse(Path(V.__file__).read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m and m.startswith("replication")]
