"""Fixtures for the auth tests: the scripted authorization server."""

from tests.auth._fake_as import fake_as

__all__ = ["fake_as"]
