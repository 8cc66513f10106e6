"""Garbage-collector settings for a long-running server process (`tether serve`).

CPython's cyclic collector runs its young pass every 700 net allocations of container objects.
A webhook receiver that acknowledges only after a durable commit holds every request in flight
across that commit, so the objects of a few hundred requests (coroutines, frames, header
tuples) are alive at any moment and each young pass finds most of them alive, promotes them and
walks them again in the older passes. In bench/bench_inbox.py that was 30 to 60 collections per
thousand deliveries and 15 to 25 us of collector time per delivery. Above what those requests
keep alive, the young pass mostly finds garbage; freezing what start-up made keeps the full
passes from re-walking the process's modules, app and clients.
"""

from __future__ import annotations

import gc

__all__ = ["SERVING_THRESHOLD", "tune_gc_for_serving"]

#: The young generation's threshold while serving: above the live set of a few hundred
#: requests held across commits (about 50 container objects each).
SERVING_THRESHOLD = 10_000


def tune_gc_for_serving() -> None:
    """Freeze what exists now and raise the young threshold; call once start-up is done.

    Process-wide: it is for processes that are servers, such as `tether serve`, not for a
    library to call on an application's behalf.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young < SERVING_THRESHOLD:
        gc.set_threshold(SERVING_THRESHOLD, middle, old)
