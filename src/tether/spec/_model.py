"""The shape of `tether.toml`, as frozen pydantic models.

These models check structure and value ranges only. Strings stay as written: `${NAME}`
references are expanded, and secrets read, when an integration is resolved (see `_resolve.py`),
so a missing variable for one integration never stops another from loading.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tether._config import Retry, RetryBudget, Timeout
from tether._errors import ConfigError
from tether._flow import Breaker, Bulkhead, RateLimit, RateLimiter
from tether.spec._jsonschema import check_schema
from tether.webhooks._api import SCHEMES
from tether.webhooks._outbox_policy import check_schedule

__all__ = [
    "ApiKeyAuth",
    "AuthSpec",
    "BasicAuth",
    "BearerAuth",
    "BreakerSpec",
    "BulkheadSpec",
    "CacheSpec",
    "CheckSpec",
    "CursorPaginator",
    "EndpointSpec",
    "EnvSecret",
    "FileSecret",
    "HeaderTemplateAuth",
    "HubSpec",
    "IntegrationSpec",
    "LinkHeaderPaginator",
    "LoginExchangeAuth",
    "NextURLPaginator",
    "OAuth2Auth",
    "OffsetPaginator",
    "OutboxEndpointSpec",
    "OutboxSpec",
    "PageNumberPaginator",
    "PaginatorSpec",
    "PollerSpec",
    "RateLimitItem",
    "RateLimiterSpec",
    "ResponseSpec",
    "RetrySpec",
    "SecretValue",
    "SignedJWTAuth",
    "SpecFile",
    "StreamSpec",
    "TimeoutSpec",
    "WebhookSpec",
    "is_loopback",
    "is_secret",
    "split_listen",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _secret(**options: Any) -> Any:
    # Marked in the published JSON Schema too, so editors and reviewers can see which keys
    # must come from `${ENV}` or a file.
    return Field(json_schema_extra={"writeOnly": True, "x-tether-secret": True}, **options)


def is_secret(info: Any) -> bool:
    """Whether a model field holds a secret."""
    extra = getattr(info, "json_schema_extra", None)
    return isinstance(extra, dict) and extra.get("x-tether-secret") is True


class _Model(BaseModel):
    # Unknown keys are errors: a misspelt `rety = ...` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_names(value: dict[str, Any], what: str) -> None:
    for name in value:
        if not NAME.fullmatch(name):
            raise ValueError(
                f"{what} name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )


def _config(build: Any) -> None:
    # The runtime classes validate their own options; their ConfigError becomes a pydantic
    # error so it is reported with the file, line and key like every other problem.
    try:
        build()
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# -- secrets ----------------------------------------------------------------------------------


class EnvSecret(_Model):
    """`{ env = "NAME" }`: the value of an environment variable."""

    env: str = Field(min_length=1, description="Name of the environment variable.")


class FileSecret(_Model):
    """`{ file = "path" }`: a file's contents (one trailing newline removed)."""

    file: str = Field(
        min_length=1, description="Path of the file; relative paths start at the spec's folder."
    )


#: A secret: `"${NAME}"`, `{ env = "NAME" }` or `{ file = "path" }`. A literal string is
#: accepted but `tether spec check` warns about it: secrets belong outside the file.
SecretValue = str | EnvSecret | FileSecret

#: A URL, or one URL per region (`{ us = "...", eu = "..." }`), chosen by the active region.
Regional = str | dict[str, str]


# -- auth -------------------------------------------------------------------------------------


class ApiKeyAuth(_Model):
    """An API key in a header or a query parameter."""

    type: Literal["api_key"]
    name: str = Field(min_length=1, description="Header or query parameter that carries the key.")
    value: SecretValue = _secret()
    location: Literal["header", "query"] = "header"


class BearerAuth(_Model):
    """`Authorization: Bearer <token>`."""

    type: Literal["bearer"]
    token: SecretValue = _secret()


class BasicAuth(_Model):
    """HTTP Basic authentication."""

    type: Literal["basic"]
    username: str
    password: SecretValue = _secret()


class HeaderTemplateAuth(_Model):
    """A custom header scheme, such as `Authorization: SSWS {token}`."""

    type: Literal["header_template"]
    header: str = "Authorization"
    template: str
    token: SecretValue = _secret()

    @field_validator("template")
    @classmethod
    def _has_token(cls, value: str) -> str:
        if "{token}" not in value:
            raise ValueError("template must contain {token}")
        return value


class LoginExchangeAuth(_Model):
    """Log in at an endpoint for a token (WattTime's `/login`), then send that token."""

    type: Literal["login_exchange"]
    login_url: Regional
    username: str
    password: SecretValue = _secret()
    token_field: str = "token"  # noqa: S105 - a field name
    ttl: float = Field(default=1800, gt=0)
    method: Literal["GET", "POST"] = "GET"
    credentials: Literal["basic", "json", "form"] = "basic"
    username_field: str = "username"
    password_field: str = "password"  # noqa: S105 - a field name
    header: str = "Authorization"
    template: str = "Bearer {token}"

    @field_validator("template")
    @classmethod
    def _has_token(cls, value: str) -> str:
        if "{token}" not in value:
            raise ValueError("template must contain {token}")
        return value


class SignedJWTAuth(_Model):
    """A JWT signed locally (GitHub Apps, Apple, Zoom)."""

    type: Literal["signed_jwt"]
    key: SecretValue = _secret()
    algorithm: str = "HS256"
    claims: dict[str, Any] = Field(default_factory=dict)
    lifetime: float = Field(default=3600, gt=0)
    key_id: str | None = None
    header: str = "Authorization"
    scheme: str = "Bearer"
    backdate: float = Field(default=0.0, ge=0)


class OAuth2Auth(_Model):
    """An OAuth 2.0 client; `template` sends its access token in a custom header scheme."""

    type: Literal["oauth2"]
    grant: Literal["client_credentials", "refresh_token", "authorization_code", "device_code"]
    token_url: Regional
    client_id: str = Field(min_length=1)
    client_secret: SecretValue | None = _secret(default=None)
    client_auth: (
        Literal[
            "client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
            "none",
        ]
        | None
    ) = None  # fmt: skip
    private_key: SecretValue | None = _secret(default=None)
    private_key_algorithm: str = "RS256"
    private_key_id: str | None = None
    scope: str | list[str] | None = None
    refresh_token: SecretValue | None = _secret(
        default=None,
        description="A refresh token obtained elsewhere; a stored sign-in takes precedence.",
    )
    authorize_url: Regional | None = None
    authorize_params: dict[str, str] = Field(default_factory=dict)
    device_authorization_url: Regional | None = None
    redirect_uri: str | None = None
    issuer: str | None = None
    params: dict[str, str] = Field(
        default_factory=dict, description="Extra token request parameters (audience, resource)."
    )
    token_store: str | None = Field(
        default=None,
        description=(
            "'memory', a JSON file path, or 'sqlite:PATH'. Default: memory for "
            "client_credentials, the user's tether token file for the other grants."
        ),
    )
    header: str = "Authorization"
    template: str | None = Field(
        default=None, description="e.g. 'Zoho-oauthtoken {token}'; default: Bearer."
    )
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _grant_needs(self) -> OAuth2Auth:
        if self.grant == "client_credentials" and not (
            self.client_secret is not None or self.private_key is not None
        ):
            raise ValueError("grant 'client_credentials' needs client_secret or private_key")
        if self.grant == "authorization_code" and self.authorize_url is None:
            raise ValueError("grant 'authorization_code' needs authorize_url")
        if self.grant == "device_code" and self.device_authorization_url is None:
            raise ValueError("grant 'device_code' needs device_authorization_url")
        if self.template is not None and "{token}" not in self.template:
            raise ValueError("template must contain {token}")
        return self


AuthSpec = Annotated[
    ApiKeyAuth
    | BearerAuth
    | BasicAuth
    | HeaderTemplateAuth
    | LoginExchangeAuth
    | SignedJWTAuth
    | OAuth2Auth,
    Field(discriminator="type"),
]


# -- flow control ---------------------------------------------------------------------------


class TimeoutSpec(_Model):
    """Time limits in seconds: the whole call, connecting, each attempt."""

    total: float | None = Field(default=None, gt=0)
    connect: float | None = Field(default=None, gt=0)
    attempt: float | None = Field(default=None, gt=0)

    def build(self) -> Timeout:
        return Timeout(**self.model_dump(exclude_unset=True))


class RetryBudgetSpec(_Model):
    percent: float = Field(default=0.2, ge=0, le=10)
    min_per_second: float = Field(default=10.0, ge=0)
    window: float = Field(default=10.0, gt=0)


class RetrySpec(_Model):
    """`tether.Retry` options; omitted ones keep their defaults."""

    attempts: int | None = Field(default=None, ge=1)
    base_delay: float | None = Field(default=None, gt=0)
    max_delay: float | None = Field(default=None, gt=0)
    jitter: bool | None = None
    max_retry_after: float | None = Field(default=None, ge=0)
    statuses: list[int] | None = None
    idempotent_methods: list[str] | None = None
    idempotency_key: bool | None = None
    idempotency_header: str | None = None
    budget: bool | RetryBudgetSpec | None = None

    @model_validator(mode="after")
    def _valid(self) -> RetrySpec:
        _config(self.build)
        return self

    def build(self) -> Retry:
        options: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "budget":
                if value is True:
                    value = RetryBudget()
                elif value is False:
                    value = None
                else:
                    value = RetryBudget(**value.model_dump())
            elif name in ("statuses", "idempotent_methods"):
                value = frozenset(value)
            options[name] = value
        return Retry(**options)


class RateLimitItem(_Model):
    """One limit: `rate` requests per `per` seconds, bursts of `burst`."""

    rate: float = Field(gt=0)
    per: float = Field(default=1.0, gt=0)
    burst: int = Field(default=1, ge=1)
    start_full: bool = False

    def build(self) -> RateLimit:
        return RateLimit(**self.model_dump())


def _limit(item: str | RateLimitItem) -> RateLimit | str:
    return item.build() if isinstance(item, RateLimitItem) else item


class RateLimiterSpec(_Model):
    """A `tether.RateLimiter`: several limits together, scoped, path-filtered or adaptive."""

    limits: list[str | RateLimitItem] = Field(default_factory=list)
    scope: Literal["client", "host", "credential"] = "client"
    paths: list[str] | None = None
    adaptive: bool = False
    max_wait: float | None = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _valid(self) -> RateLimiterSpec:
        _config(self.build)
        return self

    def build(self) -> RateLimiter:
        return RateLimiter(
            *(_limit(item) for item in self.limits),
            scope=self.scope,
            paths=self.paths,
            adaptive=self.adaptive,
            max_wait=self.max_wait,
        )


def _rate_limit_kind(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict) and "rate" in value:
        return "limit"
    return "limiter"


def _check_rate_text(value: str) -> str:
    if value != "adaptive":
        _config(lambda: RateLimit.parse(value))
    return value


RateLimitText = Annotated[str, Field(description="'60/min', '10/s', '1000/h' or 'adaptive'.")]

RateLimitValue = Annotated[
    Annotated[RateLimitText, Tag("text")]
    | Annotated[list[str | RateLimitItem | RateLimiterSpec], Tag("list")]
    | Annotated[RateLimitItem, Tag("limit")]
    | Annotated[RateLimiterSpec, Tag("limiter")],
    Discriminator(_rate_limit_kind),
]


class BreakerSpec(_Model):
    """`tether.Breaker` options; omitted ones keep their defaults."""

    failure_rate: float | None = Field(default=None, gt=0, le=1)
    slow_call_rate: float | None = Field(default=None, gt=0, le=1)
    slow_call_duration: float | None = Field(default=None, gt=0)
    minimum_calls: int | None = Field(default=None, ge=1)
    window: int | None = Field(default=None, ge=1)
    open_for: float | None = Field(default=None, gt=0)
    max_open_for: float | None = Field(default=None, gt=0)
    half_open_probes: int | None = Field(default=None, ge=1)
    ignore_statuses: list[int] | None = None
    scope: Literal["host", "client"] | None = None

    @model_validator(mode="after")
    def _valid(self) -> BreakerSpec:
        _config(self.build)
        return self

    def build(self) -> Breaker:
        options = {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}
        if "ignore_statuses" in options:
            options["ignore_statuses"] = frozenset(options["ignore_statuses"])
        return Breaker(**options)


class BulkheadSpec(_Model):
    """At most `max_concurrent` requests in flight; `max_queue` more may wait."""

    max_concurrent: int = Field(ge=1)
    max_queue: int = Field(default=100, ge=0)
    scope: Literal["client", "host"] = "client"

    def build(self) -> Bulkhead:
        return Bulkhead(**self.model_dump())


class CacheSpec(_Model):
    """The private HTTP cache (`tether.Cache`)."""

    backend: str = Field(default="memory", description="'memory' or 'sqlite:PATH'.")
    ttl: float | dict[str, float] | None = Field(
        default=None, description="Seconds, or URL path glob -> seconds; default: the headers."
    )
    stale_if_error: float | None = Field(default=None, ge=0)

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value != "memory" and not (value.startswith("sqlite:") and len(value) > 7):
            raise ValueError("backend must be 'memory' or 'sqlite:PATH'")
        return value


# -- pagination -----------------------------------------------------------------------------


class _PaginatorBase(_Model):
    items: str | None = Field(
        default="data", description="Dotted path to the list of items; '' for the body itself."
    )
    id_field: str | None = "id"


class CursorPaginator(_PaginatorBase):
    """`tether.pagination.Cursor`."""

    type: Literal["cursor"]
    cursor: str | None = "next_cursor"
    param: str = "cursor"
    has_more: str | None = None
    from_last_item: str | None = None
    location: Literal["query", "header", "json"] = "query"
    page_size: int | None = Field(default=None, ge=1)
    size_param: str = "limit"

    @model_validator(mode="after")
    def _source(self) -> CursorPaginator:
        if self.from_last_item is not None and "cursor" not in self.model_fields_set:
            # `from_last_item` alone means "the cursor is the last item's field".
            object.__setattr__(self, "cursor", None)
        if self.cursor is None and self.from_last_item is None:
            raise ValueError("a cursor paginator needs cursor or from_last_item")
        return self


class OffsetPaginator(_PaginatorBase):
    """`tether.pagination.Offset`."""

    type: Literal["offset"]
    limit: int = Field(default=100, ge=1)
    offset_param: str = "offset"
    limit_param: str = "limit"
    total: str | None = None
    start: int = Field(default=0, ge=0)


class PageNumberPaginator(_PaginatorBase):
    """`tether.pagination.PageNumber`."""

    type: Literal["page_number"]
    param: str = "page"
    start: int = 1
    size: int | None = Field(default=None, ge=1)
    size_param: str = "per_page"
    total_pages: str | None = None
    total: str | None = None


class LinkHeaderPaginator(_PaginatorBase):
    """`tether.pagination.LinkHeader` (GitHub, Okta)."""

    type: Literal["link_header"]
    items: str | None = Field(
        default="", description="Dotted path to the list of items; '' for the body itself."
    )


class NextURLPaginator(_PaginatorBase):
    """`tether.pagination.NextURL` (Salesforce, Django REST framework)."""

    type: Literal["next_url"]
    next: str = "next"
    items: str | None = Field(
        default="results", description="Dotted path to the list of items; '' for the body."
    )


PaginatorSpec = Annotated[
    CursorPaginator
    | OffsetPaginator
    | PageNumberPaginator
    | LinkHeaderPaginator
    | NextURLPaginator,
    Field(discriminator="type"),
]


def _paginator_kind(value: Any) -> str:
    return "name" if isinstance(value, str) else "table"


PaginatorValue = Annotated[
    Annotated[
        Literal["none", "link_header", "next_url"],
        Tag("name"),
        Field(description="'none' turns an inherited paginator off."),
    ]
    | Annotated[PaginatorSpec, Tag("table")],
    Discriminator(_paginator_kind),
]


# -- endpoints, webhooks, checks ------------------------------------------------------------


class ResponseSpec(_Model):
    """What a response (or, for a paginated endpoint, each item) must look like."""

    model: str | None = Field(
        default=None, description="Import path of a pydantic model: 'package.module:Name'."
    )
    json_schema: dict[str, Any] | None = Field(
        default=None, alias="schema", description="An inline JSON Schema."
    )
    schema_file: str | None = Field(
        default=None, description="A JSON Schema file, relative to the spec's folder."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one(self) -> ResponseSpec:
        given = [self.model, self.json_schema, self.schema_file]
        if sum(x is not None for x in given) != 1:
            raise ValueError("give exactly one of model, schema and schema_file")
        if self.model is not None and not re.fullmatch(
            r"[A-Za-z_][\w.]*[:.][A-Za-z_]\w*", self.model
        ):
            raise ValueError("model must be an import path like 'package.module:Name'")
        if self.json_schema is not None:
            _config(lambda: check_schema(self.json_schema))
        return self


Scalar = str | int | float | bool


class EndpointSpec(_Model):
    """One API operation: `tether call INTEGRATION ENDPOINT key=value ...`."""

    method: str = "GET"
    path: str = Field(description="Path under the base URL; {name} placeholders take arguments.")
    description: str | None = None
    params: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="Default query parameters; arguments override them."
    )
    headers: dict[str, str] = Field(default_factory=dict)
    args: Literal["query", "json", "form"] | None = Field(
        default=None,
        description="Where arguments that fill no placeholder go; default: query for "
        "GET/HEAD/DELETE/OPTIONS, a JSON body otherwise.",
    )
    paginator: PaginatorValue | None = Field(
        default=None, description="Default: the integration's paginator; 'none' for none."
    )
    response: ResponseSpec | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        upper = value.upper()
        if upper not in HTTP_METHODS:
            raise ValueError(f"method must be one of {', '.join(HTTP_METHODS)}")
        return upper

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("path must start with '/'")
        return value

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.path))

    @property
    def argument_location(self) -> Literal["query", "json", "form"]:
        if self.args is not None:
            return self.args
        return "query" if self.method in ("GET", "HEAD", "DELETE", "OPTIONS") else "json"


class WebhookSpec(_Model):
    """A webhook source: how the provider signs what it sends (see `tether.webhooks`)."""

    scheme: str
    secret: SecretValue | list[SecretValue] = _secret()
    path: str | None = Field(default=None, description="Default: /webhooks/INTEGRATION/NAME.")
    tolerance: float | Literal[False] = Field(
        default=300, description="Seconds a signed timestamp may be off; false turns it off."
    )
    id_from: str | None = None
    type_from: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value not in SCHEMES:
            raise ValueError(f"unknown scheme {value!r}; known: {', '.join(SCHEMES)}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("path must start with '/'")
        return value


class CheckSpec(_Model):
    """How `tether check` tells ok, cannot_connect and invalid_auth apart."""

    endpoint: str | None = Field(default=None, description="An endpoint of this integration.")
    path: str | None = Field(default=None, description="Or a path to GET.")
    args: dict[str, Scalar] = Field(default_factory=dict)
    ok_field: str | None = Field(
        default=None, description="Dotted path to a boolean that must be true (Slack: 'ok')."
    )
    error_field: str | None = Field(default=None, description="Where the error code is.")
    auth_errors: list[str] = Field(
        default_factory=list, description="Error codes that mean the credentials are wrong."
    )

    @model_validator(mode="after")
    def _target(self) -> CheckSpec:
        if (self.endpoint is None) == (self.path is None):
            raise ValueError("give exactly one of endpoint and path")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        return self


# -- integrations ---------------------------------------------------------------------------


class IntegrationSpec(_Model):
    """One third-party API."""

    preset: str | None = Field(default=None, description="Start from a shipped preset.")
    description: str | None = None
    docs: str | None = Field(default=None, description="The provider's API documentation.")
    base_url: str | None = Field(default=None, description="Overrides regions.")
    regions: dict[str, str] = Field(default_factory=dict, description="Region name -> base URL.")
    region: str | None = Field(default=None, description="The region used unless overridden.")
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthSpec | None = None
    timeout: float | TimeoutSpec | None = None
    retry: bool | RetrySpec = True
    rate_limit: RateLimitValue | None = None
    breaker: bool | BreakerSpec = False
    bulkhead: BulkheadSpec | None = None
    cache: CacheSpec | None = None
    allow_insecure_http: bool = False
    paginator: PaginatorValue | None = Field(
        default=None, description="Default paginator of the endpoints."
    )
    graphql_path: str | None = Field(default=None, description="Path of the GraphQL endpoint.")
    endpoints: dict[str, EndpointSpec] = Field(default_factory=dict)
    webhooks: dict[str, WebhookSpec] = Field(default_factory=dict)
    check: CheckSpec | None = None
    rate_limit_notes: str | None = Field(
        default=None, description="The provider's documented limits, in words."
    )

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | TimeoutSpec | None) -> float | TimeoutSpec | None:
        if isinstance(value, int | float) and not value > 0:
            raise ValueError("timeout must be a positive number of seconds")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str):
                _check_rate_text(item)
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoint_names(cls, value: dict[str, EndpointSpec]) -> dict[str, EndpointSpec]:
        _check_names(value, "endpoint")
        return value

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookSpec]) -> dict[str, WebhookSpec]:
        _check_names(value, "webhook")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> IntegrationSpec:
        if self.region is not None and self.regions and self.region not in self.regions:
            raise ValueError(
                f"region {self.region!r} is not among regions ({', '.join(self.regions)})"
            )
        check = self.check
        if (
            check is not None
            and check.endpoint is not None
            and check.endpoint not in self.endpoints
        ):
            raise ValueError(f"check.endpoint {check.endpoint!r} is not an endpoint")
        auth = self.auth
        if auth is not None:
            for field_name in (
                "login_url",
                "token_url",
                "authorize_url",
                "device_authorization_url",
            ):
                url = getattr(auth, field_name, None)
                if isinstance(url, dict):
                    unknown = set(url) - set(self.regions)
                    if not self.regions or unknown:
                        raise ValueError(
                            f"auth.{field_name} is given per region, but "
                            f"{', '.join(sorted(unknown or url))} "
                            "is not among this integration's regions"
                        )
        return self


# -- the hub (`tether serve`) ---------------------------------------------------------------


def split_listen(value: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as (host, port); ValueError with the reason."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"listen must be HOST:PORT, e.g. 127.0.0.1:8765, not {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(
            f"write an IPv6 listen address in brackets, e.g. [::1]:8765, not {value!r}"
        )
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"the port must be 0-65535, not {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HubSpec(_Model):
    """`[hub]`: where `tether serve` listens and keeps its state."""

    listen: str = Field(default="127.0.0.1:8765", description="HOST:PORT; `--listen` overrides it.")
    store: str = Field(
        default="tether-hub.db",
        description="SQLite file (relative to this file's folder) or postgresql://...; "
        "`--store` overrides it.",
    )
    redis: str | None = Field(
        default=None,
        description="redis://... to share rate limits and tokens between hubs; `--redis` "
        "overrides it.",
    )
    token: SecretValue | None = _secret(
        default=None,
        description="Bearer token for the API and dashboard; required unless listening on "
        "loopback.",
    )
    event_retention: float = Field(
        default=7 * 86_400.0, gt=0, description="Seconds hub events are kept."
    )
    hub_id: str | None = Field(
        default=None, description="This hub's name in leases; default: hostname:pid."
    )
    traces: bool = Field(
        default=False, description="OpenTelemetry spans for polls, dispatches and deliveries."
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("hub_id")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^\x00-\x1f\x7f]{1,200}", value):
            raise ValueError("hub_id must be 1-200 characters without control characters")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HubSpec:
        host, _ = split_listen(self.listen)
        if self.token is None and not is_loopback(host):
            message = (
                f"listening on {host} (not loopback) needs hub.token, e.g. "
                'token = { env = "TETHER_HUB_TOKEN" }'
            )
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", message),
                        loc=("listen",),
                        input=self.listen,
                    )
                ],
            )
        return self


class PollerSpec(_Model):
    """`[pollers.NAME]`: an endpoint of an integration, polled on a schedule."""

    integration: str = Field(description="An integration of this file.")
    endpoint: str = Field(description="An endpoint of that integration.")
    args: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="The endpoint's arguments."
    )
    interval: float = Field(gt=0, description="Seconds between polls.")
    unavailable_after: float | None = Field(
        default=None, gt=0, description="Seconds without a success that make the data unavailable."
    )
    unavailable_after_failures: int = Field(
        default=3, ge=1, description="Failures in a row that make the data unavailable."
    )


_STREAM_SCHEMES = {"websocket": ("ws", "wss", "http", "https"), "sse": ("http", "https")}


class StreamSpec(_Model):
    """`[streams.NAME]`: a WebSocket or SSE feed whose messages become hub events."""

    integration: str | None = Field(
        default=None, description="Base URL and credentials come from this integration."
    )
    url: str = Field(
        description="Absolute ws(s):// or http(s):// URL, or a path under the integration's "
        "base URL."
    )
    kind: Literal["websocket", "sse"] = "websocket"
    subscribe: list[dict[str, Any]] = Field(
        default_factory=list, description="WebSocket messages sent on every connect."
    )
    event_type: str | None = Field(
        default=None,
        description="Hub event type; may use {field} of the message; default stream.NAME.",
    )

    @model_validator(mode="after")
    def _target(self) -> StreamSpec:
        if self.url.startswith("/"):
            if self.integration is None:
                raise ValueError("a url that is a path needs integration (for its base URL)")
        else:
            scheme = urlsplit(self.url).scheme
            allowed = _STREAM_SCHEMES[self.kind]
            if scheme not in allowed or not urlsplit(self.url).hostname:
                raise ValueError(
                    f"url must be a path or an absolute {'/'.join(allowed)} URL for a "
                    f"{self.kind} stream"
                )
        if self.subscribe and self.kind != "websocket":
            raise ValueError("subscribe messages are for websocket streams only")
        if self.event_type is not None and not re.fullmatch(
            r"[A-Za-z0-9_.*{}-]{1,200}", self.event_type
        ):
            raise ValueError("event_type must be letters, digits, '_.-' and {field} references")
        return self


class OutboxEndpointSpec(_Model):
    """`[outbox.endpoints.NAME]`: a receiver of hub events, its name is its endpoint id."""

    url: str = Field(description="Where deliveries are posted (https://... in production).")
    event_types: list[str] = Field(
        default_factory=list,
        description="Hub event types it receives ('webhook.*' matches a prefix); empty: all.",
    )
    secret: SecretValue | None = _secret(
        default=None, description="Its whsec_ signing secret; default: one generated once."
    )
    rate_limit: str | None = Field(default=None, description="e.g. '10/s'.")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, le=60)
    schedule: list[float] | None = Field(
        default=None,
        description="Retry delays in seconds after the first attempt; [] makes the first "
        "failure final; default: the outbox's schedule (1 min ... 10 h).",
    )
    description: str | None = None

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            _config(lambda: RateLimit.parse(value))
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            _config(lambda: check_schedule(value))
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http(s) URL")
        return value


class OutboxSpec(_Model):
    """`[outbox]`: signed webhooks the hub sends for its events."""

    allow_private: list[str] = Field(
        default_factory=list,
        description="Private networks deliveries may reach, e.g. '10.0.0.0/8' (SSRF guard).",
    )
    endpoints: dict[str, OutboxEndpointSpec] = Field(default_factory=dict)

    @field_validator("allow_private")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network like '10.0.0.0/8'") from None
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoint_names(cls, value: dict[str, OutboxEndpointSpec]) -> dict[str, OutboxEndpointSpec]:
        _check_names(value, "outbox endpoint")
        return value


class SpecFile(_Model):
    """A `tether.toml` file."""

    version: Literal[1] = Field(default=1, description="The spec format version.")
    integrations: dict[str, IntegrationSpec] = Field(default_factory=dict)
    hub: HubSpec = Field(
        default_factory=HubSpec, description="`tether serve`: where and how it runs."
    )
    pollers: dict[str, PollerSpec] = Field(
        default_factory=dict, description="Endpoints `tether serve` polls, by name."
    )
    streams: dict[str, StreamSpec] = Field(
        default_factory=dict, description="WebSocket and SSE feeds `tether serve` follows."
    )
    outbox: OutboxSpec = Field(
        default_factory=OutboxSpec,
        description="Where `tether serve` delivers its events as signed webhooks.",
    )

    @field_validator("integrations")
    @classmethod
    def _names(cls, value: dict[str, IntegrationSpec]) -> dict[str, IntegrationSpec]:
        _check_names(value, "integration")
        return value

    @field_validator("pollers")
    @classmethod
    def _poller_names(cls, value: dict[str, PollerSpec]) -> dict[str, PollerSpec]:
        _check_names(value, "poller")
        return value

    @field_validator("streams")
    @classmethod
    def _stream_names(cls, value: dict[str, StreamSpec]) -> dict[str, StreamSpec]:
        _check_names(value, "stream")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _references(cls, data: Any, handler: ModelWrapValidatorHandler[SpecFile]) -> SpecFile:
        # Checked on the raw tables, so a poller naming a missing integration is reported
        # together with every other problem of the file, at the key that names it.
        found = _reference_problems(data) if isinstance(data, dict) else []
        try:
            model = handler(data)
        except ValidationError as exc:
            if not found:
                raise
            found = [
                InitErrorDetails(
                    type=PydanticCustomError(error["type"], error["msg"]),
                    loc=error["loc"],
                    input=error.get("input"),
                )
                for error in exc.errors(include_url=False, include_context=False)
            ] + found
            raise ValidationError.from_exception_data(cls.__name__, found) from None
        if found:
            raise ValidationError.from_exception_data(cls.__name__, found)
        return model


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _reference_problems(data: dict[str, Any]) -> list[InitErrorDetails]:
    problems: list[InitErrorDetails] = []

    def problem(loc: tuple[str, ...], value: object, message: str) -> None:
        problems.append(
            InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)
        )

    integrations = _table(data.get("integrations"))
    known = ", ".join(integrations) or "none"
    for name, poller in _table(data.get("pollers")).items():
        poller_table = _table(poller)
        wanted = poller_table.get("integration")
        if not isinstance(wanted, str):
            continue
        if wanted not in integrations:
            problem(
                ("pollers", name, "integration"),
                wanted,
                f"no integration named {wanted!r} in this file (integrations: {known})",
            )
            continue
        endpoint_name = poller_table.get("endpoint")
        if not isinstance(endpoint_name, str):
            continue
        endpoints = _table(_table(integrations[wanted]).get("endpoints"))
        if endpoint_name not in endpoints:
            problem(
                ("pollers", name, "endpoint"),
                endpoint_name,
                f"integration {wanted!r} has no endpoint {endpoint_name!r} "
                f"(endpoints: {', '.join(endpoints) or 'none'})",
            )
            continue
        path = _table(endpoints[endpoint_name]).get("path")
        args = _table(poller_table.get("args"))
        missing = (
            [p for p in _PLACEHOLDER.findall(path) if p not in args]
            if isinstance(path, str)
            else []
        )
        if missing:
            problem(
                ("pollers", name, "args"),
                args,
                f"endpoint {endpoint_name!r} needs " + ", ".join(f"args.{p}" for p in missing),
            )
    for name, stream in _table(data.get("streams")).items():
        wanted = _table(stream).get("integration")
        if isinstance(wanted, str) and wanted not in integrations:
            problem(
                ("streams", name, "integration"),
                wanted,
                f"no integration named {wanted!r} in this file (integrations: {known})",
            )
    return problems
