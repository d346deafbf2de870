"""DistributedDataParallel on CPU (gloo): a 2-process torchrun training and sharded evaluation."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from replication.data.shards import ShardSet
from replication.training.distributed import DistInfo, gather_rows, rank_indices


def _info(rank: int, world: int) -> DistInfo:
    return DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))


def test_rank_indices_cover_every_image_exactly_once():
    n = 10
    parts = [rank_indices(n, _info(r, 3)) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]  # no padding
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))


def test_gather_rows_assembles_in_index_order_and_checks_counts(monkeypatch):
    import replication.training.distributed as D

    n, world = 7, 3
    rows = {r: np.stack([np.full(2, i, np.float32) for i in rank_indices(n, _info(r, world))]) for r in range(world)}

    def fake_all_gather_object(out, obj):
        for r in range(world):
            out[r] = (rank_indices(n, _info(r, world)), rows[r])

    monkeypatch.setattr(D.dist, "all_gather_object", fake_all_gather_object)
    full = gather_rows(_info(0, world), n, rank_indices(n, _info(0, world)), rows[0])
    np.testing.assert_array_equal(full[:, 0], np.arange(n))
    assert gather_rows(_info(1, world), n, rank_indices(n, _info(1, world)), rows[1]) is None

    def duplicating(out, obj):  # rank 2 scores index 0 again, index 2 is lost
        fake_all_gather_object(out, obj)
        out[2] = (np.array([0, 5]), rows[2])

    monkeypatch.setattr(D.dist, "all_gather_object", duplicating)
    with pytest.raises(RuntimeError, match="scored 1 images never and 1 more than once"):
        gather_rows(_info(0, world), n, rank_indices(n, _info(0, world)), rows[0])


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_digits, tmp_path):
    train_path, test_path = tiny_digits
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "replication.cli", "train", "--config", "embedded", "--out", str(out),
        "--set", f"data.train={train_path}", "--set", f"data.test={test_path}", "--set", "batch_size=32",
        "--set", "epochs=1", "--set", "data.num_workers=0", "--set", "kernel_backend=torch",
        "--set", "progress=false", "--set", "device=cpu", "--set", "eval_batch_size=50",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    printed = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(printed) == 1 and printed[0]["mAP"] == pytest.approx(metrics["mAP"], abs=0.006)  # rank 0 only
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["world_size"] == 2 and ck["global_step"] == 240 // 32
    hist = json.loads((out / "history.json").read_text())
    assert hist["epoch"] == [1] and np.isfinite(hist["train_loss"][0])
    test = ShardSet(test_path)
    with np.load(out / "preds.npz") as z:
        # Every test image scored exactly once, in shard order (120 = 60 per rank, no padding).
        assert z["logits"].shape == (len(test), 10) and np.isfinite(z["logits"]).all()
        assert list(z["keys"]) == test.keys()
    # The weights moved away from their initialisation.
    torch.manual_seed(0)
    from replication.models import build_model

    init = build_model("preact_resnet_small", 10).state_dict()
    final = torch.load(out / "model.pt", weights_only=False)["state_dict"]
    assert not torch.equal(init["stem.0.weight"], final["stem.0.weight"])
