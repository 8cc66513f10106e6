"""Webhook inbox cost in instructions per request, counted by callgrind: repeatable where
wall-clock throughput is not.

    python bench/bench_inbox_instructions.py                 # 1 000 requests per route
    python bench/bench_inbox_instructions.py --requests 3000

bench_inbox.py's receiver (the same process: a plain 200 route and the verified, durable
route on SQLite, its collector set up as `tether serve` sets it) runs under
`valgrind --tool=callgrind` with counting off. After a warm-up of each route, counting is
switched on for exactly the measured requests of one route, then off, and the counters are
dumped, per thread; the load generator (another process) does not count. Two ratios of
instructions, durable over plain, are printed: over all the server's threads (the SQLite
store's thread too), and over the event loop's thread alone, which is the one that runs out
of CPU first. Either is what a CPU-bound server's throughput ratio would tend to if
instructions were all a request cost: 1.25 would mean 0.8. The kernel's share (the WAL
writes, the fsync, waking the store's thread) is not counted, nor are cache misses, and both
weigh more on the durable route, so bench_inbox.py's ratio comes out lower.

Under callgrind the server runs some 50 times slower while the load generator does not, so
each commit carries close to all 64 requests in flight: per-commit costs weigh less here
than in bench_inbox.py. Needs `valgrind` (with callgrind_control) on the PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_inbox  # noqa: E402

_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def _dumped(folder: Path, before: set[Path]) -> tuple[int, int]:
    """The instructions of the dump callgrind_control -d just asked for: the event loop's
    thread (callgrind's thread 1) and all threads together."""
    seen: dict[str, int] = {}
    for _ in range(600):
        new = [path for path in folder.glob("cg.out*") if path not in before]
        totals: dict[str, int] = {}
        for path in new:
            if match := _TOTALS.search(path.read_text(errors="replace")):
                totals[path.name] = int(match.group(1))
        # One file per thread, written one after another: done when every file is whole and
        # no new one appeared for a moment.
        if new and len(totals) == len(new) and totals == seen:
            loop_thread = [n for name, n in totals.items() if name.endswith("-01")]
            if loop_thread:
                return loop_thread[0], sum(totals.values())
        seen = totals
        time.sleep(0.5)
    raise SystemExit("callgrind wrote no dump")


async def _ready(base: str) -> None:
    """Until the server answers (start-up under valgrind takes a while)."""
    for _ in range(600):
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(bench_inbox.stats(base), 5)
            return
        await asyncio.sleep(0.5)
    raise SystemExit("the server did not start under valgrind")


async def main(args: argparse.Namespace) -> None:
    print(
        f"{args.requests} requests per route, {args.concurrency} concurrent, "
        f"{len(bench_inbox.PAYLOAD)}-byte body, SQLite store, counted by callgrind"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prefix = (
            "valgrind",
            "--quiet",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--separate-threads=yes",
            f"--callgrind-out-file={folder}/cg.out",
        )
        counts: dict[str, int] = {}
        loop_counts: dict[str, int] = {}
        with bench_inbox.server(f"{tmp}/inbox.db", "public", 1024, "serving", prefix) as (
            base,
            pid,
        ):
            await _ready(base)
            run = uuid.uuid4().hex[:8]
            for path in ("/plain", "/hooks"):
                warm = bench_inbox.requests_for(f"{run}w{path}", args.warmup)
                await bench_inbox.drive(base + path, warm, args.concurrency)
            for path in ("/plain", "/hooks"):
                prepared = bench_inbox.requests_for(f"{run}m{path}", args.requests)
                before = set(folder.glob("cg.out*"))
                _control("-z", str(pid))
                _control("-i", "on", str(pid))
                result = await bench_inbox.drive(base + path, prepared, args.concurrency)
                _control("-i", "off", str(pid))
                _control("-d", path.strip("/"), str(pid))
                if result.errors:
                    raise SystemExit(f"{path}: {result.errors} non-200 answers")
                on_loop, everywhere = _dumped(folder, before)
                loop_counts[path] = on_loop // args.requests
                counts[path] = everywhere // args.requests
                print(
                    f"  {path:<7} {counts[path]:>12,} instructions per request, "
                    f"{loop_counts[path]:>12,} of them on the event loop's thread",
                    flush=True,
                )
            batches = await bench_inbox.stats(base)
    plain, durable = counts["/plain"], counts["/hooks"]
    loop_plain, loop_durable = loop_counts["/plain"], loop_counts["/hooks"]
    per_commit = batches["inserted"] / max(1, batches["commits"])
    print(
        f"\ndurable / plain = {durable / plain:.3f} in all threads (instruction-equivalent "
        f"throughput ratio {plain / durable:.2f}), {loop_durable / loop_plain:.3f} on the event "
        f"loop's thread ({loop_plain / loop_durable:.2f}); target >= 0.8. The durable route "
        f"costs {durable - plain:,} more per request; {per_commit:.1f} deliveries per commit"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64)
    arguments = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    asyncio.run(main(arguments))
