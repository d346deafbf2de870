"""A float32 ``exp`` that LLVM can vectorise inside Numba loops.

Numba calls the scalar libm ``exp`` element by element (no SVML here), which made the SPL rule
7× slower than torch's vectorised softmax on 10⁵×81 scores (205 ms vs 28 ms, one thread; see
docs/kernels.md). This version is straight-line arithmetic, so loops calling it vectorise:

    exp(x) = 2^n · p(r),  n = round(x / ln 2),  r = x − n·ln 2 (Cody–Waite, two constants),
    p = degree-6 Taylor polynomial of e^r on |r| ≤ ln2/2 (truncation < 2e-8 relative),
    2^n built from its IEEE-754 bits ((n + 127) << 23) through an LLVM bitcast intrinsic.

The argument is clamped to [−87, 88] first (the finite float32 range of the bit trick), so
exp of very negative numbers returns ~1.6e-38 instead of 0 and of very large ones 1.65e38
instead of inf: harmless where it is used (a sigmoid, and softmax terms ≤ 1 that are summed
and normalised). Accuracy: a few float32 ulp (max relative error ≈ 3e-7, checked in the tests).
NaN inputs give unspecified values: callers detect non-finite inputs separately.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125        # ln 2 split so that n * _LN2_HI is exact in float32 (|n| <= 128)
_LN2_LO = 1.4286067653301870e-06
_LO, _HI = -87.0, 88.0


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (an LLVM ``bitcast``: free and vectorisable)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(inline="always", cache=True)
def exp32(x):  # pragma: no cover - compiled
    """e^x in float32 arithmetic, vectorisable (accuracy and range in the module docstring)."""
    x = np.float32(min(max(np.float32(x), np.float32(_LO)), np.float32(_HI)))
    n = np.floor(x * np.float32(_LOG2E) + np.float32(0.5))
    r = (x - n * np.float32(_LN2_HI)) - n * np.float32(_LN2_LO)
    p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (
        np.float32(1.0 / 6.0) + r * (np.float32(1.0 / 24.0) + r * (
            np.float32(1.0 / 120.0) + r * np.float32(1.0 / 720.0))))))
    bits = (np.int32(n) + np.int32(127)) << np.int32(23)
    return p * _int32_bits_as_float32(np.int32(bits))
