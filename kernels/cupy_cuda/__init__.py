"""The ``cupy`` backend: CUDA C from ``kernels/cuda/*.cu`` compiled through ``cupy.RawModule``."""
