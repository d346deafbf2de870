"""The ``numba-cuda`` backend: ``numba.cuda`` kernels (shared-memory reductions, no warp shuffles).

The same kernels run on a GPU (CUDA tensors, zero-copy through ``__cuda_array_interface__``) and
under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on CPU tensors, which is how CI tests them.
"""
