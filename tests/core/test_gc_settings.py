"""tune_gc_for_serving: what `tether serve` does to its own process's garbage collector."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

_PROBE = """
import gc, json
from tether._gc import SERVING_THRESHOLD, tune_gc_for_serving
before = gc.get_threshold()
tune_gc_for_serving()
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "limit": SERVING_THRESHOLD}))
"""


def _probe(*setup: str) -> dict[str, Any]:
    code = "\n".join(setup) + _PROBE
    done = subprocess.run(  # noqa: S603 - this interpreter, with our own probe
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return dict(json.loads(done.stdout))


def test_the_start_up_heap_is_frozen_and_the_young_threshold_raised() -> None:
    """Run in a fresh interpreter: the settings are process-wide, not for the test runner."""
    seen = _probe()
    assert seen["frozen"] > 1000  # the modules and objects made so far
    young, middle, old = seen["after"]
    assert young == seen["limit"]
    assert [middle, old] == seen["before"][1:]


def test_a_higher_threshold_set_by_the_application_is_kept() -> None:
    seen = _probe("import gc; gc.set_threshold(50_000, 10, 10)")
    assert seen["after"] == [50_000, 10, 10]
