"""glibc's heap kept between batches: a batch's temporaries reuse memory already mapped.

Each batch allocates and frees tens of megabytes (parsed messages, columns, the detectors'
work arrays). By default glibc returns the free top of its heap to the system after each
batch and the next batch faults the same pages in again; how often depends on the process's
history (docs/performance.md: up to a fifth of `replay`'s time). ``M_TOP_PAD`` makes it keep
``TOP_PAD`` bytes free on top of the heap instead: at most that much more resident memory.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_TOP_PAD = -2                   # glibc's mallopt parameter (malloc.h)
TOP_PAD = 64 << 20               # bytes of free heap kept mapped


def keep_heap(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's ``M_TOP_PAD`` to ``TOP_PAD``, unless the environment sets it already
    (``MALLOC_TOP_PAD_`` or the ``glibc.malloc.top_pad`` tunable) or the C library is not
    glibc. Returns whether it was set."""
    if "MALLOC_TOP_PAD_" in environ or "glibc.malloc.top_pad" in environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(None)                      # the C library the process runs on
        glibc = hasattr(libc, "gnu_get_libc_version")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return glibc and mallopt(M_TOP_PAD, TOP_PAD) == 1
