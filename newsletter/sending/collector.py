"""Python's cyclic garbage collector held back while a send runs.

A send allocates a few small objects per recipient (rows, messages, request dicts) that
reference counting frees; almost none form cycles. With Python's default thresholds the
collector still ran some 1,900 times in a send to 100,000 recipients, a dozen of them full
collections walking every object of the process (the imported modules, the rendered issue),
all holding the interpreter lock the sending threads need: 1.8 s of a 10 s send. Freezing
what exists when the send starts takes it out of every collection (and keeps the read-ahead
child, forked from us, from copying those pages when a collection touches them); a higher
first threshold makes collections rare. Cycles are still collected, just less often.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

THRESHOLDS = (50_000, 20, 100)  # allocations before a young collection; then Python's ratios


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Collections rare and over the send's own objects only; as they were afterwards."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
