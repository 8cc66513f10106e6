"""Export a `MockAPI`'s stubs as WireMock mappings, to run one definition on both servers.

Covered: method, exact or templated-free paths and regex paths, query and header matchers,
JSON (exact or partial) and plain body matchers, reply sequences (as WireMock scenarios),
named scenarios, priorities, and the faults both servers share. Anything WireMock cannot
express (handlers, `where=` predicates, truncation at a byte count, HTTP-date `Retry-After`,
collections, OAuth2, scheduled fault rules) raises `ConfigError` naming it, rather than
exporting something that behaves differently.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any

from tether._errors import ConfigError
from tether.testing._faults import (
    Drip,
    EmptyResponse,
    Hang,
    Latency,
    MalformedChunk,
    RateLimited,
    Reset,
    ServerError,
    Truncate,
)
from tether.testing._match import _UNSET, _Absent, _AnyValue

if TYPE_CHECKING:
    from tether.testing._match import RequestMatcher, ValueMatcher
    from tether.testing._mockapi import MockAPI, Stub
    from tether.testing._reply import Reply

__all__ = ["to_wiremock"]


def _value(name: str, matcher: ValueMatcher) -> dict[str, Any]:
    if isinstance(matcher, str):
        return {"equalTo": matcher}
    if isinstance(matcher, re.Pattern):
        return {"matches": matcher.pattern}
    if isinstance(matcher, _AnyValue):
        return {"matches": ".*"}
    if isinstance(matcher, _Absent):
        return {"absent": True}
    raise ConfigError(f"{name}: a predicate matcher cannot be exported to WireMock")


def _request(stub: Stub) -> dict[str, Any]:
    matcher: RequestMatcher = stub.matcher
    if matcher.where is not None:
        raise ConfigError(f"stub {stub.name!r}: where= cannot be exported to WireMock")
    method = matcher.method
    request: dict[str, Any] = {"method": method if method not in (None, "*") else "ANY"}
    path = matcher.path
    if isinstance(path, re.Pattern):
        request["urlPathPattern"] = path.pattern
    elif isinstance(path, str):
        if "{" in path:
            raise ConfigError(f"stub {stub.name!r}: path templates cannot be exported")
        request["urlPath"] = path
    else:
        request["urlPathPattern"] = ".*"
    if matcher.query:
        request["queryParameters"] = {
            name: _value(f"stub {stub.name!r} query {name}", m) for name, m in matcher.query.items()
        }
    if matcher.headers:
        request["headers"] = {
            name: _value(f"stub {stub.name!r} header {name}", m)
            for name, m in matcher.headers.items()
        }
    if matcher.json is not _UNSET:
        request["bodyPatterns"] = [{"equalToJson": matcher.json}]
    elif matcher.json_partial is not _UNSET:
        request["bodyPatterns"] = [
            {"equalToJson": matcher.json_partial, "ignoreExtraElements": True}
        ]
    elif matcher.body is not None:
        try:
            request["bodyPatterns"] = [{"equalTo": matcher.body.decode()}]
        except UnicodeDecodeError:
            raise ConfigError(
                f"stub {stub.name!r}: binary body matchers cannot be exported"
            ) from None
    return request


def _response(stub: Stub, reply: Reply, hang_limit: float) -> dict[str, Any]:
    fault = reply.fault
    if isinstance(fault, Reset):
        if fault.after_headers:
            raise ConfigError(
                f"stub {stub.name!r}: WireMock cannot reset after the headers; "
                "MalformedChunk is its MALFORMED_RESPONSE_CHUNK"
            )
        return {"fault": "CONNECTION_RESET_BY_PEER"}
    if isinstance(fault, MalformedChunk):
        return {"fault": "MALFORMED_RESPONSE_CHUNK"}
    if isinstance(fault, EmptyResponse):
        return {"fault": "EMPTY_RESPONSE"}
    if isinstance(fault, Truncate):
        raise ConfigError(f"stub {stub.name!r}: Truncate has no WireMock equivalent")
    if isinstance(fault, RateLimited) and fault.as_date:
        raise ConfigError(f"stub {stub.name!r}: an HTTP-date Retry-After cannot be exported")
    status, headers, body = reply.render(now_wall=0.0)
    response: dict[str, Any] = {"status": status}
    if headers:
        response["headers"] = dict(headers)
    if body:
        try:
            response["body"] = body.decode()
        except UnicodeDecodeError:
            response["base64Body"] = base64.b64encode(body).decode()
    if isinstance(fault, Latency):
        if fault.jitter:
            raise ConfigError(f"stub {stub.name!r}: Latency jitter cannot be exported exactly")
        response["fixedDelayMilliseconds"] = round(fault.seconds * 1000)
    elif isinstance(fault, Hang):
        # WireMock cannot hang; a delay as long as the mock's hang limit ends the same way.
        response["fixedDelayMilliseconds"] = round(hang_limit * 1000)
    elif isinstance(fault, Drip):
        response["chunkedDribbleDelay"] = {
            "numberOfChunks": fault.chunks,
            "totalDuration": round(fault.duration * 1000),
        }
    elif fault is not None and not isinstance(fault, RateLimited | ServerError):
        raise ConfigError(f"stub {stub.name!r}: {fault!r} cannot be exported")
    return response


def to_wiremock(api: MockAPI) -> list[dict[str, Any]]:
    """WireMock mappings (for `POST /__admin/mappings`) equivalent to `api`'s stubs."""
    if api.routes:
        names = ", ".join(route.name for route in api.routes)
        raise ConfigError(f"built-in routes cannot be exported to WireMock: {names}")
    if api.rules:
        raise ConfigError("scheduled fault rules cannot be exported to WireMock; use replies")
    top = max((stub.priority for stub in api.stubs), default=0)
    mappings: list[dict[str, Any]] = []
    for stub in api.stubs:
        if stub.handler is not None:
            raise ConfigError(f"stub {stub.name!r}: handlers cannot be exported to WireMock")
        request = _request(stub)
        # WireMock: 1 is the highest priority; ours grows upwards.
        priority = top - stub.priority + 1
        steps = [reply for reply in stub.replies for _ in range(reply.times)]
        if stub.scenario is not None:
            if len(steps) > 1:
                raise ConfigError(
                    f"stub {stub.name!r}: a reply sequence inside a named scenario "
                    "cannot be exported"
                )
            mapping: dict[str, Any] = {
                "name": stub.name,
                "priority": priority,
                "request": request,
                "response": _response(stub, steps[0], api.hang_limit),
                "scenarioName": stub.scenario,
            }
            if stub.when is not None:
                mapping["requiredScenarioState"] = stub.when
            if stub.then is not None:
                mapping["newScenarioState"] = stub.then
            mappings.append(mapping)
            continue
        if len(steps) == 1:
            mappings.append(
                {
                    "name": stub.name,
                    "priority": priority,
                    "request": request,
                    "response": _response(stub, steps[0], api.hang_limit),
                }
            )
            continue
        # A sequence is a private scenario: each step moves to the next, the last repeats.
        scenario = f"tether sequence: {stub.name}"
        for index, reply in enumerate(steps):
            mapping = {
                "name": f"{stub.name} [{index + 1}/{len(steps)}]",
                "priority": priority,
                "request": request,
                "response": _response(stub, reply, api.hang_limit),
                "scenarioName": scenario,
                "requiredScenarioState": "Started" if index == 0 else f"step {index}",
            }
            if index + 1 < len(steps):
                mapping["newScenarioState"] = f"step {index + 1}"
            mappings.append(mapping)
    return mappings
