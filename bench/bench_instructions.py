"""Instructions per request, counted by valgrind (callgrind): repeatable on a noisy machine.

    python bench/bench_instructions.py              # raw aiohttp, tether, tether + every policy
    python bench/bench_instructions.py --requests 3000

Wall-clock throughput on a shared VM varies by 20 % between identical runs; instruction counts
do not. Each contender runs twice under callgrind, with 1 and with N+1 requests against the
loopback benchmark server (in its own process, not counted); the difference divided by N is
the client's cost per request, start-up and imports excluded. Needs `valgrind` on the PATH.

Compiled bytecode goes to a private cache filled by one plain run of each contender first, so
no counted run compiles source (with PYTHONDONTWRITEBYTECODE every run would, and a file
edited between the two runs of a pair would skew their difference).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _process import server_process  # noqa: E402

CONTENDERS = {
    "raw aiohttp": "raw_aiohttp",
    "tether.Client (retry + deadline + logging)": "tether_client",
    "tether.Client (+ rate limit, breaker, bulkhead)": "tether_all_policies",
}


def _child(function: str, requests: int, url: str) -> None:
    import bench_client

    asyncio.run(getattr(bench_client, function)(url, requests, 10))


def _count(function: str, requests: int, url: str, env: dict[str, str]) -> int:
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            function,
            str(requests),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        function, requests, url = args.child
        _child(function, int(requests), url)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as cache, server_process("_server.py") as url:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        time.sleep(0.3)
        for function in CONTENDERS.values():
            subprocess.run(
                [sys.executable, __file__, "--child", function, "1", url], check=True, env=env
            )
        counts = {
            name: (_count(function, args.requests + 1, url, env) - _count(function, 1, url, env))
            / args.requests
            for name, function in CONTENDERS.items()
        }
    base = counts["raw aiohttp"]
    print(f"instructions per request ({args.requests} requests, 10 concurrent, callgrind)")
    for name, per in counts.items():
        print(f"{name:<50}{per:>10.0f}{per / base:>8.2f}x")


if __name__ == "__main__":
    main()
