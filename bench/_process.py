"""Starting a benchmark server in its own process, on a loopback socket bound here."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def server_process(script: str, *args: str) -> Iterator[str]:
    """Run `bench/<script> <fd> <args...>`; yields the base URL and stops the process after.

    The socket is bound before the process starts, so the URL is valid at once and the port
    cannot be taken by anyone else in between.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    os.set_inheritable(listener.fileno(), True)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), str(listener.fileno()), *args],
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.poll() is None:
            proc.kill()
