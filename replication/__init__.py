"""SPL replication: the pipeline (data shards, GANs, labeling rules, classifier, metrics, tables).

Idle OpenMP threads busy-wait by default; on a small CPU shared by torch's intra-op pool and
Numba's parallel kernels that spinning slowed training steps up to ten-fold (measured on 2 cores,
docs/experiments.md). Passive waiting is set before anything imports torch or numba, unless the
user chose otherwise.
"""
import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
