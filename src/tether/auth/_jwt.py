"""JWTs we sign ourselves: `SignedJWT` credentials, client assertions (RFC 7523), keys."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import SecretStr

from tether._clock import Clock, SystemClock
from tether._core._oauth import Lifecycle
from tether._errors import ConfigError
from tether._redact import Redactor
from tether._types import Send
from tether.auth._base import Credential

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    # Declared dependencies; without them `import tether` still works and only the JWT
    # features say what is missing.
    CRYPTO_MISSING = True
else:
    CRYPTO_MISSING = False

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from tether._models import Request, Response

    PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

__all__ = ["SignedJWT", "SigningKey", "load_signing_key", "require_crypto"]


def require_crypto(feature: str) -> None:
    if CRYPTO_MISSING:
        raise ConfigError(
            f"{feature} needs PyJWT and cryptography: pip install 'PyJWT>=2.8' 'cryptography>=41'"
        )


_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512"}
_SYMMETRIC = {"HS256", "HS384", "HS512"}
_REGISTERED = ("iss", "sub", "aud")


class SigningKey:
    """A key to sign JWTs with: an HMAC secret or an RSA/EC private key. Its repr hides it."""

    __slots__ = ("_private", "_secret", "algorithm", "key_id")

    def __init__(
        self,
        key: str | bytes | SecretStr | PrivateKey,
        algorithm: str,
        *,
        key_id: str | None = None,
    ) -> None:
        require_crypto("JWT signing")
        self.algorithm = algorithm
        self.key_id = key_id
        self._secret: SecretStr | None = None
        self._private: PrivateKey | None = None
        if algorithm in _SYMMETRIC:
            if isinstance(key, SecretStr):
                key = key.get_secret_value()
            if isinstance(key, bytes):
                key = key.decode("latin-1")
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{algorithm} needs a non-empty shared secret")
            if len(key.encode("latin-1", "replace")) < 32 and algorithm == "HS256":
                # RFC 7518 §3.2: the key must be at least as long as the hash output.
                raise ConfigError("an HS256 secret must be at least 32 bytes (RFC 7518 §3.2)")
            self._secret = SecretStr(key)
        elif algorithm in _ASYMMETRIC:
            self._private = _private_key(key)
            wants_ec = algorithm.startswith("ES")
            if wants_ec != isinstance(self._private, ec.EllipticCurvePrivateKey):
                raise ConfigError(f"{algorithm} needs an {'EC' if wants_ec else 'RSA'} private key")
        else:
            raise ConfigError(
                f"unsupported JWT algorithm {algorithm!r}; use one of "
                f"{', '.join(sorted(_SYMMETRIC | _ASYMMETRIC))}"
            )

    def sign(self, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None) -> str:
        extra = dict(headers or {})
        if self.key_id is not None:
            extra.setdefault("kid", self.key_id)
        key: Any = self._private if self._private is not None else self._secret_bytes()
        return jwt.encode(dict(claims), key, algorithm=self.algorithm, headers=extra or None)

    def _secret_bytes(self) -> bytes:
        assert self._secret is not None  # noqa: S101 - set for every symmetric algorithm
        return self._secret.get_secret_value().encode("latin-1")

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (RFC 7517), for DPoP proofs and client registration."""
        if self._private is None:
            raise ConfigError("a shared secret has no public key")
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = algorithm.to_jwk(self._private.public_key(), as_dict=True)
        return {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}

    def secrets(self) -> list[str]:
        if self._secret is not None:
            return [self._secret.get_secret_value()]
        if self._private is not None:
            pem = self._private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            # The base64 lines of the PEM: any one of them in a log would leak part of the key.
            return [line for line in pem.splitlines() if line and not line.startswith("-----")]
        return []

    def __repr__(self) -> str:
        return f"SigningKey(algorithm={self.algorithm!r}, key_id={self.key_id!r})"


def _private_key(key: Any) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    if isinstance(key, SecretStr):
        key = key.get_secret_value()
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes):
        raise ConfigError("a private key must be PEM text or a cryptography private key")
    try:
        loaded = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the private key: {type(exc).__name__}") from None
    if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError("only RSA and EC private keys are supported")
    return loaded


def load_signing_key(
    key: str | bytes | SecretStr | PrivateKey | SigningKey, algorithm: str, key_id: str | None
) -> SigningKey:
    if isinstance(key, SigningKey):
        return key
    return SigningKey(key, algorithm, key_id=key_id)


class SignedJWT(Credential):
    """A JWT we sign ourselves and send as `Authorization: Bearer <jwt>`.

    `iat`, `exp` and a fresh `jti` are added on every signing; `iss`, `sub`, `aud` and any
    other claims come from `claims`. The token is re-signed before it expires, at the same
    point an OAuth2 token would be refreshed (`expires - min(60 s, 10-20 % of lifetime)`).
    GitHub Apps, Apple's developer tokens and Zoom's server-to-server tokens work this way.

    Args:
        key: An HMAC secret (HS*) or a private key, PEM or `cryptography` object (RS*, ES*).
        algorithm: HS256, HS384, HS512, RS256, RS384, RS512, PS256, ES256, ES384 or ES512.
        claims: The fixed claims, e.g. `{"iss": "123456", "aud": "https://api.example.com"}`.
        lifetime: Seconds from `iat` to `exp`.
        key_id: The `kid` header, when the server needs it to pick the key.
        header, scheme: Where the token goes: `header: scheme token`.
        backdate: Seconds `iat` is set in the past, for servers whose clocks run behind
            (GitHub recommends 60).
    """

    __slots__ = (
        "_backdate",
        "_cached",
        "_claims",
        "_clock",
        "_key",
        "_lifecycle",
        "_lock",
        "_redactors",
        "_seen",
        "_value",
        "header",
        "lifetime",
        "scheme",
    )

    def __init__(
        self,
        key: str | bytes | SecretStr | PrivateKey | SigningKey,
        algorithm: str = "HS256",
        claims: Mapping[str, Any] | None = None,
        lifetime: float = 3600,
        *,
        key_id: str | None = None,
        header: str = "Authorization",
        scheme: str = "Bearer",
        backdate: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        if lifetime <= 0:
            raise ConfigError("SignedJWT lifetime must be positive")
        self._key = load_signing_key(key, algorithm, key_id)
        claims = dict(claims or {})
        for reserved in ("iat", "exp", "jti"):
            if reserved in claims:
                raise ConfigError(f"SignedJWT sets {reserved!r} itself; leave it out of claims")
        self._claims = claims
        self.lifetime = float(lifetime)
        self.header = header
        self.scheme = scheme
        self._backdate = backdate
        self._clock: Clock = clock or SystemClock()
        self._lifecycle = Lifecycle()
        self._cached: tuple[str, float] | None = None  # (token, re-sign at)
        self._lock = threading.Lock()
        self._seen: tuple[str, ...] = ()
        self._value: tuple[str, str] | None = None  # (token, header value)
        self._redactors: dict[int, tuple[Redactor, tuple[str, ...], Redactor]] = {}

    def token(self) -> str:
        """The current JWT, signed anew when it is due."""
        now = self._clock.time()
        cached = self._cached
        if cached is not None and now < cached[1]:
            return cached[0]
        with self._lock:
            cached = self._cached
            if cached is not None and now < cached[1]:
                return cached[0]
            issued = int(now - self._backdate)
            expires = int(now + self.lifetime)
            claims = {**self._claims, "iat": issued, "exp": expires, "jti": uuid.uuid4().hex}
            token = self._key.sign(claims)
            due = self._lifecycle.refresh_at(now, float(expires), 0.5) or float(expires)
            self._cached = (token, due)
            self._seen = (*self._seen[-7:], token)
            return token

    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        token = self.token()
        value = self._value
        if value is None or value[0] is not token:
            value = self._value = (token, f"{self.scheme} {token}" if self.scheme else token)
        request.headers[self.header] = value[1]
        request.redactor = self._redactor_for(request.redactor)
        return next_(request)

    def _redactor_for(self, base: Redactor) -> Redactor:
        # Tokens signed after the client was built are hidden too; merged once per new token.
        seen = self._seen
        cached = self._redactors.get(id(base))
        if cached is not None and cached[0] is base and cached[1] is seen:
            return cached[2]
        merged = base.merge(Redactor(secrets=seen))
        if len(self._redactors) > 32:
            self._redactors.clear()
        self._redactors[id(base)] = (base, seen, merged)
        return merged

    def redactor(self) -> Redactor:
        return Redactor(headers=[self.header], secrets=self._key.secrets())

    def __repr__(self) -> str:
        return (
            f"SignedJWT(algorithm={self._key.algorithm!r}, claims={sorted(self._claims)}, "
            f"lifetime={self.lifetime:g})"
        )


def client_assertion(
    key: SigningKey, *, client_id: str, audience: str, now: float, lifetime: float = 60.0
) -> str:
    """A `private_key_jwt` client assertion (RFC 7523 §3, OpenID Connect Core §9).

    `iss` and `sub` are the client id, `aud` the token endpoint, and `jti` unique per assertion
    so the server can reject a replay (RFC 7523 §3, item 7).
    """
    issued = int(now)
    return key.sign(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": issued,
            "exp": issued + int(lifetime),
            "jti": uuid.uuid4().hex,
        }
    )
