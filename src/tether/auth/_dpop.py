"""DPoP (RFC 9449): proof-of-possession JWTs that bind tokens to a key the client holds."""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from tether._errors import ConfigError
from tether.auth._jwt import SigningKey, require_crypto

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["DPoPKey", "jwk_thumbprint"]


def _htu(url: str) -> str:
    # RFC 9449 §4.2: htu is the target URI without query and fragment.
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 of the required members, sorted, without whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = "{" + ",".join(f'"{k}":"{jwk[k]}"' for k in required) + "}"
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class DPoPKey:
    """The key a client proves possession of, and the nonces servers gave it.

    `DPoPKey.generate()` makes a new P-256 key. For a public client the refresh token is bound
    to this key (RFC 9449 §5), so a key that should outlive the process must be loaded from a
    PEM the application keeps as carefully as the token store: `DPoPKey(pem, "ES256")`.
    """

    __slots__ = ("_jwk", "_key", "_lock", "_nonces")

    def __init__(
        self, key: str | bytes | SecretStr | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        algorithm: str = "ES256",
    ) -> None:  # fmt: skip
        if algorithm.startswith("HS"):
            raise ConfigError("DPoP needs an asymmetric key (RFC 9449 §4.2)")
        self._key = SigningKey(key, algorithm)
        self._jwk = self._key.public_jwk()
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> DPoPKey:
        require_crypto("DPoP")
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - optional

        return cls(ec.generate_private_key(ec.SECP256R1()), "ES256")

    @property
    def algorithm(self) -> str:
        return self._key.algorithm

    @property
    def jwk(self) -> dict[str, Any]:
        return dict(self._jwk)

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint, the `jkt` a server binds tokens to."""
        return jwk_thumbprint(self._jwk)

    def remember_nonce(self, url: str, nonce: str | None) -> None:
        """Keep the `DPoP-Nonce` a server sent (RFC 9449 §8, §9), per origin."""
        if nonce:
            with self._lock:
                self._nonces[_origin(url)] = nonce

    def nonce_for(self, url: str) -> str | None:
        return self._nonces.get(_origin(url))

    def proof(self, method: str, url: str, *, now: float, access_token: str | None = None) -> str:
        """A DPoP proof JWT for one request (RFC 9449 §4.2)."""
        claims: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method.upper(),
            "htu": _htu(url),
            "iat": int(now),
        }
        nonce = self.nonce_for(url)
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            # RFC 9449 §4.2: ath is the base64url SHA-256 of the access token it accompanies.
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return self._key.sign(claims, headers={"typ": "dpop+jwt", "jwk": self._jwk})

    def secrets(self) -> list[str]:
        return self._key.secrets()

    def __repr__(self) -> str:
        return f"DPoPKey(algorithm={self.algorithm!r}, jkt={self.thumbprint()!r})"
