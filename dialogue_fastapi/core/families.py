"""Room families: a room id pattern such as ``dm:{a}:{b}`` or ``doc:{doc_id:int}``.

A pattern is made of ``:``-separated segments, each either a literal (room-id
characters) or a whole parameter: ``{name}`` matches one or more room-id
characters except ``:``, ``{name:int}`` digits only. A segment that mixes both
(``doc-{id}``) is refused, so that two patterns can be compared segment by
segment: :func:`overlap` tells whether some id could match both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_PARAM: Final = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::(int|str))?\}$")
_LITERAL: Final = re.compile(r"^[A-Za-z0-9_.@\-]+$")
_SEPARATOR: Final = re.compile(r":(?![^{]*\})")  # a colon outside {...}
_VALUE: Final = {"str": r"[A-Za-z0-9_.@\-]+", "int": r"[0-9]+"}


@dataclass(frozen=True, slots=True)
class Segment:
    literal: str | None = None  # a literal segment, or
    param: str | None = None  # a parameter's name and
    kind: str = "str"  # "str" or "int"

    def may_equal(self, other: Segment) -> bool:
        """Whether some text could match both segments."""
        if self.literal is not None and other.literal is not None:
            return self.literal == other.literal
        if self.literal is not None or other.literal is not None:
            literal, param = (self, other) if self.literal is not None else (other, self)
            assert literal.literal is not None
            return param.kind == "str" or literal.literal.isdigit()
        return True  # two parameters: digits match both kinds


@dataclass(frozen=True, slots=True)
class FamilyPattern:
    """A parsed pattern: its segments, its parameters and the regex of its ids."""

    pattern: str
    segments: tuple[Segment, ...]
    regex: re.Pattern[str]

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(s.param for s in self.segments if s.param is not None)

    def match(self, room_id: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(room_id)
        return None if found is None else found.groupdict()


def is_family(key: str) -> bool:
    return "{" in key or "}" in key


def parse_family(key: str) -> FamilyPattern:
    """The pattern of a ``rooms=`` key; ValueError with what is wrong."""
    segments: list[Segment] = []
    parts: list[str] = []
    for text in _SEPARATOR.split(key):
        param = _PARAM.match(text)
        if param is not None:
            kind = param.group(2) or "str"
            segments.append(Segment(param=param.group(1), kind=kind))
            parts.append(f"(?P<{param.group(1)}>{_VALUE[kind]})")
        elif _LITERAL.match(text):
            segments.append(Segment(literal=text))
            parts.append(re.escape(text))
        else:
            raise ValueError(f"room family {key!r}: segment {text!r} must be a literal "
                             "(letters, digits, _.@-) or a whole parameter like {name} or "
                             "{name:int}")
    names = [s.param for s in segments if s.param is not None]
    if not names:
        raise ValueError(f"room family {key!r} has no parameter")
    if len(set(names)) != len(names):
        raise ValueError(f"room family {key!r} names a parameter twice")
    return FamilyPattern(key, tuple(segments), re.compile(":".join(parts)))


def overlap(a: FamilyPattern, b: FamilyPattern) -> bool:
    """Whether some room id could match both patterns."""
    return len(a.segments) == len(b.segments) and all(
        x.may_equal(y) for x, y in zip(a.segments, b.segments, strict=True))
