"""Turning a validated integration into runtime objects: `${ENV}` expanded, secrets read into
`SecretStr`, and the origin of every value kept for `tether spec check`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler, SecretStr
from pydantic_core import CoreSchema, core_schema

from tether._cache_config import Cache
from tether._config import Timeout
from tether._errors import ConfigError
from tether._flow import Breaker, RateLimit, RateLimiter
from tether.auth import (
    ApiKey,
    Basic,
    Bearer,
    Credential,
    FileTokenStore,
    HeaderTemplate,
    LoginExchange,
    MemoryTokenStore,
    OAuth2,
    SignedJWT,
    SQLiteTokenStore,
    TokenStore,
)
from tether.pagination import Cursor, LinkHeader, NextURL, Offset, PageNumber, Paginator
from tether.spec._jsonschema import check_schema, validate
from tether.spec._load import Document, Origin, Problem, format_path
from tether.spec._locate import KeyPath
from tether.spec._model import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    CursorPaginator,
    EndpointSpec,
    EnvSecret,
    FileSecret,
    HeaderTemplateAuth,
    IntegrationSpec,
    LinkHeaderPaginator,
    LoginExchangeAuth,
    NextURLPaginator,
    OAuth2Auth,
    OffsetPaginator,
    PageNumberPaginator,
    RateLimiterSpec,
    RateLimitItem,
    ResponseSpec,
    SecretValue,
    SignedJWTAuth,
    TimeoutSpec,
    is_secret,
)

__all__ = ["BuiltAuth", "Resolver", "Setting", "default_token_store_path"]

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def default_token_store_path() -> Path:
    """Where signed-in tokens are kept unless a spec says otherwise."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "tether" / "tokens.json"


@dataclass(frozen=True, slots=True)
class Setting:
    """One resolved value, as `tether spec check` shows it: secrets never have a value here."""

    key: str
    value: str
    origin: Origin
    secret: bool = False


@dataclass(frozen=True, slots=True)
class BuiltAuth:
    """A credential, and the OAuth2 client inside it (for `tether auth login`), if any."""

    credential: Credential
    oauth2: OAuth2 | None = None
    spec: OAuth2Auth | None = None


class Resolver:
    """Resolves one integration of a document; collects every problem instead of stopping."""

    def __init__(
        self,
        document: Document,
        name: str,
        *,
        environ: Mapping[str, str] | None = None,
        region: str | None = None,
    ) -> None:
        self.document = document
        self.name = name
        self.spec: IntegrationSpec = document.model.integrations[name]
        self.environ = os.environ if environ is None else environ
        self.base: KeyPath = ("integrations", name)
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        #: Every secret value read, for redaction.
        self.secret_values: list[str] = []
        self._region_override = region
        self._origins: dict[KeyPath, Origin] = {}

    # -- expansion ------------------------------------------------------------------------

    def _origin(self, path: KeyPath) -> Origin:
        return self.document.origins.get(path) or self.document.nearest(path) or Origin("default")

    def origin_of(self, path: KeyPath) -> Origin:
        """The origin of a value resolved so far (env, file), else where it was written."""
        return self._origins.get(path) or self.document.origins.get(path) or Origin("default")

    def _problem(self, path: KeyPath, message: str, origin: Origin | None = None) -> None:
        self.problems.append(
            Problem(message, key=format_path(path), origin=origin or self._origin(path))
        )

    def text(self, path: KeyPath, value: str, *, optional: bool = False) -> str | None:
        """`value` with `${NAME}` and `${NAME:-default}` expanded; None when a name is unset."""
        written = self._origin(path)
        missing: list[str] = []
        used: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            found = self.environ.get(name)
            if found is None or (found == "" and default is not None):
                if default is not None:
                    return default
                missing.append(name)
                return ""
            used.append(name)
            return found

        expanded = _REFERENCE.sub(substitute, value)
        if missing:
            self._origins[path] = Origin("missing", written.file, written.line, missing[0])
            if not optional:
                self._problem(
                    path,
                    f"environment variable {missing[0]} is not set",
                    Origin("missing", written.file, written.line, missing[0]),
                )
            return None
        if used:
            self._origins[path] = Origin("env", written.file, written.line, used[0])
        return expanded

    def secret(
        self, path: KeyPath, value: SecretValue, *, optional: bool = False
    ) -> SecretStr | None:
        """A secret from `${ENV}`, `{ env = ... }` or `{ file = ... }`; None when unset."""
        written = self._origin(path)
        if isinstance(value, EnvSecret):
            raw = self.environ.get(value.env)
            if raw is None or raw == "":
                self._origins[path] = Origin("missing", written.file, written.line, value.env)
                if not optional:
                    self._problem(
                        path,
                        f"environment variable {value.env} is not set",
                        Origin("missing", written.file, written.line, value.env),
                    )
                return None
            self._origins[path] = Origin("env", written.file, written.line, value.env)
            return self._keep(raw)
        if isinstance(value, FileSecret):
            target = Path(os.path.expanduser(value.file))
            if not target.is_absolute():
                target = self.document.folder / target
            try:
                raw = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                self._problem(path, f"cannot read secret file {value.file}: {reason}")
                return None
            # Files written by editors and `echo` end in a newline that is not part of the key.
            raw = raw.removesuffix("\n").removesuffix("\r")
            if not raw:
                self._problem(path, f"secret file {value.file} is empty")
                return None
            self._origins[path] = Origin("secret_file", written.file, written.line, value.file)
            return self._keep(raw)
        if "${" not in value.replace("$${", ""):
            self.warnings.append(
                Problem(
                    'a secret is written inline; use "${NAME}" or { file = "..." } instead',
                    key=format_path(path),
                    origin=written,
                )
            )
        expanded = self.text(path, value, optional=optional)
        if expanded is None:
            return None
        if not expanded:
            written_default = _REFERENCE.fullmatch(value)
            # "${NAME:-}" says outright that the secret may be absent (a public OAuth client).
            if not optional and (written_default is None or written_default.group(2) is None):
                self._problem(path, "the secret is empty")
            return None
        return self._keep(expanded)

    def _keep(self, raw: str) -> SecretStr:
        self.secret_values.append(raw)
        return SecretStr(raw)

    # -- region and URLs ------------------------------------------------------------------

    @property
    def region(self) -> str | None:
        if self._region_override is not None:
            return self._region_override
        spec = self.spec
        if spec.region is not None:
            return spec.region
        return None

    def base_url(self) -> str | None:
        spec = self.spec
        region = self.region
        if region is not None and spec.regions and region not in spec.regions:
            self._problem(
                (*self.base, "region"),
                f"no region {region!r}; regions: {', '.join(spec.regions)}",
            )
            return None
        if spec.base_url is not None:
            return self.text((*self.base, "base_url"), spec.base_url)
        if spec.regions:
            if region is None:
                self._problem(
                    (*self.base, "region"),
                    f"choose a region ({', '.join(spec.regions)}) with region = ... or --region",
                )
                return None
            return self.text((*self.base, "regions", region), spec.regions[region])
        self._problem((*self.base, "base_url"), "required (or regions and region)")
        return None

    def regional(self, path: KeyPath, value: str | dict[str, str] | None) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return self.text(path, value)
        region = self.region
        if region is None or region not in value:
            self._problem(path, f"no URL for region {region!r}")
            return None
        return self.text((*path, region), value[region])

    # -- auth -----------------------------------------------------------------------------

    def auth(self) -> BuiltAuth | None:
        spec = self.spec.auth
        if spec is None:
            return None
        path = (*self.base, "auth")
        try:
            return self._auth(spec, path)
        except ConfigError as exc:
            self._problem(path, str(exc))
            return None

    def _auth(self, spec: Any, path: KeyPath) -> BuiltAuth | None:
        insecure = self.spec.allow_insecure_http
        if isinstance(spec, ApiKeyAuth):
            value = self.secret((*path, "value"), spec.value)
            return (
                None
                if value is None
                else BuiltAuth(ApiKey(spec.name, value, location=spec.location))
            )
        if isinstance(spec, BearerAuth):
            token = self.secret((*path, "token"), spec.token)
            return None if token is None else BuiltAuth(Bearer(token))
        if isinstance(spec, BasicAuth):
            username = self.text((*path, "username"), spec.username)
            password = self.secret((*path, "password"), spec.password)
            if username is None or password is None:
                return None
            return BuiltAuth(Basic(username, password))
        if isinstance(spec, HeaderTemplateAuth):
            token = self.secret((*path, "token"), spec.token)
            return (
                None
                if token is None
                else BuiltAuth(HeaderTemplate(spec.header, spec.template, token))
            )
        if isinstance(spec, LoginExchangeAuth):
            url = self.regional((*path, "login_url"), spec.login_url)
            username = self.text((*path, "username"), spec.username)
            password = self.secret((*path, "password"), spec.password)
            if url is None or username is None or password is None:
                return None
            return BuiltAuth(
                LoginExchange(
                    url,
                    username,
                    password,
                    spec.token_field,
                    spec.ttl,
                    method=spec.method,
                    credentials=spec.credentials,
                    username_field=spec.username_field,
                    password_field=spec.password_field,
                    header=spec.header,
                    template=spec.template,
                    allow_insecure_http=insecure,
                )
            )
        if isinstance(spec, SignedJWTAuth):
            key = self.secret((*path, "key"), spec.key)
            if key is None:
                return None
            claims = {k: self._claim((*path, "claims", k), v) for k, v in spec.claims.items()}
            return BuiltAuth(
                SignedJWT(
                    key,
                    spec.algorithm,
                    claims,
                    spec.lifetime,
                    key_id=spec.key_id,
                    header=spec.header,
                    scheme=spec.scheme,
                    backdate=spec.backdate,
                )
            )
        assert isinstance(spec, OAuth2Auth)  # noqa: S101 - the union is exhaustive
        oauth2 = self.oauth2(spec, path)
        if oauth2 is None:
            return None
        if spec.template is not None:
            return BuiltAuth(HeaderTemplate(spec.header, spec.template, oauth2), oauth2, spec)
        if spec.header != "Authorization":
            return BuiltAuth(HeaderTemplate(spec.header, "Bearer {token}", oauth2), oauth2, spec)
        return BuiltAuth(oauth2, oauth2, spec)

    def _claim(self, path: KeyPath, value: Any) -> Any:
        return self.text(path, value) if isinstance(value, str) else value

    def token_store(self, spec: OAuth2Auth, path: KeyPath) -> TokenStore | None:
        text = spec.token_store
        if text is None:
            if spec.grant == "client_credentials":
                return None  # the process-wide memory store: nothing worth keeping on disk
            return FileTokenStore(default_token_store_path())
        expanded = self.text((*path, "token_store"), text)
        if expanded is None:
            return None
        if expanded == "memory":
            return MemoryTokenStore()
        if expanded.startswith("sqlite:"):
            return SQLiteTokenStore(self._file(expanded.removeprefix("sqlite:")))
        return FileTokenStore(self._file(expanded))

    def _file(self, text: str) -> Path:
        target = Path(os.path.expanduser(text))
        return target if target.is_absolute() else self.document.folder / target

    def oauth2(self, spec: OAuth2Auth, path: KeyPath, *, grant: str | None = None) -> OAuth2 | None:
        """The OAuth2 client of `spec`; `grant` builds the same client for another grant
        (the interactive sign-in of a refresh-token integration), sharing its token store."""
        before = len(self.problems)
        token_url = self.regional((*path, "token_url"), spec.token_url)
        client_id = self.text((*path, "client_id"), spec.client_id)
        secret = (
            self.secret((*path, "client_secret"), spec.client_secret)
            if spec.client_secret is not None
            else None
        )
        private_key = (
            self.secret((*path, "private_key"), spec.private_key)
            if spec.private_key is not None
            else None
        )
        # A refresh token from the environment is only a seed: a stored sign-in wins, so
        # its absence is no error when the integration can be signed in to interactively.
        refresh = (
            self.secret(
                (*path, "refresh_token"),
                spec.refresh_token,
                optional=spec.grant != "refresh_token" or spec.authorize_url is not None,
            )
            if spec.refresh_token is not None
            else None
        )
        authorize_url = self.regional((*path, "authorize_url"), spec.authorize_url)
        device_url = self.regional(
            (*path, "device_authorization_url"), spec.device_authorization_url
        )
        params = {k: self.text((*path, "params", k), v) for k, v in spec.params.items()}
        authorize_params = {
            k: self.text((*path, "authorize_params", k), v)
            for k, v in spec.authorize_params.items()
        }
        store = self.token_store(spec, path)
        if len(self.problems) > before or token_url is None or client_id is None:
            return None
        chosen = grant or spec.grant
        # One key for every grant of this integration: a token obtained by signing in (code or
        # device grant) is the one the refresh-token client later refreshes.
        key = f"tether-spec|{self.name}|{token_url}|{client_id}"
        return OAuth2(
            grant=chosen,  # type: ignore[arg-type]
            token_url=token_url,
            client_id=client_id,
            client_secret=secret,
            client_auth=spec.client_auth,
            private_key=private_key,
            private_key_algorithm=spec.private_key_algorithm,
            private_key_id=spec.private_key_id,
            scope=spec.scope,
            params={k: v for k, v in params.items() if v is not None},
            refresh_token=refresh,
            authorize_url=authorize_url,
            authorize_params={k: v for k, v in authorize_params.items() if v is not None},
            device_authorization_url=device_url,
            redirect_uri=spec.redirect_uri,
            issuer=spec.issuer,
            store=store,
            store_key=key,
            timeout=spec.timeout,
            allow_insecure_http=self.spec.allow_insecure_http,
        )

    # -- client options -------------------------------------------------------------------

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for `tether.Client`, auth excluded."""
        spec = self.spec
        options: dict[str, Any] = {}
        headers = {k: self.text((*self.base, "headers", k), v) for k, v in spec.headers.items()}
        options["headers"] = {k: v for k, v in headers.items() if v is not None}
        if isinstance(spec.timeout, TimeoutSpec):
            options["timeout"] = spec.timeout.build()
        elif spec.timeout is not None:
            options["timeout"] = Timeout.coerce(spec.timeout)
        if spec.retry is False:
            options["retry"] = None
        elif spec.retry is not True:
            options["retry"] = spec.retry.build()
        if spec.rate_limit is not None:
            options["rate_limit"] = rate_limit(spec.rate_limit)
        if spec.breaker is True:
            options["breaker"] = Breaker()
        elif spec.breaker is not False:
            options["breaker"] = spec.breaker.build()
        if spec.bulkhead is not None:
            options["bulkhead"] = spec.bulkhead.build()
        if spec.cache is not None:
            backend: Any = "memory"
            if spec.cache.backend.startswith("sqlite:"):
                from tether.cache import SQLiteCache  # noqa: PLC0415 - only when configured

                backend = SQLiteCache(self._file(spec.cache.backend.removeprefix("sqlite:")))
            options["cache"] = Cache(
                backend=backend, ttl=spec.cache.ttl, stale_if_error=spec.cache.stale_if_error
            )
        if spec.allow_insecure_http:
            options["allow_insecure_http"] = True
        return options

    # -- explain ----------------------------------------------------------------------------

    def settings(self) -> list[Setting]:
        """Every value of the integration that is set (anywhere), with its origin."""
        out: list[Setting] = []
        self._walk_model(self.spec, self.base, out)
        return out

    def _walk_model(self, model: BaseModel, path: KeyPath, out: list[Setting]) -> None:
        for name, info in type(model).model_fields.items():
            key = info.alias or name
            value = getattr(model, name)
            here = (*path, key)
            if isinstance(model, IntegrationSpec) and name == "endpoints":
                for endpoint, spec in value.items():
                    out.append(self._leaf((*here, endpoint), _describe_endpoint(spec)))
                continue
            if is_secret(info):
                values = value if isinstance(value, list) else [value]
                for index, item in enumerate(values):
                    if item is None:
                        continue
                    where = (*here, index) if isinstance(value, list) else here
                    found = self.secret(where, item, optional=True)
                    origin = self.origin_of(where)
                    shown = "(not set)" if found is None else "[REDACTED]"
                    out.append(Setting(format_path(where), shown, origin, secret=True))
                continue
            self._walk_value(value, here, out)

    def _walk_value(self, value: Any, path: KeyPath, out: list[Setting]) -> None:
        if value is None:
            return
        if isinstance(value, BaseModel):
            self._walk_model(value, path, out)
        elif isinstance(value, dict):
            if path[-1] == "schema" or not value:
                if value:
                    out.append(self._leaf(path, json.dumps(value, sort_keys=True)[:80]))
                return
            for key, item in value.items():
                self._walk_value(item, (*path, key), out)
        elif isinstance(value, str):
            resolved = self.text(path, value, optional=True)
            out.append(self._leaf(path, "(not set)" if resolved is None else json.dumps(resolved)))
        else:
            rendered = json.dumps(
                value.model_dump() if isinstance(value, BaseModel) else value,
                default=lambda v: v.model_dump() if isinstance(v, BaseModel) else str(v),
            )
            if rendered in ("[]", "{}"):
                return
            out.append(self._leaf(path, rendered))

    def _leaf(self, path: KeyPath, shown: str) -> Setting:
        return Setting(format_path(path), shown, self.origin_of(path))


def _describe_endpoint(spec: EndpointSpec) -> str:
    text = f"{spec.method} {spec.path}"
    paginator = spec.paginator
    if isinstance(paginator, str):
        text += f" (paginator {paginator})"
    elif paginator is not None:
        text += f" (paginator {paginator.type})"
    return text


def rate_limit(value: Any) -> Any:
    """The `rate_limit=` option for a validated spec value."""
    if isinstance(value, str):
        return value
    if isinstance(value, RateLimitItem | RateLimiterSpec):
        return value.build()
    items: list[str | RateLimit | RateLimiter] = [
        item if isinstance(item, str) else item.build() for item in value
    ]
    return items


def build_paginator(value: Any) -> Paginator | None:
    """The paginator for a validated spec value (`"none"` and None give None)."""
    if value is None or value == "none":
        return None
    if value == "link_header":
        return LinkHeader()
    if value == "next_url":
        return NextURL()
    options = value.model_dump(exclude={"type"})
    if options.get("items") == "":
        options["items"] = None
    if isinstance(value, CursorPaginator):
        return Cursor(**options)
    if isinstance(value, OffsetPaginator):
        return Offset(**options)
    if isinstance(value, PageNumberPaginator):
        return PageNumber(**options)
    if isinstance(value, LinkHeaderPaginator):
        return LinkHeader(**options)
    assert isinstance(value, NextURLPaginator)  # noqa: S101 - the union is exhaustive
    return NextURL(**options)


def _schema_type(schema: Mapping[str, Any] | bool, label: str) -> Any:
    def check(value: Any) -> Any:
        problems = validate(value, schema)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def core(cls: type, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(check, core_schema.any_schema())

    # A class, not an Annotated alias: its name is what ResponseValidationError messages show
    # ("did not match github.issues").
    return type(label, (), {"__get_pydantic_core_schema__": classmethod(core)})


def build_model(spec: ResponseSpec | None, folder: Path, label: str) -> Any:
    """A type for `get_json(model=...)` / `paginate(model=...)`, or None."""
    if spec is None:
        return None
    if spec.model is not None:
        module_name, _, attribute = spec.model.replace(":", ".").rpartition(".")
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import response model {spec.model!r}: {exc}") from None
    if spec.json_schema is not None:
        return _schema_type(spec.json_schema, label)
    assert spec.schema_file is not None  # noqa: S101 - exactly one is set
    target = Path(os.path.expanduser(spec.schema_file))
    if not target.is_absolute():
        target = folder / target
    try:
        schema = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read JSON Schema {spec.schema_file}: {exc}") from None
    check_schema(schema)
    return _schema_type(schema, label)
