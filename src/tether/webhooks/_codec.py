"""Strict signature decoding and constant-time matching.

Received signatures are decoded to bytes and compared as bytes, so hex case and base64 form do
not matter, while anything that is not exactly one digest of the right size is no candidate.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["digest", "first_match", "from_base64", "from_hex", "to_base64"]

_HEX = re.compile(r"[0-9a-fA-F]+")


def from_hex(text: str, size: int) -> bytes | None:
    """The `size` bytes that `text` spells in hex, or None."""
    # bytes.fromhex alone would also take spaces between the digits.
    if len(text) != 2 * size or _HEX.fullmatch(text) is None:
        return None
    return bytes.fromhex(text)


def from_base64(text: str, size: int) -> bytes | None:
    """The `size` bytes that `text` spells in padded standard base64, or None."""
    # base64.b64decode(text, validate=True) without its wrapper: the same strict decode. A str
    # is taken as it is; one with non-ASCII characters raises ValueError, as binascii.Error is.
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:
        return None
    return raw if len(raw) == size else None


def to_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=256)
def _pads(key: bytes, algorithm: str) -> tuple[_Hash, _Hash]:
    # RFC 2104: HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)). Both padded key blocks are
    # hashed once per key; each message then costs two hash copies instead of a fresh
    # OpenSSL HMAC context, which halves the work on a receiver's hot path.
    inner = hashlib.new(algorithm)
    block = inner.block_size
    if len(key) > block:
        key = hashlib.new(algorithm, key).digest()
    key = key.ljust(block, b"\0")
    inner.update(key.translate(_IPAD))
    outer = hashlib.new(algorithm, key.translate(_OPAD))
    return inner, outer


def digest(key: bytes, content: bytes, algorithm: str) -> bytes:
    """HMAC of `content` under `key`; equal to hmac.digest(key, content, algorithm)."""
    inner, outer = _pads(key, algorithm)
    state = inner.copy()
    state.update(content)
    result = outer.copy()
    result.update(state.digest())
    return result.digest()


def first_match(
    keys: Sequence[bytes], content: bytes, candidates: Sequence[bytes], algorithm: str
) -> int | None:
    """The index of the first key whose HMAC of `content` equals one of `candidates`."""
    for index, key in enumerate(keys):
        expected = digest(key, content, algorithm)
        # compare_digest: a plain == leaks how many leading bytes matched, which turns the
        # receiver into a signing oracle (Standard Webhooks spec, "Verifying signatures").
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return index
    return None
