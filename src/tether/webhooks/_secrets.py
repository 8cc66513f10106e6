"""Secrets as callers hold them: one or several, as str, bytes or pydantic.SecretStr.

Several secrets mean a rotation is under way: verification accepts a signature made with any of
them, and signing uses all of them where the scheme carries several signatures.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import SecretStr

from tether._errors import ConfigError

__all__ = ["SecretLike", "Secrets", "hmac_keys", "one_key", "unwrap_secrets"]

SecretLike = str | bytes | SecretStr
Secrets = SecretLike | Sequence[SecretLike]


def _unwrap(item: object, position: int) -> str | bytes:
    if isinstance(item, SecretStr):
        item = item.get_secret_value()
    if isinstance(item, bytearray | memoryview):
        item = bytes(item)
    if isinstance(item, str):
        # Stripe and Slack refuse blank secrets too: a blank secret is a missing setting.
        if not item.strip():
            raise ConfigError(f"webhook secret #{position} is empty")
        return item
    if isinstance(item, bytes):
        if not item:
            raise ConfigError(f"webhook secret #{position} is empty")
        return item
    raise ConfigError(
        f"webhook secret #{position} must be str, bytes or SecretStr, not {type(item).__name__}"
    )


def unwrap_secrets(secret: object) -> tuple[str | bytes, ...]:
    """The secrets in `secret`, in order, as plain str or bytes.

    Raises:
        ConfigError: no secret, an empty one, or one of an unusable type.
    """
    items: Sequence[object]
    if isinstance(secret, str | bytes | bytearray | memoryview | SecretStr):
        items = (secret,)
    elif isinstance(secret, Sequence):
        items = secret
    else:
        raise ConfigError(
            "secret must be str, bytes, SecretStr or a sequence of them, "
            f"not {type(secret).__name__}"
        )
    if not items:
        raise ConfigError("secret: at least one webhook secret is required")
    return tuple(_unwrap(item, position) for position, item in enumerate(items))


def hmac_keys(secrets: Sequence[str | bytes]) -> tuple[bytes, ...]:
    """HMAC keys for providers that key with the secret's UTF-8 bytes, exactly as shown to users.

    Raises:
        ConfigError: a str secret that cannot be encoded as UTF-8.
    """
    keys: list[bytes] = []
    for position, secret in enumerate(secrets):
        if isinstance(secret, bytes):
            keys.append(secret)
            continue
        try:
            keys.append(secret.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigError(f"webhook secret #{position} is not valid UTF-8 text") from None
    return tuple(keys)


def one_key(keys: Sequence[bytes], scheme: str) -> bytes:
    """The only key of a scheme whose header carries one signature.

    Raises:
        ConfigError: more than one key, which such a scheme cannot send.
    """
    if len(keys) != 1:
        raise ConfigError(
            f"the {scheme} scheme carries a single signature: sign with one secret, not {len(keys)}"
        )
    return keys[0]
