"""`MockAPI`: one definition of a fake third-party API, served three ways.

The request handling lives here, once. The in-process transport (`MockAPI.transport()`), the
loopback server (`MockAPI.serve()`) and `tether mock serve` all call `MockAPI.handle`, and differ
only in how they deliver its `Outcome`: as a tether `Response` (or error) on virtual time, or as
real bytes on a real socket.
"""

from __future__ import annotations

import inspect
import itertools
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final, Protocol

from tether._client import Client
from tether._clock import Clock, SystemClock
from tether._errors import ConfigError
from tether.testing._faults import (
    DISCONNECTING,
    REPLACING,
    Fault,
    FaultEvent,
    FaultRule,
    Latency,
    Schedule,
)
from tether.testing._match import Mismatch, MockRequest, RequestMatcher, ValueMatcher
from tether.testing._oauth import OAuth2Server
from tether.testing._pagination import Collection, PageQuirks, Pagination
from tether.testing._reply import Outcome, Reply, shape
from tether.testing._server import MockServer
from tether.testing._transport import MockAPITransport

if TYPE_CHECKING:
    import re

    from aiohttp import web

__all__ = ["STARTED", "MockAPI", "Stub", "Unmatched"]

#: The state every scenario starts in (WireMock's name for it, so exported stubs agree).
STARTED: Final = "Started"

_UNSET: Final = object()

#: A stub's dynamic answer: the request and the `{name}` values captured from its path.
Handler = Callable[[MockRequest, Mapping[str, str]], "Reply | Awaitable[Reply]"]


class Route(Protocol):
    """A built-in part of the API (a collection, the OAuth2 endpoints) that answers some paths."""

    name: str

    async def respond(self, request: MockRequest) -> Reply | None:
        """The answer, or None when `request` is not for this route."""
        ...

    def reset(self) -> None: ...


class Guard(Protocol):
    """A check that runs before any stub or route, such as "a valid bearer token"."""

    def check(self, request: MockRequest) -> Reply | None:
        """A rejection, or None to let the request through."""
        ...


class Stub:
    """A canned answer (or sequence of answers) for matching requests; records its calls."""

    __slots__ = (
        "_index",
        "_random",
        "_seed",
        "calls",
        "handler",
        "matcher",
        "name",
        "priority",
        "replies",
        "scenario",
        "then",
        "when",
    )

    def __init__(
        self,
        *,
        name: str,
        matcher: RequestMatcher,
        replies: tuple[Reply, ...],
        handler: Handler | None,
        scenario: str | None,
        when: str | None,
        then: str | None,
        priority: int,
        seed: int | str,
    ) -> None:
        self.name = name
        self.matcher = matcher
        self.replies = replies
        self.handler = handler
        self.scenario = scenario
        self.when = when
        self.then = then
        self.priority = priority
        #: Every request this stub answered, in order.
        self.calls: list[MockRequest] = []
        self._index = 0
        self._seed = f"{seed}/stub/{name}"
        self._random = random.Random(self._seed)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def next_reply(self) -> Reply:
        # Replies are consumed in order, each `times` times; the last one repeats.
        position = self._index
        self._index += 1
        for reply in self.replies:
            if position < reply.times:
                return reply
            position -= reply.times
        return self.replies[-1]

    def jitter(self, upper: float) -> float:
        return self._random.uniform(0.0, upper) if upper > 0 else 0.0

    def reset(self) -> None:
        self.calls.clear()
        self._index = 0
        self._random.seed(self._seed)

    def __repr__(self) -> str:
        return f"<Stub {self.name!r} calls={len(self.calls)}>"


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A request no stub or route answered, with the nearest stubs and how each differs."""

    request: MockRequest
    nearest: tuple[tuple[str, tuple[Mismatch, ...]], ...] = field(default=())

    def __str__(self) -> str:
        lines = [f"no stub matched {self.request.method} {self.request.path}"]
        if self.request.query:
            lines[0] += "?" + "&".join(f"{k}={v}" for k, v in self.request.query.items())
        if not self.nearest:
            lines.append("  (the mock has no stubs)")
        for name, problems in self.nearest:
            lines.append(f"  nearest: {name}")
            lines.extend(f"    - {problem}" for problem in problems)
        return "\n".join(lines)


def _as_reply(item: Reply | Fault) -> Reply:
    if isinstance(item, Reply):
        return item
    return Reply(fault=item)


class MockAPI:
    """A fake third-party API with stubs, scenarios, faults, collections and OAuth2.

    Args:
        seed: Seeds every random choice (fault schedules, jitter, tokens): the same seed
            replays the same run.
        clock: The time source for everything time-dependent (token expiry, cursor expiry,
            `Retry-After` dates, in-process latency). Pass the client's `FakeClock` to share
            virtual time with its retries.
        url: The base URL the in-process transport answers under. `.localhost` names are
            loopback, so credentials may be sent to it over plain http.
        hang_limit: Seconds after which a `Hang` gives up when the client set no timeout.
        strict: `assert_all_matched()` at the end of a pytest test (the `mock_api` fixture).
    """

    def __init__(
        self,
        *,
        seed: int | str = 0,
        clock: Clock | None = None,
        url: str = "http://api.localhost",
        hang_limit: float = 300.0,
        strict: bool = True,
    ) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.url = url.rstrip("/")
        self.hang_limit = hang_limit
        self.strict = strict
        self._stubs: list[Stub] = []
        self._rules: list[FaultRule] = []
        self._routes: list[Route] = []
        self._guards: list[Guard] = []
        self._counter = itertools.count(1)
        self._names: dict[str, int] = {}
        self._scenarios: dict[str, str] = {}
        #: Every request received, in order.
        self.requests: list[MockRequest] = []
        #: Requests nothing answered, with the nearest stubs.
        self.unmatched: list[Unmatched] = []
        #: Every fault that fired, in order: the same seed gives the same log.
        self.fault_log: list[FaultEvent] = []
        self._secrets: set[str] = set()

    # -- definition ---------------------------------------------------------------------------

    def _unique(self, base: str) -> str:
        count = self._names.get(base, 0)
        self._names[base] = count + 1
        return base if count == 0 else f"{base} #{count + 1}"

    def stub(
        self,
        method: str | None,
        path: str | re.Pattern[str] | None,
        *replies: Reply | Fault,
        query: Mapping[str, ValueMatcher] | None = None,
        headers: Mapping[str, ValueMatcher] | None = None,
        json: Any = _UNSET,
        json_partial: Any = _UNSET,
        body: bytes | str | None = None,
        where: Callable[[MockRequest], bool] | None = None,
        handler: Handler | None = None,
        scenario: str | None = None,
        when: str | None = None,
        then: str | None = None,
        priority: int = 0,
        name: str | None = None,
    ) -> Stub:
        """Answer requests that match with `replies` in turn (the last repeats).

        `method` None or "*" and `path` None match anything. `path` may hold `{name}`
        segments or be a compiled pattern. `query` and `headers` list only what must be
        there; `json` must equal the body, `json_partial` must be contained in it. With
        `scenario`, the stub answers only while the scenario is in state `when` (default: any)
        and moves it to `then`. The stub added last wins among equal `priority`.
        """
        if replies and handler is not None:
            raise ConfigError("give a stub replies or a handler=, not both")
        matcher_options: dict[str, Any] = {}
        if json is not _UNSET:
            matcher_options["json"] = json
        if json_partial is not _UNSET:
            matcher_options["json_partial"] = json_partial
        matcher = RequestMatcher(
            method=method,
            path=path,
            query=dict(query or {}),
            headers=dict(headers or {}),
            body=body.encode() if isinstance(body, str) else body,
            where=where,
            **matcher_options,
        )
        if (when is not None or then is not None) and scenario is None:
            raise ConfigError("when= and then= need scenario=")
        label = name or self._unique(
            f"{(method or '*').upper()} {getattr(path, 'pattern', path) or '*'}"
        )
        if any(s.name == label for s in self._stubs):
            raise ConfigError(f"a stub named {label!r} exists already")
        stub = Stub(
            name=label,
            matcher=matcher,
            replies=tuple(_as_reply(r) for r in replies) or (Reply(),),
            handler=handler,
            scenario=scenario,
            when=when,
            then=then,
            priority=priority,
            seed=self.seed,
        )
        self._stubs.append(stub)
        return stub

    def inject(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        query: Mapping[str, ValueMatcher] | None = None,
        headers: Mapping[str, ValueMatcher] | None = None,
        schedule: Schedule | None = None,
        name: str | None = None,
    ) -> FaultRule:
        """Inject `fault` into matching requests on `schedule` (default: every one).

        Replacing faults (`RateLimited`, `ServerError`) answer instead of the API, and the
        API never sees the request; so do `Reset`, `EmptyResponse` and `Hang` unless
        `processed=True`. `Latency`, `Truncate` and `Drip` shape the API's real answer.
        """
        matcher = RequestMatcher(
            method=method, path=path, query=dict(query or {}), headers=dict(headers or {})
        )
        label = name or self._unique(f"{type(fault).__name__} on {method or '*'} {path or '*'}")
        if any(r.name == label for r in self._rules):
            raise ConfigError(f"a fault rule named {label!r} exists already")
        rule = FaultRule(
            fault,
            name=label,
            match=lambda request: not matcher.mismatches(request),
            schedule=schedule or Schedule(),
            seed=self.seed,
        )
        self._rules.append(rule)
        return rule

    def collection(
        self,
        path: str,
        *,
        items: Iterable[Mapping[str, Any]] = (),
        id_field: str = "id",
        pagination: Pagination | None = None,
        quirks: PageQuirks | None = None,
        name: str | None = None,
    ) -> Collection:
        """A resource collection at `path`: POST creates, GET lists (paginated), and GET,
        PUT, PATCH and DELETE on `path/{id}` act on one item.
        """
        collection = Collection(
            self,
            path,
            items=items,
            id_field=id_field,
            pagination=pagination,
            quirks=quirks,
            name=name or f"collection {path}",
        )
        self._routes.append(collection)
        return collection

    def oauth2(
        self,
        *,
        token_path: str = "/oauth/token",  # noqa: S107 - a URL path, not a password
        revoke_path: str | None = "/oauth/revoke",
        clients: Mapping[str, str | None] | None = None,
        access_ttl: float = 3600.0,
        refresh_ttl: float | None = None,
        reported_ttl: float | None = None,
        rotate_refresh_tokens: bool = True,
        detect_reuse: bool = True,
        scopes: Iterable[str] | None = None,
    ) -> OAuth2Server:
        """An OAuth2 authorization server (RFC 6749) with expiry, rotation and revocation."""
        server = OAuth2Server(
            self,
            token_path=token_path,
            revoke_path=revoke_path,
            clients=clients or {},
            access_ttl=access_ttl,
            refresh_ttl=refresh_ttl,
            reported_ttl=reported_ttl,
            rotate_refresh_tokens=rotate_refresh_tokens,
            detect_reuse=detect_reuse,
            scopes=scopes,
        )
        self._routes.append(server)
        return server

    def add_route(self, route: Route) -> None:
        """Serve a built-in route (any object with `name`, `respond` and `reset`)."""
        self._routes.append(route)

    def add_guard(self, guard: Guard) -> None:
        """Check every request with `guard` before stubs and routes see it."""
        self._guards.append(guard)

    def remember_secret(self, value: str) -> None:
        """Note a secret the mock handed out, for leak checks (cassettes ask `secrets()`)."""
        if value:
            self._secrets.add(value)

    def secrets(self) -> frozenset[str]:
        """Every secret value the mock issued or was configured with."""
        return frozenset(self._secrets)

    # -- state --------------------------------------------------------------------------------

    @property
    def stubs(self) -> tuple[Stub, ...]:
        return tuple(self._stubs)

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        return tuple(self._rules)

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def scenario_state(self, scenario: str) -> str:
        return self._scenarios.get(scenario, STARTED)

    def set_scenario_state(self, scenario: str, state: str) -> None:
        self._scenarios[scenario] = state

    def reset(self) -> None:
        """Back to the start: journals, counters, scenario states and collection contents."""
        self.requests.clear()
        self.unmatched.clear()
        self.fault_log.clear()
        self._scenarios.clear()
        self._counter = itertools.count(1)
        for stub in self._stubs:
            stub.reset()
        for rule in self._rules:
            rule.reset()
        for route in self._routes:
            route.reset()

    def assert_all_matched(self) -> None:
        """Raise AssertionError listing every request nothing answered, with diffs."""
        if self.unmatched:
            report = "\n".join(str(u) for u in self.unmatched)
            raise AssertionError(f"{len(self.unmatched)} request(s) matched no stub:\n{report}")

    def assert_all_called(self) -> None:
        """Raise AssertionError naming every stub that was never called."""
        idle = [s.name for s in self._stubs if not s.calls]
        if idle:
            raise AssertionError(f"stub(s) never called: {', '.join(idle)}")

    # -- serving ------------------------------------------------------------------------------

    def transport(self) -> MockAPITransport:
        """An in-process tether transport: no sockets, latency on the mock's clock."""
        return MockAPITransport(self)

    def client(self, **options: Any) -> Client:
        """A `tether.Client` wired to the in-process transport and the mock's clock."""
        options.setdefault("clock", self.clock)
        base_url = options.pop("base_url", self.url)
        return Client(base_url, transport=self.transport(), **options)

    def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: Iterable[web.AbstractRouteDef] = (),
    ) -> AbstractAsyncContextManager[MockServer]:
        """Serve on a real loopback socket: `async with api.serve() as server: server.url`.

        `routes` are aiohttp route definitions served beside the mock (a WebSocket, say);
        they bypass stubs, faults and the request journal.
        """
        return MockServer(self, host=host, port=port, routes=routes)

    # -- handling -----------------------------------------------------------------------------

    async def handle(self, request: MockRequest) -> Outcome:
        """Decide how `request` ends. The only request-handling code; every mode calls it."""
        number = next(self._counter)
        self.requests.append(request)
        replacing: tuple[FaultRule, Fault] | None = None
        shaping: list[tuple[FaultRule, Fault]] = []
        for rule in self._rules:
            if not rule.decide(request):
                continue
            self.fault_log.append(
                FaultEvent(number, rule.name, rule.fault, request.method, request.path)
            )
            fault = rule.fault
            skips_api = isinstance(fault, REPLACING) or (
                isinstance(fault, DISCONNECTING) and not fault.processed
            )
            if skips_api:
                if replacing is None:
                    replacing = (rule, fault)
            else:
                shaping.append((rule, fault))
        now_wall = self.clock.time()
        if replacing is not None:
            rule, fault = replacing
            if isinstance(fault, REPLACING):
                status, headers, body = Reply(fault=fault).render(now_wall=now_wall)
                outcome = Outcome(status=status, headers=headers, body=body, route=rule.name)
            else:
                outcome = shape(Outcome(route=rule.name), fault)
        else:
            outcome = await self._answer(request, now_wall)
        for rule, fault in shaping:
            jitter = rule.jitter(fault.jitter) if isinstance(fault, Latency) else 0.0
            outcome = shape(outcome, fault, jitter=jitter)
        if not any(name.lower() == "date" for name, _ in outcome.headers):
            # The server's Date comes from the mock's clock: clients measure Retry-After
            # dates against it, so with a FakeClock a loopback server must not use real time.
            date = ("Date", formatdate(now_wall, usegmt=True))
            outcome = replace(outcome, headers=(*outcome.headers, date))
        return outcome

    async def _answer(self, request: MockRequest, now_wall: float) -> Outcome:
        for guard in self._guards:
            rejection = guard.check(request)
            if rejection is not None:
                return self._deliver(rejection, now_wall, route="auth", stub=None)
        stub, params = self._find_stub(request)
        if stub is not None:
            stub.calls.append(request)
            if stub.scenario is not None and stub.then is not None:
                self._scenarios[stub.scenario] = stub.then
            if stub.handler is not None:
                result = stub.handler(request, params)
                reply = await result if inspect.isawaitable(result) else result
                if not isinstance(reply, Reply):
                    raise ConfigError(
                        f"stub {stub.name!r}: handler returned {reply!r}, not a Reply"
                    )
            else:
                reply = stub.next_reply()
            return self._deliver(reply, now_wall, route=stub.name, stub=stub)
        for route in self._routes:
            answer = await route.respond(request)
            if answer is not None:
                return self._deliver(answer, now_wall, route=route.name, stub=None)
        unmatched = self._near_misses(request)
        self.unmatched.append(unmatched)
        return self._deliver(
            Reply(
                404,
                json={"error": "no stub matched", "detail": str(unmatched)},
                headers={"X-Tether-Mock": "unmatched"},
            ),
            now_wall,
            route=None,
            stub=None,
        )

    def _deliver(
        self, reply: Reply, now_wall: float, *, route: str | None, stub: Stub | None
    ) -> Outcome:
        status, headers, body = reply.render(now_wall=now_wall)
        outcome = Outcome(status=status, headers=headers, body=body, route=route)
        fault = reply.fault
        if fault is not None and not isinstance(fault, REPLACING):
            jitter = 0.0
            if isinstance(fault, Latency) and stub is not None:
                jitter = stub.jitter(fault.jitter)
            outcome = shape(outcome, fault, jitter=jitter)
        return outcome

    def _find_stub(self, request: MockRequest) -> tuple[Stub | None, dict[str, str]]:
        # Highest priority first; among equals the stub added last, so a test can override.
        ordered = sorted(enumerate(self._stubs), key=lambda entry: (-entry[1].priority, -entry[0]))
        for _, stub in ordered:
            if stub.matcher.mismatches(request):
                continue
            if (
                stub.scenario is not None
                and stub.when is not None
                and self.scenario_state(stub.scenario) != stub.when
            ):
                continue
            return stub, stub.matcher.path_params(request.path) or {}
        return None, {}

    def _near_misses(self, request: MockRequest, limit: int = 3) -> Unmatched:
        ranked: list[tuple[int, int, Stub, tuple[Mismatch, ...]]] = []
        for order, stub in enumerate(self._stubs):
            problems = list(stub.matcher.mismatches(request))
            if stub.scenario is not None and stub.when is not None:
                state = self.scenario_state(stub.scenario)
                if state != stub.when:
                    problems.append(
                        Mismatch(f"scenario[{stub.scenario}]", repr(stub.when), repr(state))
                    )
            ranked.append(
                (stub.matcher.score(request) + len(problems), order, stub, tuple(problems))
            )
        ranked.sort(key=lambda entry: (entry[0], entry[1]))
        return Unmatched(
            request, tuple((stub.name, problems) for _, _, stub, problems in ranked[:limit])
        )

    def __repr__(self) -> str:
        return (
            f"<MockAPI seed={self.seed!r} stubs={len(self._stubs)} rules={len(self._rules)} "
            f"routes={len(self._routes)} requests={len(self.requests)}>"
        )
