"""OAuth 2.0 (RFC 6749) as a credential: grants, client authentication, DPoP, mTLS, 401s."""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote_plus, urlsplit

import aiohttp
from pydantic import SecretStr

from tether._client import Client, _is_loopback
from tether._clock import Clock, SystemClock
from tether._core._advice import parse_retry_after
from tether._core._backoff import full_jitter
from tether._core._oauth import (
    Lifecycle,
    TokenErrorKind,
    TokenResponseError,
    TokenSet,
    classify_token_error,
    find_challenge,
    merge_token_response,
    parse_www_authenticate,
    skew_from_date,
)
from tether._errors import AuthError, ConfigError, InvalidClient, ReauthRequired, RequestError
from tether._redact import Redactor
from tether._types import SecretLike, Send
from tether.auth._base import Credential, TokenSource, secret_value
from tether.auth._dpop import DPoPKey
from tether.auth._jwt import SigningKey, client_assertion, load_signing_key
from tether.auth._manager import ReauthHook, TokenManager
from tether.auth._stores import MemoryTokenStore, TokenStore
from tether.transports._aiohttp import AiohttpTransport
from tether.transports._base import AsyncTransport

if TYPE_CHECKING:
    from tether._models import Request, Response
    from tether.auth._jwt import PrivateKey

__all__ = ["ClientAuthMethod", "DeviceCode", "Grant", "OAuth2", "TokenEndpointError"]

logger = logging.getLogger("tether.auth")

ClientAuthMethod = Literal[
    "client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth", "none"
]
Grant = Literal["client_credentials", "refresh_token", "authorization_code", "device_code"]
ParamValue = str | Sequence[str]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: The token type of DPoP-bound access tokens (RFC 9449 §5).
DPOP = "DPoP"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Shared by every credential created without `store=`: credentials for the same client and
#: scopes in one process share one token and one refresh, however often they are rebuilt.
DEFAULT_STORE = MemoryTokenStore()


class TokenEndpointError(AuthError):
    """A token or device endpoint refused the request; `.error` is its RFC 6749 §5.2 code."""

    def __init__(
        self, message: str, *, kind: TokenErrorKind, error: str | None, status: int
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.error = error
        self.status = status


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What to show the user in the device flow (RFC 8628 §3.2)."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float
    device_code: SecretStr

    def __repr__(self) -> str:
        return (
            f"DeviceCode(user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, expires_in={self.expires_in:g})"
        )


class _Borrowed:
    """A transport the caller lent us: used, never closed."""

    __slots__ = ("_transport",)

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def send(self, request: Request) -> Response:
        return await self._transport.send(request)

    async def aclose(self) -> None:
        return None


def _key_part(value: object) -> str:
    return quote_plus(str(value), safe="")


class OAuth2(Credential, TokenSource):
    """An OAuth 2.0 client credential. Build it with one of the grant constructors:

    - `OAuth2.client_credentials(token_url, client_id, client_secret, scope=None, **extra)`
    - `OAuth2.refresh_token(token_url, client_id, refresh_token, client_secret=None, store=None)`
    - `OAuth2.authorization_code(authorize_url, token_url, client_id, ...)`, then sign in once
      with `await tether.auth.login(credential)`
    - `OAuth2.device_code(device_authorization_url, token_url, client_id, ...)`, likewise

    Tokens are refreshed before they expire, once for every task and thread that needs them
    (per store and key, not per object), persisted before they are used, and renewed once
    when the API answers 401 with the token that is still current.
    """

    __slots__ = (
        "_allow_insecure_http",
        "_assertion_audience",
        "_attempts",
        "_authorize_params",
        "_client_auth",
        "_client_secret",
        "_clock",
        "_dpop",
        "_manager",
        "_params",
        "_random",
        "_seed_refresh",
        "_session",
        "_signing_key",
        "_skew",
        "_timeout",
        "_tls",
        "_transport",
        "authorize_url",
        "client_id",
        "device_authorization_url",
        "grant",
        "issuer",
        "redirect_uri",
        "scope",
        "token_url",
    )

    def __init__(  # noqa: PLR0915 - one validation per option, in signature order
        self,
        *,
        grant: Grant,
        token_url: str,
        client_id: str,
        client_secret: SecretLike | None = None,
        client_auth: ClientAuthMethod | None = None,
        private_key: str | bytes | SecretStr | PrivateKey | SigningKey | None = None,
        private_key_algorithm: str = "RS256",
        private_key_id: str | None = None,
        assertion_audience: str | None = None,
        scope: str | Sequence[str] | None = None,
        params: Mapping[str, ParamValue] | None = None,
        refresh_token: SecretLike | None = None,
        authorize_url: str | None = None,
        authorize_params: Mapping[str, str] | None = None,
        device_authorization_url: str | None = None,
        redirect_uri: str | None = None,
        issuer: str | None = None,
        store: TokenStore | None = None,
        store_key: str | None = None,
        dpop: DPoPKey | bool = False,
        tls: ssl.SSLContext | None = None,
        transport: AsyncTransport | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
        lifecycle: Lifecycle | None = None,
        clock: Clock | None = None,
        on_reauth_required: ReauthHook | None = None,
        allow_insecure_http: bool = False,
        rand: random.Random | None = None,
    ) -> None:
        if not client_id:
            raise ConfigError("OAuth2 needs a client_id")
        self.grant = grant
        self.client_id = client_id
        self._allow_insecure_http = allow_insecure_http
        self.token_url = self._check_url("token_url", token_url)
        self.authorize_url = (
            self._check_url("authorize_url", authorize_url) if authorize_url else None
        )
        self.device_authorization_url = (
            self._check_url("device_authorization_url", device_authorization_url)
            if device_authorization_url
            else None
        )
        self.redirect_uri = redirect_uri
        self.issuer = issuer
        self._client_secret = (
            secret_value("client_secret", client_secret) if client_secret is not None else None
        )
        self._signing_key = (
            load_signing_key(private_key, private_key_algorithm, private_key_id)
            if private_key is not None
            else None
        )
        if client_auth is None:
            if self._signing_key is not None:
                client_auth = "private_key_jwt"
            elif self._client_secret is not None:
                client_auth = "client_secret_basic"
            elif tls is not None:
                client_auth = "tls_client_auth"
            else:
                client_auth = "none"
        if client_auth in ("client_secret_basic", "client_secret_post") and not client_secret:
            raise ConfigError(f"client_auth={client_auth!r} needs a client_secret")
        if client_auth == "private_key_jwt" and self._signing_key is None:
            raise ConfigError("client_auth='private_key_jwt' needs a private_key")
        if client_auth == "tls_client_auth" and tls is None:
            raise ConfigError(
                "client_auth='tls_client_auth' needs tls= (an SSLContext with the cert)"
            )
        if client_auth not in (
            "client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
            "none",
        ):  # fmt: skip
            raise ConfigError(f"unknown client_auth {client_auth!r}")
        if grant == "client_credentials" and client_auth == "none":
            raise ConfigError("client_credentials needs a way to authenticate the client")
        self._client_auth: ClientAuthMethod = client_auth
        self._assertion_audience = assertion_audience
        if isinstance(scope, str) or scope is None:
            self.scope = scope or None
        else:
            self.scope = " ".join(scope) or None
        self._params = dict(params or {})
        for reserved in ("grant_type", "client_id", "client_secret", "refresh_token", "scope"):
            if reserved in self._params:
                raise ConfigError(f"{reserved!r} is set by OAuth2 itself; do not pass it as extra")
        self._authorize_params = dict(authorize_params or {})
        self._seed_refresh = (
            secret_value("refresh_token", refresh_token) if refresh_token is not None else None
        )
        self._dpop = DPoPKey.generate() if dpop is True else (dpop or None)
        self._tls = tls
        if transport is not None and session is not None:
            raise ConfigError("pass either session= or transport=, not both")
        self._transport = transport
        self._session = session
        self._timeout = timeout
        if attempts < 1:
            raise ConfigError("attempts counts the first try too, so must be >= 1")
        self._attempts = attempts
        self._clock: Clock = clock or SystemClock()
        self._random = rand or random.Random()
        self._skew = 0.0
        key = store_key or self._default_store_key()
        self._manager = TokenManager(
            fetch=self._fetch,
            store=store if store is not None else DEFAULT_STORE,
            key=key,
            lifecycle=lifecycle or Lifecycle(),
            clock=self._clock,
            description=f"{grant} client {client_id!r} at {self._redact_url(self.token_url)}",
            on_reauth_required=on_reauth_required,
            rand=self._random,
        )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def client_credentials(
        cls,
        token_url: str,
        client_id: str,
        client_secret: SecretLike | None = None,
        scope: str | Sequence[str] | None = None,
        *,
        client_auth: ClientAuthMethod | None = None,
        private_key: str | bytes | SecretStr | PrivateKey | SigningKey | None = None,
        private_key_algorithm: str = "RS256",
        private_key_id: str | None = None,
        store: TokenStore | None = None,
        store_key: str | None = None,
        dpop: DPoPKey | bool = False,
        tls: ssl.SSLContext | None = None,
        transport: AsyncTransport | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
        lifecycle: Lifecycle | None = None,
        clock: Clock | None = None,
        allow_insecure_http: bool = False,
        **extra: ParamValue,
    ) -> OAuth2:
        """The client credentials grant (RFC 6749 §4.4): the client acts on its own behalf.

        `extra` form parameters, such as `audience=` (Auth0) or `resource=` (RFC 8707), are
        sent on the first request and on every re-fetch.
        """
        return cls(
            grant="client_credentials",
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            private_key=private_key,
            private_key_algorithm=private_key_algorithm,
            private_key_id=private_key_id,
            scope=scope,
            params=extra,
            store=store,
            store_key=store_key,
            dpop=dpop,
            tls=tls,
            transport=transport,
            session=session,
            timeout=timeout,
            attempts=attempts,
            lifecycle=lifecycle,
            clock=clock,
            allow_insecure_http=allow_insecure_http,
        )

    @classmethod
    def refresh_token(
        cls,
        token_url: str,
        client_id: str,
        refresh_token: SecretLike,
        client_secret: SecretLike | None = None,
        store: TokenStore | None = None,
        **options: Any,
    ) -> OAuth2:
        """Start from a refresh token obtained elsewhere (RFC 6749 §6).

        If `store` already holds a token set for this credential (rotated since), the stored
        one wins: the refresh token given here is only the seed.
        """
        return cls(
            grant="refresh_token",
            token_url=token_url,
            client_id=client_id,
            refresh_token=refresh_token,
            client_secret=client_secret,
            store=store,
            **options,
        )

    @classmethod
    def authorization_code(
        cls,
        authorize_url: str,
        token_url: str,
        client_id: str,
        client_secret: SecretLike | None = None,
        *,
        scope: str | Sequence[str] | None = None,
        redirect_uri: str | None = None,
        store: TokenStore | None = None,
        **options: Any,
    ) -> OAuth2:
        """The authorization code grant with PKCE S256 (RFC 6749 §4.1, RFC 7636).

        Sign in once with `await tether.auth.login(credential)`; afterwards the credential
        refreshes on its own. Without `redirect_uri`, login listens on an ephemeral port of
        127.0.0.1 (RFC 8252 §7.3).
        """
        return cls(
            grant="authorization_code",
            authorize_url=authorize_url,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            redirect_uri=redirect_uri,
            store=store,
            **options,
        )

    @classmethod
    def device_code(
        cls,
        device_authorization_url: str,
        token_url: str,
        client_id: str,
        client_secret: SecretLike | None = None,
        *,
        scope: str | Sequence[str] | None = None,
        store: TokenStore | None = None,
        **options: Any,
    ) -> OAuth2:
        """The device authorization grant (RFC 8628), for CLIs and devices without a browser.

        Sign in once with `await tether.auth.login(credential)`.
        """
        return cls(
            grant="device_code",
            device_authorization_url=device_authorization_url,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            store=store,
            **options,
        )

    def _check_url(self, name: str, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name} must be an absolute http(s) URL")
        if (
            parts.scheme == "http"
            and not _is_loopback(parts.hostname)
            and not self._allow_insecure_http
        ):
            raise ConfigError(
                f"refusing to send client credentials over plain http to {parts.hostname}; "
                "use https, or pass allow_insecure_http=True"
            )
        return url

    def _default_store_key(self) -> str:
        parts = [f"oauth2:{self.grant}", self.token_url, self.client_id, self.scope or ""]
        parts += [f"{k}={v}" for k, v in sorted(self._params.items())]
        if self._seed_refresh is not None:
            # Credentials seeded with the same refresh token share state; a new seed (after the
            # user signed in again elsewhere) starts afresh. A digest prefix, never the token.
            seed = self._seed_refresh.get_secret_value().encode()
            parts.append("seed=" + hashlib.sha256(seed).hexdigest()[:16])
        if self._dpop is not None:
            parts.append("jkt=" + self._dpop.thumbprint())
        return "|".join(_key_part(p) for p in parts)

    # -- the credential -------------------------------------------------------------------------

    @property
    def store(self) -> TokenStore:
        """Where the tokens are kept; settable before the first request.

        Setting it is for code that builds a credential from configuration and only later
        learns where tokens belong (the hub moves them to Redis so every process shares one
        token). A token already fetched stays in the old store.
        """
        return self._manager.store

    @store.setter
    def store(self, store: TokenStore) -> None:
        if not isinstance(store, TokenStore):
            raise ConfigError(f"store must be a TokenStore, got {type(store).__name__}")
        self._manager.store = store

    @property
    def store_key(self) -> str:
        return self._manager.key

    @property
    def dpop_key(self) -> DPoPKey | None:
        return self._dpop

    async def current_token(self) -> TokenSet:
        return await self._manager.token()

    async def renew_token(self, rejected: TokenSet) -> TokenSet:
        return await self._manager.renew(rejected)

    async def access_token(self) -> SecretStr:
        """The access token to use now, for protocols tether does not carry (WebSockets...)."""
        return (await self._manager.token()).access_token

    def redactor_for(self, base: Redactor) -> Redactor:
        return self._manager.redactor_for(base)

    def redactor(self) -> Redactor:
        secrets: list[str] = list(self._manager.secrets())
        if self._client_secret is not None:
            secrets.append(self._client_secret.get_secret_value())
            secrets.append(self._basic_credentials())
        if self._seed_refresh is not None:
            secrets.append(self._seed_refresh.get_secret_value())
        if self._signing_key is not None:
            secrets.extend(self._signing_key.secrets())
        if self._dpop is not None:
            secrets.extend(self._dpop.secrets())
        return Redactor(headers=["DPoP"], secrets=secrets)

    async def send(self, request: Request, next_: Send) -> Response:
        token = await self._manager.token()
        self._authorize(request, token)
        response = await next_(request)
        if self._dpop is not None:
            self._dpop.remember_nonce(request.url, response.headers.get("DPoP-Nonce"))
        if response.status != 401 or not request.replayable:
            return response
        challenges = parse_www_authenticate(
            ", ".join(response.headers.getall("WWW-Authenticate", ()))
        )
        if self._dpop is not None and token.token_type == DPOP:
            challenge = find_challenge(challenges, "DPoP")
            if challenge is not None and challenge.error == "use_dpop_nonce":
                # RFC 9449 §9: the resource server wants a fresh nonce in the proof; the token
                # itself is fine.
                self._authorize(request, token)
                return await next_(request)
        challenge = find_challenge(challenges, "Bearer", "DPoP")
        if challenge is not None and challenge.error not in (None, "invalid_token"):
            # RFC 6750 §3.1: invalid_request and insufficient_scope are not cured by a new token.
            return response
        new = await self._manager.renew(token)
        self._authorize(request, new)
        return await next_(request)

    def _authorize(self, request: Request, token: TokenSet) -> None:
        value = token.access_token.get_secret_value()
        if token.token_type == DPOP and self._dpop is not None:
            request.headers["Authorization"] = f"DPoP {value}"
            request.headers["DPoP"] = self._dpop.proof(
                request.method, request.url, now=self._server_now(), access_token=value
            )
        else:
            # RFC 6750 §2.1. A token type we do not know is sent as Bearer, as every client does.
            request.headers["Authorization"] = f"Bearer {value}"
        request.redactor = self._manager.redactor_for(request.redactor)

    def _server_now(self) -> float:
        # Assertions and DPoP proofs carry iat/exp checked against the server's clock.
        return self._clock.time() + self._skew

    # -- the token endpoint -------------------------------------------------------------------

    def _basic_credentials(self) -> str:
        assert self._client_secret is not None  # noqa: S101 - checked by the caller
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before being joined and encoded.
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret.get_secret_value())}"
        return base64.b64encode(pair.encode()).decode("ascii")

    def _authenticate_client(
        self, form: dict[str, ParamValue], headers: dict[str, str], url: str
    ) -> None:
        method = self._client_auth
        if method == "client_secret_basic":
            headers["Authorization"] = f"Basic {self._basic_credentials()}"
            return
        form["client_id"] = self.client_id
        if method == "client_secret_post":
            assert self._client_secret is not None  # noqa: S101 - checked at construction
            form["client_secret"] = self._client_secret.get_secret_value()
        elif method == "private_key_jwt":
            assert self._signing_key is not None  # noqa: S101 - checked at construction
            # RFC 7523 §2.2 / OpenID Connect Core §9; the audience is the token endpoint
            # unless the server wants its issuer.
            form["client_assertion_type"] = JWT_BEARER_ASSERTION
            form["client_assertion"] = client_assertion(
                self._signing_key,
                client_id=self.client_id,
                audience=self._assertion_audience or url,
                now=self._server_now(),
            )
        # tls_client_auth (RFC 8705 §2) and public clients send only client_id: the TLS
        # handshake, or nothing, authenticates them.

    def _http_client(self, secrets: Sequence[str]) -> Client:
        options: dict[str, Any] = {
            "retry": None,
            "raise_for_status": False,
            "timeout": self._timeout,
            "clock": self._clock,
            "secrets": [s for s in secrets if s],
            "allow_insecure_http": True,  # checked for our URLs at construction
        }
        if self._transport is not None:
            options["transport"] = _Borrowed(self._transport)
        elif self._session is not None:
            options["session"] = self._session
        elif self._tls is not None:
            # RFC 8705: the TLS client certificate authenticates the client and binds tokens.
            # Given as a transport, not verify=, so each token request does not log the
            # client's "custom TLS context" warning again.
            options["transport"] = AiohttpTransport(verify=self._tls)
        return Client(**options)

    def _secrets_now(self) -> list[str]:
        return list(self.redactor().secrets)

    async def _post(
        self,
        url: str,
        form: Mapping[str, ParamValue],
        *,
        authenticate: bool = True,
        retry: bool = True,
    ) -> tuple[Any, Response]:
        """POST a form to a token or device endpoint; the decoded JSON body and the response.

        Server trouble (5xx, 408, 429, `temporarily_unavailable`, connection failures) is
        retried with backoff up to `attempts` times, honouring Retry-After; a DPoP nonce
        request (RFC 9449 §8) is answered once without counting as an attempt.
        """
        attempt = 0
        nonce_retried = False
        while True:
            attempt += 1
            body: dict[str, ParamValue] = dict(form)
            headers = {"Accept": "application/json"}
            if authenticate:
                self._authenticate_client(body, headers, url)
            if self._dpop is not None:
                headers["DPoP"] = self._dpop.proof("POST", url, now=self._server_now())
            secrets = self._secrets_now() + [
                v
                for k, v in body.items()
                if isinstance(v, str) and k.endswith(("token", "code", "assertion", "secret"))
            ]
            client = self._http_client(secrets)
            try:
                async with client:
                    response = await client.post(url, data=body, headers=headers)
            except RequestError as error:
                if attempt < self._attempts and retry:
                    await self._clock.sleep(self._backoff(attempt, None))
                    continue
                raise AuthError(
                    f"token request to {self._redact_url(url)} failed: {error}"
                ) from error
            received_at = self._clock.time()
            if self._dpop is not None:
                self._dpop.remember_nonce(url, response.headers.get("DPoP-Nonce"))
            try:
                decoded: Any = response.json() if response.content else None
            except ValueError:
                decoded = None
            if 200 <= response.status < 300:
                if decoded is None:
                    raise AuthError(
                        f"token endpoint {self._redact_url(url)} answered {response.status} "
                        "without a JSON body"
                    )
                self._skew = skew_from_date(response.headers.get("Date"), received_at=received_at)
                return decoded, response
            kind, code = classify_token_error(response.status, decoded)
            if kind is TokenErrorKind.USE_DPOP_NONCE and not nonce_retried:
                nonce_retried = True
                attempt -= 1
                continue
            if kind is TokenErrorKind.RETRYABLE and retry and attempt < self._attempts:
                advised = parse_retry_after(response.headers, now_wall=self._clock.time())
                await self._clock.sleep(self._backoff(attempt, advised))
                continue
            raise self._error(
                kind=kind, code=code, body=decoded, response=response, url=url, secrets=secrets
            )

    def _backoff(self, attempt: int, advised: float | None) -> float:
        if advised is not None:
            return min(advised, 60.0)
        return full_jitter(attempt, base=0.5, cap=8.0, rand=self._random.random())

    def _error(
        self,
        *,
        kind: TokenErrorKind,
        code: str | None,
        body: Any,
        response: Response,
        url: str,
        secrets: Sequence[str],
    ) -> AuthError:
        redactor = Redactor(secrets=secrets)
        description = body.get("error_description") if isinstance(body, Mapping) else None
        detail = code or f"HTTP {response.status}"
        if isinstance(description, str) and description:
            detail += f": {redactor.text(description[:300])}"
        where = f"{self._redact_url(url)} ({self.grant} client {self.client_id!r})"
        if kind is TokenErrorKind.INVALID_GRANT:
            return ReauthRequired(f"the grant was rejected by {where}: {detail}; sign in again")
        if kind is TokenErrorKind.INVALID_CLIENT:
            return InvalidClient(f"client authentication failed at {where}: {detail}")
        return TokenEndpointError(
            f"token endpoint {where} answered {response.status}: {detail}",
            kind=kind,
            error=code,
            status=response.status,
        )

    def _redact_url(self, url: str) -> str:
        return Redactor().url(url)

    def _merge(self, body: Any, previous: TokenSet | None) -> TokenSet:
        try:
            return merge_token_response(
                body,
                previous=previous,
                received_at=self._clock.time(),
                skew=self._skew,
                lifecycle=self._manager.lifecycle,
                rand=self._random.random(),
                requested_scope=self.scope,
            )
        except TokenResponseError as error:
            raise AuthError(
                f"unusable token response from {self._redact_url(self.token_url)}: {error}"
            ) from None

    async def _fetch(self, base: TokenSet | None) -> TokenSet:
        """A new token set: a client credentials re-fetch or a refresh (RFC 6749 §4.4, §6)."""
        form: dict[str, ParamValue] = {}
        if self.grant == "client_credentials":
            form["grant_type"] = "client_credentials"
            if self.scope:
                form["scope"] = self.scope
            form.update(self._params)
            body, _ = await self._post(self.token_url, form)
            # A client credentials token set never carries a refresh token forward.
            return self._merge(body, _without_refresh(base))
        refresh = base.refresh_token if base is not None else None
        if refresh is None and base is None:
            refresh = self._seed_refresh
        if refresh is None:
            raise ReauthRequired(
                f"no refresh token for {self._manager.description}: "
                "sign in with tether.auth.login(credential)"
            )
        form["grant_type"] = "refresh_token"
        form["refresh_token"] = refresh.get_secret_value()
        if self.scope and self.grant == "refresh_token":
            form["scope"] = self.scope
        form.update(self._params)
        body, _ = await self._post(self.token_url, form)
        seed = base if base is not None else _seed(refresh)
        return self._merge(body, seed)

    async def exchange_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> TokenSet:
        """Exchange an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5) and store the result."""
        form: dict[str, ParamValue] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        form.update(self._params)
        body, _ = await self._post(self.token_url, form)
        return await self._manager.replace(self._merge(body, None))

    async def start_device_authorization(self) -> DeviceCode:
        """Ask for a device code and user code (RFC 8628 §3.1)."""
        if self.device_authorization_url is None:
            raise ConfigError("this credential has no device_authorization_url")
        form: dict[str, ParamValue] = {"client_id": self.client_id}
        if self.scope:
            form["scope"] = self.scope
        form.update(self._params)
        body, _ = await self._post(
            self.device_authorization_url, form, authenticate=self._client_auth != "none"
        )
        try:
            return DeviceCode(
                user_code=str(body["user_code"]),
                verification_uri=str(body.get("verification_uri") or body["verification_url"]),
                verification_uri_complete=body.get("verification_uri_complete"),
                expires_in=float(body.get("expires_in") or 600),
                # RFC 8628 §3.2: without an interval the client waits 5 seconds.
                interval=float(body.get("interval") or 5),
                device_code=SecretStr(str(body["device_code"])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise AuthError(f"unusable device authorization response: missing {error}") from None

    async def poll_device(self, device: DeviceCode) -> TokenSet:
        """Poll until the user approves, then store the token set (RFC 8628 §3.4, §3.5)."""
        interval = device.interval
        deadline = self._clock.time() + device.expires_in
        form: dict[str, ParamValue] = {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": device.device_code.get_secret_value(),
        }
        while True:
            if self._clock.time() >= deadline:
                raise AuthError("the device code expired before the user approved")
            await self._clock.sleep(interval)
            try:
                body, _ = await self._post(self.token_url, form)
            except TokenEndpointError as error:
                if error.kind is TokenErrorKind.AUTHORIZATION_PENDING:
                    continue
                if error.kind is TokenErrorKind.SLOW_DOWN:
                    # RFC 8628 §3.5: add 5 seconds to this and all later polls.
                    interval += 5
                    continue
                raise
            return await self._manager.replace(self._merge(body, None))

    async def store_login(self, token: TokenSet) -> TokenSet:
        return await self._manager.replace(token)

    def __repr__(self) -> str:
        return (
            f"OAuth2.{self.grant}({self._redact_url(self.token_url)!r}, "
            f"client_id={self.client_id!r}, scope={self.scope!r}, "
            f"client_auth={self._client_auth!r}, dpop={self._dpop is not None})"
        )


def _without_refresh(token: TokenSet | None) -> TokenSet | None:
    if token is None or token.refresh_token is None:
        return token
    return replace(token, refresh_token=None)


def _seed(refresh: SecretStr) -> TokenSet:
    # A placeholder holding only the seed refresh token, so an omitted refresh token in the
    # first response carries the seed forward; version 0 makes the first real set version 1.
    return TokenSet(access_token=SecretStr("-"), refresh_token=refresh, version=0)
