"""Test helpers shipped with tether.

Virtual time (`FakeClock`, `no_wait`), an in-memory transport (`MockTransport`), and the mock API
kit: `MockAPI` with stubs, scenarios, seeded faults, paginated collections and an OAuth2 server,
runnable in-process, on a loopback socket or from the command line; `Cassette` for recording and
replaying traffic with secrets scrubbed. See docs/testing-kit.md.
"""

from tether._clock import FakeClock
from tether.testing._cassette import (
    SENSITIVE_FIELDS,
    Cassette,
    CassetteError,
    CassetteLeak,
    CassetteMismatch,
    CassetteMode,
)
from tether.testing._definition import build_mock_api, load_definition
from tether.testing._faults import (
    Drip,
    EmptyResponse,
    Fault,
    FaultEvent,
    FaultRule,
    Hang,
    Latency,
    MalformedChunk,
    RateLimited,
    Reset,
    Schedule,
    ServerError,
    Truncate,
)
from tether.testing._match import ABSENT, ANY, Mismatch, MockRequest
from tether.testing._mockapi import STARTED, MockAPI, Stub, Unmatched
from tether.testing._nowait import no_wait
from tether.testing._oauth import OAuth2Server, TokenRecord
from tether.testing._pagination import (
    Collection,
    CursorPages,
    LinkHeaderPages,
    NextUrlPages,
    OffsetPages,
    PageNumberPages,
    PageQuirks,
    Pagination,
)
from tether.testing._proxy import TOXIC_TYPES, FaultProxy, Proxy, ProxyServer, Toxic
from tether.testing._reply import Outcome, Reply
from tether.testing._server import MockServer
from tether.testing._transport import MockAPITransport
from tether.testing._webhook_sender import Delivery, WebhookSender
from tether.testing._wiremock import to_wiremock
from tether.transports._mock import MockTransport

__all__ = [
    "ABSENT",
    "ANY",
    "SENSITIVE_FIELDS",
    "STARTED",
    "TOXIC_TYPES",
    "Cassette",
    "CassetteError",
    "CassetteLeak",
    "CassetteMismatch",
    "CassetteMode",
    "Collection",
    "CursorPages",
    "Delivery",
    "Drip",
    "EmptyResponse",
    "FakeClock",
    "Fault",
    "FaultEvent",
    "FaultProxy",
    "FaultRule",
    "Hang",
    "Latency",
    "LinkHeaderPages",
    "MalformedChunk",
    "Mismatch",
    "MockAPI",
    "MockAPITransport",
    "MockRequest",
    "MockServer",
    "MockTransport",
    "NextUrlPages",
    "OAuth2Server",
    "OffsetPages",
    "Outcome",
    "PageNumberPages",
    "PageQuirks",
    "Pagination",
    "Proxy",
    "ProxyServer",
    "RateLimited",
    "Reply",
    "Reset",
    "Schedule",
    "ServerError",
    "Stub",
    "TokenRecord",
    "Toxic",
    "Truncate",
    "Unmatched",
    "WebhookSender",
    "build_mock_api",
    "load_definition",
    "no_wait",
    "to_wiremock",
]
