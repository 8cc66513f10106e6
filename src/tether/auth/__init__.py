"""Credentials. Each is usable as `auth=` on `Client` and `SyncClient`."""

from tether._core._oauth import Lifecycle, TokenSet
from tether.auth._base import Credential, StaticCredential, TokenSource
from tether.auth._dpop import DPoPKey
from tether.auth._interactive import AuthorizationRequest, build_authorization_request, login
from tether.auth._jwt import SignedJWT, SigningKey
from tether.auth._login import LoginExchange
from tether.auth._oauth2 import DeviceCode, OAuth2, TokenEndpointError
from tether.auth._static import ApiKey, Basic, Bearer, HeaderTemplate
from tether.auth._stores import FileTokenStore, MemoryTokenStore, SQLiteTokenStore, TokenStore

__all__ = [
    "ApiKey",
    "AuthorizationRequest",
    "Basic",
    "Bearer",
    "Credential",
    "DPoPKey",
    "DeviceCode",
    "FileTokenStore",
    "HeaderTemplate",
    "Lifecycle",
    "LoginExchange",
    "MemoryTokenStore",
    "OAuth2",
    "SQLiteTokenStore",
    "SignedJWT",
    "SigningKey",
    "StaticCredential",
    "TokenEndpointError",
    "TokenSet",
    "TokenSource",
    "TokenStore",
    "build_authorization_request",
    "login",
]
