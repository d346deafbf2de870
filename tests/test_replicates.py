"""Issue #19: replicates that include the generator, the unlabeled pool, the ``real`` ceiling rows, seed sets.

* planning: replicate seeds reach the GAN, its samples, the labeler (baseline i), its scores, the label
  files and every row's training; replicate 0 keeps the shared chain's keys; a replicate's steps do not
  depend on the seed set it is planned in; ``per_replicate: false`` shares one chain; ``gan.data``;
* the spec: the new keys, their errors, the fingerprint;
* the pool: disjoint from the labelled set and the test set, bit-identical images, no labels;
* poisoning (end to end): the pool's labels randomised in the full training shards change no output;
  the ``real`` rows run and render with the ceiling section;
* statistics: the ceiling comparisons, and the reproduction check on synthetic results.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from replication.data.build import build_shards
from replication.data.pool import ImageOnlyReader, draw_indices, pool_indices, write_image_view, write_real_draw
from replication.data.shards import MANIFEST, ShardSet, sha256_file
from replication.errors import ConfigError, ShardError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import spec_from_dict
from replication.report.statistics import (
    AGREE,
    NOT_COMPARED,
    UNSTABLE,
    all_verdicts,
    ceiling_comparisons,
    ceiling_paragraph,
    ceiling_share,
    compare_verdicts,
    control_comparisons,
    format_reproduction,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"


def _raw(**gan_options) -> dict:
    raw = yaml.safe_load((FIXTURES / "experiment_tiny.yaml").read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    raw["dataset"]["train_count"] = 100  # tiny: 240 training canvases → a pool of 140
    raw["rows"] = ["baseline", "random/dcgan", "spl/dcgan", "smooth/dcgan", "spl/real", "smooth/shuffled"]
    del raw["gan"]["wgan-gp"]
    raw["gan"].update(gan_options)
    return raw


def _spec(tmp_path, **gan_options):
    return spec_from_dict(_raw(**gan_options), tmp_path / "tiny.yaml")


# ------------------------------------------------------------------------------------ planning


def test_replicate_seeds_reach_every_step_of_the_chain(tmp_path):
    plan = plan_experiment(_spec(tmp_path), seeds=2)
    n = plan.named
    # GAN i: the preset's seed + i; samples i: sampling.seed + i; the GAN trains on labelled + pool images
    assert (n["gan/dcgan/0"].config["seed"], n["gan/dcgan/1"].config["seed"]) == (0, 1)
    assert n["gan/dcgan/0"].inputs["train"] is n["view/all"] is n["gan/dcgan/1"].inputs["train"]
    for src in ("dcgan", "real", "shuffled"):
        s0, s1 = n[f"samples/{src}/0"], n[f"samples/{src}/1"]
        assert (s0.config["seed"], s1.config["seed"]) == (0, 1) and s0.key != s1.key
    assert n["samples/dcgan/1"].inputs["gan"] is n["gan/dcgan/1"]
    assert n["samples/real/1"].inputs["pool"] is n["view/pool"]
    # baseline i labels the samples of chain i (its scores feed the SPL labels); random labels: seed + i
    for src in ("dcgan", "real"):
        for i in (0, 1):
            assert n[f"predict/{src}/{i}"].inputs["model"] is plan.trains[("baseline", i)]
            assert n[f"predict/{src}/{i}"].inputs["data"] is n[f"samples/{src}/{i}"]
            assert n[f"labels/spl/{src}/{i}"].inputs["scores"] is n[f"predict/{src}/{i}"]
    assert (n["labels/random/dcgan/0"].config["seed"], n["labels/random/dcgan/1"].config["seed"]) == (0, 1)
    # every row's training i takes chain i's samples and label file
    for row in ("random/dcgan", "spl/dcgan", "smooth/dcgan", "spl/real", "smooth/shuffled"):
        rule, src = row.split("/")
        for i in (0, 1):
            t = plan.trains[(row, i)]
            assert t.inputs["generated"] is n[f"samples/{src}/{i}"]
            assert t.inputs["labels"] is n[f"labels/{rule}/{src}/{i}"]
            assert t.config["seed"] == i
        assert plan.trains[(row, 0)].key != plan.trains[(row, 1)].key
    # quality per GAN replicate, measured with that replicate's labeler
    q1 = n["quality/dcgan/1"]
    assert q1.inputs["gan"] is n["gan/dcgan/1"] and q1.inputs["classifier"] is plan.trains[("baseline", 1)]
    kinds = [s.kind for s in plan.steps]
    assert kinds.count("gan") == 2 and kinds.count("quality") == 2 and kinds.count("view") == 2


def test_replicate_zero_keeps_the_shared_chain_and_replicates_do_not_depend_on_their_set(tmp_path):
    spec, shared = _spec(tmp_path), _spec(tmp_path, per_replicate=False)
    per = plan_experiment(spec, seeds=3)
    one = plan_experiment(shared, seeds=3)
    for key in ("gan/dcgan", "samples/dcgan", "predict/dcgan", "labels/spl/dcgan", "labels/random/dcgan",
                "samples/real", "labels/spl/real", "samples/shuffled", "view/all", "view/pool"):
        assert per.named[key].key == one.named[key].key, key
    # shared: one GAN, one labeler (seed 0), the same label file for every seed
    assert [s.kind for s in one.steps].count("gan") == 1
    assert one.trains[("spl/dcgan", 2)].inputs["labels"] is one.named["labels/spl/dcgan"]
    assert one.named["predict/dcgan"].inputs["model"] is one.trains[("baseline", 0)]
    # a replicate's steps are the same whichever seed set plans it: seeds 5–9 and 3–7 share replicates 5–7
    a = plan_experiment(spec, seeds=5, seed_start=5)
    b = plan_experiment(spec, seeds=5, seed_start=3)
    assert a.replicates == [5, 6, 7, 8, 9]
    for row in spec.rows:
        for seed in (5, 6, 7):
            assert a.metrics[(row, seed)].key == b.metrics[(row, seed)].key
    assert a.named["gan/dcgan"].config["seed"] == 5 and a.named["gan/dcgan"] is a.named["gan/dcgan/5"]
    # the two seed sets 0–4 and 5–9 share no training and no GAN
    c = plan_experiment(spec, seeds=5, seed_start=0)
    kinds = ("gan", "samples", "predict", "labels", "train", "metrics")
    keys = [{s.key for s in p.steps if s.kind in kinds} for p in (a, c)]
    assert not keys[0] & keys[1]
    # with a shared chain, seed set 5–9 shares one GAN of seed 5 (not seed 0's)
    assert plan_experiment(shared, seeds=2, seed_start=5).named["gan/dcgan"].config["seed"] == 5


def test_gan_data_and_spec_options(tmp_path):
    labelled = plan_experiment(_spec(tmp_path, data="labelled"))
    assert labelled.named["gan/dcgan"].inputs["train"] is labelled.named["shards/train"]
    assert "view/all" not in labelled.named and "view/pool" in labelled.named  # the real rows still need the pool
    full = labelled.named["shards/train-all"]
    assert "count" not in full.config and labelled.named["shards/train"].config["count"] == 100
    # fingerprints: the earlier plan (shared GAN on the labelled images) keeps its fingerprint
    fps = {(p, d): _spec(tmp_path, per_replicate=p, data=d).fingerprint() for p in (True, False)
           for d in ("all", "labelled")}
    assert len(set(fps.values())) == 4
    default = _spec(tmp_path)
    assert default.gan_options.per_replicate and default.gan_options.data == "all"  # the defaults
    assert default.fingerprint() == fps[(True, "all")]
    # without train_count there is no pool: data: all is the labelled set, and no view is planned
    no_pool = _raw()
    del no_pool["dataset"]["train_count"]
    no_pool["rows"].remove("spl/real")
    spec = spec_from_dict(no_pool, tmp_path / "tiny.yaml")
    assert spec.gan_data == "labelled" and not any(s.kind == "view" for s in plan_experiment(spec).steps)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["gan"].update(data="pool"), "unknown gan.data 'pool'"),
    (lambda r: r["gan"].update(per_replicate="yes"), "gan.per_replicate must be bool"),
    (lambda r: r["dataset"].pop("train_count"), "row 'spl/real' draws from the unlabeled pool"),
])
def test_spec_errors_name_the_file(tmp_path, edit, message):
    raw = _raw()
    edit(raw)
    with pytest.raises(ConfigError, match=message) as e:
        spec_from_dict(raw, tmp_path / "bad.yaml")
    assert str(tmp_path / "bad.yaml") in str(e.value)
    with pytest.raises(ConfigError, match="--seed-start must be ≥ 0"):
        plan_experiment(_spec(tmp_path), seed_start=-1)


# ------------------------------------------------------------------------------------ the pool


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    full = build_shards("digits-mosaic", split="train", out=root / "full", tiny=True, progress=False)
    labelled = build_shards("digits-mosaic", split="train", out=root / "labelled", tiny=True, count=100,
                            progress=False)
    test = build_shards("digits-mosaic", split="test", out=root / "test", tiny=True, progress=False)
    return root, full, labelled, test


def test_pool_is_disjoint_from_the_labelled_and_test_sets(tiny_sets):
    root, full, labelled, test = tiny_sets
    pool = ShardSet(write_image_view(full, labelled, root / "pool", "pool"))
    everything = ShardSet(write_image_view(full, labelled, root / "all", "all"))
    f, lab, te = ShardSet(full), ShardSet(labelled), ShardSet(test)
    assert (len(f), len(lab), len(pool), len(everything)) == (240, 100, 140, 240)
    pool_keys, lab_keys = set(pool.keys()), set(lab.keys())
    assert not pool_keys & lab_keys and pool_keys | lab_keys == set(f.keys()) and not pool_keys & set(te.keys())
    # disjoint in pixels too: no pool image is a labelled or a test image
    digest = {i: hashlib.sha256(s.read_encoded(i)).hexdigest() for s in (pool,) for i in range(len(s))}
    others = {hashlib.sha256(s.read_encoded(i)).hexdigest() for s in (lab, te) for i in range(len(s))}
    assert not set(digest.values()) & others
    # the pool's images are the full split's bytes (no re-encoding), in its order; no labels at all
    index = {k: i for i, k in enumerate(f.keys())}
    assert [index[k] for k in pool.keys()] == sorted(index[k] for k in pool.keys())
    assert all(pool.read_encoded(i) == f.read_encoded(index[k]) for i, k in enumerate(pool.keys()))
    for s in (pool, everything):
        assert s.label_kind == "none" and np.isnan(s.labels()).all()
    assert everything.keys() == f.keys()
    # the reader of the pool offers no labels; a labelled set that is not part of the split is refused
    reader = ImageOnlyReader(full)
    assert not any("label" in name for name in dir(reader))
    assert pool_indices(reader, ImageOnlyReader(labelled)) == [index[k] for k in pool.keys()]
    with pytest.raises(ShardError, match="not in the full training split"):
        pool_indices(reader, ImageOnlyReader(test))


def test_real_draw_is_seeded_and_from_the_pool(tiny_sets):
    root, full, labelled, _ = tiny_sets
    pool_path = write_image_view(full, labelled, root / "pool2", "pool")
    pool = ShardSet(pool_path)
    a = ShardSet(write_real_draw(pool_path, 32, 0, root / "draw0"))
    b = ShardSet(write_real_draw(pool_path, 32, 0, root / "draw0b"))
    c = ShardSet(write_real_draw(pool_path, 32, 1, root / "draw1"))
    assert a.keys() == b.keys() and a.keys() != c.keys() and len(set(a.keys())) == 32
    assert set(a.keys()) <= set(pool.keys()) and np.isnan(a.labels()).all()
    assert draw_indices(140, 32, 0) == sorted(np.random.default_rng([0, 0x9E41]).choice(140, 32, replace=False))
    with pytest.raises(ShardError, match="needs 1 <= M <= 140"):
        draw_indices(140, 141, 0)


# ------------------------------------------------------------------------------------ poisoning, end to end


def _poison_labels(shards: Path, keys: set[str]) -> int:
    """Randomise the label rows of ``keys`` in the shard set at ``shards`` in place (manifest SHA-256 updated)."""
    manifest = json.loads((shards / MANIFEST).read_text())
    rng = np.random.default_rng(123)
    changed = 0
    for entry in manifest["shards"]:
        path = shards / entry["file"]
        with h5py.File(path, "r+") as f:
            labels = f["labels"][:]
            for i, k in enumerate(f["keys"][:]):
                if (k.decode() if isinstance(k, bytes) else k) in keys:
                    new = (rng.random(labels.shape[1]) < 0.5).astype(np.float32)
                    new[rng.integers(labels.shape[1])] = 1 - labels[i].max()  # never the same row
                    changed += int(not np.array_equal(new, labels[i]))
                    labels[i] = new
            f["labels"][...] = labels
        entry["sha256"] = sha256_file(path)
    (shards / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return changed


#: Files whose bytes record when or where a step ran, not what it computed.
VOLATILE = {"done", "step.yaml", "metrics.json", "history.json", "log.txt", "train.log", "timing.json"}


def _flat(obj, path: str = "") -> list[bytes]:
    if isinstance(obj, dict):
        return [b for k in sorted(obj, key=str) for b in _flat(obj[k], f"{path}/{k}")]
    if isinstance(obj, (list, tuple)):
        return [b for i, v in enumerate(obj) for b in _flat(v, f"{path}[{i}]")]
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return [f"{path}:{t.dtype}:{tuple(t.shape)}:".encode() + t.numpy().tobytes()]
    return [f"{path}={obj!r}".encode()]


def _pt_bytes(path: Path) -> bytes:
    """A torch file's content, flattened to bytes: a ``torch.save`` archive is named after the atomic writer's
    temporary file and holds a random serialization id, so its raw bytes differ between two equal saves. The
    Python ``random`` state in a training checkpoint is the process's (its history), not the run's; left out."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and isinstance(obj.get("rng"), dict):
        obj = {**obj, "rng": {k: v for k, v in obj["rng"].items() if k != "python"}}
    return b"\n".join(_flat(obj))


def _outputs(runs: Path, plan) -> dict[str, bytes]:
    out = {}
    for step in plan.steps:
        if step.kind == "shards" and "count" not in step.config and step.config["split"] == "train":
            continue  # the poisoned input itself
        d = step.path(runs)
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.name not in VOLATILE and not p.name.endswith((".lock", ".png")):
                out[f"{step.kind}/{step.describe()}/{p.relative_to(d)}"] = (
                    _pt_bytes(p) if p.suffix == ".pt" else p.read_bytes())
        m = d / "metrics.json"
        if m.is_file():
            rec = json.loads(m.read_text())
            rec.pop("finished", None)
            out[f"{step.describe()}/metrics.json"] = json.dumps(rec, sort_keys=True).encode()
    return out


@pytest.mark.slow
def test_pool_labels_are_never_read_poisoning(tmp_path):
    """The tiny chain with a GAN on labelled + pool images and the real ceiling rows, run twice: once as built,
    once with the pool's labels randomised in the full training shards. Every output is unchanged."""
    from replication.experiments.runner import run_experiment
    from replication.report.render import write_table
    from replication.report.table import load_table

    raw = _raw()
    raw["rows"] = ["baseline", "spl/dcgan", "spl/real", "smooth/real"]
    raw["gallery"] = 0
    raw["quality"] = {"n": 0}
    spec = spec_from_dict(raw, tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"  # both runs write here, so the paths recorded in the outputs are the same
    first = run_experiment(spec, runs=runs, progress=False)
    plan = first.plan
    full = plan.named["shards/train-all"]
    pool_keys = set(ShardSet(plan.named["view/pool"].path(runs) / "data").keys())
    clean = _outputs(runs, plan)
    runs.rename(tmp_path / "clean")
    shutil.copytree(full.path(tmp_path / "clean"), full.path(runs))
    before = ShardSet(full.path(tmp_path / "clean") / "data").labels()
    assert _poison_labels(full.path(runs) / "data", pool_keys) == len(pool_keys) == 140
    after = ShardSet(full.path(runs) / "data")  # verified on open: the poisoned set is a valid shard set
    changed = ~(after.labels() == before).all(axis=1)
    assert {k for k, c in zip(after.keys(), changed, strict=True) if c} == pool_keys
    second = run_experiment(spec, runs=runs, progress=False)
    assert [r.status for r in second.records if r.step.key == full.key] == ["skipped"]
    assert sum(r.status == "ran" for r in second.records) == len(second.records) - 1
    poisoned = _outputs(runs, plan)
    assert clean.keys() == poisoned.keys()
    names = {k.rsplit("/", 1)[-1] for k in clean}
    assert {"labels.h5", "preds.npz", "model.pt", "metrics.json", MANIFEST} <= names  # every kind of output
    assert {k.split("/", 1)[0] for k in clean} >= {"view", "gan", "samples", "predict", "labels", "train"}
    differ = sorted(k for k in clean if clean[k] != poisoned[k])
    assert not differ, differ
    # the real rows: M = 64 pool canvases per replicate, labelled by the rule, and rendered with the ceiling
    real = ShardSet(plan.named["samples/real"].path(runs) / "data")
    assert len(real) == 64 and set(real.keys()) <= pool_keys
    table = load_table(spec, runs)
    assert {r.row for r in table.rows if not r.literature and r.seeds == 1} == set(spec.rows)
    md = write_table(table, tmp_path / "out", plot=False)["md"].read_text()
    assert "## The real ceiling (beyond the paper)" in md and "Our SPL (real unlabeled canvases) †" in md


# ------------------------------------------------------------------------------------ statistics


def test_ceiling_comparisons_and_share_by_hand():
    rows = ["baseline", "spl/dcgan", "spl/wgan-gp", "smooth/dcgan", "spl/real", "smooth/shuffled", "spl/dcgan@0.3"]
    assert ceiling_comparisons(rows) == [
        ("spl/real", "baseline", "the ceiling: real unlabeled canvases instead of generated ones"),
        ("spl/dcgan", "spl/real", "the GAN against the ceiling"),
        ("spl/wgan-gp", "spl/real", "the GAN against the ceiling")]
    assert all("real" not in a + b for a, b, _ in control_comparisons(rows))  # not an outlier control
    base = {0: 50.0, 1: 52.0, 2: 51.0}
    real = {0: 54.0, 1: 56.0, 2: 57.0}     # +4, +4, +6 → mean +4.667
    gan = {0: 51.0, 1: 54.0, 2: 52.0}      # +1, +2, +1 → mean +1.333
    assert ceiling_share(gan, real, base) == pytest.approx((4 / 3) / (14 / 3))
    assert ceiling_share(gan, base, base) is None  # no ceiling gain, no share
    values = {"baseline": base, "spl/real": real, "spl/dcgan": gan}
    text = ceiling_paragraph(values, ["baseline", "spl/dcgan", "spl/real"])
    # spl/dcgan − spl/real: −3, −2, −5 → mean −3.33, s = 1.528, t(2) = 4.303 → half-width 3.795
    assert "Δ mAP = −3.33, 95% CI [−7.13, +0.46], 3 paired seeds → **no detectable difference**" in text
    assert "reaches 29% of the ceiling's mean gain" in text
    assert ceiling_paragraph({}, ["baseline", "spl/dcgan"]) == ""


def test_compare_verdicts_on_synthetic_seed_sets():
    rows = ["baseline", "random/dcgan", "pseudo/dcgan", "smooth/dcgan", "spl/dcgan"]
    rng = np.random.default_rng(0)

    def results(seeds, spl_gain):
        noise = {s: rng.normal(0, 0.05) for s in seeds}
        gains = {"baseline": 0.0, "random/dcgan": -3.0, "pseudo/dcgan": -2.0, "smooth/dcgan": 1.0,
                 "spl/dcgan": spl_gain}
        return {r: {s: 50 + g + noise[s] + rng.normal(0, 0.05) for s in seeds} for r, g in gains.items()}

    a = all_verdicts(results(range(5), +2.0), rows)
    b = all_verdicts(results(range(5, 10), -2.0), rows)  # SPL flips from better to worse
    assert a["spl/dcgan − baseline"] == "better" and b["spl/dcgan − baseline"] == "worse"
    assert a["SPL ≥ smooth labeling (DCGAN)"] == "held" and b["SPL ≥ smooth labeling (DCGAN)"] == "not held"
    agreements = {g.name: g.status for g in compare_verdicts(a, b)}
    assert agreements["spl/dcgan − baseline"] == UNSTABLE and agreements["random/dcgan − baseline"] == AGREE
    assert agreements["baseline > pseudo labeling (DCGAN)"] == AGREE
    assert agreements["SPL > baseline (WGAN-GP)"] == NOT_COMPARED  # skipped in both sets: no rows
    # by hand on names: a verdict missing from one set, and n/a, are not compared
    by_hand = compare_verdicts({"x": "better", "y": "n/a", "z": "held"}, {"x": "better", "y": "worse", "w": "held"})
    assert [(g.name, g.status) for g in by_hand] == [("x", AGREE), ("y", NOT_COMPARED), ("z", NOT_COMPARED),
                                                      ("w", NOT_COMPARED)]
    text = format_reproduction(compare_verdicts(a, b), ("seeds 0–4", "seeds 5–9"))
    assert "| spl/dcgan − baseline | better | worse | **unstable** |" in text
    n_unstable = sum(1 for s in agreements.values() if s == UNSTABLE)
    assert "are **unstable** (they flip)" in text and f"{n_unstable} are **unstable**" in text
