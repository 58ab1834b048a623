"""The driver's resident memory: what allocators keep after a big phase, handed back.

A run's driver reads outcome chunks with Arrow, writes Parquet parts and merges them with DuckDB;
its Python heap stays small, but the allocators under those keep what a phase freed: Arrow's
default mimalloc pool holds freed pages for reuse, and glibc gives every thread that allocates
its own arena (the registration thread, Arrow's and DuckDB's workers), each keeping its free
chunks. Measured at 10^5 tasks, these were 35-55 MB of a 257-278 MB peak. `tame()` (once, at the
start of a run) routes Arrow through the system allocator and caps glibc's arenas at two;
`release()` (after an ingest of a big chunk and after a merge) hands free pages back to the
system. Neither changes what is computed; both are no-ops where the platform lacks them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_FROM = 1 << 20  # allocations this big get pages of their own, handed back when freed

_libc = None
_tamed = False
_arrow_tamed = False


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.mallopt, lib.malloc_trim  # glibc only (musl has neither)
                _libc = lib
            except (OSError, AttributeError):
                pass
    return _libc or None


def tame(arrow: bool = True) -> None:
    """Arrow on the system allocator (its freed buffers go where malloc_trim reaches them) and
    at most ARENAS glibc arenas. Idempotent; call before the run's threads start. `arrow`
    False: the arenas only (a small run never imports pyarrow, a registration has no Arrow)."""
    global _tamed, _arrow_tamed
    if not _tamed:
        _tamed = True
        lib = _glibc()
        if lib is not None:
            lib.mallopt(M_ARENA_MAX, ARENAS)
            # a fixed threshold: glibc's own rises to 32 MB after the first big free, so the
            # buffers of an outcome chunk (tens of MB) land in an arena and stay there as holes
            lib.mallopt(M_MMAP_THRESHOLD, MMAP_FROM)
    if not arrow or _arrow_tamed:
        return
    _arrow_tamed = True
    try:  # a run writes Parquet anyway, so Arrow's import only comes sooner
        pa = import_arrow()
        pa.set_memory_pool(pa.system_memory_pool())
    except Exception:  # an Arrow built without it: its default pool stays
        pass


def import_arrow():
    """pyarrow, its C++ default pool the system allocator. That pool is chosen once, from
    ARROW_DEFAULT_MEMORY_POOL, when libarrow loads; `set_memory_pool` only changes the pool of
    pyarrow's own calls, and the Parquet reader and writer kept allocating from mimalloc, which
    keeps its segments: +36 MB of anonymous memory after one merge of 16 parts, and the 10^6
    run's peak 316 MB instead of 190 (measured). The variable is set for the import alone, so
    the workers and jobs this process starts inherit the environment it was given: call it
    before the process starts threads (another thread's spawn in between would pass it on).
    Where pyarrow is imported already, only pyarrow's own calls move."""
    import os
    if "pyarrow" in sys.modules:
        return sys.modules["pyarrow"]
    key = "ARROW_DEFAULT_MEMORY_POOL"
    given = os.environ.get(key)
    if given is None:
        os.environ[key] = "system"
    try:
        import pyarrow as pa
    finally:
        if given is None:
            os.environ.pop(key, None)
    return pa


def release() -> None:
    """Hand the free pages of every arena (and Arrow's pool) back to the system."""
    if "pyarrow" in sys.modules:
        try:
            sys.modules["pyarrow"].default_memory_pool().release_unused()
        except Exception:
            pass
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
