"""`tether serve`: run the hub from tether.toml under uvicorn, on one event loop with it.

Order of events: the config is read and checked (problems are printed and the command exits 2
before anything is bound), the hub starts (stores opened, pollers, inbox, outbox, streams), the
socket is bound and one line says where. SIGTERM or SIGINT stops accepting requests, lets the
ones in flight finish, then stops the hub (pollers release their leases; the inbox dispatcher
and the outbox worker finish what they started) and exits 0. SIGHUP reads the config again:
a bad one is logged with its problems and the running one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from tether._errors import ConfigError
from tether._gc import tune_gc_for_serving
from tether.cli._support import ExitCode, fail
from tether.spec import Spec, SpecError, load
from tether.stores import StoreError

if TYPE_CHECKING:
    import uvicorn

    from tether.hub import Hub

__all__ = ["JSONFormatter", "serve"]

logger = logging.getLogger("tether.hub.serve")

LogFormat = Literal["text", "json"]

#: Attributes every LogRecord has; anything else on a record is an `extra=` field.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _configure_logging(log_format: LogFormat, *, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # One line per request attempt of every client is DEBUG detail, not a hub's log.
    if not debug:
        logging.getLogger("tether").setLevel(logging.INFO)
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _problems(exc: SpecError) -> None:
    """Print a config's problems like `tether spec check` does, and exit 2."""
    fail(str(exc), code=ExitCode.USAGE, hint="fix the lines named above; nothing was started")


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server(app: Any) -> uvicorn.Server:
    import uvicorn  # noqa: PLC0415 - only for this command

    class _Server(uvicorn.Server):
        # Signals are ours: uvicorn's own handlers would re-raise them after shutdown and
        # turn a graceful stop into a non-zero exit.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Longer than common clients keep idle connections (aiohttp: 15 s), so a sender never
        # writes a webhook into a connection the hub is closing at that moment.
        timeout_keep_alive=30,
        server_header=False,
    )
    return _Server(config)


class _Runner:
    """Owns the loop's side of `tether serve`: hub, server, signals, reloads."""

    def __init__(self, *, config: Path, overrides: dict[str, Any], demo: bool) -> None:
        self.config = config
        self.overrides = overrides
        self.demo = demo
        self.stop = asyncio.Event()
        self.reload = asyncio.Event()

    def _signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload.set)

    async def _reload(self, hub: Hub) -> None:
        try:
            spec = load(self.config)
            await hub.reload(spec)
        except SpecError as exc:
            logger.error(  # noqa: TRY400 - the problems are the message
                "the new config was not applied; the running one stays:\n%s", exc
            )
        except ConfigError as exc:
            logger.error("the new config was not applied: %s", exc)  # noqa: TRY400

    async def run(self, spec: Spec | None, sock: socket.socket | None) -> int:
        from tether.hub import Hub, build_app  # noqa: PLC0415 - heavy; only for this command

        # Before anything starts: a SIGTERM during start-up still means a graceful stop, and a
        # SIGHUP right after the "listening" line must not meet the default (terminating)
        # disposition.
        self._signals()
        sandbox: Any = None
        if self.demo:
            sandbox, spec, sock = await self._start_demo()
        assert spec is not None  # noqa: S101 - loaded by the caller or the demo
        try:
            hub = Hub(spec, **self.overrides)
            await hub.start()
        except (SpecError, StoreError) as exc:
            if sandbox is not None:
                await sandbox.aclose()
            if isinstance(exc, SpecError):
                _problems(exc)
            fail(f"cannot start the hub: {exc}", code=ExitCode.ERROR)
        settings = hub.settings
        if sock is None:
            try:
                sock = _bind(settings.host, settings.port)
            except OSError as exc:
                await hub.stop()
                fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
                     code=ExitCode.ERROR)  # fmt: skip
        port = sock.getsockname()[1]
        server = _server(build_app(hub, token=settings.token))
        server.config.load()
        server.lifespan = server.config.lifespan_class(server.config)
        await server.startup(sockets=[sock])
        # Webhooks held across their commits keep the collector busy with the default
        # settings; see tether._gc for the measurements.
        tune_gc_for_serving()
        url = _url(settings.host, port)
        print(f"tether hub listening on {url}", flush=True)
        if sandbox is not None:
            await sandbox.send_webhooks(f"{url}/webhooks/weather/alerts")
        main = asyncio.create_task(server.main_loop(), name="tether-hub-http")
        try:
            await self._wait(hub)
        finally:
            logger.info("stopping: finishing requests in flight, then the hub")
            # Live event streams end and /health says so while requests finish.
            hub.stopping = True
            server.should_exit = True
            await main
            await server.shutdown(sockets=[sock])
            if sandbox is not None:
                await sandbox.aclose()
            await hub.stop()
            logger.info("stopped")
        return 0

    async def _wait(self, hub: Hub) -> None:
        """Until SIGTERM or SIGINT; each SIGHUP meanwhile reloads the config."""
        while not self.stop.is_set():
            waiters = {asyncio.ensure_future(self.stop.wait()),
                       asyncio.ensure_future(self.reload.wait())}  # fmt: skip
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if self.reload.is_set() and not self.stop.is_set():
                self.reload.clear()
                logger.info("SIGHUP: reading %s again", self.config)
                await self._reload(hub)

    async def _start_demo(self) -> tuple[Any, Spec, socket.socket]:
        try:
            from tether.hub import DemoSandbox  # noqa: PLC0415
        except (ImportError, AttributeError):
            fail("--demo is unavailable in this installation", code=ExitCode.USAGE)
        sandbox = DemoSandbox()
        await sandbox.start()
        listen = self.overrides.get("listen") or "127.0.0.1:8765"
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]")
        try:
            sock = _bind(host, int(port_text))
        except (OSError, ValueError) as exc:
            await sandbox.aclose()
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            fail(f"cannot listen on {listen}: {reason}", hint="pick another with --listen "
                 "127.0.0.1:0", code=ExitCode.ERROR)  # fmt: skip
        folder = Path(tempfile.mkdtemp(prefix="tether-demo-"))
        path = folder / "tether.toml"
        path.write_text(sandbox.config(_url(host, sock.getsockname()[1])), encoding="utf-8")
        self.config = path
        logger.info("demo: sandbox at %s, config in %s", sandbox.base_url, path)
        return sandbox, load(path), sock


def serve(
    ctx: typer.Context,
    *,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The tether.toml to run; SIGHUP reads it again. Default: the root --spec "
            "(or $TETHER_SPEC), else ./tether.toml.",
            envvar="TETHER_CONFIG",
            show_default=False,
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT to listen on (PORT 0: any free port); default: hub.listen, "
            "else 127.0.0.1:8765. Off loopback a token is required.",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Where the hub keeps events, snapshots, inbox and outbox: a SQLite file or "
            "postgresql://... (several hubs share one deployment through it; ?schema=NAME "
            "picks a schema). Default: hub.store, else tether-hub.db beside the config.",
            show_default=False,
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            help="redis://... shared by the hubs of a deployment: rate limits and OAuth2 "
            "tokens. Default: hub.redis.",
            show_default=False,
        ),
    ] = None,
    token_env: Annotated[
        str | None,
        typer.Option(
            help="Read the API token from this environment variable (instead of hub.token).",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(help="text, or json: one object per line with time, level, logger, message."),
    ] = "text",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Run against the bundled offline sandbox provider (no config or network needed).",
        ),
    ] = False,
) -> None:
    """Run the hub: the config's pollers, webhook inbox, outbox and streams, with an HTTP API
    (/health, /integrations, /data, /events, /inbox, /outbox, /dead, /metrics) and a dashboard
    at /. SIGTERM stops it gracefully, SIGHUP reloads the config."""
    debug = bool(getattr(ctx.find_root().obj, "debug", False))
    if log_format not in ("text", "json"):
        fail(f"--log-format must be text or json, not {log_format!r}", code=ExitCode.USAGE)
    _configure_logging(log_format, debug=debug)  # type: ignore[arg-type]
    token: str | None = None
    if token_env is not None:
        token = os.environ.get(token_env) or None
        if token is None:
            fail(f"--token-env: the environment variable {token_env} is not set",
                 code=ExitCode.USAGE)  # fmt: skip
    overrides: dict[str, Any] = {"store": store, "redis": redis, "listen": listen, "token": token}
    if config is None:
        root = ctx.find_root().obj
        config = getattr(root, "spec_path", None) or Path("tether.toml")
    spec: Spec | None = None
    if not demo:
        if not config.is_file():
            fail(
                f"no config at {config}",
                code=ExitCode.USAGE,
                hint="pass --config FILE (docs/hub.md shows one), or try `tether serve --demo`",
            )
        try:
            spec = load(config)
            # Everything the hub needs is resolved now: a problem stops us before any socket.
            from tether.hub._config import hub_settings  # noqa: PLC0415

            hub_settings(spec, **overrides)
        except SpecError as exc:
            _problems(exc)
        except ConfigError as exc:
            fail(str(exc), code=ExitCode.USAGE)
    runner = _Runner(config=config, overrides=overrides, demo=demo)
    try:
        code = asyncio.run(runner.run(spec, None))
    except ConfigError as exc:
        fail(str(exc), code=ExitCode.USAGE)
    except KeyboardInterrupt:
        code = int(ExitCode.INTERRUPTED)
    raise typer.Exit(code)
