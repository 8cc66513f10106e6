"""RFC 8705: tls_client_auth at the token endpoint and certificate-bound access tokens."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import tether
from tether.auth import MemoryTokenStore, OAuth2


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class MtlsServer:
    url: str
    client_tls: ssl.SSLContext
    other_tls: ssl.SSLContext
    token_forms: list[dict[str, str]] = field(default_factory=list)
    bound: dict[str, str] = field(default_factory=dict)


def _thumbprint(request: web.Request) -> str | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    if der is None:
        return None
    # RFC 8705 §3.1: x5t#S256 is the base64url SHA-256 of the DER certificate.
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@pytest.fixture
async def mtls(tmp_path: Path) -> AsyncIterator[MtlsServer]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("test-ca", ca_key, ca=True)
    server_key, client_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
    server_cert = _issue("127.0.0.1", server_key, (ca.subject, ca_key), ip="127.0.0.1")
    _write(tmp_path / "server.pem", server_cert, server_key)
    _write(
        tmp_path / "client.pem", _issue("tether-app", client_key, (ca.subject, ca_key)), client_key
    )
    _write(tmp_path / "other.pem", _issue("someone", other_key, (ca.subject, ca_key)), other_key)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.pem")
    server_tls.load_cert_chain(tmp_path / "server.pem")
    server_tls.verify_mode = ssl.CERT_REQUIRED

    def client_context(pem: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        context.load_cert_chain(tmp_path / pem)
        return context

    state = MtlsServer("", client_context("client.pem"), client_context("other.pem"))

    async def token(request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        state.token_forms.append(form)
        thumbprint = _thumbprint(request)
        if form.get("client_id") != "tether-app" or thumbprint is None:
            return web.json_response({"error": "invalid_client"}, status=401)
        access = f"mtls-at-{len(state.token_forms)}"
        state.bound[access] = thumbprint
        return web.json_response(
            {"access_token": access, "token_type": "Bearer", "expires_in": 600}
        )

    async def api(request: web.Request) -> web.StreamResponse:
        access = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if state.bound.get(access) != _thumbprint(request):
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/api", api)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    state.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


async def test_tls_client_auth_and_certificate_bound_token(
    mtls: MtlsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The client certificate authenticates the client and the token works only with it."""
    auth = OAuth2.client_credentials(
        f"{mtls.url}/token", "tether-app", tls=mtls.client_tls, store=MemoryTokenStore()
    )
    await auth.current_token()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    async with tether.Client(mtls.url, auth=auth, verify=mtls.client_tls) as c:
        assert (await c.get("/api")).json() == {"ok": True}
    assert mtls.token_forms == [{"grant_type": "client_credentials", "client_id": "tether-app"}]
    # The same token presented over a connection with another certificate is refused.
    async with tether.Client(mtls.url, auth=auth, verify=mtls.other_tls) as c:
        with pytest.raises(tether.AuthenticationError):
            await c.get("/api")


def test_tls_client_auth_needs_a_certificate() -> None:
    """Asking for tls_client_auth without an SSLContext is a ConfigError."""
    with pytest.raises(tether.ConfigError, match="tls="):
        OAuth2.client_credentials("https://a.example/token", "id", client_auth="tls_client_auth")
