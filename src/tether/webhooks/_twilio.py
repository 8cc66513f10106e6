"""Twilio: `X-Twilio-Signature`, base64 HMAC over the URL and the sorted form parameters.

Per twilio.com/docs/usage/webhooks/webhooks-security: the signed text is the full URL Twilio
requested (scheme, host, path, query string) followed, for form-encoded POSTs, by each
parameter's name and value, sorted by name. JSON bodies are not parameters: Twilio adds a
`bodySHA256` query parameter holding the hex SHA-256 of the body and signs the URL alone.
The key is the auth token's UTF-8 text, or a SharedKey secret when the Webhook Setting names
one (webhooks/webhook-shared-keys), which may use HMAC-SHA256 instead of HMAC-SHA1.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, urlsplit

from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason
from tether.webhooks._base import Incoming, Outgoing
from tether.webhooks._codec import digest, from_base64, from_hex, to_base64
from tether.webhooks._options import Options
from tether.webhooks._result import VerifiedWebhook, verified
from tether.webhooks._secrets import hmac_keys, one_key

__all__ = ["TwilioScheme"]

SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
BODY_HASH_PARAM = "bodySHA256"

# name -> (hashlib name, digest size, the name Twilio's settings header uses)
_ALGORITHMS = {"sha1": ("sha1", 20, "HMAC_SHA1"), "sha256": ("sha256", 32, "HMAC_SHA256")}
_BY_TWILIO_NAME = {twilio: name for name, (_, _, twilio) in _ALGORITHMS.items()}

Params = tuple[tuple[str, str], ...]


def _params(value: object) -> Params:
    """Form parameters from a mapping (values may be lists) or from (name, value) pairs."""
    pairs: list[tuple[object, object]] = []
    if isinstance(value, Mapping):
        for name, item in value.items():
            if isinstance(item, list | tuple):
                pairs.extend((name, one) for one in item)
            else:
                pairs.append((name, item))
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        for pair in value:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ConfigError("twilio option params= pairs must be (name, value) tuples")
            pairs.append((pair[0], pair[1]))
    else:
        raise ConfigError("twilio option params= must be a mapping or (name, value) pairs")
    checked: list[tuple[str, str]] = []
    for name, item in pairs:
        if not isinstance(name, str) or not isinstance(item, str):
            raise ConfigError("twilio option params= names and values must be str")
        checked.append((name, item))
    return tuple(checked)


def _form_params(body: bytes) -> Params | None:
    """The parameters of a form-encoded body, or None when it cannot be one."""
    if not body:
        return ()
    try:
        return tuple(parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict"))
    except ValueError:
        return None


def _signed_data(url: str, params: Params) -> bytes:
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    # Sorted by name, then by value for a repeated name. Equal repeated values count once:
    # twilio-python and twilio-node both sort a set of the values, and they are the reference
    # every receiver checks against.
    tail = "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))
    return (url + tail).encode("utf-8", "surrogatepass")


def _with_netloc(url: str, netloc: str, replacement: str) -> str:
    start = url.index("//") + 2
    return url[:start] + replacement + url[start + len(netloc) :]


def _url_variants(url: str) -> tuple[str, ...]:
    """`url` as given, plus the form with its port dropped or its default port added.

    twilio-python validates both because Twilio's signatures are inconsistent about the port
    ("sig generation on back end is inconsistent"), notably behind TLS-terminating proxies.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]") + 1
        host, port = hostport[:end], hostport[end:].removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    default_port = 443 if parts.scheme == "https" else 80
    other = userinfo + at + (host if port else f"{host}:{default_port}")
    return (url, _with_netloc(url, netloc, other))


@dataclass(frozen=True, slots=True)
class TwilioScheme:
    """Twilio's request signature, for the URL Twilio was configured to call."""

    url: str
    params: Params | None
    algorithm: str | None
    body_hash: bytes | None

    @classmethod
    def from_options(cls, options: Options) -> TwilioScheme:
        url = options.required_text(
            "url", "the full URL Twilio requested, query string included, as Twilio saw it"
        )
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or url != url.strip()
        ):
            raise ConfigError("twilio option url= must be an absolute http(s) URL")
        raw_params = options.raw("params")
        params = None if raw_params is None else _params(raw_params)
        algorithm = options.raw("algorithm")
        if algorithm is not None and (
            not isinstance(algorithm, str) or algorithm not in _ALGORITHMS
        ):
            raise ConfigError("twilio option algorithm= must be 'sha1' or 'sha256'")
        hashes = parse_qs(parts.query, keep_blank_values=True).get(BODY_HASH_PARAM)
        body_hash: bytes | None = None
        if hashes is not None:
            if params is not None:
                raise ConfigError(
                    "twilio option params= does not apply to a url carrying bodySHA256: "
                    "JSON deliveries sign the URL alone"
                )
            body_hash = from_hex(hashes[0], 32) if len(hashes) == 1 else None
            if body_hash is None:
                raise ConfigError("the bodySHA256 query parameter of url= is not one SHA-256 hex")
        return cls(url, params, algorithm if isinstance(algorithm, str) else None, body_hash)

    def _algorithm(self, incoming: Incoming) -> str:
        if self.algorithm is not None:
            return self.algorithm
        settings = incoming.headers.get(SETTINGS_HEADER)
        if settings is None:
            return "sha1"
        # "key=<SharedKey sid>,algorithm=<HMAC_SHA1|HMAC_SHA256>"; without an algorithm it is the
        # legacy auth-token signature. Letting the header pick is safe: both are HMACs keyed
        # with a secret the sender must hold.
        for part in settings.split(","):
            name, equals, value = part.partition("=")
            if equals and name.strip() == "algorithm" and value.strip():
                chosen = _BY_TWILIO_NAME.get(value.strip().upper())
                if chosen is None:
                    raise WebhookVerificationError(
                        WebhookVerificationReason.MALFORMED_HEADER,
                        f"the {SETTINGS_HEADER} header names an unsupported algorithm",
                    )
                return chosen
        return "sha1"

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        keys = hmac_keys(incoming.secrets)
        value = incoming.headers.require(SIGNATURE_HEADER)
        hash_name, size, _ = _ALGORITHMS[self._algorithm(incoming)]
        signature = from_base64(value, size)
        if signature is None:
            raise WebhookVerificationError(
                WebhookVerificationReason.MALFORMED_HEADER,
                f"the {SIGNATURE_HEADER} header is not the base64 of a {size}-byte HMAC",
            )
        if self.body_hash is not None:
            actual = hashlib.sha256(incoming.body).digest()
            if not hmac.compare_digest(actual, self.body_hash):
                raise WebhookVerificationError(
                    WebhookVerificationReason.NO_MATCHING_SIGNATURE,
                    "the body does not match the bodySHA256 parameter of the signed URL",
                )
            params: Params | None = ()
        else:
            params = self.params if self.params is not None else _form_params(incoming.body)
        if params is None:
            raise WebhookVerificationError(
                WebhookVerificationReason.NO_MATCHING_SIGNATURE,
                "the body is not UTF-8 form data and the url carries no bodySHA256",
            )
        variants = _url_variants(self.url)
        for index, key in enumerate(keys):
            for url in variants:
                expected = digest(key, _signed_data(url, params), hash_name)
                if hmac.compare_digest(expected, signature):
                    msg_id = incoming.headers.get(IDEMPOTENCY_HEADER)
                    return verified("twilio", index, None, msg_id)
        raise WebhookVerificationError(
            WebhookVerificationReason.NO_MATCHING_SIGNATURE,
            f"the {SIGNATURE_HEADER} signature matches none of the {len(keys)} given secret(s)",
        )

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        key = one_key(hmac_keys(outgoing.secrets), "twilio")
        algorithm = self.algorithm or "sha1"
        hash_name, _, twilio_name = _ALGORITHMS[algorithm]
        if self.body_hash is not None:
            if not hmac.compare_digest(hashlib.sha256(outgoing.body).digest(), self.body_hash):
                raise ConfigError("the bodySHA256 parameter of url= is not the body's SHA-256")
            params: Params | None = ()
        else:
            params = self.params if self.params is not None else _form_params(outgoing.body)
        if params is None:
            raise ConfigError(
                "the twilio scheme signs form bodies; for another body add "
                "bodySHA256=<hex sha256 of the body> to url="
            )
        signature = to_base64(digest(key, _signed_data(self.url, params), hash_name))
        headers = {SIGNATURE_HEADER: signature}
        if self.algorithm is not None and algorithm != "sha1":
            headers[SETTINGS_HEADER] = f"algorithm={twilio_name}"
        if outgoing.msg_id is not None:
            headers[IDEMPOTENCY_HEADER] = outgoing.msg_id
        return headers
