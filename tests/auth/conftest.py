"""Fixtures for the auth tests: the scripted authorization server and the real ones."""

from tests.auth._fake_as import fake_as
from tests.auth._peers import dot_peer, oidc_peer

__all__ = ["dot_peer", "fake_as", "oidc_peer"]
