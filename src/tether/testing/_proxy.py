"""A TCP fault proxy with Toxiproxy's toxics and a subset of its HTTP API.

Toxiproxy itself cannot be installed from the package registries here, so this speaks its
protocol: existing Toxiproxy clients can drive it, and tests that only need TCP faults in front
of any server (a MockAPI, WireMock, a database) get them without a binary.

Toxics: latency, bandwidth, slow_close, timeout, reset_peer, limit_data, slicer; each on the
upstream (client to server) or downstream stream, with a toxicity (the share of connections
it applies to, drawn from a seeded generator). API: GET /version, GET|POST /proxies,
POST /populate, GET|POST|DELETE /proxies/{name}, GET|POST /proxies/{name}/toxics,
GET|POST|DELETE /proxies/{name}/toxics/{toxic}, POST /reset.

Toxics are decided when a connection opens and re-read for every chunk it relays; a toxic
removed mid-connection stops applying from the next chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import random
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from tether._errors import ConfigError

__all__ = ["TOXIC_TYPES", "FaultProxy", "Proxy", "ProxyServer", "Toxic"]

Stream = Literal["upstream", "downstream"]

#: Toxic types and their attributes with Toxiproxy's defaults.
TOXIC_TYPES: dict[str, dict[str, float]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "limit_data": {"bytes": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
}

VERSION = "2.12.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class Toxic:
    """One toxic, as Toxiproxy describes it (times in milliseconds, rate in KB/s)."""

    type: str
    name: str = ""
    stream: Stream = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in TOXIC_TYPES:
            raise ConfigError(
                f"unknown toxic type {self.type!r}; known: {', '.join(sorted(TOXIC_TYPES))}"
            )
        if self.stream not in ("upstream", "downstream"):
            raise ConfigError(f"stream must be 'upstream' or 'downstream', got {self.stream!r}")
        toxicity: object = self.toxicity
        if (
            isinstance(toxicity, bool)
            or not isinstance(toxicity, int | float)
            or not 0 <= toxicity <= 1
        ):
            raise ConfigError(f"toxicity must be within 0..1, got {toxicity!r}")
        defaults = TOXIC_TYPES[self.type]
        unknown = set(self.attributes) - set(defaults)
        if unknown:
            raise ConfigError(f"toxic {self.type!r} has no attribute {min(unknown)!r}")
        merged: dict[str, float] = dict(defaults)
        for key, value in self.attributes.items():
            number: object = value
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise ConfigError(f"toxic attribute {key!r} must be a number >= 0, got {value!r}")
            merged[key] = value
        object.__setattr__(self, "attributes", merged)
        if not self.name:
            object.__setattr__(self, "name", f"{self.type}_{self.stream}")

    def attr(self, key: str) -> float:
        return float(self.attributes[key])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _split_address(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{what} must be host:port, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Connection:
    """One client connection relayed to the upstream, with its toxic decisions."""

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.rolls: dict[str, bool] = {}
        self.closed = asyncio.Event()

    def active(self, stream: Stream) -> list[Toxic]:
        chosen: list[Toxic] = []
        for toxic in self.proxy.toxics.values():
            if toxic.stream != stream:
                continue
            decided = self.rolls.get(toxic.name)
            if decided is None:
                # Decided once per connection, from the proxy's seeded generator.
                decided = self.rolls[toxic.name] = self.proxy.random.random() < toxic.toxicity
            if decided:
                chosen.append(toxic)
        return chosen

    def reset_both(self) -> None:
        _rst(self.client[1])
        _rst(self.server[1])
        self.closed.set()

    def close_both(self) -> None:
        for _, writer in (self.client, self.server):
            writer.close()
        self.closed.set()

    async def run(self) -> None:
        streams: tuple[Stream, ...] = ("upstream", "downstream")
        for stream in streams:
            for toxic in self.active(stream):
                if toxic.type == "reset_peer":
                    delay = toxic.attr("timeout") / 1000
                    if delay <= 0:
                        self.reset_both()
                        return
                    asyncio.get_running_loop().call_later(delay, self.reset_both)
        pumps = [
            asyncio.ensure_future(self._pump(self.client[0], self.server[1], "upstream")),
            asyncio.ensure_future(self._pump(self.server[0], self.client[1], "downstream")),
        ]
        try:
            await asyncio.gather(*pumps)
        except (ConnectionError, OSError):
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self.close_both()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: Stream
    ) -> None:
        sent = 0
        dropping_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self.closed.is_set():
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError):
                self.reset_both()
                return
            toxics = {t.type: t for t in self.active(stream)}
            if not data:
                slow = toxics.get("slow_close")
                if slow is not None:
                    await asyncio.sleep(slow.attr("delay") / 1000)
                self.close_both()
                return
            timeout = toxics.get("timeout")
            if timeout is not None:
                # Data is swallowed; the connection closes after `timeout` ms (0: never).
                limit = timeout.attr("timeout") / 1000
                if dropping_since is None:
                    dropping_since = loop.time()
                    if limit > 0:
                        loop.call_later(limit, self.close_both)
                continue
            latency = toxics.get("latency")
            if latency is not None:
                jitter = latency.attr("jitter")
                delay = latency.attr("latency") + self.proxy.random.uniform(-jitter, jitter)
                await asyncio.sleep(max(0.0, delay) / 1000)
            limit_data = toxics.get("limit_data")
            if limit_data is not None and limit_data.attr("bytes") > 0:
                room = int(limit_data.attr("bytes")) - sent
                if room <= len(data):
                    if room > 0:
                        writer.write(data[:room])
                        await writer.drain()
                    self.close_both()
                    return
            pieces = [data]
            slicer = toxics.get("slicer")
            if slicer is not None and slicer.attr("average_size") > 0:
                pieces = self._slices(data, slicer)
            bandwidth = toxics.get("bandwidth")
            for piece in pieces:
                if bandwidth is not None and bandwidth.attr("rate") > 0:
                    await asyncio.sleep(len(piece) / (bandwidth.attr("rate") * 1000))
                writer.write(piece)
                await writer.drain()
                if slicer is not None and len(pieces) > 1:
                    await asyncio.sleep(slicer.attr("delay") / 1_000_000)
            sent += len(data)

    def _slices(self, data: bytes, slicer: Toxic) -> list[bytes]:
        average = int(slicer.attr("average_size"))
        variation = int(slicer.attr("size_variation"))
        pieces: list[bytes] = []
        start = 0
        while start < len(data):
            size = max(1, average + self.proxy.random.randint(-variation, variation))
            pieces.append(data[start : start + size])
            start += size
        return pieces


class Proxy:
    """A listening port relayed to one upstream, with its toxics."""

    def __init__(self, name: str, *, listen: str, upstream: str, seed: int | str) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = True
        self.toxics: dict[str, Toxic] = {}
        self.random = random.Random(f"{seed}/proxy/{name}")
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return _split_address(self.listen, "listen")[1]

    @property
    def url(self) -> str:
        host, port = _split_address(self.listen, "listen")
        return f"http://{host}:{port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        host, port = _split_address(self.listen, "listen")
        _split_address(self.upstream, "upstream")
        self._server = await asyncio.start_server(self._accept, host, port)
        bound = self._server.sockets[0].getsockname()
        self.listen = f"{host}:{bound[1]}"

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for connection in list(self._connections):
            connection.reset_both()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def set_enabled(self, enabled: bool) -> None:
        # Toxiproxy closes the listener and every connection of a disabled proxy.
        self.enabled = enabled
        if enabled:
            await self.start()
        else:
            await self.stop()

    def add_toxic(self, toxic: Toxic) -> Toxic:
        if toxic.name in self.toxics:
            raise ConfigError(f"toxic {toxic.name!r} already exists on proxy {self.name!r}")
        self.toxics[toxic.name] = toxic
        return toxic

    def update_toxic(self, name: str, changes: Mapping[str, Any]) -> Toxic:
        current = self.toxics[name]
        attributes = {**current.attributes, **dict(changes.get("attributes") or {})}
        updated = replace(
            current,
            toxicity=changes.get("toxicity", current.toxicity),
            attributes=attributes,
        )
        self.toxics[name] = updated
        return updated

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            host, port = _split_address(self.upstream, "upstream")
            try:
                server = await asyncio.open_connection(host, port)
            except OSError:
                # Toxiproxy drops the client when the upstream refuses.
                _rst(writer)
                return
            connection = _Connection(self, (reader, writer), server)
            self._connections.add(connection)
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)
        finally:
            if task is not None:
                self._tasks.discard(task)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxics.values()],
        }


class FaultProxy:
    """A set of proxies, driven from Python or through the Toxiproxy HTTP API.

    async with FaultProxy(seed=1) as proxies:
        api = await proxies.create("api", upstream=server_address)
        api.add_toxic(Toxic(type="latency", attributes={"latency": 200}))
        ... client.get(api.url + "/path") ...
    """

    def __init__(self, *, seed: int | str = 0, host: str = "127.0.0.1") -> None:
        self.seed = seed
        self.host = host
        self.proxies: dict[str, Proxy] = {}

    async def create(
        self, name: str, *, upstream: str, listen: str | None = None, enabled: bool = True
    ) -> Proxy:
        if name in self.proxies:
            raise ConfigError(f"proxy {name!r} already exists")
        proxy = Proxy(name, listen=listen or f"{self.host}:0", upstream=upstream, seed=self.seed)
        if enabled:
            await proxy.start()
        else:
            proxy.enabled = False
        self.proxies[name] = proxy
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.proxies.pop(name)
        await proxy.stop()

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (Toxiproxy's POST /reset)."""
        for proxy in self.proxies.values():
            proxy.toxics.clear()
            if not proxy.enabled:
                await proxy.set_enabled(True)

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()

    def serve_api(self, *, port: int = 0) -> ProxyServer:
        """The Toxiproxy HTTP API on loopback: `async with proxies.serve_api() as api_url`."""
        return ProxyServer(self, host=self.host, port=port)

    async def __aenter__(self) -> FaultProxy:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=jsonlib.dumps({"error": "bad request body", "status": 400}),
            content_type="application/json",
        ) from None


class ProxyServer:
    """Toxiproxy's HTTP API over a `FaultProxy`."""

    def __init__(self, proxies: FaultProxy, *, host: str, port: int) -> None:
        self.proxies = proxies
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _app(self) -> web.Application:  # noqa: PLR0915 - one route table, top to bottom
        proxies = self.proxies
        routes = web.RouteTableDef()

        def find(request: web.Request) -> Proxy:
            proxy = proxies.proxies.get(request.match_info["proxy"])
            if proxy is None:
                raise web.HTTPNotFound(
                    text=jsonlib.dumps({"error": "proxy not found", "status": 404}),
                    content_type="application/json",
                )
            return proxy

        @routes.get("/version")
        async def version(_: web.Request) -> web.StreamResponse:
            return web.Response(text=VERSION)

        @routes.get("/proxies")
        async def list_proxies(_: web.Request) -> web.StreamResponse:
            return web.json_response({n: p.to_json() for n, p in proxies.proxies.items()})

        async def create(spec: Any) -> Proxy:
            if not isinstance(spec, dict) or not spec.get("name") or not spec.get("upstream"):
                raise ConfigError("a proxy needs a name and an upstream")
            return await proxies.create(
                str(spec["name"]),
                upstream=str(spec["upstream"]),
                listen=spec.get("listen") or None,
                enabled=bool(spec.get("enabled", True)),
            )

        @routes.post("/proxies")
        async def create_proxy(request: web.Request) -> web.StreamResponse:
            spec = await _body(request)
            if isinstance(spec, dict) and spec.get("name") in proxies.proxies:
                return _error(409, "proxy already exists")
            try:
                proxy = await create(spec)
            except ConfigError as exc:
                return _error(400, str(exc))
            except OSError as exc:
                return _error(500, f"cannot listen: {exc.strerror}")
            return web.json_response(proxy.to_json(), status=201)

        @routes.post("/populate")
        async def populate(request: web.Request) -> web.StreamResponse:
            specs = await _body(request)
            if not isinstance(specs, list):
                return _error(400, "expected a list of proxies")
            made = []
            for spec in specs:
                name = spec.get("name") if isinstance(spec, dict) else None
                if name in proxies.proxies:
                    # Populate replaces proxies of the same name, as Toxiproxy does.
                    await proxies.delete(str(name))
                try:
                    made.append((await create(spec)).to_json())
                except ConfigError as exc:
                    return _error(400, str(exc))
            return web.json_response({"proxies": made}, status=201)

        @routes.get("/proxies/{proxy}")
        async def get_proxy(request: web.Request) -> web.StreamResponse:
            return web.json_response(find(request).to_json())

        @routes.post("/proxies/{proxy}")
        async def update_proxy(request: web.Request) -> web.StreamResponse:
            proxy = find(request)
            spec = await _body(request)
            if not isinstance(spec, dict):
                return _error(400, "expected an object")
            if "upstream" in spec:
                proxy.upstream = str(spec["upstream"])
            if "enabled" in spec:
                await proxy.set_enabled(bool(spec["enabled"]))
            return web.json_response(proxy.to_json())

        @routes.delete("/proxies/{proxy}")
        async def delete_proxy(request: web.Request) -> web.StreamResponse:
            await proxies.delete(find(request).name)
            return web.Response(status=204)

        @routes.get("/proxies/{proxy}/toxics")
        async def list_toxics(request: web.Request) -> web.StreamResponse:
            return web.json_response([t.to_json() for t in find(request).toxics.values()])

        @routes.post("/proxies/{proxy}/toxics")
        async def add_toxic(request: web.Request) -> web.StreamResponse:
            proxy = find(request)
            spec = await _body(request)
            if not isinstance(spec, dict):
                return _error(400, "expected an object")
            try:
                toxic = Toxic(
                    type=str(spec.get("type", "")),
                    name=str(spec.get("name") or ""),
                    stream=spec.get("stream", "downstream"),
                    toxicity=spec.get("toxicity", 1.0),
                    attributes=spec.get("attributes") or {},
                )
            except ConfigError as exc:
                return _error(400, str(exc))
            if toxic.name in proxy.toxics:
                return _error(409, "toxic already exists")
            return web.json_response(proxy.add_toxic(toxic).to_json())

        def toxic_of(request: web.Request) -> tuple[Proxy, str]:
            proxy = find(request)
            name = request.match_info["toxic"]
            if name not in proxy.toxics:
                raise web.HTTPNotFound(
                    text=jsonlib.dumps({"error": "toxic not found", "status": 404}),
                    content_type="application/json",
                )
            return proxy, name

        @routes.get("/proxies/{proxy}/toxics/{toxic}")
        async def get_toxic(request: web.Request) -> web.StreamResponse:
            proxy, name = toxic_of(request)
            return web.json_response(proxy.toxics[name].to_json())

        @routes.post("/proxies/{proxy}/toxics/{toxic}")
        async def update_toxic(request: web.Request) -> web.StreamResponse:
            proxy, name = toxic_of(request)
            spec = await _body(request)
            if not isinstance(spec, dict):
                return _error(400, "expected an object")
            try:
                return web.json_response(proxy.update_toxic(name, spec).to_json())
            except ConfigError as exc:
                return _error(400, str(exc))

        @routes.delete("/proxies/{proxy}/toxics/{toxic}")
        async def delete_toxic(request: web.Request) -> web.StreamResponse:
            proxy, name = toxic_of(request)
            del proxy.toxics[name]
            return web.Response(status=204)

        @routes.post("/reset")
        async def reset(_: web.Request) -> web.StreamResponse:
            await proxies.reset()
            return web.Response(status=204)

        app = web.Application()
        app.add_routes(routes)
        return app

    async def __aenter__(self) -> str:
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.url

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
