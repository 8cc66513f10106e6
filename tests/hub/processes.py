"""`tether serve` as a subprocess: start it, learn its port, signal it, read its output."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


class ServeProcess:
    """One `tether serve` child process; `url` once it said where it listens."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None, cwd: Path) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr_path = cwd / f"serve-{id(self)}.log"

    async def start(self, *, timeout: float = 30.0) -> str:
        """Start it and wait (bounded) for its `listening on` line; its base URL."""
        with self.stderr_path.open("w") as errors:
            self.proc = subprocess.Popen(  # noqa: S603 - our own command, this interpreter
                [sys.executable, "-m", "tether", "serve", *self.args],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=self.env,
                cwd=self.cwd,
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        if not line.startswith("tether hub listening on "):
            raise AssertionError(f"tether serve did not start: {line!r}\n{self.stderr()}")
        self.url = line.removeprefix("tether hub listening on ").strip()
        return self.url

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, *, timeout: float = 60.0) -> int:
        assert self.proc is not None
        proc = self.proc
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        return code

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it will not go; never leaves a child behind."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await self.wait(timeout=30)
            except TimeoutError:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if proc.stdout is not None:
            proc.stdout.close()


def run_serve(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, root: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`tether [root options] serve ...` to completion (for commands that exit on their own)."""
    return subprocess.run(  # noqa: S603 - our own command, this interpreter
        [sys.executable, "-m", "tether", *root, "serve", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
