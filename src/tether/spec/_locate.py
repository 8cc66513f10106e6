"""Where each key of a TOML document is written: tomllib parses values but reports no positions.

The document has already been parsed by tomllib, so this scanner can assume it is valid TOML
and only needs to follow its structure: table headers, (dotted, quoted) keys, inline tables,
arrays and strings (which may span lines and contain anything).
"""

from __future__ import annotations

import bisect
import tomllib
from typing import TypeAlias

__all__ = ["KeyPath", "locate"]

KeyPath: TypeAlias = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def record(self, path: KeyPath, pos: int) -> None:
        line = self.line(pos)
        # Every prefix too: `a.b.c = 1` defines tables `a` and `a.b` on this line, unless an
        # earlier line already did.
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def skip_blank(self, *, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def string(self) -> str:
        """Read a string at the cursor and return its value (keys need it decoded)."""
        text = self.text
        start = self.pos
        quote = text[start]
        triple = text.startswith(quote * 3, start)
        if triple:
            end = text.find(quote * 3, start + 3)
            while end >= 0 and quote == '"' and _escaped(text, end):
                end = text.find(quote * 3, end + 1)
            # A closing delimiter may be followed by up to two more quotes of content.
            end = len(text) if end < 0 else end + 3
            for _ in range(2):
                if end < len(text) and text[end] == quote:
                    end += 1
            self.pos = end
        else:
            end = start + 1
            while end < len(text) and text[end] != quote:
                end += 2 if quote == '"' and text[end] == "\\" else 1
            self.pos = end + 1
        raw = text[start : self.pos]
        if triple:
            return ""
        try:
            value = tomllib.loads(f"k = {raw}")["k"]
        except tomllib.TOMLDecodeError:
            return raw[1:-1]
        return str(value)

    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            char = self.peek()
            if char in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.pos
                while self.peek() and self.peek() in _BARE:
                    self.pos += 1
                parts.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.pos += 1

    def value(self, path: KeyPath) -> None:
        char = self.peek()
        if char == "{":
            self.pos += 1
            while True:
                self.skip_blank(newlines=True)
                if self.peek() in ("}", ""):
                    self.pos += 1
                    return
                if self.peek() == ",":
                    self.pos += 1
                    continue
                start = self.pos
                key = path + self.key()
                self.record(key, start)
                self.skip_blank(newlines=False)
                self.pos += 1  # "="
                self.skip_blank(newlines=False)
                self.value(key)
        elif char == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_blank(newlines=True)
                if self.peek() in ("]", ""):
                    self.pos += 1
                    return
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.record((*path, index), self.pos)
                self.value((*path, index))
                index += 1
        elif char in ('"', "'"):
            self.string()
        else:
            text = self.text
            while self.pos < len(text) and text[self.pos] not in ",]}\n#":
                self.pos += 1

    def run(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        arrays: dict[KeyPath, int] = {}
        text = self.text
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(text):
                return self.lines
            start = self.pos
            if self.peek() == "[":
                double = self.peek(1) == "["
                self.pos += 2 if double else 1
                header: KeyPath = self.key()
                self.pos += 2 if double else 1
                if double:
                    index = arrays[header] = arrays.get(header, -1) + 1
                    self.record(header, start)
                    header = (*header, index)
                self.record(header, start)
                table = header
            else:
                key = (*table, *self.key())
                self.record(key, start)
                self.skip_blank(newlines=False)
                self.pos += 1  # "="
                self.skip_blank(newlines=False)
                self.value(key)


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def locate(text: str) -> dict[KeyPath, int]:
    """The 1-based line on which each key path (and array element) of `text` is defined."""
    return _Scanner(text).run()
