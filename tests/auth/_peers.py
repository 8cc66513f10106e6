"""Real authorization servers for the interop tests, started on loopback by the tests.

A missing peer (node_modules not installed, Django not installed) skips its tests on a
developer machine and fails them when CI=true, so CI can never pass by skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

PEERS = Path(__file__).resolve().parent.parent / "peers"


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"interop peer unavailable in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    """Poll the port until the peer accepts connections; bounded, and fails if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"peer exited with {process.returncode}: {output}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"peer did not listen on port {port} within {timeout:g} s")


@contextlib.contextmanager
def running(
    command: list[str], port: int, log: Path, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    # Output goes to a file: a pipe nobody reads would fill up and stall a chatty server.
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - fixed commands built by the fixtures
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **popen
        )
        try:
            wait_until_listening(port, process, log)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class OidcPeer:
    url: str
    private_key: rsa.RSAPrivateKey

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    async def stats(self) -> dict[str, int]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/__stats") as r:
            result: dict[str, int] = await r.json()
            return result


@pytest.fixture(scope="session")
def oidc_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcPeer]:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not (PEERS / "node_modules" / "oidc-provider").is_dir():
        unavailable("oidc-provider is not installed: npm ci --prefix tests/peers")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"use": "sig", "alg": "RS256", "kid": "pkjwt-1"})
    port = free_port()
    env = {**os.environ, "PEER_PORT": str(port), "PEER_CLIENT_JWKS": json.dumps({"keys": [jwk]})}
    assert node is not None
    log = tmp_path_factory.mktemp("oidc") / "oidc-provider.log"
    with running([node, str(PEERS / "oidc_server.mjs")], port, log, env=env, cwd=PEERS):
        yield OidcPeer(url=f"http://127.0.0.1:{port}", private_key=key)


@dataclass
class DotPeer:
    url: str
    #: The server's output, access log included.
    log: Path

    @property
    def token_url(self) -> str:
        return f"{self.url}/o/token/"


@pytest.fixture(scope="session")
def dot_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotPeer]:
    try:
        import oauth2_provider  # noqa: F401
    except ImportError:
        unavailable("django-oauth-toolkit is not installed")
    project = PEERS / "dot"
    workdir = tmp_path_factory.mktemp("dot")
    env = {**os.environ, "PEER_DB": str(workdir / "dot.sqlite3")}
    env["PYTHONPATH"] = str(project)
    subprocess.run(  # noqa: S603 - our own setup script
        [sys.executable, str(project / "setup_peer.py")], env=env, check=True, cwd=project,
        capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    command = [sys.executable, str(project / "manage.py"), "runserver", f"127.0.0.1:{port}"]
    with running([*command, "--noreload"], port, workdir / "dot.log", env=env, cwd=project):
        yield DotPeer(url=f"http://127.0.0.1:{port}", log=workdir / "dot.log")


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.in_form = False
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = attributes.get("action", "")
            self.in_form = True
        elif tag == "input" and self.in_form and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.in_form:
            self.in_form = False
            self.done = True


class HeadlessBrowser:
    """Follows redirects and submits each page's first form: enough to sign in headlessly."""

    def __init__(self, fill: dict[str, str] | None = None) -> None:
        self.fill = fill or {}

    async def visit(self, url: str) -> str:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies on 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            method, data = "GET", None
            for _ in range(30):
                async with session.request(method, url, data=data, allow_redirects=False) as r:
                    body = await r.text()
                    if r.status in (301, 302, 303, 307, 308):
                        url, method, data = urljoin(url, r.headers["Location"]), "GET", None
                        continue
                    if r.status >= 400:
                        raise AssertionError(f"{r.status} at {url}: {body[:500]}")
                parser = _FormParser()
                parser.feed(body)
                if parser.action is None:
                    return body
                fields = {**parser.fields, **self.fill}
                url, method, data = urljoin(url, parser.action), "POST", fields
        raise AssertionError("sign-in did not finish within 30 steps")
