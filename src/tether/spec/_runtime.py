"""`Spec` and `Integration`: a loaded spec, and one of its integrations ready to use."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from tether._client import Client, SyncClient, decode_json
from tether._errors import (
    AuthenticationError,
    AuthError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceeded,
    HTTPStatusError,
    PermissionDeniedError,
    RateLimitError,
    RateLimitWaitTooLong,
    RequestError,
    ServerError,
    TetherError,
)
from tether._models import Response
from tether._redact import Redactor
from tether.auth import OAuth2
from tether.pagination import Paginated, Paginator
from tether.spec._load import (
    Document,
    Problem,
    SpecError,
    load_document,
    preset_document,
    preset_names,
)
from tether.spec._model import EndpointSpec, IntegrationSpec
from tether.spec._resolve import (
    BuiltAuth,
    Resolver,
    Setting,
    build_model,
    build_paginator,
)

__all__ = ["Call", "CheckResult", "Integration", "Spec", "classify", "load"]

CheckStatus = Literal["ok", "cannot_connect", "invalid_auth", "unknown"]


@dataclass(frozen=True, slots=True)
class Call:
    """The request an endpoint call makes."""

    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of `Integration.check()`, in Home Assistant's config-flow terms."""

    status: CheckStatus
    message: str
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def classify(error: BaseException) -> CheckStatus:
    """`cannot_connect`, `invalid_auth` or `unknown` for an error raised by a call."""
    if isinstance(error, AuthenticationError | PermissionDeniedError):
        return "invalid_auth"
    if isinstance(error, AuthError):
        # A token endpoint that could not be reached, or that is failing, says nothing about
        # the credentials.
        if isinstance(error.__cause__, RequestError):
            return "cannot_connect"
        status = getattr(error, "status", None)
        if isinstance(status, int) and (status >= 500 or status in (408, 429)):
            return "cannot_connect"
        return "invalid_auth"
    if isinstance(
        error,
        RequestError
        | ServerError
        | RateLimitError
        | DeadlineExceeded
        | CircuitOpenError
        | RateLimitWaitTooLong,
    ):
        return "cannot_connect"
    return "unknown"


def _dig(body: Any, path: str) -> Any:
    node = body
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class Integration:
    """One integration of a spec, its `${ENV}` references and secrets resolved.

    Problems (a variable not set, an unreadable secret file) are collected in `problems`;
    `client()` raises them as one `SpecError`, so `tether spec check` can show them all.
    """

    def __init__(
        self,
        document: Document,
        name: str,
        *,
        region: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.document = document
        self.spec: IntegrationSpec = document.model.integrations[name]
        self._resolver = Resolver(document, name, environ=environ, region=region)
        resolver = self._resolver
        self.region = resolver.region
        self.base_url = resolver.base_url()
        self._auth: BuiltAuth | None = resolver.auth()
        self._options = resolver.client_options()
        self._models: dict[str, Any] = {}

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(self._resolver.problems)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(self._resolver.warnings)

    @property
    def preset(self) -> str | None:
        return self.document.presets.get(self.name)

    @property
    def oauth2(self) -> OAuth2 | None:
        """The OAuth2 client behind the credential, when the integration uses OAuth2."""
        return self._auth.oauth2 if self._auth is not None else None

    def oauth2_for(self, grant: Literal["authorization_code", "device_code"]) -> OAuth2:
        """This integration's OAuth2 client for an interactive sign-in grant, sharing its
        token store, so the signed-in token is the one `client()` then uses and refreshes."""
        auth = self._auth
        if auth is None or auth.spec is None:
            raise ConfigError(f"integration {self.name!r} does not use OAuth2")
        spec = auth.spec
        if grant == "authorization_code" and spec.authorize_url is None:
            raise ConfigError(f"integration {self.name!r} has no auth.authorize_url to sign in at")
        if grant == "device_code" and spec.device_authorization_url is None:
            raise ConfigError(
                f"integration {self.name!r} has no auth.device_authorization_url for --device"
            )
        resolver = Resolver(
            self.document, self.name, environ=self._resolver.environ, region=self.region
        )
        credential = resolver.oauth2(spec, ("integrations", self.name, "auth"), grant=grant)
        if resolver.problems or credential is None:
            raise SpecError(resolver.problems or [Problem("cannot build the OAuth2 client")])
        return credential

    def settings(self) -> list[Setting]:
        """Every value that is set, with where it came from; secrets show as [REDACTED]."""
        return Resolver(
            self.document, self.name, environ=self._resolver.environ, region=self.region
        ).settings()

    def redactor(self) -> Redactor:
        """Hides every secret this integration read."""
        redactor = Redactor(secrets=self._resolver.secret_values)
        if self._auth is not None:
            redactor = redactor.merge(self._auth.credential.redactor())
        return redactor

    def _require(self) -> None:
        if self._resolver.problems:
            raise SpecError(self._resolver.problems, file=self.document.file)

    def client_options(self, **overrides: Any) -> dict[str, Any]:
        """The keyword arguments `client()` passes to `tether.Client`."""
        self._require()
        options = dict(self._options)
        if self._auth is not None:
            options["auth"] = self._auth.credential
        options["secrets"] = list(self._resolver.secret_values)
        options.update(overrides)
        return options

    def client(self, **overrides: Any) -> Client:
        """A `tether.Client` configured by the spec; keyword arguments override it (tests pass
        `transport=` or `base_url=`)."""
        options = self.client_options(**overrides)
        base_url = options.pop("base_url", self.base_url)
        return Client(base_url, **options)

    def sync_client(self, **overrides: Any) -> SyncClient:
        """The blocking twin of `client()`."""
        options = self.client_options(**overrides)
        base_url = options.pop("base_url", self.base_url)
        return SyncClient(base_url, **options)

    # -- endpoints ----------------------------------------------------------------------------

    def endpoint(self, name: str) -> EndpointSpec:
        try:
            return self.spec.endpoints[name]
        except KeyError:
            known = ", ".join(self.spec.endpoints) or "none"
            raise ConfigError(
                f"integration {self.name!r} has no endpoint {name!r} (endpoints: {known})"
            ) from None

    def paginator(self, endpoint: str) -> Paginator | None:
        """The endpoint's paginator: its own, else the integration's, unless it says 'none'."""
        spec = self.endpoint(endpoint)
        value = spec.paginator if spec.paginator is not None else self.spec.paginator
        return build_paginator(value)

    def model(self, endpoint: str) -> Any:
        """The response model of an endpoint (each item, when paginated), or None."""
        if endpoint not in self._models:
            spec = self.endpoint(endpoint)
            self._models[endpoint] = build_model(
                spec.response, self.document.folder, f"{self.name}.{endpoint}"
            )
        return self._models[endpoint]

    def build_call(self, endpoint: str, args: Mapping[str, Any]) -> Call:
        """Fill the path's `{placeholders}` from `args`; the rest go where the endpoint says."""
        spec = self.endpoint(endpoint)
        values = dict(args)
        missing = [name for name in spec.placeholders if name not in values]
        if missing:
            needed = " ".join(f"{name}=..." for name in missing)
            raise ConfigError(f"{self.name} {endpoint} needs {needed}")
        path = spec.path
        for name in spec.placeholders:
            # Quoted whole: an argument can never add path segments or a query.
            path = path.replace("{" + name + "}", quote(str(values.pop(name)), safe=""))
        headers = dict(spec.headers)
        params: dict[str, Any] = dict(spec.params)
        location = spec.argument_location
        if location == "query":
            params.update(values)
            return Call(spec.method, path, params, headers)
        if location == "form":
            return Call(spec.method, path, params, headers, data=values)
        return Call(spec.method, path, params, headers, json=values)

    async def request(self, client: Client, endpoint: str, /, **args: Any) -> Response:
        """Send one request to `endpoint`; the raw `tether.Response`."""
        call = self.build_call(endpoint, args)
        return await client.request(
            call.method,
            call.path,
            params=call.params or None,
            headers=call.headers or None,
            json=call.json,
            data=call.data,
        )

    async def call(self, client: Client, endpoint: str, /, **args: Any) -> Any:
        """Call `endpoint` once and decode its JSON, validated by its response model."""
        response = await self.request(client, endpoint, **args)
        if not response.content:
            return None
        model = self.model(endpoint)
        if model is not None and self.paginator(endpoint) is not None:
            # The model describes items; the first page's body is checked item by item.
            return decode_json(response, None)
        return decode_json(response, model)

    def paginate(
        self,
        client: Client,
        endpoint: str,
        /,
        *,
        max_pages: int | None = None,
        max_items: int | None = None,
        **args: Any,
    ) -> Paginated[Any]:
        """Every item of every page of `endpoint`."""
        paginator = self.paginator(endpoint)
        if paginator is None:
            raise ConfigError(f"{self.name} {endpoint} is not paginated")
        call = self.build_call(endpoint, args)
        return client.paginate(
            call.path,
            paginator=paginator,
            model=self.model(endpoint),
            max_pages=max_pages,
            max_items=max_items,
            method=call.method,
            params=call.params or None,
            headers=call.headers or None,
            json=call.json,
        )

    # -- webhooks and checks ---------------------------------------------------------------

    def webhook_sources(self) -> list[Any]:
        """A `tether.webhooks.Source` per webhook of this integration, secrets resolved."""
        from tether.webhooks import Source  # noqa: PLC0415 - the inbox pulls in Starlette

        resolver = Resolver(self.document, self.name, environ=self._resolver.environ)
        sources = []
        for name, spec in self.spec.webhooks.items():
            path = ("integrations", self.name, "webhooks", name, "secret")
            values = spec.secret if isinstance(spec.secret, list) else [spec.secret]
            secrets = [
                resolver.secret((*path, i) if isinstance(spec.secret, list) else path, v)
                for i, v in enumerate(values)
            ]
            if resolver.problems:
                continue
            sources.append(
                Source(
                    f"{self.name}.{name}",
                    spec.path or f"/webhooks/{self.name}/{name}",
                    spec.scheme,
                    [s for s in secrets if s is not None],
                    tolerance=None if spec.tolerance is False else spec.tolerance,
                    id_from=spec.id_from,
                    type_from=spec.type_from,
                    options=dict(spec.options),
                )
            )
        if resolver.problems:
            raise SpecError(resolver.problems, file=self.document.file)
        return sources

    async def check(self, client: Client) -> CheckResult:
        """Call the integration's check endpoint once and say what the outcome means."""
        check = self.spec.check
        try:
            if check is not None and check.endpoint is not None:
                response = await self.request(client, check.endpoint, **check.args)
            else:
                path = check.path if check is not None else ""
                args = dict(check.args) if check is not None else {}
                response = await client.get(path or "", params=args or None)
        except TetherError as exc:
            return self._failed(exc)
        if check is not None and check.ok_field is not None:
            try:
                body = response.json()
            except ValueError:
                return CheckResult("unknown", f"{self.name}: the check answer is not JSON")
            if _dig(body, check.ok_field) is not True:
                code = _dig(body, check.error_field) if check.error_field else None
                code_text = str(code) if code is not None else "no error code"
                if code_text in check.auth_errors:
                    return CheckResult(
                        "invalid_auth",
                        f"{self.name}: the credentials were rejected ({code_text})",
                        self._auth_hint(),
                    )
                return CheckResult("unknown", f"{self.name}: the API reported {code_text}")
        return CheckResult("ok", f"{self.name}: ok ({response.status} from {self.base_url})")

    def _auth_hint(self) -> str:
        if self.oauth2 is not None:
            return f"sign in again with `tether auth login {self.name}`, or check the client id"
        return "check the credentials: `tether auth status` shows where each one comes from"

    def _failed(self, exc: TetherError) -> CheckResult:
        status = classify(exc)
        message = self.redactor().text(f"{self.name}: {exc}")
        if status == "invalid_auth":
            return CheckResult("invalid_auth", message, self._auth_hint())
        if status == "cannot_connect":
            hint = "check the network, the base URL and the region"
            if isinstance(exc, RateLimitError | RateLimitWaitTooLong):
                hint = "the API is rate limiting this client; try again later"
            elif isinstance(exc, ServerError):
                hint = "the API is failing; try again later"
            return CheckResult("cannot_connect", message, hint)
        if isinstance(exc, HTTPStatusError) and exc.status == 404:
            return CheckResult(
                "unknown",
                message,
                f"set [integrations.{self.name}.check] to an endpoint that exists",
            )
        return CheckResult("unknown", message)


class Spec:
    """A loaded `tether.toml`. Presets are available by name even when the file does not
    mention them: `spec.client("github")` works with only `GITHUB_TOKEN` set."""

    def __init__(self, document: Document, *, environ: Mapping[str, str] | None = None) -> None:
        self.document = document
        self._environ = environ

    @property
    def file(self) -> str | None:
        return self.document.file

    @property
    def names(self) -> tuple[str, ...]:
        """The integrations the file defines, in file order."""
        return tuple(self.document.model.integrations)

    def __contains__(self, name: object) -> bool:
        return name in self.document.model.integrations or name in preset_names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def integration(self, name: str, *, region: str | None = None) -> Integration:
        """One integration, resolved (its problems in `.problems`, raised by `client()`)."""
        if name in self.document.model.integrations:
            return Integration(self.document, name, region=region, environ=self._environ)
        if name in preset_names():
            return Integration(preset_document(name), name, region=region, environ=self._environ)
        known = ", ".join(self.names) or "none"
        raise ConfigError(
            f"no integration named {name!r} in {self.file or 'the spec'} (integrations: {known}; "
            f"presets: {', '.join(preset_names())})"
        )

    def client(self, name: str, *, region: str | None = None, **overrides: Any) -> Client:
        """A `tether.Client` for integration `name`."""
        return self.integration(name, region=region).client(**overrides)

    def sync_client(self, name: str, *, region: str | None = None, **overrides: Any) -> SyncClient:
        """A `tether.SyncClient` for integration `name`."""
        return self.integration(name, region=region).sync_client(**overrides)

    def __repr__(self) -> str:
        return f"<Spec {self.file or '(presets)'} integrations={list(self.names)}>"


def load(
    path: str | os.PathLike[str] | None = "tether.toml",
    *,
    environ: Mapping[str, str] | None = None,
) -> Spec:
    """Load and validate a spec file; None gives a spec of the shipped presets alone.

    Raises `SpecError` (a `ConfigError`) naming the file, line and key of every problem.
    `${NAME}` references are read from `environ` (default: `os.environ`) when an
    integration is used, not here: a variable one integration needs cannot break another.
    """
    if path is None:
        from tether.spec._load import build_document  # noqa: PLC0415

        return Spec(build_document({}, {}, file=None, folder=Path.cwd()), environ=environ)
    return Spec(load_document(Path(path)), environ=environ)
