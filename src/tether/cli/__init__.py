"""The `tether` command."""

from tether.cli._app import app, main

__all__ = ["app", "main"]
