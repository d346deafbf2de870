"""Backend parametrisation shared by the kernel tests: (backend, device) pairs.

The simulator pair runs in CI (NUMBA_ENABLE_CUDASIM=1, set by conftest.py without a GPU); the
CUDA pairs carry the ``gpu`` marker and run only where CUDA is available.
"""
import pytest

from kernels.backends import cuda_simulator_enabled

SIM = pytest.mark.skipif(not cuda_simulator_enabled(), reason="needs NUMBA_ENABLE_CUDASIM=1 (no GPU)")
BACKENDS = [
    pytest.param("torch", "cpu", id="torch"),
    pytest.param("numba", "cpu", id="numba"),
    pytest.param("numba-cuda", "cpu", marks=SIM, id="numba-cuda-sim"),
    pytest.param("numba-cuda", "cuda", marks=pytest.mark.gpu, id="numba-cuda-gpu"),
    pytest.param("cupy", "cuda", marks=pytest.mark.gpu, id="cupy"),
]
