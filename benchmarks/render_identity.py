"""A synthetic runs folder for the shipped specs, to check that a refactor leaves the rendered outputs unchanged.

``python benchmarks/render_identity.py build RUNS`` plans ``tables/specs/demo.yaml``,
``demo-full.yaml`` and every size of ``study.yaml`` (3 seeds, no data-root check) and fills each
planned step's directory with what the renderer reads, without training anything:

* every metrics step: ``metrics.json`` (the spec's name and fingerprint, the row, the seed, a
  ``finished`` stamp and every column's value, drawn from a generator seeded by the spec, row and
  seed), so rows gain, lose or tie with the baseline; a few (row, seed) pairs are left out so the
  one-seed and missing-row paths are rendered too;
* every quality step: ``quality.json`` (FD, KID with and without its std, precision, recall, label
  statistics); every GAN, sample and gallery step: a small stand-in PNG (the page copies it);
* a ``done`` record with ``seconds`` for each step, except a few left unfinished.

``python benchmarks/render_identity.py render RUNS OUT`` renders the three table specs and the
study with the ``spl`` CLI (``spl tables render``, ``spl study render``), so the code on
``PYTHONPATH`` decides what is written. Render once with the old code and once with the new into two
folders and compare every ``.md``, ``.csv`` and ``.tex`` with ``cmp`` (``compare OUT_A OUT_B``).
The CLI's standard output is saved beside them (``<name>.stdout``) and compared too.
"""
from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SPECS = ("demo", "demo-full")
STUDY = "study"
SEEDS = 3
#: A 1×1 PNG: the run-directory images are only copied by the renderer.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
                    "9c63f8cfc000000301010018dd8db00000000049454e44ae426082")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def _done(path: Path, seconds: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "done").write_text(json.dumps({"finished": "2025-01-01T00:00:00Z", "seconds": seconds}))


def _metrics(spec, row: str, seed: int, n: int) -> dict[str, float]:
    rng = _rng(spec.name, n, row, seed)
    base = 60.0 + 0.01 * n ** 0.5 + rng.normal(0.0, 1.0)
    shift = {"baseline": 0.0, "spl": 1.5, "smooth": 0.4, "pseudo": -2.0, "random": -4.0}.get(row.split("/")[0], -0.8)
    return {c: round(float(base + shift + rng.normal(0.0, 0.8) - 3.0 * j), 4) for j, c in enumerate(spec.columns)}


def _quality(g: str) -> dict:
    rng = _rng("quality", g)
    rec = {"fd": float(rng.uniform(5, 50)), "kid": float(rng.uniform(0.001, 0.1)), "precision": float(rng.uniform()),
           "recall": float(rng.uniform()), "iteration": 630, "n_generated": 250, "n_real": 250,
           "labels": {"generated": {"mean_max_confidence": float(rng.uniform()), "spl_entropy_mean": 2.0},
                      "real": {"mean_max_confidence": 0.97, "spl_entropy_mean": float(rng.uniform(1, 2))}}}
    if g == "dcgan":
        rec["kid_std"] = 0.0005
    return rec


def fill(spec, runs: Path, n: int) -> None:
    """Give every planned step of ``spec`` (3 seeds) the files the renderer reads, with a few left undone."""
    from replication.experiments.runner import plan_experiment
    from replication.experiments.stepfns import GALLERY, QUALITY_FILE, REAL_GRID, SAMPLE_GRID

    plan = plan_experiment(spec, seeds=SEEDS, check_data=False)
    metric_steps = {step.key: rs for rs, step in plan.metrics.items()}
    named = {step.key: key for key, step in plan.named.items()}
    for i, step in enumerate(plan.steps):
        path = step.path(runs)
        if (path / "done").exists():
            continue
        rs = metric_steps.get(step.key)
        if rs is not None:
            row, seed = rs
            if (row == "smooth/dcgan" and seed > 0 and n >= 1000) or (row == "pseudo/dcgan" and seed == 2):
                continue  # one seed / two seeds only
            path.mkdir(parents=True, exist_ok=True)
            rec = {"table": spec.name, "fingerprint": spec.fingerprint(), "row": row, "seed": seed,
                   "finished": f"2025-01-01T00:00:{seed:02d}Z", "metrics": _metrics(spec, row, seed, n)}
            (path / "metrics.json").write_text(json.dumps(rec))
        key = named.get(step.key, "")
        files = {"quality/": (QUALITY_FILE, None), "gan/": (REAL_GRID, PNG), "samples/": (SAMPLE_GRID, PNG),
                 "gallery/": (GALLERY, PNG)}
        for prefix, (rel, data) in files.items():
            if key.startswith(prefix):
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                g = key[len(prefix):]
                if data is None:
                    (path / rel).write_text(json.dumps(_quality(g)))
                else:
                    (path / rel).write_bytes(data)
        if step.kind == "train" and i % 7 == 3:
            continue  # unfinished: the time table counts done / planned
        _done(path, round(float(_rng("seconds", step.key).uniform(0.5, 400.0)), 3))


def build(runs: Path) -> None:
    from replication.experiments.spec import load_spec

    try:
        from replication.experiments.study import load_study, study_specs
    except ImportError:  # the layout before issue #23
        from replication.study import load_study, study_specs
    for name in SPECS:
        spec = load_spec(REPO / f"tables/specs/{name}.yaml")
        fill(spec, runs, spec.dataset.train_count or 0)
    for n, spec in study_specs(load_study(REPO / f"tables/specs/{STUDY}.yaml")).items():
        fill(spec, runs, n)


def _spl(*args: str, out: Path, name: str) -> None:
    cmd = [sys.executable, "-c", "from replication.cli import cli; cli()", *args]
    # cwd: the output folder, so that PYTHONPATH (not the current folder) decides which code renders
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=out)
    if res.returncode:
        raise SystemExit(f"{' '.join(args)}: exit {res.returncode}\n{res.stderr}")
    (out / f"{name}.stdout").write_text(res.stdout)


def render(runs: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in SPECS:
        _spl("tables", "render", str(REPO / f"tables/specs/{name}.yaml"), "--runs", str(runs), "--out", str(out),
             out=out, name=name)
    _spl("study", "render", str(REPO / f"tables/specs/{STUDY}.yaml"), "--runs", str(runs), "--out", str(out),
         out=out, name=STUDY)


def compare(a: Path, b: Path) -> int:
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".md", ".csv", ".tex", ".stdout"))
    missing = sorted({p.name for p in b.iterdir() if p.suffix in (".md", ".csv", ".tex", ".stdout")} ^ set(names))
    differ = [n for n in names if not (b / n).is_file() or not filecmp.cmp(a / n, b / n, shallow=False)]
    for n in names:
        sys.stdout.write(f"{'identical' if n not in differ else 'DIFFERS  '} {n} ({(a / n).stat().st_size} bytes)\n")
    if missing:
        sys.stdout.write(f"only in one folder: {', '.join(missing)}\n")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    what, *paths = sys.argv[1:]
    if what == "build":
        build(Path(paths[0]))
    elif what == "render":
        render(Path(paths[0]), Path(paths[1]))
    elif what == "compare":
        raise SystemExit(compare(Path(paths[0]), Path(paths[1])))
    else:
        raise SystemExit(f"unknown action {what!r}: build RUNS | render RUNS OUT | compare OUT_A OUT_B")
