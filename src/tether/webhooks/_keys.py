"""Standard Webhooks key material: `whsec_` HMAC secrets and `whsk_`/`whpk_` Ed25519 keys.

Spec v1.0.0, "Signature scheme": symmetric secrets are random bytes (24 to 64), serialized as
base64 behind `whsec_`; asymmetric keys are an ed25519 pair, base64 behind `whsk_` (secret) and
`whpk_` (public). As in Svix, a `whsk_` key holds the 32-byte seed followed by the 32-byte public
key; a bare 32-byte seed is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import secrets
from dataclasses import dataclass, field

from tether._errors import ConfigError

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
except ImportError:  # pragma: no cover - exercised only where cryptography is absent
    HAVE_ED25519 = False
else:
    HAVE_ED25519 = True

__all__ = [
    "HmacKey",
    "Keypair",
    "SigningKey",
    "StandardKey",
    "VerifyingKey",
    "ed25519_sign",
    "ed25519_verify",
    "generate_keypair",
    "generate_secret",
    "standard_key",
]

SYMMETRIC_PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"

_SEED_SIZE = 32
_PUBLIC_SIZE = 32


@dataclass(frozen=True, slots=True)
class HmacKey:
    """A v1 (HMAC-SHA256) key."""

    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """A v1a (Ed25519) public key: verifies, cannot sign."""

    key: Ed25519PublicKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A v1a (Ed25519) secret key: signs, and verifies through its public half."""

    key: Ed25519PrivateKey = field(repr=False)

    def public(self) -> VerifyingKey:
        return VerifyingKey(self.key.public_key())


StandardKey = HmacKey | VerifyingKey | SigningKey


def _decode(text: str, position: int, what: str) -> bytes:
    # The reference libraries accept unpadded base64, so padding is restored before a strict
    # decode; anything outside the base64 alphabet is refused rather than silently skipped.
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"webhook secret #{position} is not a valid {what}") from None
    if not raw:
        raise ConfigError(f"webhook secret #{position} is empty")
    return raw


def _need_cryptography() -> None:
    if not HAVE_ED25519:  # pragma: no cover - exercised only where cryptography is absent
        raise ConfigError(
            "Standard Webhooks v1a keys (whsk_/whpk_) need the cryptography package: "
            "pip install cryptography"
        )


# Parsing a secret (base64, an Ed25519 key object) costs more than the HMAC it feeds, and a
# receiver checks every delivery against the same few secrets. Errors are not cached.
@functools.lru_cache(maxsize=64)
def standard_key(secret: str | bytes, position: int) -> StandardKey:
    """The key a Standard Webhooks secret stands for.

    bytes are a raw HMAC key, as the reference library takes them. A str is a `whpk_` public
    key, a `whsk_` secret key, or a base64 HMAC secret with or without `whsec_`.

    Raises:
        ConfigError: a str that is none of those.
    """
    if isinstance(secret, bytes):
        return HmacKey(secret)
    if secret.startswith(PUBLIC_KEY_PREFIX):
        raw = _decode(secret.removeprefix(PUBLIC_KEY_PREFIX), position, "whpk_ public key")
        if len(raw) != _PUBLIC_SIZE:
            raise ConfigError(f"webhook secret #{position}: a whpk_ key holds 32 bytes")
        _need_cryptography()
        return VerifyingKey(Ed25519PublicKey.from_public_bytes(raw))
    if secret.startswith(PRIVATE_KEY_PREFIX):
        raw = _decode(secret.removeprefix(PRIVATE_KEY_PREFIX), position, "whsk_ secret key")
        if len(raw) not in (_SEED_SIZE, _SEED_SIZE + _PUBLIC_SIZE):
            raise ConfigError(f"webhook secret #{position}: a whsk_ key holds 32 or 64 bytes")
        _need_cryptography()
        private = Ed25519PrivateKey.from_private_bytes(raw[:_SEED_SIZE])
        if len(raw) > _SEED_SIZE and private.public_key().public_bytes_raw() != raw[_SEED_SIZE:]:
            raise ConfigError(
                f"webhook secret #{position}: the whsk_ key's public half does not match its seed"
            )
        return SigningKey(private)
    return HmacKey(_decode(secret.removeprefix(SYMMETRIC_PREFIX), position, "base64 secret"))


def ed25519_verify(key: VerifyingKey, signature: bytes, content: bytes) -> bool:
    """Whether `signature` is `key`'s Ed25519 signature of `content`."""
    try:
        key.key.verify(signature, content)
    except InvalidSignature:
        return False
    return True


def ed25519_sign(key: SigningKey, content: bytes) -> bytes:
    return key.key.sign(content)


def generate_secret(nbytes: int = 32) -> str:
    """A new random Standard Webhooks signing secret.

    Args:
        nbytes: random bytes in the secret; the spec asks for 24 to 64.

    Returns:
        "whsec_" followed by the base64 of `nbytes` random bytes.

    Raises:
        ConfigError: `nbytes` outside 24..64.
    """
    count: object = nbytes  # checked at run time too: the annotation is no guarantee
    if isinstance(count, bool) or not isinstance(count, int) or not 24 <= count <= 64:
        raise ConfigError("nbytes must be an int from 24 to 64 (Standard Webhooks spec)")
    return SYMMETRIC_PREFIX + base64.b64encode(secrets.token_bytes(count)).decode("ascii")


@dataclass(frozen=True, slots=True)
class Keypair:
    """A Standard Webhooks v1a key pair. The repr shows only the public key."""

    #: "whpk_..." to hand to receivers; it verifies but cannot sign.
    public_key: str
    #: "whsk_..." (seed then public key) for the sender only.
    secret_key: str = field(repr=False)


def generate_keypair() -> Keypair:
    """A new random Ed25519 key pair for Standard Webhooks v1a signatures.

    Returns:
        The pair, serialized as `whpk_` and `whsk_` strings.

    Raises:
        ConfigError: the cryptography package is not installed.
    """
    _need_cryptography()
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    seed = private.private_bytes_raw()
    return Keypair(
        public_key=PUBLIC_KEY_PREFIX + base64.b64encode(public).decode("ascii"),
        secret_key=PRIVATE_KEY_PREFIX + base64.b64encode(seed + public).decode("ascii"),
    )
