"""The receiver's own building blocks agree with the standard library they replace."""

from __future__ import annotations

import base64
import binascii
import codecs
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.stores._inbox import decode_headers, encode_headers
from tether.webhooks._codec import digest, from_base64
from tether.webhooks._delivery import ReceivedWebhook
from tether.webhooks._result import VerifiedWebhook


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
@given(key=st.binary(max_size=300), content=st.binary(max_size=2000))
def test_digest_is_hmac(algorithm: str, key: bytes, content: bytes) -> None:
    """Keys shorter than, equal to and longer than the hash's block all give RFC 2104 HMAC."""
    assert digest(key, content, algorithm) == hmac.digest(key, content, algorithm)


def test_digest_keeps_keys_apart_when_cached() -> None:
    """Precomputed pads are per key and algorithm: one key's state never serves another."""
    first = digest(b"key-one", b"body", "sha256")
    assert digest(b"key-two", b"body", "sha256") != first
    assert digest(b"key-one", b"body", "sha512") != first
    assert digest(b"key-one", b"body", "sha256") == first


# Printable ASCII is what real header values are, and what encode_headers formats into a
# template; anything else takes the escaping path. Both must give json.dumps's output.
_ASCII = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))
_ANY_TEXT = st.one_of(_ASCII, st.text())


@given(st.lists(st.tuples(_ANY_TEXT, _ANY_TEXT), max_size=20))
def test_encoded_headers_are_compact_json_and_decode_back(pairs: list[tuple[str, str]]) -> None:
    headers = tuple(pairs)
    encoded = encode_headers(headers)
    assert encoded == json.dumps(headers, separators=(",", ":"))
    assert decode_headers(encoded) == headers


def test_encoded_headers_reuse_a_template_only_for_the_same_names() -> None:
    first = (("content-type", "application/json"), ("x-100%", "50% off"))
    again = (("content-type", "text/plain"), ("x-100%", "%s"))
    other = (("x-100%", "a"), ("content-type", "b"))
    for headers in (first, again, other, first):
        assert encode_headers(headers) == json.dumps(headers, separators=(",", ":"))
    # A value that needs escaping, under names whose template exists.
    quoted = (("content-type", 'say "hi"\\'), ("x-100%", "tab\there"))
    assert encode_headers(quoted) == json.dumps(quoted, separators=(",", ":"))


def _delivery(body: bytes) -> ReceivedWebhook:
    verified = VerifiedWebhook("standard", 0, 0, "msg")
    return ReceivedWebhook(
        source="s", headers={}, body=body, content_type="application/json", verified=verified
    )


def _reference(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"a"}',
        '{"name":"Zoë €"}'.encode(),
        codecs.BOM_UTF8 + b'{"type":"bom"}',
        '{"type":"utf16"}'.encode("utf-16"),
        '{"type":"utf16le"}'.encode("utf-16-le"),
        '{"type":"utf16be"}'.encode("utf-16-be"),
        '{"type":"utf32"}'.encode("utf-32"),
        b'"\\ud800"',
        b"\xff\xfe\x00",
        b"{",
        b"",
        b"7",
        b" 7",
        b'\t\r\n {"a": [1, 2.5, null, true]} \n',
        b'{"a":1} {"b":2}',
        b'{"a":1} x',
        b"  ",
        b"\n",
        b'{"type":"a"}\x00',
        b"[" * 10 + b"]" * 10,
        b"[" * 5000 + b"]" * 5000,
        b'["\\ud800", "\\udc00\\ud800"]',
        b'{"n": [NaN, Infinity, -Infinity, 1e400, 123456789012345678901234567890]}',
        b'{"a": 1, "a": 2}',
    ],
)
def test_the_parsed_body_matches_json_loads(body: bytes) -> None:
    """UTF-8 is read without sniffing; BOMs, UTF-16/32 and bad bytes go to json.loads."""
    assert repr(_delivery(body).json()) == repr(_reference(body))  # repr: NaN != NaN


@given(st.binary(max_size=64))
def test_the_parsed_body_matches_json_loads_for_any_bytes(body: bytes) -> None:
    assert _delivery(body).json() == _reference(body)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(
    _JSON_VALUES,
    st.sampled_from(["", " ", "\n\t", " \r\n "]),
    st.sampled_from(["", " ", "\n", " x", ",1"]),
)
def test_the_parsed_body_matches_json_loads_for_documents(
    value: object, before: str, after: str
) -> None:
    body = (before + json.dumps(value, ensure_ascii=False) + after).encode()
    assert repr(_delivery(body).json()) == repr(_reference(body))  # repr: NaN != NaN


@given(
    st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?", fullmatch=True)
)
def test_numbers_parse_exactly_as_json_loads_parses_them(number: str) -> None:
    """Big integers stay exact and every float rounds as json's parser rounds it."""
    body = ('{"n":' + number + "}").encode()
    assert repr(_delivery(body).json()) == repr(_reference(body))


@given(st.text(max_size=60), st.sampled_from([16, 32, 64]))
def test_base64_signatures_decode_as_b64decode_with_validation(text: str, size: int) -> None:
    """Strict: padding, the alphabet and the exact size, as base64.b64decode(validate=True)."""
    try:
        expected: bytes | None = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    if expected is not None and len(expected) != size:
        expected = None
    assert from_base64(text, size) == expected


@pytest.mark.parametrize("size", [32, 64])
def test_real_signatures_decode(size: int) -> None:
    raw = bytes(range(size))
    encoded = base64.b64encode(raw).decode()
    assert from_base64(encoded, size) == raw
    assert from_base64(encoded.rstrip("="), size) is None
    assert from_base64(encoded + "\n", size) is None
    assert from_base64(" " + encoded, size) is None


def test_header_templates_chosen_by_senders_cannot_grow_memory() -> None:
    """Templates are kept up to a bound; beyond it headers are still encoded exactly."""
    from tether.stores import _inbox

    for n in range(_inbox._MAX_TEMPLATES + 50):
        headers = ((f"x-random-{n}", "v"),)
        assert encode_headers(headers) == json.dumps(headers, separators=(",", ":"))
    assert len(_inbox._TEMPLATES) <= _inbox._MAX_TEMPLATES
