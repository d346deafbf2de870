"""Storage faults and interruption (issue #21): disk full and I/O errors at every write, damaged files at
every reader, read-only outputs, and SIGKILL at random instants. Each failure must give exit status 1 and
one ``error:`` line naming the file, leave nothing partial that looks complete, keep earlier complete
outputs, and let the same command succeed once the fault is gone.

Fault injection patches the last stage of every atomic write (``_commit`` in ``replication.io_utils``
and ``gan_tf_port.io``): at the n-th write of a job its temporary file is cut to half and
``OSError(ENOSPC)`` is raised, for every n of the job. The real-disk tests mount a small tmpfs (root
only; skipped with the reason otherwise) and always unmount it.

Cost: everything runs in this process (``CliRunner``; the chaos harness forks its attempts from it) on
inputs built once per module — micro shard sets of 48/16 canvases, one- or two-iteration runs, the
chaos spec's chain run once and used as the chaos run's reference. The one subprocess left is the
data build on a full tmpfs: the crash it guards against happened at interpreter exit.
"""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import gan_tf_port.io as gan_io
import replication.io_utils as io_utils
from replication.cli import cli
from replication.data.build import build_shards
from replication.data.labelfile import read_label_file
from replication.errors import ReplicationError
from replication.experiments.steps import DONE, STEP_FILE, record_intact

REPO = Path(__file__).resolve().parent.parent
CHAOS_SPEC = REPO / "tests" / "fixtures" / "chaos_tiny.yaml"
TINY = ["batch_size=16", "max_iters=1", "eval_every_epochs=0", "eval_batch_size=64", "data.num_workers=0",
        "progress=false", "kernel_backend=torch", "device=cpu"]
#: A GAN run with two kept checkpoints, as small as it gets (add ``--data SET --out DIR``).
GAN_TINY = ["--preset", "embedded-dcgan", "--width", "8", "--batch", "16", "--max-iters", "2", "--keep-every", "1",
            "--size", "32"]
ENOSPC_TEXT = "no space left on device"


def one_line_error(result, *names: str) -> str:
    """Exit status 1 and exactly one ``error:`` line naming each of ``names`` (no traceback; progress bars and
    log lines may come before it)."""
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def invoke(args: list[str]):
    return CliRunner().invoke(cli, [str(a) for a in args])


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


class Faults:
    """Counts atomic writes; the ``at``-th one is cut to half its bytes and fails with ENOSPC."""

    def __init__(self, at: int | None) -> None:
        self.at, self.count, self.failed = at, 0, None

    def wrap(self, real):
        def commit(tmp, path):
            self.count += 1
            if self.count == self.at:
                os.truncate(tmp, os.path.getsize(tmp) // 2)
                self.failed = Path(path)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(tmp, path)
        return commit


@contextmanager
def faults(monkeypatch, at: int | None):
    f = Faults(at)
    with monkeypatch.context() as m:
        m.setattr(io_utils, "_commit", f.wrap(io_utils._commit))
        m.setattr(gan_io, "_commit", f.wrap(gan_io._commit))
        yield f


# ------------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """Micro digits-mosaic train and test shard sets (48 / 16 canvases): the jobs run once per write."""
    root = tmp_path_factory.mktemp("micro")
    return tuple(build_shards("digits-mosaic", split=split, out=root / split, seed=0, progress=False,
                              source_options={"canvases": n}) for split, n in (("train", 48), ("test", 16)))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The chaos spec's chain run once: ``(spec path, runs folder)``."""
    work = tmp_path_factory.mktemp("chain")
    spec = work / "chaos.yaml"
    raw = yaml.safe_load(CHAOS_SPEC.read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    spec.write_text(yaml.safe_dump(raw))
    result = invoke(["experiment", "run", spec, "--runs", work / "runs", "--no-progress"])
    assert result.exit_code == 0, result.output
    return spec, work / "runs"


def step_dir(runs: Path, kind: str, n: int = 0) -> Path:
    return sorted((runs / "digits-mosaic").glob(f"{kind}-*"))[n]


def train_args(data, out: Path, *extra: str) -> list:
    sets = [f"data.train={data[0]}", f"data.test={data[1]}", *TINY, *extra]
    return ["train", "--config", "embedded", *[a for s in sets for a in ("--set", s)], "--out", out]


def jobs(data, chain, tmp: Path) -> dict[str, list]:
    """Small jobs covering every writer: name → command line writing under ``tmp / 'out'`` (``gan quality``
    writes into the GAN run ``out / 'grun'``, which :func:`prepare` copies there). ``spl gan curve`` is left
    out: its writes are ``gan quality``'s, a JSON file and a figure (as ``eval``'s), and its figure costs 2 s."""
    spec, runs = chain
    out = tmp / "out"
    baseline = step_dir(runs, "train", 0)
    if not (baseline / "preds.npz").is_file() or "baseline" not in (baseline / "step.yaml").read_text():
        baseline = step_dir(runs, "train", 1)
    samples = step_dir(runs, "samples") / "data"
    scores = step_dir(runs, "predict") / "preds.npz"
    return {
        "data build": ["data", "build", "digits-mosaic", "--split", "test", "--canvases", "16", "--out", out],
        "train": train_args(data, out),
        "gan train": ["gan", "train", *GAN_TINY, "--data", data[0], "--out", out],
        "gan sample": ["gan", "sample", "--run", step_dir(runs, "gan") / "run", "-n", "16", "--out", out,
                       "--batch", "64"],
        "label assign": ["label", "assign", "--rule", "spl", "--scores", scores, "--generated", samples,
                         "--out", out / "labels.h5"],
        "predict": ["predict", "--run", baseline, "--data", data[1], "--out", out / "preds.npz"],
        "eval": ["eval", "--preds", baseline / "preds.npz", "--json", out / "m.json", "--plot", out / "ap.png"],
        "gan quality": ["gan", "quality", "--run", out / "grun", "--classifier", baseline, "-n", "8"],
        "tables render": ["tables", "render", spec, "--runs", runs, "--out", out],
    }


JOBS = ["data build", "train", "gan train", "gan sample", "label assign", "predict", "eval", "gan quality",
        "tables render"]


def prepare(job: str, tmp: Path, gan_kept: Path) -> None:
    """A fresh copy of the GAN run for the job that writes into it."""
    if job == "gan quality":
        shutil.copytree(gan_kept, tmp / "out" / "grun")


# ------------------------------------------------------------------------------- 1. disk full at every write
@pytest.mark.parametrize("job", JOBS)
def test_disk_full_at_every_write_gives_one_line_and_a_clean_rerun(job, micro, chain, gan_kept, tmp_path,
                                                                   monkeypatch):
    """For n = 1, 2, ...: the n-th write fails; then the same command reruns cleanly. The first n at which
    nothing failed is the job's clean run (so every one of its writes was failed once)."""
    args = jobs(micro, chain, tmp_path)[job]
    out = tmp_path / "out"
    for n in range(1, 100):
        prepare(job, tmp_path, gan_kept)
        with faults(monkeypatch, n) as f:
            result = invoke(args)
        if f.failed is None:  # the job made fewer than n writes: it ran cleanly
            assert result.exit_code == 0, (job, n, result.output)
            assert f.count == n - 1 and n > 1, (job, f.count)
            break
        line = one_line_error(result, ENOSPC_TEXT, f.failed.name)
        assert "Traceback" not in result.output, line
        assert tmp_files(tmp_path) == [], (job, n, tmp_files(tmp_path))
        assert not f.failed.exists() or f.failed.stat().st_size > 0
        rerun = invoke(args + (["--resume"] if job in ("train", "gan train") and (out / "checkpoint.pt").exists()
                               else []))
        assert rerun.exit_code == 0, (job, n, rerun.output)
        shutil.rmtree(out, ignore_errors=True)
    else:
        pytest.fail(f"{job}: still writing after 99 writes")
    print(f"{job}: ENOSPC injected at each of {n - 1} writes")


def test_disk_full_during_experiment_run_resumes_to_the_same_metrics(chain, tmp_path, monkeypatch):
    """Invocation k fails at its (k + 4)-th write (a step with many writes cannot fail at the same one forever)
    until the chain completes; the metrics equal the clean run's."""
    spec, ref_runs = chain
    runs = tmp_path / "runs"
    args = ["experiment", "run", spec, "--runs", runs, "--no-progress"]
    failures = 0
    for k in range(1, 200):
        with faults(monkeypatch, k + 4) as f:
            result = invoke(args)
        if f.failed is None:
            assert result.exit_code == 0, result.output
            break
        failures += 1
        one_line_error(result, ENOSPC_TEXT, f.failed.name)
        assert tmp_files(runs) == []
    assert failures >= 10

    def metrics(root: Path) -> dict:
        return {p.parent.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "finished"}
                for p in root.rglob("metrics-*/metrics.json")}
    assert metrics(runs) == metrics(ref_runs)
    print(f"experiment run: {failures} disk-full failures, resumed to identical metrics")


# ------------------------------------------------------------------------------- real small disks
@contextmanager
def tmpfs(path: Path, size: str, *options: str):
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size}", *options])
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def spl(*args, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "replication.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_data_build_on_a_full_tmpfs_is_one_line_not_a_crash(tmp_path):
    """The #21 report: `spl data build` on a 400 kB tmpfs segfaulted (status 139) after an h5py traceback."""
    with tmpfs(tmp_path / "disk", "400k") as disk:
        r = spl("data", "build", "digits-mosaic", "--split", "train", "--tiny", "--out", disk / "set")
        lines = [x for x in r.stderr.splitlines() if x.startswith("error") or "Traceback" in x]
        assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
        assert len(lines) == 1 and ENOSPC_TEXT in lines[0] and str(disk / "set") in lines[0], r.stderr[-2000:]
        assert sorted(p.name for p in disk.iterdir()) == []  # the partial build is gone
    with tmpfs(tmp_path / "disk", "8m") as disk:  # space freed: the same command succeeds (in this process)
        r = invoke(["data", "build", "digits-mosaic", "--split", "train", "--tiny", "--out", disk / "set"])
        assert r.exit_code == 0, r.output[-2000:]
        assert (disk / "set" / "manifest.json").is_file()


def test_train_and_experiment_on_a_full_tmpfs_keep_earlier_outputs(micro, tmp_path):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        r = invoke(train_args(micro, disk / "run"))
        assert r.exit_code == 0, r.output[-2000:]
        model = (disk / "run" / "model.pt").read_bytes()
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * max(free - 16 * 1024, 0))
        r = invoke(train_args(micro, disk / "run2"))
        one_line_error(r, ENOSPC_TEXT)
        assert (disk / "run" / "model.pt").read_bytes() == model  # the earlier complete run is intact
        assert tmp_files(disk) == []
        filler.unlink()
        r = invoke([*train_args(micro, disk / "run2"), "--resume"]) if (disk / "run2" / "checkpoint.pt").exists() \
            else invoke(train_args(micro, disk / "run2"))
        assert r.exit_code == 0, r.output[-2000:]


# ------------------------------------------------------------------------------- 2. damaged files at every reader
def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])


def zero(p: Path) -> None:
    p.write_bytes(b"")


def flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    for i in range(len(data) // 3, len(data), max(1, len(data) // 7)):  # several flipped bits in the body
        data[i] ^= 0x10
    p.write_bytes(bytes(data))


DAMAGE = {"truncated": truncate, "zero-length": zero, "bit-flipped": flip}


def readers(data, chain, tmp: Path, gan_kept: Path, tiny_run: Path) -> dict[str, tuple[Path, list]]:
    """File → (the damaged file, a command that reads it)."""
    spec, runs = chain
    train = next(d for d in sorted((runs / "digits-mosaic").glob("train-*"))
                 if "baseline" in (d / STEP_FILE).read_text())
    shards = step_dir(runs, "shards", 0) / "data"
    samples = step_dir(runs, "samples") / "data"
    labels = step_dir(runs, "labels") / "labels.h5"
    kept = sorted((gan_kept / "checkpoints").glob("iter-*.pt"))[0]
    return {
        "checkpoint.pt": (tiny_run / "checkpoint.pt", [*train_args(data, tiny_run), "--resume"]),
        "model.pt": (train / "model.pt", ["predict", "--run", train, "--data", data[1], "--out", tmp / "p.npz"]),
        "preds.npz": (train / "preds.npz", ["eval", "--preds", train / "preds.npz"]),
        "labels.h5": (labels, ["train", "--config", "embedded", "--set", f"data.train={data[0]}",
                               "--set", f"data.test={data[1]}", "--set", f"data.generated={samples}",
                               "--set", f"data.label_file={labels}", *[a for t in TINY for a in ("--set", t)],
                               "--out", tmp / "r"]),
        "shard part": (shards / "part-00000.h5", ["data", "info", shards]),
        "manifest.json": (shards / "manifest.json", ["data", "info", shards]),
        "kept GAN checkpoint": (kept, ["gan", "sample", "--run", gan_kept, "-n", "8", "--checkpoint", kept, "--out",
                                       tmp / "s"]),
        "metrics.json": (step_dir(runs, "metrics") / "metrics.json",
                         ["tables", "render", spec, "--runs", runs, "--out", tmp / "t"]),
    }


@pytest.fixture(scope="module")
def tiny_run(micro, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    r = invoke(train_args(micro, out))
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def gan_kept(micro, tmp_path_factory):
    """A finished GAN run with two kept checkpoints (read by the damage tests, copied by gan quality/curve)."""
    out = tmp_path_factory.mktemp("gan") / "run"
    r = invoke(["gan", "train", *GAN_TINY, "--data", micro[0], "--out", out])
    assert r.exit_code == 0, r.output
    return out


READERS = ["checkpoint.pt", "model.pt", "preds.npz", "labels.h5", "shard part", "manifest.json",
           "kept GAN checkpoint", "metrics.json"]


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("what", READERS)
def test_a_damaged_file_gives_one_line_naming_it(what, damage, micro, chain, gan_kept, tiny_run, tmp_path):
    path, args = readers(micro, chain, tmp_path, gan_kept, tiny_run)[what]
    saved = path.read_bytes()
    try:
        DAMAGE[damage](path)
        if what == "labels.h5" and damage == "bit-flipped":  # a flip in HDF5's unused bytes changes nothing read
            try:
                labels, meta = read_label_file(path)
            except ReplicationError:
                pass
            else:
                path.write_bytes(saved)
                good, good_meta = read_label_file(path)
                assert (labels == good).all() and meta == good_meta  # nothing that is read was damaged
                return
        one_line_error(invoke(args), path.name)
        assert not (tmp_path / "t").exists() or not list((tmp_path / "t").glob("*.md"))  # no table rendered
    finally:
        path.write_bytes(saved)


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("what", [DONE, STEP_FILE, "quality.json"])
def test_a_damaged_step_record_makes_the_step_run_again(what, damage, chain, tmp_path):
    spec, ref = chain
    runs = tmp_path / "runs"
    shutil.copytree(ref, runs)
    quality = step_dir(runs, "quality")
    target = quality / what
    assert record_intact(quality)
    DAMAGE[damage](target)
    assert not record_intact(quality)
    r = invoke(["experiment", "run", spec, "--runs", runs, "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "1 steps ran" in r.output and "quality of dcgan samples" in r.output, r.output
    assert record_intact(quality)

    def measured(run: Path) -> dict:  # the measurements, not the paths (the runs folders differ) or times
        return {k: v for k, v in json.loads((run / "quality.json").read_text()).items()
                if not isinstance(v, str) and k != "seconds"}
    assert measured(quality) == measured(step_dir(ref, "quality"))


# ------------------------------------------------------------------------------- 4. read-only outputs
def test_a_read_only_output_is_refused_before_any_work(micro, chain, tmp_path):
    spec, runs = chain
    with tmpfs(tmp_path / "ro", "64k", "ro") as ro:
        commands = jobs(micro, chain, tmp_path)
        for name in ["data build", "train", "gan train", "gan sample", "label assign", "predict", "tables render"]:
            args = [ro / "x" if isinstance(a, Path) and a.name in ("out", "labels.h5", "preds.npz") else a
                    for a in commands[name]]
            one_line_error(invoke(args), str(ro), "read-only file system")
        one_line_error(invoke(["experiment", "run", spec, "--runs", ro / "runs"]), "--runs", "read-only")
        one_line_error(invoke(["study", "run", REPO / "tables/specs/study.yaml", "--runs", ro]), "read-only")
    # a read-only runs folder is fine for commands that only read it
    assert invoke(["experiment", "status", spec, "--runs", runs]).exit_code == 0


# ------------------------------------------------------------------------------- 3. chaos
def load_chaos():
    """``benchmarks/chaos.py`` as the module ``chaos`` (benchmarks/ is no package). It is imported by name,
    with benchmarks/ on ``sys.path``, because its fork server unpickles each attempt's function by name."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module("chaos")


def test_chaos_twenty_sigkills_give_the_uninterrupted_results(chain, tmp_path, capsys):
    """``spl experiment run`` on the chaos spec killed with SIGKILL 20 times at seeded random instants, restarted
    each time, then let finish (benchmarks/chaos.py): metrics and table byte-identical to the uninterrupted
    chain. Each attempt is a process forked by the harness's single-threaded fork server, killed for real."""
    spec, runs = chain
    code = load_chaos().main([str(spec), "--work", str(tmp_path / "chaos"), "--kills", "20", "--seed", "0",
                              "--reference", str(runs)])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out[-3000:]
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("chaos summary: 20 kills survived") and "results identical" in summary, summary


def test_chaos_reports_a_hung_attempt_instead_of_waiting_forever(chain, tmp_path):
    """An attempt left to finish that outlives ``--attempt-timeout`` is killed and named (the harness once
    waited forever on a deadlocked attempt)."""
    spec, runs = chain
    with pytest.raises(SystemExit, match=r"ran longer than 0 s and was killed as hung; see .*\.log"):
        load_chaos().main([str(spec), "--work", str(tmp_path / "chaos"), "--kills", "0",
                           "--reference", str(runs), "--attempt-timeout", "0.01"])
