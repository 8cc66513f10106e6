"""A fake OAuth2 authorization server: tokens that expire, rotate and can be revoked.

Follows RFC 6749 for the token endpoint (section 5.1 success, 5.2 errors), RFC 7009 for
revocation, RFC 6750 for rejecting bearer tokens, and the OAuth 2.0 Security BCP (RFC 9700,
section 4.14) for refresh-token rotation with reuse detection. Tokens come from the mock's
seeded generator, and expiry runs on the mock's clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import secrets as _stdlib_secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from tether._errors import ConfigError
from tether.testing._reply import Reply

if TYPE_CHECKING:
    from tether.testing._match import MockRequest
    from tether.testing._mockapi import MockAPI

__all__ = ["OAuth2Server", "TokenRecord"]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(slots=True)
class TokenRecord:
    """One issued token and what it is worth."""

    value: str
    kind: str  # "access" or "refresh"
    client_id: str
    scope: str | None
    expires_at: float | None
    #: Tokens descended from one grant share a family; reuse of a rotated refresh token
    #: revokes the whole family.
    family: int
    revoked: bool = False
    used: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def active(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


def _oauth_error(status: int, code: str, description: str, **headers: str) -> Reply:
    return Reply(
        status,
        json={"error": code, "error_description": description},
        headers={**_NO_STORE, **headers},
    )


class OAuth2Server:
    """Token and revocation endpoints, plus a guard that checks bearer tokens on other paths.

    Grants: client_credentials, refresh_token, authorization_code (with PKCE S256 or plain
    when the code was issued with a challenge) and password.
    """

    def __init__(
        self,
        api: MockAPI,
        *,
        token_path: str,
        revoke_path: str | None,
        clients: Mapping[str, str | None],
        access_ttl: float,
        refresh_ttl: float | None,
        reported_ttl: float | None,
        rotate_refresh_tokens: bool,
        detect_reuse: bool,
        scopes: Iterable[str] | None,
    ) -> None:
        if access_ttl <= 0:
            raise ConfigError(f"access_ttl must be > 0, got {access_ttl!r}")
        self.name = f"oauth2 {token_path}"
        self.token_path = token_path
        self.revoke_path = revoke_path
        self.clients = dict(clients)
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        #: `expires_in` as told to clients, when it should differ from the truth (skew tests).
        self.reported_ttl = reported_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.detect_reuse = detect_reuse
        self.scopes = frozenset(scopes) if scopes is not None else None
        self.users: dict[str, str] = {}
        self._api = api
        self._random = random.Random(f"{api.seed}/oauth2/{token_path}")
        self._tokens: dict[str, TokenRecord] = {}
        self._codes: dict[str, tuple[str, str | None, str | None, str, str | None]] = {}
        self._families = 0
        #: Every grant request, in order, as (grant_type, client_id, outcome error or "ok").
        self.log: list[tuple[str, str | None, str]] = []
        for secret in self.clients.values():
            if secret:
                api.remember_secret(secret)

    # -- helpers tests call directly ----------------------------------------------------------

    def _new_value(self, prefix: str) -> str:
        value = f"{prefix}_{self._random.getrandbits(160):040x}"
        self._api.remember_secret(value)
        return value

    def _now(self) -> float:
        return self._api.clock.monotonic()

    def _issue(self, kind: str, client_id: str, scope: str | None, family: int) -> TokenRecord:
        ttl = self.access_ttl if kind == "access" else self.refresh_ttl
        record = TokenRecord(
            value=self._new_value("at" if kind == "access" else "rt"),
            kind=kind,
            client_id=client_id,
            scope=scope,
            expires_at=None if ttl is None else self._now() + ttl,
            family=family,
        )
        self._tokens[record.value] = record
        return record

    def issue_refresh_token(self, client_id: str, *, scope: str | None = None) -> str:
        """A refresh token as if a person had authorized `client_id` already."""
        self._families += 1
        return self._issue("refresh", client_id, scope, self._families).value

    def issue_access_token(self, client_id: str = "test", *, scope: str | None = None) -> str:
        self._families += 1
        return self._issue("access", client_id, scope, self._families).value

    def authorize(
        self,
        client_id: str,
        *,
        redirect_uri: str | None = None,
        scope: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str = "S256",
    ) -> str:
        """An authorization code, as the redirect after a person's consent would carry it."""
        code = self._new_value("code")
        self._codes[code] = (
            client_id,
            redirect_uri,
            scope,
            code_challenge_method,
            code_challenge,
        )
        return code

    def add_user(self, username: str, password: str) -> None:
        """Allow the password grant for this user."""
        self.users[username] = password
        self._api.remember_secret(password)

    def revoke(self, token: str) -> None:
        """Revoke a token (and, for a refresh token, its family), as RFC 7009 describes."""
        record = self._tokens.get(token)
        if record is None:
            return
        record.revoked = True
        if record.kind == "refresh":
            self._revoke_family(record.family)

    def expire_access_tokens(self) -> None:
        """Make every access token expired now, as a server-side key rotation would."""
        now = self._now()
        for record in self._tokens.values():
            if record.kind == "access":
                record.expires_at = min(record.expires_at or now, now)

    def token(self, value: str) -> TokenRecord | None:
        return self._tokens.get(value)

    @property
    def active_access_tokens(self) -> list[str]:
        now = self._now()
        return [r.value for r in self._tokens.values() if r.kind == "access" and r.active(now)]

    def protect(self, prefix: str = "/", *, exclude: Iterable[str] = ()) -> None:
        """Require a live access token (`Authorization: Bearer ...`) on paths under `prefix`."""
        self._api.add_guard(_BearerGuard(self, prefix, tuple(exclude)))

    def reset(self) -> None:
        self._tokens.clear()
        self._codes.clear()
        self.log.clear()
        self._families = 0
        self._random.seed(f"{self._api.seed}/oauth2/{self.token_path}")

    # -- HTTP ---------------------------------------------------------------------------------

    async def respond(self, request: MockRequest) -> Reply | None:
        if request.path == self.token_path:
            if request.method != "POST":
                return _oauth_error(405, "invalid_request", "the token endpoint takes POST")
            return self._token_endpoint(request)
        if self.revoke_path is not None and request.path == self.revoke_path:
            if request.method != "POST":
                return _oauth_error(405, "invalid_request", "the revocation endpoint takes POST")
            client_id, problem = self._authenticate(request)
            if problem is not None:
                return problem
            token = request.form().get("token")
            if not token:
                return _oauth_error(400, "invalid_request", "token is required")
            record = self._tokens.get(token)
            # RFC 7009 section 2.2: unknown tokens still get 200; only the owner may revoke.
            if record is not None and record.client_id == client_id:
                self.revoke(token)
            return Reply(200, headers=_NO_STORE)
        return None

    def _authenticate(self, request: MockRequest) -> tuple[str | None, Reply | None]:
        """The client id (RFC 6749 section 2.3.1: Basic or form fields), or a 401."""
        form = request.form()
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None, _invalid_client("malformed Basic credentials")
            raw_id, _, raw_secret = decoded.partition(":")
            # Section 2.3.1: both parts are form-urlencoded before joining.
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if not client_id:
            return None, _invalid_client("no client authentication")
        if client_id not in self.clients:
            return None, _invalid_client(f"unknown client {client_id!r}")
        expected = self.clients[client_id]
        if expected is not None and not _stdlib_secrets.compare_digest(
            (secret or "").encode(), expected.encode()
        ):
            return None, _invalid_client("client authentication failed")
        return client_id, None

    def _token_endpoint(self, request: MockRequest) -> Reply:
        form = request.form()
        grant = form.get("grant_type", "")
        client_id, problem = self._authenticate(request)
        if problem is not None or client_id is None:
            self.log.append((grant, client_id, "invalid_client"))
            return problem or _invalid_client("no client authentication")
        reply, outcome = self._grant(grant, client_id, form)
        self.log.append((grant, client_id, outcome))
        return reply

    def _grant(self, grant: str, client_id: str, form: Mapping[str, str]) -> tuple[Reply, str]:
        scope = form.get("scope")
        if scope is not None and self.scopes is not None:
            unknown = set(scope.split()) - self.scopes
            if unknown:
                return _oauth_error(400, "invalid_scope", f"unknown scope {sorted(unknown)}"), (
                    "invalid_scope"
                )
        if grant == "client_credentials":
            self._families += 1
            return self._tokens_reply(client_id, scope, self._families, refresh=False), "ok"
        if grant == "password":
            username, password = form.get("username"), form.get("password")
            expected = self.users.get(username or "")
            if expected is None or expected != password:
                return _oauth_error(400, "invalid_grant", "bad username or password"), (
                    "invalid_grant"
                )
            self._families += 1
            return self._tokens_reply(client_id, scope, self._families, refresh=True), "ok"
        if grant == "refresh_token":
            return self._refresh(client_id, form.get("refresh_token", ""), scope)
        if grant == "authorization_code":
            return self._exchange_code(client_id, form)
        return (
            _oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported"),
            "unsupported_grant_type",
        )

    def _refresh(self, client_id: str, value: str, scope: str | None) -> tuple[Reply, str]:
        record = self._tokens.get(value)
        now = self._now()
        if record is None or record.kind != "refresh" or record.client_id != client_id:
            return _oauth_error(400, "invalid_grant", "unknown refresh token"), "invalid_grant"
        if record.used and self.rotate_refresh_tokens:
            if self.detect_reuse:
                # A rotated token came back: someone holds a copy. Cut the whole family off.
                self._revoke_family(record.family)
            return (
                _oauth_error(400, "invalid_grant", "refresh token was already used"),
                "invalid_grant",
            )
        if not record.active(now):
            reason = "revoked" if record.revoked else "expired"
            return _oauth_error(400, "invalid_grant", f"refresh token {reason}"), "invalid_grant"
        if self.rotate_refresh_tokens:
            record.used = True
        granted = scope or record.scope
        reply = self._tokens_reply(
            client_id,
            granted,
            record.family,
            refresh=self.rotate_refresh_tokens,
            keep_refresh=None if self.rotate_refresh_tokens else record.value,
        )
        return reply, "ok"

    def _exchange_code(self, client_id: str, form: Mapping[str, str]) -> tuple[Reply, str]:
        code = form.get("code", "")
        entry = self._codes.pop(code, None)
        if entry is None:
            return _oauth_error(400, "invalid_grant", "unknown or used code"), "invalid_grant"
        owner, redirect_uri, scope, method, challenge = entry
        if owner != client_id:
            return _oauth_error(400, "invalid_grant", "code issued to another client"), (
                "invalid_grant"
            )
        if redirect_uri is not None and form.get("redirect_uri") != redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri mismatch"), "invalid_grant"
        if challenge is not None:
            verifier = form.get("code_verifier", "")
            if method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            else:
                computed = verifier
            if not verifier or computed != challenge:
                return _oauth_error(400, "invalid_grant", "PKCE verification failed"), (
                    "invalid_grant"
                )
        self._families += 1
        return self._tokens_reply(client_id, scope, self._families, refresh=True), "ok"

    def _tokens_reply(
        self,
        client_id: str,
        scope: str | None,
        family: int,
        *,
        refresh: bool,
        keep_refresh: str | None = None,
    ) -> Reply:
        access = self._issue("access", client_id, scope, family)
        body: dict[str, object] = {
            "access_token": access.value,
            "token_type": "Bearer",
            "expires_in": int(
                self.reported_ttl if self.reported_ttl is not None else self.access_ttl
            ),
        }
        if refresh:
            body["refresh_token"] = self._issue("refresh", client_id, scope, family).value
        elif keep_refresh is not None:
            body["refresh_token"] = keep_refresh
        if scope is not None:
            body["scope"] = scope
        return Reply(200, json=body, headers=_NO_STORE)

    def _revoke_family(self, family: int) -> None:
        for record in self._tokens.values():
            if record.family == family:
                record.revoked = True

    def __repr__(self) -> str:
        return f"<OAuth2Server {self.token_path} tokens={len(self._tokens)}>"


def _invalid_client(description: str) -> Reply:
    # Section 5.2: a failed client authentication is 401 with the scheme the client tried.
    return _oauth_error(401, "invalid_client", description, **{"WWW-Authenticate": "Basic"})


class _BearerGuard:
    """RFC 6750 section 3: 401 with `WWW-Authenticate: Bearer error="invalid_token"`."""

    def __init__(self, server: OAuth2Server, prefix: str, exclude: tuple[str, ...]) -> None:
        self._server = server
        self._prefix = prefix
        self._exclude = exclude

    def check(self, request: MockRequest) -> Reply | None:
        path = request.path
        server = self._server
        if not path.startswith(self._prefix) or path in (server.token_path, server.revoke_path):
            return None
        if any(path.startswith(excluded) for excluded in self._exclude):
            return None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            return Reply(
                401,
                json={"error": "invalid_request", "error_description": "no bearer token"},
                headers={"WWW-Authenticate": 'Bearer realm="mock"'},
            )
        record = server.token(header[7:].strip())
        if record is None or record.kind != "access" or not record.active(server._now()):
            reason = "unknown" if record is None else "revoked" if record.revoked else "expired"
            return Reply(
                401,
                json={"error": "invalid_token", "error_description": f"the token is {reason}"},
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="mock", error="invalid_token", '
                        f'error_description="the token is {reason}"'
                    )
                },
            )
        return None
