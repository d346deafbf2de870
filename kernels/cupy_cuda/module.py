"""Compile and launch the CUDA C of ``kernels/cuda/*.cu`` through ``cupy.RawModule``.

* Sources: ``common.cu`` is prepended to each op's ``<op>.cu``; compiled by NVRTC with
  ``-std=c++17``. Modules are compiled once per (device, op, LOG2) — LOG2 being the padded class
  count 2^LOG2 ≥ C the templates are instantiated for — and memoised; never keyed on N, so new
  batch sizes never recompile. CuPy also keeps its on-disk cache of compiled binaries.
* Tensors travel zero-copy via DLPack (``cupy.from_dlpack``) inside a ``cupy`` stream context
  wrapping torch's current stream, so the import needs no synchronisation and kernels are ordered
  with the surrounding torch work. Sizes are passed as ``np.int32`` (N·C < 2^31 is checked by the
  dispatcher; offsets inside the kernels are 64-bit).
* :func:`nvrtc_compile` compiles the same sources for an explicit architecture without touching
  a GPU, which lets CPU-only CI check that the CUDA C is valid.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch

CUDA_DIR = Path(__file__).resolve().parent.parent / "cuda"
THREADS_PER_BLOCK = 128
NVRTC_OPTIONS: tuple[str, ...] = ("-std=c++17",)

# kernel templates of each op; instantiated as "<name><LOG2>" or "<name><LOG2, MODE>"
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "assign_labels": ("spl_rows<{log2}>", "top_k_rows<{log2}>", "fill_value"),
    "soft_cross_entropy": ("sce_forward<{log2}, 0>", "sce_forward<{log2}, 1>"),
}


@dataclasses.dataclass(frozen=True)
class RowConfig:
    """Host mirror of ``RowCfg<LOG2>`` in common.cu (PyTorch's persistent-softmax layout)."""

    log2: int
    padded: int
    warp: int
    iters: int
    rows: int
    warps_per_block: int
    rows_per_block: int

    @classmethod
    def for_classes(cls, c: int) -> RowConfig:
        """Layout for C classes: padded to 2^ceil(log2 C); 2 rows per warp when padded ≤ 128."""
        log2 = max(0, (int(c) - 1).bit_length())
        padded = 1 << log2
        warp = min(padded, 32)
        rows = 2 if padded <= 128 else 1
        wpb = THREADS_PER_BLOCK // warp
        return cls(log2, padded, warp, padded // warp, rows, wpb, wpb * rows)

    @property
    def block(self) -> tuple[int, int, int]:
        """CUDA block shape (WARP, WARPS_PER_BLOCK, 1)."""
        return (self.warp, self.warps_per_block, 1)

    def blocks_for(self, n: int) -> int:
        """Blocks covering N rows."""
        return (n + self.rows_per_block - 1) // self.rows_per_block


def source(op: str) -> str:
    """Full CUDA C source of ``op`` (common.cu followed by <op>.cu)."""
    return (CUDA_DIR / "common.cu").read_text() + "\n" + (CUDA_DIR / f"{op}.cu").read_text()


def name_expressions(op: str, log2: int) -> list[str]:
    """Kernel names to instantiate for ``op`` at padded class count 2^``log2``."""
    return [t.format(log2=log2) for t in _TEMPLATES[op]]


@functools.cache
def _module(device_index: int, op: str, log2: int):
    import cupy  # CuPy is optional: loaded only when the cupy backend runs

    with cupy.cuda.Device(device_index):
        mod = cupy.RawModule(code=source(op), options=NVRTC_OPTIONS,
                             name_expressions=name_expressions(op, log2))
        mod.compile()
    return mod


@functools.cache
def get_kernel(device_index: int, op: str, name: str, log2: int):
    """The compiled kernel ``name`` (a name expression such as ``spl_rows<7>``) for a device."""
    import cupy  # CuPy is optional: loaded only when the cupy backend runs

    with cupy.cuda.Device(device_index):
        return _module(device_index, op, log2).get_function(name)


_STREAMS: dict[tuple[int, int], object] = {}


def current_stream(device_index: int):
    """A cupy stream object for torch's current stream on ``device_index`` (memoised per pointer).

    torch's default (legacy) stream has pointer 0, which is cupy's null stream; other streams are
    wrapped through the CUDA stream protocol (``Stream.from_external``, cupy ≥ 14).
    """
    import cupy  # CuPy is optional: loaded only when the cupy backend runs

    ts = torch.cuda.current_stream(device_index)
    key = (device_index, ts.cuda_stream)
    stream = _STREAMS.get(key)
    if stream is None:
        if ts.cuda_stream == 0:
            stream = cupy.cuda.Stream.null
        elif hasattr(cupy.cuda.Stream, "from_external"):
            stream = cupy.cuda.Stream.from_external(ts)
        else:  # pragma: no cover - cupy < 14
            stream = cupy.cuda.ExternalStream(ts.cuda_stream, device_index)
        _STREAMS[key] = stream
    return stream


def device_index(t: torch.Tensor) -> int:
    """CUDA device ordinal of a CUDA tensor."""
    return t.device.index if t.device.index is not None else torch.cuda.current_device()


def as_cupy(t: torch.Tensor):
    """Zero-copy cupy view of a contiguous CUDA tensor (DLPack); call inside the stream context."""
    import cupy  # CuPy is optional: loaded only when the cupy backend runs

    return cupy.from_dlpack(t.detach())


@functools.cache
def sm_count(index: int) -> int:
    """Number of streaming multiprocessors of device ``index``."""
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.cache
def persistent_counter(index: int, stream_ptr: int) -> torch.Tensor:
    """A zeroed 32-bit ticket counter per (device, stream); the loss kernel resets it after use."""
    return torch.zeros(1, dtype=torch.int32, device=f"cuda:{index}")


def nvrtc_compile(op: str, log2_values: tuple[int, ...], arch: str = "sm_90") -> dict[str, str]:
    """Compile ``op``'s kernels with NVRTC for ``arch`` (no GPU needed); return name → mangled name.

    Raises ``cupy.cuda.compiler.CompileException`` with the compiler log on a source error.
    """
    from cupy.cuda import compiler  # CuPy is optional: loaded only when the cupy backend runs

    names = sorted({n for log2 in log2_values for n in name_expressions(op, log2)})
    program = compiler._NVRTCProgram(source(op), f"{op}.cu", name_expressions=names, method="cubin")
    _, mapping = program.compile(NVRTC_OPTIONS + (f"-arch={arch}", "--device-as-default-execution-space"))
    return mapping
