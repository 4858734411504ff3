"""Process-wide settings that must happen before heavy imports: threads and scratch locations.

In a read-only container only the output and work folders are writable, so every library that
caches or spills to disk (tempfile users such as ANTs registration, matplotlib, torch) is pointed
at the work folder.
"""
import os
import tempfile
from pathlib import Path

THREAD_VARIABLES = ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(nthreads):
    if nthreads:
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(nthreads)


def apply_torch_threads(nthreads):
    if nthreads:
        import torch
        torch.set_num_threads(nthreads)


def redirect_scratch(work_dir: Path):
    for variable, sub in (("TMPDIR", "tmp"), ("MPLCONFIGDIR", "matplotlib"),
                          ("TORCHINDUCTOR_CACHE_DIR", "torchinductor"),
                          ("XDG_CACHE_HOME", "cache")):
        folder = Path(work_dir) / sub
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(folder)
    tempfile.tempdir = os.environ["TMPDIR"]


def worker_threads(nthreads, n_procs: int) -> int:
    """Threads for each of n_procs worker processes sharing --nthreads (default: every core)."""
    return max(1, (nthreads or os.cpu_count() or 1) // n_procs)


def spawn_pool(n_procs: int, initializer, initargs=()):
    """A process pool started with 'spawn': the main process may hold a CUDA context or ITK
    threads, which must not be forked."""
    import multiprocessing
    return multiprocessing.get_context("spawn").Pool(n_procs, initializer=initializer,
                                                     initargs=initargs)


def seed_ants(seed: int):
    """ANTs samples voxels at random (registration metrics, Atropos initialisation); this makes
    both repeatable. Read by ANTs when each call starts."""
    os.environ["ANTS_RANDOM_SEED"] = str(seed)
