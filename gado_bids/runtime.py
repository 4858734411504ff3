"""Process-wide settings that must happen before heavy imports: threads, memory reuse and scratch
locations.

In a read-only container only the output and work folders are writable, so every library that
caches or spills to disk (tempfile users such as ANTs registration, matplotlib, torch) is pointed
at the work folder.
"""
import ctypes
import logging
import os
import tempfile
from pathlib import Path

THREAD_VARIABLES = ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(nthreads):
    if nthreads:
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(nthreads)


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEPT_FREE_BYTES = 2 ** 31 - 1  # mallopt takes an int: the largest trim threshold it accepts


def keep_freed_memory() -> bool:
    """Why: glibc serves every allocation above 32 MB with a fresh mmap and unmaps it on free, so
    each of the 1 mm network's ~450 MB feature maps is page-faulted in and zeroed by the kernel
    again, layer after layer. Measured (bundled attention U-Net, one 1 mm inference of gado-pairs
    sub-021, 2 threads, idle 2-core machine): 20.1 s wall, 18.6 s user + 17.8 s system, against
    12.0 s wall, 17.4 + 5.0 s with large blocks kept in the heap and reused (35 -> 22 s with a
    training run beside it); the output is byte-identical, the peak RSS 6.4 GB instead of 4.9
    (freed blocks are held for reuse, not returned). False where the C library is not glibc
    (nothing changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
    except (OSError, AttributeError):
        return False


def configure_process(nthreads):
    """What every gadosynth process (the command, each worker) sets first."""
    limit_threads(nthreads)
    keep_freed_memory()


def configure_worker_logging(log_level):
    """A spawned worker starts with no logging set up: its progress lines would be lost."""
    logging.basicConfig(level=log_level, format="%(asctime)s [gadosynth worker %(process)d] "
                        "%(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("bids").setLevel(logging.WARNING)


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
    """ANTs registration samples voxels at random for its metric; this fixes the samples. Read by
    antsRegistration when each call starts (registration.py also needs one thread to repeat;
    Atropos ignores it and takes its fixed seed from tissues.ATROPOS_SETTINGS)."""
    os.environ["ANTS_RANDOM_SEED"] = str(seed)
