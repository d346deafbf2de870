"""Reliability (issue #16): never delete what we did not write, never read damaged data silently, never
unpickle a shared file, one writer per output, one-line errors. Each test provokes one class of failure
through the public functions or the ``spl`` command line and checks the refusal and what survives."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from replication.cli import cli
from replication.data.build import build_shards
from replication.data.labelfile import read_label_file, write_label_file
from replication.data.shards import MANIFEST, SOURCE_GENERATED, ShardSet, ShardWriter, verify_shard_set
from replication.errors import BadImageError, ConfigError, ReplicationError, ShardError
from replication.gan.run import sample_gan
from replication.inference.predict import predict
from replication.io_utils import OutputPathError
from replication.locking import LockError, is_locked, lock_path, output_lock
from replication.train import load_train_config, train

REPO = Path(__file__).resolve().parent.parent
TINY = ["batch_size=32", "max_iters=3", "eval_every_epochs=0", "data.num_workers=0", "progress=false",
        "kernel_backend=torch", "device=cpu"]


def tiny_cfg(tiny_digits, *extra: str):
    return load_train_config("embedded", [f"data.train={tiny_digits[0]}", f"data.test={tiny_digits[1]}", *TINY, *extra])


def huge_header_png() -> bytes:
    """A valid PNG header declaring 50000×50000 pixels: OpenCV raises cv2.error (over CV_IO_MAX_IMAGE_PIXELS)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def folder_dataset(root: Path, n: int = 3, extra: dict[str, bytes] | None = None) -> Path:
    """A folder-source dataset: ``n`` 8×8 JPEGs (+ ``extra`` raw files) listed in train.csv."""
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("cat\ndog\n")
    rows = ["path,labels"]
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"{i}.jpg"), np.full((8, 8, 3), 40 * i, np.uint8))
        rows.append(f"images/{i}.jpg,{'cat' if i % 2 else 'dog'}")
    for name, data in (extra or {}).items():
        (root / "images" / name).write_bytes(data)
        rows.append(f"images/{name},cat")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def one_line_error(result, *names: str) -> str:
    """The CLI refused with exit 1 and one ``error:`` line naming each of ``names`` (no traceback)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def wait_all(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout.decode()))
    return out


# -- only delete what we wrote -------------------------------------------------------------------
def test_user_files_survive_a_build_pointed_at_their_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    (mine / "part-00000.h5").write_text("not ours either: a user file with our name beside thesis.tex")
    build = ["data", "build", "digits-mosaic", "--split", "test", "--tiny", "--out", str(mine)]
    one_line_error(CliRunner().invoke(cli, build), str(mine), "thesis.tex")
    result = CliRunner().invoke(cli, [*build, "--overwrite"])
    one_line_error(result, str(mine))
    assert sorted(p.name for p in mine.iterdir()) == ["part-00000.h5", "thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no build folder or lock file left beside it


def test_out_equal_to_inside_or_around_root_and_the_working_folder_are_refused(tmp_path, monkeypatch):
    root = folder_dataset(tmp_path / "raw")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for out in (root, root / "shards", tmp_path):
        result = CliRunner().invoke(cli, ["data", "build", "folder", "--root", str(root), "--split", "train",
                                          "--out", str(out)])
        one_line_error(result, "--root")
    monkeypatch.chdir(root)
    result = CliRunner().invoke(cli, ["data", "build", "folder", "--root", ".", "--split", "train", "--out", "."])
    one_line_error(result, "working folder")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # the raw dataset is untouched


def test_a_failed_overwrite_keeps_the_previous_set(tmp_path):
    root = folder_dataset(tmp_path / "raw", extra={"broken.jpg": b"not an image"})
    out = tmp_path / "shards"
    build_shards("folder", split="train", out=out, root=root, on_bad_image="skip", progress=False)
    manifest = (out / MANIFEST).read_bytes()
    with pytest.raises(BadImageError, match="broken.jpg"):
        build_shards("folder", split="train", out=out, root=root, on_bad_image="stop", overwrite=True,
                     progress=False)
    assert (out / MANIFEST).read_bytes() == manifest and verify_shard_set(out) == []
    assert len(ShardSet(out)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "shards"]  # the failed build's folder is gone


# -- one writer per output -------------------------------------------------------------------------
_RACE = """
import sys, time
from pathlib import Path
go, ready = Path(sys.argv[1]), Path(sys.argv[2])
{prepare}
ready.touch()
while not go.exists():
    time.sleep(0.005)
{run}
"""


def _race(tmp_path: Path, prepare: str, run: str, argv: list[list[str]]) -> list[tuple[int, str]]:
    """Start one process per ``argv``; once all have imported everything, release them together."""
    go = tmp_path / "go"
    script = _RACE.format(prepare=textwrap.dedent(prepare), run=textwrap.dedent(run))
    ready = [tmp_path / f"ready{i}" for i in range(len(argv))]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(go), str(r), *a], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r, a in zip(ready, argv)]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), wait_all(procs)
        time.sleep(0.02)
    go.touch()
    return wait_all(procs)


def _one_won_one_refused(results: list[tuple[int, str]], out: Path) -> str:
    """Exactly one exit 0; the other exits 1 with the lock's one-line refusal. Returns the winner's output."""
    assert sorted(rc for rc, _ in results) == [0, 1], results
    loser = next(text for rc, text in results if rc == 1)
    assert f"LockError {out}: in use by pid" in loser, loser
    return next(text for rc, text in results if rc == 0)


_REPORT = """
try:
    {call}
except Exception as e:
    print(type(e).__name__, e)
    sys.exit(1)
print("won", sys.argv[4])
"""


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_stale(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom replication.locking import output_lock\n"
                               "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)",
                               str(out)], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(LockError, match=rf"{out}: in use by pid {holder.pid} on "):
            with output_lock(out):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the lock file stays behind
        holder.wait()
    assert lock_path(out).exists() and not is_locked(out)
    with output_lock(out):  # the kernel dropped the dead process's flock: the next writer takes it
        assert is_locked(out) and f"pid {os.getpid()} " in lock_path(out).read_text()
    assert not lock_path(out).exists()


def test_two_concurrent_builds_give_one_set_and_one_refusal(tmp_path):
    out = tmp_path / "shards"
    prepare = """
        import replication.data.shards as S
        from replication.data.build import build_shards
        add = S.ShardWriter.add
        def slow_add(self, *a, **k):  # the winner keeps writing while the other one starts
            time.sleep(0.004)
            return add(self, *a, **k)
        S.ShardWriter.add = slow_add
        from replication.data.sources import open_source
        open_source("digits-mosaic", None, "test", tiny=True)  # imports scikit-learn before the start
    """
    call = ('build_shards("digits-mosaic", split="test", out=sys.argv[3], tiny=True, seed=int(sys.argv[4]), '
            'progress=False)')
    winner = _one_won_one_refused(_race(tmp_path, prepare, _REPORT.format(call=call),
                                        [[str(out), "1"], [str(out), "2"]]), out)
    assert verify_shard_set(out) == []
    assert ShardSet(out).manifest["extra"]["seed"] == int(winner.split()[-1])  # the winner's data, complete
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no build folder, no lock


def test_two_concurrent_trains_give_one_run_and_one_refusal(tiny_digits, tmp_path):
    out = tmp_path / "run"
    prepare = """
        from replication.train import load_train_config, train
    """
    call = ("train(load_train_config('embedded', [f'data.train={sys.argv[5]}', f'data.test={sys.argv[6]}', "
            f"*{TINY!r}, f'lr={{sys.argv[4]}}']), Path(sys.argv[3]))")
    args = [str(out), "", str(tiny_digits[0]), str(tiny_digits[1])]
    winner = _one_won_one_refused(_race(tmp_path, prepare, _REPORT.format(call=call),
                                        [[*args[:1], "0.1", *args[2:]], [*args[:1], "0.05", *args[2:]]]), out)
    lr = float(winner.split()[-1])
    # every file of the run comes from the winner: its config, and a checkpoint written with that config
    assert load_train_config(out / "config.yaml").lr == lr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["lr"] == lr
    assert torch.load(out / "model.pt", weights_only=True)["config"]["lr"] == lr
    assert json.loads((out / "metrics.json").read_text())


# -- verify on read --------------------------------------------------------------------------------
def test_a_flipped_byte_inside_a_stored_image_is_refused_at_read(tiny_digits, tmp_path):
    out = tmp_path / "s"
    with ShardWriter(out, dataset="t", split="x", class_names=["a", "b"], encoding="png") as w:
        for i in range(4):
            w.add(np.full((8, 8, 3), 30 * i, np.uint8), label=[i % 2, 1], key=str(i))
    stored = ShardSet(out).read_encoded(2)
    shard = out / "part-00000.h5"
    data = bytearray(shard.read_bytes())
    at = data.find(stored) + len(stored) // 2  # a byte in the middle of record 2's PNG
    assert data.find(stored) > 0
    data[at] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="part-00000.h5: SHA-256 does not match the manifest"):
        ShardSet(out)[0]  # any read of the shard, not only the damaged record
    one_line_error(CliRunner().invoke(cli, ["data", "info", str(out)]), "part-00000.h5", "SHA-256")
    one_line_error(CliRunner().invoke(cli, ["train", "--config", "embedded", "--set", f"data.train={out}", "--set",
                                            f"data.test={tiny_digits[1]}", *[a for t in TINY for a in ("--set", t)],
                                            "--out", str(tmp_path / "run")]), "part-00000.h5", "SHA-256")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def _generated(path: Path, n: int = 6) -> ShardSet:
    with ShardWriter(path, dataset="t", split="g", class_names=["a", "b", "c"], encoding="png",
                     label_kind="none") as w:
        for i in range(n):
            w.add(np.full((8, 8, 3), 20 * i, np.uint8), label=None, key=f"g{i}", source=SOURCE_GENERATED)
    return ShardSet(path)


@pytest.mark.parametrize("value, match", [(1.5, r"label values must lie in \[0, 1\], found 0.3333..1.5"),
                                          (-0.25, r"label values must lie in \[0, 1\], found -0.25..0.3333"),
                                          (np.nan, "1 label rows are not finite"),
                                          (np.inf, "1 label rows are not finite")])
def test_an_out_of_range_or_non_finite_label_file_is_refused(tmp_path, value, match):
    gen = _generated(tmp_path / "gen")
    path = tmp_path / "labels.h5"
    write_label_file(path, np.full((6, 3), 1 / 3, np.float32), gen, rule="smooth", params={})
    read_label_file(path, gen)  # valid as written
    with h5py.File(path, "r+") as f:
        f["labels"][4, 1] = value
    with pytest.raises(ShardError, match=f"labels.h5: {match}"):
        read_label_file(path, gen)


# -- no unpickling ---------------------------------------------------------------------------------
class WritesAFile:
    """A pickled payload: unpickling it calls ``open(marker, "w")``, which creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_payloads_are_refused_by_every_loader(tiny_digits, tmp_path):
    marker = tmp_path / "pwned"
    probe = tmp_path / "probe.pt"
    torch.save({"x": WritesAFile(marker)}, probe)
    torch.load(probe, weights_only=False)  # the payload works when unpickled ...
    assert marker.exists()
    marker.unlink()

    run = tmp_path / "run"  # ... spl train --resume
    run.mkdir()
    torch.save({"model": WritesAFile(marker), "optimizer": {}, "rng": {}, "world_size": 1, "config": {}},
               run / "checkpoint.pt")
    with pytest.raises(ConfigError, match="checkpoint.pt: refusing to load checkpoint"):
        train(tiny_cfg(tiny_digits), run, resume=True)
    assert not marker.exists()

    torch.save({"format": "spl-classifier/1", "state_dict": WritesAFile(marker)}, run / "model.pt")  # spl predict
    with pytest.raises(ConfigError, match="model.pt: refusing to load model file"):
        predict(run, tiny_digits[1], tmp_path / "preds.npz")
    assert not marker.exists() and not (tmp_path / "preds.npz").exists()

    gan = tmp_path / "gan"  # spl gan sample
    gan.mkdir()
    (gan / "source.json").write_text("{}")
    torch.save({"model": {}, "G": WritesAFile(marker), "iteration": 1}, gan / "checkpoint.pt")
    with pytest.raises(ShardError, match="checkpoint.pt: refusing to load"):
        sample_gan(gan, 4, tmp_path / "samples")
    assert not marker.exists() and not (tmp_path / "samples").exists()


# -- decoder errors are bad images -----------------------------------------------------------------
def test_a_huge_header_image_is_skipped_and_counted(tmp_path):
    root = folder_dataset(tmp_path / "raw", extra={"huge.png": huge_header_png()})
    with pytest.raises(BadImageError, match=r"huge.png: image could not be decoded \(error:.*CV_IO_MAX_IMAGE_PIXELS"):
        build_shards("folder", split="train", out=tmp_path / "stop", root=root, progress=False)
    assert not (tmp_path / "stop").exists()
    out = build_shards("folder", split="train", out=tmp_path / "skip", root=root, on_bad_image="skip", progress=False)
    s = ShardSet(out)
    assert len(s) == 3 and s.manifest["extra"]["skipped_images"] == 1 and "images/huge.png" not in s.keys()


# -- one-line errors (items 6 and 7 of the issue) ------------------------------------------------
def _foreign_run(tmp_path: Path, tiny_digits) -> Path:
    run = tmp_path / "foreign"
    run.mkdir()
    torch.save({"format": "spl-classifier/1", "weights": torch.zeros(2)}, run / "model.pt")
    return run


def test_bad_inputs_get_one_line_errors_naming_the_file(tiny_digits, tmp_path):
    runner = CliRunner()
    root = folder_dataset(tmp_path / "raw")
    (root / "classes.txt").write_bytes(b"cat\n\xff\xfedog\n")  # not UTF-8
    build = ["data", "build", "folder", "--root", str(root), "--split", "train"]
    one_line_error(runner.invoke(cli, [*build, "--out", str(tmp_path / "a")]), "classes.txt", "UTF-8")
    digits = ["data", "build", "digits-mosaic", "--split", "test", "--tiny"]
    for size in ("-3", "0"):
        one_line_error(runner.invoke(cli, [*digits, "--size", size, "--out", str(tmp_path / "s")]), f"--size {size}")
    (tmp_path / "file").write_text("x")
    one_line_error(runner.invoke(cli, [*digits, "--out", str(tmp_path / "file")]), "not a folder")
    (tmp_path / "link").symlink_to(tmp_path / "raw")
    one_line_error(runner.invoke(cli, [*digits, "--out", str(tmp_path / "link")]), "symbolic link")
    assert not list(tmp_path.glob("s*")) and (tmp_path / "file").read_text() == "x"

    # a manifest that claims more records than the shard holds
    short = tmp_path / "short"
    with ShardWriter(short, dataset="t", split="x", class_names=["a"], encoding="png") as w:
        w.add(np.zeros((4, 4, 3), np.uint8), label=[1], key="k")
    manifest = json.loads((short / MANIFEST).read_text())
    manifest["shards"][0]["count"], manifest["num_records"] = 5, 5
    (short / MANIFEST).write_text(json.dumps(manifest))
    one_line_error(runner.invoke(cli, ["data", "info", str(short)]), "part-00000.h5", "the manifest says 5")

    gen = _generated(tmp_path / "gen")
    one_line_error(runner.invoke(cli, ["label", "assign", "--rule", "smooth", "--generated", str(gen.path),
                                       "--temperature", "0", "--out", str(tmp_path / "l.h5")]), "--temperature")
    one_line_error(runner.invoke(cli, ["label", "assign", "--rule", "smooth", "--generated", str(gen.path),
                                       "--out", str(gen.path / "labels.h5")]), "generated shard set")
    foreign = _foreign_run(tmp_path, tiny_digits)
    one_line_error(runner.invoke(cli, ["predict", "--run", str(foreign), "--data", str(tiny_digits[1]),
                                       "--out", str(tmp_path / "p.npz")]), "model.pt", "lacks")
    one_line_error(runner.invoke(cli, ["predict", "--run", str(foreign), "--data", str(tiny_digits[1]),
                                       "--out", str(tmp_path)]), "not a folder")

    train_args = ["train", "--config", "embedded", "--set", f"data.train={tiny_digits[0]}", "--set",
                  f"data.test={tiny_digits[1]}", *[a for t in TINY for a in ("--set", t)]]
    one_line_error(runner.invoke(cli, [*train_args, "--set", "lr=.nan", "--out", str(tmp_path / "r")]), "lr",
                   "finite")
    one_line_error(runner.invoke(cli, [*train_args, "--out", str(tmp_path / "file")]), "not a folder")
    one_line_error(runner.invoke(cli, [*train_args, "--out", str(tiny_digits[0] / "run")]), "training shard set")
    assert not (tmp_path / "r").exists() and not (tiny_digits[0] / "run").exists()
    assert verify_shard_set(tiny_digits[0]) == []


def test_image_paths_must_stay_under_root_and_aliases_are_duplicates(tmp_path):
    root = folder_dataset(tmp_path / "raw")
    cv2.imwrite(str(tmp_path / "outside.jpg"), np.zeros((8, 8, 3), np.uint8))
    build = ["data", "build", "folder", "--root", str(root), "--split", "train", "--out", str(tmp_path / "s")]
    for row in ("../outside.jpg,cat", f"{tmp_path / 'outside.jpg'},cat", "./images/0.jpg,cat"):
        with open(root / "train.csv", "a") as f:
            f.write(row + "\n")
        one_line_error(CliRunner().invoke(cli, build), "train.csv")
        (root / "train.csv").write_text("\n".join((root / "train.csv").read_text().splitlines()[:-1]) + "\n")
    assert not (tmp_path / "s").exists()


def test_errors_are_replication_errors():
    assert issubclass(OutputPathError, ReplicationError) and issubclass(BadImageError, ReplicationError)
