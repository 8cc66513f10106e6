"""A small, strict OAuth 2.0 authorization server and API on loopback, scripted by tests.

It rotates refresh tokens and, like oidc-provider and django-oauth-toolkit with reuse
protection, revokes the whole grant when a used refresh token is replayed. Tokens expire on
the test's FakeClock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
import pytest
from aiohttp import web

from tether.testing import FakeClock

CLIENT_ID = "tether-app"
CLIENT_SECRET = "canary-client-secret-7f3e"


@dataclass
class Grant:
    family: str
    scope: str | None
    extra: dict[str, str]
    revoked: bool = False


@dataclass
class FakeAS:
    clock: FakeClock
    url: str = ""
    expires_in: int | None = 3600
    rotate: bool = True
    reuse_detection: bool = True
    #: When set, refresh responses carry no refresh_token (the old one stays valid).
    omit_refresh_token: bool = False
    token_type: str = "Bearer"
    #: Seconds the server's clock is ahead of the test's, for the Date header.
    date_offset: float = 0.0
    require_dpop_nonce: str | None = None
    resource_dpop_nonce: str | None = None
    public_keys: dict[str, Any] = field(default_factory=dict)
    #: Responses to give instead of a token, in order: (status, body, headers).
    faults: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    #: When set, token responses wait for it (to hold many callers at expiry).
    gate: asyncio.Event | None = None
    token_forms: list[dict[str, str]] = field(default_factory=list)
    token_headers: list[dict[str, str]] = field(default_factory=list)
    api_calls: int = 0
    api_auth: list[str] = field(default_factory=list)
    invalid_grants: int = 0
    access: dict[str, tuple[float, str, str | None]] = field(default_factory=dict)
    refresh: dict[str, Grant] = field(default_factory=dict)
    used_refresh: dict[str, Grant] = field(default_factory=dict)
    codes: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen_jti: set[str] = field(default_factory=set)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- helpers for tests --------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def token_requests(self) -> int:
        return len(self.token_forms)

    def issue_refresh_token(self, scope: str | None = None) -> str:
        token = f"rt-{next(self.counter)}-{secrets.token_hex(4)}"
        self.refresh[token] = Grant(family=token, scope=scope, extra={})
        return token

    def revoke_access(self) -> None:
        self.access.clear()

    def approve_device(self, user_code: str) -> None:
        for device in self.devices.values():
            if device["user_code"] == user_code:
                device["approved"] = True

    # -- endpoints ------------------------------------------------------------------------------

    def _date(self) -> dict[str, str]:
        return {"Date": formatdate(self.clock.time() + self.date_offset, usegmt=True)}

    def _error(self, status: int, code: str, **headers: str) -> web.Response:
        return web.json_response(
            {"error": code, "error_description": f"{code} (fake)"},
            status=status,
            headers={**self._date(), **headers},
        )

    def _client(self, request: web.Request, form: dict[str, str]) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = raw.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            return client_id if (client_id, secret) == (CLIENT_ID, CLIENT_SECRET) else None
        if "client_assertion" in form:
            client_id = form.get("client_id", CLIENT_ID)
            key = self.public_keys.get(client_id)
            if key is None:
                return None
            try:
                claims = jwt.decode(
                    form["client_assertion"],
                    key,
                    algorithms=["RS256", "ES256"],
                    audience=self.token_url,
                    options={"verify_exp": False, "verify_iat": False},
                )
            except jwt.InvalidTokenError:
                return None
            if claims["iss"] != client_id or claims["sub"] != client_id:
                return None
            if claims["jti"] in self.seen_jti:
                return None  # RFC 7523 §3: a replayed assertion is refused
            self.seen_jti.add(claims["jti"])
            return client_id
        if form.get("client_secret") is not None:
            pair = (form.get("client_id"), form.get("client_secret"))
            return CLIENT_ID if pair == (CLIENT_ID, CLIENT_SECRET) else None
        if form.get("client_id") == "public-cli":
            return "public-cli"
        return None

    def _check_dpop(self, request: web.Request, method: str, url: str) -> str | None:
        """The JWK thumbprint of a valid DPoP proof, or an error code."""
        proof = request.headers.get("DPoP")
        if proof is None:
            return None
        header = jwt.get_unverified_header(proof)
        key = jwt.PyJWK(header["jwk"])
        claims = jwt.decode(proof, key.key, algorithms=[header["alg"]])
        assert header["typ"] == "dpop+jwt"
        assert claims["htm"] == method
        assert claims["htu"] == url
        return json.dumps(header["jwk"], sort_keys=True)

    def _tokens(
        self, scope: str | None, extra: dict[str, str], family: str | None
    ) -> dict[str, Any]:
        access = f"at-{next(self.counter)}-{secrets.token_hex(4)}"
        expires = self.clock.time() + (self.expires_in or 3600)
        self.access[access] = (expires, self.token_type, scope)
        body: dict[str, Any] = {"access_token": access, "token_type": self.token_type}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if scope:
            body["scope"] = scope
        if family is not None:
            refresh = f"rt-{next(self.counter)}-{secrets.token_hex(4)}"
            self.refresh[refresh] = Grant(family=family, scope=scope, extra=extra)
            body["refresh_token"] = refresh
        return body

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_forms.append(form)
        self.token_headers.append(dict(request.headers))
        if self.gate is not None:
            await self.gate.wait()
        if self.faults:
            status, body, headers = self.faults.pop(0)
            return web.json_response(body, status=status, headers={**self._date(), **headers})
        if self.require_dpop_nonce is not None:
            proof = request.headers.get("DPoP")
            claims = jwt.decode(proof, options={"verify_signature": False}) if proof else {}
            if claims.get("nonce") != self.require_dpop_nonce:
                return self._error(400, "use_dpop_nonce", **{"DPoP-Nonce": self.require_dpop_nonce})
        if self._check_dpop(request, "POST", self.token_url) is not None:
            self.token_type = "DPoP"
        client = self._client(request, form)
        grant_type = form.get("grant_type")
        if client is None:
            return self._error(401, "invalid_client")
        if grant_type == "client_credentials":
            extra = {k: v for k, v in form.items() if k in ("audience", "resource")}
            return web.json_response(
                self._tokens(form.get("scope"), extra, None), headers=self._date()
            )
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            grant = self.refresh.get(token)
            if grant is None or grant.revoked:
                used = self.used_refresh.get(token)
                if used is not None and self.reuse_detection:
                    # Replay of a rotated refresh token: the whole family dies.
                    for other in [*self.refresh.values(), *self.used_refresh.values()]:
                        if other.family == used.family:
                            other.revoked = True
                self.invalid_grants += 1
                return self._error(400, "invalid_grant")
            if self.rotate and not self.omit_refresh_token:
                del self.refresh[token]
                self.used_refresh[token] = grant
                body = self._tokens(grant.scope, grant.extra, grant.family)
            else:
                body = self._tokens(grant.scope, grant.extra, None)
            return web.json_response(body, headers=self._date())
        if grant_type == "authorization_code":
            entry = self.codes.pop(form.get("code", ""), None)
            if entry is None:
                return self._error(400, "invalid_grant")
            challenge, redirect_uri, scope = entry
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if computed != challenge or form.get("redirect_uri") != redirect_uri:
                return self._error(400, "invalid_grant")
            family = f"fam-{next(self.counter)}"
            return web.json_response(self._tokens(scope, {}, family), headers=self._date())
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            device = self.devices.get(form.get("device_code", ""))
            if device is None:
                return self._error(400, "expired_token")
            if device.get("slow_down"):
                device["slow_down"] = False
                return self._error(400, "slow_down")
            if not device.get("approved"):
                return self._error(400, "authorization_pending")
            del self.devices[form["device_code"]]
            family = f"fam-{next(self.counter)}"
            return web.json_response(
                self._tokens(device["scope"], {}, family), headers=self._date()
            )
        return self._error(400, "unsupported_grant_type")

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = f"code-{next(self.counter)}"
        self.codes[code] = (query["code_challenge"], query["redirect_uri"], query.get("scope"))
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        raise web.HTTPFound(target)

    async def device(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        device_code = f"dc-{next(self.counter)}"
        user_code = f"UC-{next(self.counter)}"
        self.devices[device_code] = {"user_code": user_code, "scope": form.get("scope")}
        return web.json_response(
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": f"{self.url}/activate",
                "expires_in": 600,
                "interval": 5,
            }
        )

    async def api(self, request: web.Request) -> web.StreamResponse:
        self.api_calls += 1
        auth = request.headers.get("Authorization", "")
        self.api_auth.append(auth)
        scheme, _, token = auth.partition(" ")
        entry = self.access.get(token)
        if scheme == "DPoP" and self.resource_dpop_nonce is not None:
            proof = request.headers.get("DPoP", "")
            claims = jwt.decode(proof, options={"verify_signature": False})
            if claims.get("nonce") != self.resource_dpop_nonce:
                return web.Response(
                    status=401,
                    headers={
                        "WWW-Authenticate": 'DPoP error="use_dpop_nonce"',
                        "DPoP-Nonce": self.resource_dpop_nonce,
                    },
                )
        if entry is None or entry[0] <= self.clock.time():
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'},
            )
        if scheme.lower() not in (entry[1].lower(), "zoho-oauthtoken"):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        return web.json_response({"ok": True, "token_type": scheme})


@pytest.fixture
async def fake_as() -> AsyncIterator[FakeAS]:
    server = FakeAS(clock=FakeClock())
    app = web.Application()
    app.router.add_post("/token", server.token)
    app.router.add_get("/authorize", server.authorize)
    app.router.add_post("/device", server.device)
    app.router.add_get("/api", server.api)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    if server.gate is not None:
        server.gate.set()
    await runner.cleanup()
