"""User-facing errors: a list of ``field.path: message`` problems, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


def escape(text: str) -> str:
    """``text`` with every non-printable character written as its escape (``\\x1b``, ``\\u202e``, ``\\n``).

    Keys, values and file names in errors come from the user's file: printed raw, an ESC could drive the
    terminal, a bidi override could reorder what is shown, a newline could forge a second error line.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, located by a dotted field path; printed as one safe line."""

    loc: str
    msg: str

    def __str__(self) -> str:
        return escape(f"{self.loc}: {self.msg}" if self.loc else self.msg)


@dataclass
class SpecError(Exception):
    """Input the farm refuses (exit code 2). ``source`` names the file or the thing that was read."""

    problems: list[Problem]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        head = f"{escape(self.source)}: " if self.source else ""
        lines = [f"{head}{p}" for p in self.problems]
        return "\n".join(lines)

    @classmethod
    def one(cls, loc: str, msg: str, source: str = "") -> SpecError:
        return cls([Problem(loc, msg)], source)


class FarmUnavailable(Exception):
    """The broker/store cannot be reached: a clear message, exit code 1."""


def format_loc(parts: tuple[Any, ...] | list[Any]) -> str:
    """``('jobs', 1, 'epochs')`` -> ``jobs[1].epochs``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def problems_from_validation(err: ValidationError, prefix: tuple[Any, ...] = ()) -> list[Problem]:
    """Turn pydantic's errors into located problems, dropping pydantic's internal tags."""
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        problems.append(Problem(format_loc(prefix + loc), msg))
    return problems
