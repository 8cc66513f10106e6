"""Credentials. Each is usable as `auth=` on `Client` and `SyncClient`."""

from tether.auth._base import Credential, StaticCredential
from tether.auth._static import ApiKey, Basic, Bearer, HeaderTemplate

__all__ = ["ApiKey", "Basic", "Bearer", "Credential", "HeaderTemplate", "StaticCredential"]
