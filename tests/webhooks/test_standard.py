"""Standard Webhooks specifics: secret forms, v1a keys, signature lists, ids, header prefixes."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from tether import webhooks
from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

from ._support import BODY, CANARY, NON_UTF8_BODY, NOW

Reason = WebhookVerificationReason
KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def sign(secret: webhooks.Secrets, *, body: bytes = BODY, msg_id: str = "msg_1") -> dict[str, str]:
    return webhooks.sign("standard", secret=secret, body=body, msg_id=msg_id, timestamp=NOW)


def verify(
    secret: webhooks.Secrets, headers: dict[str, str], *, body: bytes = BODY
) -> webhooks.VerifiedWebhook:
    return webhooks.verify("standard", secret=secret, headers=headers, body=body, now=NOW)


def failure_reason(secret: webhooks.Secrets, headers: dict[str, str]) -> WebhookVerificationReason:
    with pytest.raises(WebhookVerificationError) as caught:
        verify(secret, headers)
    return caught.value.reason


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        SECRET.removeprefix("whsec_"),  # the reference libraries accept the bare base64
        SECRET.rstrip("="),  # ...and unpadded base64
        SecretStr(SECRET),
        KEY,  # bytes are the raw key, as the reference library takes them
    ],
    ids=["whsec", "bare", "unpadded", "secretstr", "raw-bytes"],
)
def test_every_form_of_the_same_secret_is_the_same_key(form: webhooks.SecretLike) -> None:
    """whsec_, bare and unpadded base64, SecretStr and raw bytes all name one key."""
    verify(form, sign(SECRET))
    verify(SECRET, sign(form))


@pytest.mark.parametrize("bad", ["whsec_!!!not-base64!!!", "whsec_", "whsec_a", "not base64"])
def test_a_secret_that_is_not_base64_is_a_configuration_error(bad: str) -> None:
    """An undecodable symmetric secret is a ConfigError naming its position, not its value."""
    with pytest.raises(ConfigError, match="#0"):
        verify(bad, sign(SECRET))


def test_an_undecodable_secret_never_shows_in_the_error() -> None:
    """A secret rejected as malformed is not echoed in the ConfigError."""
    bad = f"whsec_{CANARY}!"
    with pytest.raises(ConfigError) as caught:
        sign([SECRET, bad])
    assert CANARY not in str(caught.value)
    assert CANARY not in repr(caught.value)


def test_v1a_signatures_verify_with_the_public_key() -> None:
    """A whsk_ key signs v1a; its whpk_ public key verifies the delivery."""
    pair = webhooks.generate_keypair()
    headers = sign(pair.secret_key, body=NON_UTF8_BODY)
    assert headers["webhook-signature"].startswith("v1a,")
    result = verify(pair.public_key, headers, body=NON_UTF8_BODY)
    assert result.secret_index == 0
    verify(pair.secret_key, headers, body=NON_UTF8_BODY)


def test_v1a_signatures_fail_with_another_public_key() -> None:
    """A v1a signature does not verify under an unrelated public key."""
    headers = sign(webhooks.generate_keypair().secret_key)
    other = webhooks.generate_keypair().public_key
    assert failure_reason(other, headers) is Reason.NO_MATCHING_SIGNATURE


def test_v1_and_v1a_can_be_sent_together_for_a_migration() -> None:
    """Signing with an HMAC secret and a whsk_ key sends both; either receiver verifies."""
    pair = webhooks.generate_keypair()
    headers = sign([SECRET, pair.secret_key])
    versions = [entry.split(",")[0] for entry in headers["webhook-signature"].split(" ")]
    assert versions == ["v1", "v1a"]
    verify(SECRET, headers)
    verify(pair.public_key, headers)
    assert (
        verify([webhooks.generate_keypair().public_key, pair.public_key], headers).secret_index == 1
    )


def test_an_hmac_secret_does_not_accept_a_v1a_signature() -> None:
    """A v1a entry is no candidate for a symmetric secret, so only v1 entries can match it."""
    headers = sign(webhooks.generate_keypair().secret_key)
    assert failure_reason(SECRET, headers) is Reason.NO_MATCHING_SIGNATURE


def test_a_public_key_cannot_sign() -> None:
    """Signing with a whpk_ key is a ConfigError pointing at the whsk_ key."""
    with pytest.raises(ConfigError, match="whsk_"):
        sign(webhooks.generate_keypair().public_key)


def test_a_bare_32_byte_seed_is_a_signing_key() -> None:
    """whsk_ may hold just the 32-byte seed; it signs like the 64-byte form."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes_raw()
    short = "whsk_" + base64.b64encode(seed).decode()
    headers = sign(short)
    verify("whpk_" + base64.b64encode(public).decode(), headers)


@pytest.mark.parametrize(
    "key",
    [
        "whsk_" + base64.b64encode(b"x" * 31).decode(),
        "whsk_" + base64.b64encode(bytes(32) + b"y" * 32).decode(),  # public half mismatched
        "whpk_" + base64.b64encode(b"x" * 33).decode(),
        "whpk_%%%",
    ],
)
def test_malformed_asymmetric_keys_are_configuration_errors(key: str) -> None:
    """A whsk_/whpk_ key of the wrong size, encoding or consistency is a ConfigError."""
    with pytest.raises(ConfigError):
        verify(key, sign(SECRET))


def test_the_keypair_repr_hides_the_secret_key() -> None:
    """A Keypair's repr shows the public key only."""
    pair = webhooks.generate_keypair()
    assert pair.public_key.startswith("whpk_")
    assert pair.secret_key.startswith("whsk_")
    assert pair.secret_key not in repr(pair)
    assert pair.public_key in repr(pair)


def test_generated_secrets_are_random_whsec_keys_of_the_requested_size() -> None:
    """generate_secret() makes distinct whsec_ secrets holding 24 to 64 random bytes."""
    first, second = webhooks.generate_secret(), webhooks.generate_secret()
    assert first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert len(base64.b64decode(webhooks.generate_secret(24).removeprefix("whsec_"))) == 24
    verify(first, sign(first))
    for bad in (23, 65, True, 32.0):
        with pytest.raises(ConfigError):
            webhooks.generate_secret(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "entries",
    [
        ["v1"],  # no comma
        ["v1,"],  # empty signature
        ["v1,not base64!"],
        ["v1,AAAA"],  # base64 of the wrong length
        ["v2,{good}"],  # an unknown version carrying a good HMAC
        ["v1a,{good}"],  # the HMAC under the Ed25519 version
        ["", "", ""],
        [",{good}"],
    ],
)
def test_malformed_and_unknown_entries_are_skipped_not_fatal(entries: list[str]) -> None:
    """Bad entries alone find no match; put before a good entry they are skipped."""
    good_entry = sign(SECRET)["webhook-signature"]
    good = good_entry.removeprefix("v1,")
    header = " ".join(entry.format(good=good) for entry in entries)
    base = sign(SECRET)
    assert failure_reason(SECRET, base | {"webhook-signature": header}) is (
        Reason.NO_MATCHING_SIGNATURE if header.strip() else Reason.MISSING_HEADER
    )
    verify(SECRET, base | {"webhook-signature": f"{header} {good_entry}"})


def test_ids_with_a_dot_are_refused() -> None:
    """A webhook-id containing '.' is malformed: it would make the signed content ambiguous."""
    headers = sign(SECRET) | {"webhook-id": "msg.1"}
    assert failure_reason(SECRET, headers) is Reason.MALFORMED_HEADER
    with pytest.raises(ConfigError, match="msg_id"):
        sign(SECRET, msg_id="msg.1")


def test_the_id_is_signed() -> None:
    """Changing webhook-id breaks the signature."""
    headers = sign(SECRET) | {"webhook-id": "msg_2"}
    assert failure_reason(SECRET, headers) is Reason.NO_MATCHING_SIGNATURE


def test_signing_needs_a_message_id() -> None:
    """sign() without msg_id is a ConfigError: the id must be stable across retries."""
    with pytest.raises(ConfigError, match="msg_id"):
        webhooks.sign("standard", secret=SECRET, body=BODY, timestamp=NOW)


def test_svix_style_header_prefix() -> None:
    """header_prefix="svix" reads and writes svix-id, svix-timestamp and svix-signature."""
    headers = webhooks.sign(
        "standard", secret=SECRET, body=BODY, msg_id="msg_1", timestamp=NOW, header_prefix="svix"
    )
    assert set(headers) == {"svix-id", "svix-timestamp", "svix-signature"}
    webhooks.verify(
        "standard", secret=SECRET, headers=headers, body=BODY, now=NOW, header_prefix="svix"
    )
    with pytest.raises(WebhookVerificationError) as caught:
        verify(SECRET, headers)
    assert caught.value.reason is Reason.MISSING_HEADER
    with pytest.raises(ConfigError, match="header_prefix"):
        webhooks.verify(
            "standard", secret=SECRET, headers=headers, body=BODY, header_prefix="svix id"
        )
