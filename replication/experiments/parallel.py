"""``spl experiment run --jobs N``: independent steps in separate processes on this machine (issue #20).

:func:`process_pool` is a :class:`~replication.experiments.steps.StepPool` over a
:class:`concurrent.futures.ProcessPoolExecutor` with N workers started by ``spawn`` (a fresh
interpreter: no inherited torch or OpenMP state, so a step computes in a worker exactly what it
computes alone). Each step is pickled with cloudpickle (step functions are closures over their
resolved configs) and run by :func:`~replication.experiments.steps.run_pickled`: its lock, its
``done`` last, and its own fixed torch thread count (``Step.threads``), as in the serial runner.

Each worker's OpenMP and Numba pools are capped at the steps' thread count before torch or numba
load, so N workers × T threads is what runs (2 jobs × 1 thread on 2 cores). Workers draw no progress
bars (:mod:`replication.console.progress`): the runner's bar lists the running steps. On Linux each worker also
dies with the runner (``PR_SET_PDEATHSIG``): a killed ``spl experiment run`` leaves no worker running a
step and holding its lock when the same command is started again (issue #21).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import cloudpickle

from replication.console.progress import turn_bars_off
from replication.errors import ConfigError
from replication.experiments.steps import Step, run_pickled

#: Environment variables that size a process's thread pools (read when torch / numba / BLAS load).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


#: prctl(2) option: the signal this process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when ``parent`` (the runner that started it) dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the runner died before prctl took effect
        os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    """Worker start: die with the runner; cap the thread pools before the first step imports torch or numba;
    no progress bars of its own (several processes' bars garble one terminal; the runner's bar lists the
    running steps)."""
    die_with_parent(parent)
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    turn_bars_off()


class ProcessStepPool:
    """Steps run by ``run_pickled`` in a spawn-started process pool; ``capacity`` is its worker count, so
    the scheduler submits no more steps than can run (a submitted step is a running one)."""

    def __init__(self, executor: ProcessPoolExecutor, capacity: int) -> None:
        self.executor = executor
        self.capacity = capacity

    def submit(self, step: Step, runs: Path, force: bool) -> Future[bool]:
        """Pickle ``step`` (with its input steps) and run it in a worker."""
        return self.executor.submit(run_pickled, cloudpickle.dumps(step), str(runs), force)


@contextmanager
def process_pool(jobs: int, threads: int) -> Iterator[ProcessStepPool]:
    """A pool of ``jobs`` worker processes, each capped at ``threads`` threads; shut down on exit.

    On exit the pool waits for running steps (an interrupted run's workers get the same SIGINT and
    save their checkpoints) and cancels the steps not started.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {jobs}")
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads, os.getpid()))
    try:
        yield ProcessStepPool(executor, jobs)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def local_pool(jobs: int, threads: int) -> AbstractContextManager[ProcessStepPool | None]:
    """``--jobs`` on this machine: :func:`process_pool` for ``jobs`` > 1, else no pool (steps run in this process)."""
    return process_pool(jobs, threads) if jobs > 1 else nullcontext(None)


__all__ = ["ProcessStepPool", "local_pool", "process_pool", "THREAD_ENV"]
