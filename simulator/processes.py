"""Helper processes that end with their parent: the frame renderers of a series, the reference-model helper of a
reconstruction."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def end_with_parent(parent_pid: int) -> None:
    """Make this worker process die with its parent, even a parent killed with SIGKILL (Linux: the kernel
    sends SIGKILL to the child when the parent dies; elsewhere a thread polls the parent every second)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return

    def poll() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=poll, daemon=True).start()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """End a pool's workers now (an error, Ctrl-C or SIGTERM in the parent): queued tasks are dropped and the
    running ones not waited for (``shutdown`` alone would run every queued task first)."""
    # the executor keeps its processes in ``_processes`` (CPython 3.11-3.13; 3.14 adds terminate_workers())
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(5.0)
