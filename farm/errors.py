"""User-facing errors: a list of ``field.path: message`` problems, never a traceback."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


def escape(text: str, keep: str = "") -> str:
    """``text`` with every non-printable character written as its escape (``\\x1b``, ``\\u202e``, ``\\n``),
    except those in ``keep`` (say ``"\\n"`` for text shown on several lines).

    Keys, values and file names in errors come from the user's file, and errors, descriptions, host names from
    workers and plugins: printed raw, an ESC or OSC sequence could drive the terminal (clear it, forge a link,
    write the clipboard), a ``\\r`` overwrite what is shown, a bidi override reorder it, a newline forge a
    second error line. This is the one sanitiser of text for the terminal (C0 and C1 controls, DEL, format and
    separator characters: everything ``str.isprintable`` refuses).
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in keep else ascii(ch)[1:-1] for ch in text)


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


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``; did you mean `epochs`?`` for the choice closest to a misspelt ``word`` (difflib), or ``""``."""
    if not isinstance(word, str) or not word:
        return ""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close and close[0] != word else ""


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def problems_from_validation(
    err: ValidationError, prefix: tuple[Any, ...] = (), fields: Iterable[str] | None = None
) -> list[Problem]:
    """Turn pydantic's errors into located problems, dropping pydantic's internal tags. A value outside a
    ``Literal`` gets a "did you mean" for the closest allowed one; an unknown field one for the closest of
    ``fields`` (the model's field names, when given) if it sits at the top of the model."""
    problems = []
    known = list(fields or ())
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
            if len(loc) == 1 and known:
                msg += did_you_mean(loc[0], known)
        elif e["type"] in ("literal_error", "enum"):
            msg += did_you_mean(e.get("input"), _QUOTED.findall(str((e.get("ctx") or {}).get("expected", ""))))
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        problems.append(Problem(format_loc(prefix + loc), msg))
    return problems
