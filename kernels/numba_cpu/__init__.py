"""The ``numba`` backend: ``@njit(parallel=True, cache=True)`` kernels on CPU tensors, one pass per row."""
