"""Shared test setup: CPU-only determinism, the gpu marker, and small fixtures."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see replication/__init__.py

import pytest
import torch

# Without a GPU, the Numba CUDA simulator runs numba.cuda kernels on the CPU. It must be chosen
# before numba is imported (torch does not import numba), and never on a machine with a GPU,
# where the same tests run the real kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


torch.set_num_threads(1)  # also for module- and session-scoped fixtures, which run before the one below


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs with one intra-op thread, restored afterwards (library calls such as
    ``train_gan(threads=…)`` set it too). One thread is faster on the shared, oversubscribed CI
    CPU, and bit-exact resume comparisons need the same thread count on both sides."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def cuda_available() -> bool:
    """True when a real CUDA device is usable by torch."""
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory):
    """Tiny digits-mosaic train and test shard sets (built once per test session)."""
    from replication.data.build import build_shards

    root = tmp_path_factory.mktemp("digits")
    train = build_shards("digits-mosaic", split="train", out=root / "train", tiny=True, seed=0)
    test = build_shards("digits-mosaic", split="test", out=root / "test", tiny=True, seed=0)
    return train, test


@pytest.fixture(scope="session")
def generated_set(tiny_digits, tmp_path_factory):
    """48 'generated' images (the tiny test canvases re-stored as unlabeled, source = generated) and a smooth
    label file for them: (shard folder, label file)."""
    import numpy as np

    from replication.data.labelfile import write_label_file
    from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter

    root = tmp_path_factory.mktemp("gen")
    test = ShardSet(tiny_digits[1])
    with ShardWriter(root / "gen", dataset="digits-mosaic", split="generated", class_names=test.class_names,
                     encoding="png", label_kind="none") as w:
        for i in range(48):
            w.add(test[i].image, label=None, key=f"gen-{i:05d}", source=SOURCE_GENERATED)
    write_label_file(root / "smooth.h5", np.full((48, 10), 0.1, np.float32), ShardSet(root / "gen"), rule="smooth")
    return root / "gen", root / "smooth.h5"
