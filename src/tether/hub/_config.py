"""The spec's hub sections turned into what the runtime uses: resolved secrets, paths, limits.

Every problem (a variable that is not set, a secret file that cannot be read, a listen address
off loopback without a token) is collected and raised as one `SpecError`, with the file and
line of the key, before anything starts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.spec import Problem, Spec, SpecError
from tether.spec._load import Origin, format_path
from tether.spec._locate import KeyPath
from tether.spec._model import (
    EnvSecret,
    FileSecret,
    OutboxEndpointSpec,
    SecretValue,
    is_loopback,
    split_listen,
)
from tether.spec._resolve import _REFERENCE

__all__ = ["EndpointSettings", "HubSettings", "hub_settings", "store_target"]


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """An outbox endpoint of the config, its secret resolved."""

    name: str
    spec: OutboxEndpointSpec
    secret: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class HubSettings:
    """Everything `Hub` needs from the [hub] and [outbox] sections, resolved."""

    host: str
    port: int
    #: A SQLite path (absolute, or relative to the working directory) or a PostgreSQL URL.
    store: str = field(repr=False)
    redis: str | None = field(repr=False)
    token: str | None = field(repr=False)
    event_retention: float
    hub_id: str
    traces: bool
    allow_private: tuple[str, ...]
    endpoints: tuple[EndpointSettings, ...]


class _Secrets:
    """Reads `${NAME}`, `{ env = ... }` and `{ file = ... }` values, collecting problems."""

    def __init__(self, spec: Spec, environ: Mapping[str, str]) -> None:
        self.document = spec.document
        self.environ = environ
        self.problems: list[Problem] = []

    def origin(self, path: KeyPath) -> Origin | None:
        return self.document.origins.get(path) or self.document.nearest(path)

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(message, key=format_path(path), origin=self.origin(path)))

    def text(self, path: KeyPath, value: str) -> str | None:
        missing: list[str] = []

        def substitute(match: Any) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            found = self.environ.get(name)
            if found is None or (found == "" and default is not None):
                if default is not None:
                    return str(default)
                missing.append(name)
                return ""
            return found

        expanded = _REFERENCE.sub(substitute, value)
        if missing:
            self.problem(path, f"environment variable {missing[0]} is not set")
            return None
        return expanded

    def secret(self, path: KeyPath, value: SecretValue) -> str | None:
        if isinstance(value, EnvSecret):
            found = self.environ.get(value.env)
            if not found:
                self.problem(path, f"environment variable {value.env} is not set")
                return None
            return found
        if isinstance(value, FileSecret):
            target = Path(os.path.expanduser(value.file))
            if not target.is_absolute():
                target = self.document.folder / target
            try:
                raw = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                self.problem(path, f"cannot read secret file {value.file}: {reason}")
                return None
            raw = raw.removesuffix("\n").removesuffix("\r")
            if not raw:
                self.problem(path, f"secret file {value.file} is empty")
            return raw or None
        expanded = self.text(path, value)
        if expanded == "":
            self.problem(path, "the secret is empty")
            return None
        return expanded


def store_target(location: str, folder: Path) -> str:
    """A store location with a relative SQLite path made relative to the spec's folder."""
    if "://" in location:
        scheme = location.split("://", 1)[0].lower()
        if scheme != "sqlite":
            return location
        path = location[len("sqlite://") :].removeprefix("/")
    else:
        path = location
    target = Path(os.path.expanduser(path))
    if path != ":memory:" and not target.is_absolute():
        target = folder / target
    return str(target)


def hub_settings(
    spec: Spec,
    *,
    listen: str | None = None,
    store: str | None = None,
    redis: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> HubSettings:
    """Resolve the hub sections of `spec`; keyword arguments are command-line overrides.

    Raises:
        SpecError: every problem at once, each with the key and its line.
    """
    env = os.environ if environ is None else environ
    model = spec.document.model
    hub = model.hub
    secrets = _Secrets(spec, env)
    try:
        host, port = split_listen(listen if listen is not None else hub.listen)
    except ValueError as exc:
        raise SpecError([Problem(str(exc), key="--listen")]) from None
    resolved_token = token
    if resolved_token is None and hub.token is not None:
        resolved_token = secrets.secret(("hub", "token"), hub.token)
    if hub.token is None and resolved_token is None and not is_loopback(host):
        secrets.problems.append(
            Problem(
                f"listening on {host} (not loopback) needs a token: set hub.token or --token-env",
                key="hub.token",
            )
        )
    store_text = store if store is not None else secrets.text(("hub", "store"), hub.store)
    redis_text = redis
    if redis_text is None and hub.redis is not None:
        redis_text = secrets.text(("hub", "redis"), hub.redis)
    endpoints = []
    for name, endpoint in model.outbox.endpoints.items():
        secret = (
            secrets.secret(("outbox", "endpoints", name, "secret"), endpoint.secret)
            if endpoint.secret is not None
            else None
        )
        if secret is not None and not secret.startswith(("whsec_", "whsk_")):
            secrets.problem(
                ("outbox", "endpoints", name, "secret"),
                "an endpoint secret is a whsec_ secret or a whsk_ Ed25519 key",
            )
        endpoints.append(EndpointSettings(name, endpoint, secret))
    if secrets.problems:
        raise SpecError(secrets.problems, file=spec.file)
    assert store_text is not None  # noqa: S101 - a problem above otherwise
    return HubSettings(
        host=host,
        port=port,
        store=store_target(store_text, spec.document.folder),
        redis=redis_text or None,
        token=resolved_token or None,
        event_retention=hub.event_retention,
        hub_id=hub.hub_id or f"{socket.gethostname()}:{os.getpid()}",
        traces=hub.traces,
        allow_private=tuple(model.outbox.allow_private),
        endpoints=tuple(endpoints),
    )
