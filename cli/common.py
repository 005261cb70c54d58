"""What every command shares: settings from flags, error rendering and exit codes, JSON output."""

from __future__ import annotations

import functools
import json
import sys
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import Progress
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from farm.errors import FarmUnavailable, SpecError
from farm.errors import escape as escape_text
from farm.reports.files import OutputError

if TYPE_CHECKING:
    from farm.settings import FarmSettings
    from farm.store import Store


class SafeConsole(Console):
    """rich's Console that prints no stranger's control characters (any console the CLI prints with is one)."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        """The one place every printed character passes (rich's renderer, overridden): text that is not rich's own
        control codes (a live view's cursor moves) has every non-printable character written as its escape
        (``farm.errors.escape``: ESC/OSC sequences, ``\\r``, C1, bidi overrides from a job's error, a plugin's
        description, a host name), newlines and tabs excepted; styles are rendered after, so rich's own pass."""
        safe = (seg if seg.control else Segment(escape_text(seg.text, keep="\n\t"), seg.style) for seg in buffer)
        return super()._render_buffer(safe)


class FarmConsole(SafeConsole):
    """rich's Console, plain and complete off a terminal.

    On a terminal it is rich as usual, except that a table's long value is folded onto more lines instead of cut
    with ``…``. Written to a file, a pipe or a CI log (``is_terminal`` is False), nothing is
    ever cut or squeezed to 80 columns: every line is printed as long as it is (no wrapping, no cropping), a
    table becomes aligned columns of plain text (no box drawing, no ``…``), a progress bar a line of counts, and
    a group its parts one after the other."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self.is_terminal:
            for table in _tables(objects):  # a narrow terminal folds a long value onto more lines; never cuts it
                for column in table.columns:
                    if column.overflow == "ellipsis":
                        column.overflow = "fold"
            super().print(*objects, **kwargs)
            return
        kwargs["soft_wrap"] = True  # no wrapping, no cropping: a line is as long as it is
        kwargs.pop("width", None)
        if not any(isinstance(o, (Table, Group, Progress)) for o in objects):
            super().print(*objects, **kwargs)
            return
        for part in _plain_parts(objects):
            if isinstance(part, Text):
                super().print(part, **{k: v for k, v in kwargs.items() if k not in ("markup", "style")})
            else:
                super().print(part, **kwargs)


def _tables(objects: Any) -> Any:
    for o in objects:
        if isinstance(o, Group):
            yield from _tables(o.renderables)
        elif isinstance(o, Table):
            yield o


def _plain_parts(objects: Any) -> Any:
    """``objects`` with every table, group and progress bar replaced by plain text (markup resolved)."""
    for o in objects:
        if isinstance(o, Group):
            yield from _plain_parts(o.renderables)
        elif isinstance(o, Table):
            yield Text(plain_table(o))
        elif isinstance(o, Progress):
            for task in o.tasks:
                total = f"/{task.total:.0f}" if task.total is not None else ""
                fields = "".join(f" {v}" for v in task.fields.values())
                yield Text(f"{task.description} {task.completed:.0f}{total}{fields}")
        else:
            yield o


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell).plain
        except Exception:  # noqa: BLE001 - not markup after all: the text as it is
            return cell
    return str(cell)


def plain_table(table: Table) -> str:
    """A rich table as plain text: its title on a line, then the header and rows as columns separated by two
    spaces, each column as wide as its widest cell (nothing truncated, no box drawing); numbers and other
    right-justified columns are aligned right."""
    columns = table.columns
    cells = [[_plain(c.header)] + [_plain(v) for v in c.cells] for c in columns]
    widths = [max((len(v) for v in col), default=0) for col in cells]
    lines = []
    if table.title:
        lines.append(_plain(table.title))
    for r in range(max((len(col) for col in cells), default=0)):
        row = []
        for col, width, column in zip(cells, widths, columns, strict=True):
            value = col[r] if r < len(col) else ""
            row.append(value.rjust(width) if column.justify == "right" and r else value.ljust(width))
        lines.append("  ".join(row).rstrip())
    return "\n".join(lines)


console = FarmConsole()
err_console = FarmConsole(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

BrokerOption = typer.Option(
    None,
    "--broker",
    "-b",
    help="Redis URL of the farm (default: FARM_BROKER_URL, the config file, or redis://127.0.0.1:6379/0).",
    show_default=False,
)
RunDirOption = typer.Option(
    None,
    "--run-dir",
    help="Use the farm that `farm run -o DIR` kept in DIR (its own Redis, opened for this command): how to "
    "reach a finished farm run's sweeps.",
    show_default=False,
    file_okay=False,
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1
#: Exit status of ``farm compare``/``farm history --fail-on-regression`` when at least one cell got slower.
EXIT_REGRESSION = 3


def settings(run_dir: Path | None = None, **overrides: Any) -> FarmSettings:
    """The farm's settings from the flags given (``overrides``), the environment and the config file. With
    ``run_dir`` (``--run-dir``), the broker is the Redis that ``farm run`` kept there, opened for this command."""
    # Imported here, not at the top: `farm --help` must not pay for pydantic-settings and the Redis client.
    from pydantic import ValidationError

    from farm.settings import config_path, load_settings, settings_problem

    if run_dir is not None:
        if overrides.get("broker_url") is not None:
            fail("--broker and --run-dir name two farms: give one of them")
        overrides["broker_url"] = open_run_dir(run_dir)
    try:
        return load_settings(**overrides)
    except ValidationError as e:  # one line naming the flag, variable or config key; never the broker's password
        fail(settings_problem(e, [k for k, v in overrides.items() if v is not None]))
    except tomllib.TOMLDecodeError as e:
        raise SpecError.one("", f"malformed TOML: {e}", str(config_path())) from None


def open_store(broker: str | None, run_dir: Path | None = None) -> Store:
    """The farm's store at ``broker`` (or ``run_dir``'s, or the configured one), failing fast when Redis is not
    there."""
    from farm.store import Store

    return Store.from_settings(settings(run_dir, broker_url=broker))


def open_run_dir(run_dir: Path) -> str:
    """The URL of the Redis that ``farm run`` kept in ``run_dir``, opened (started if nobody runs it) until this
    command ends: the command's click context closes it, or the process's exit outside a command."""
    import atexit

    import click

    from farm.kept_redis import KeptRedis

    kept = KeptRedis(run_dir)
    url = kept.open()
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(kept.close)
    else:
        atexit.register(kept.close)
    return url


def friendly_errors(fn: F) -> F:
    """A user's mistake prints ``source: field.path: message`` lines and exits 2; a failure of the environment
    (Redis unreachable or silent, an output file that cannot be written) prints one line and exits 1; no
    traceback either way."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            err_console.print(f"[bold red]error:[/] {len(e.problems)} problem(s)", highlight=False, soft_wrap=True)
            for line in str(e).splitlines():  # one line per problem, never wrapped mid-sentence
                err_console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except (FarmUnavailable, OutputError) as e:
            error_line(str(e))
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        except Exception as e:
            why = outage(e)
            if why is None:
                raise
            error_line(why)
            raise typer.Exit(EXIT_UNAVAILABLE) from None

    return cast(F, wrapper)


def outage(e: BaseException) -> str | None:
    """What to tell the user when Redis fails in the middle of a command (after the first ping succeeded): the
    client's and kombu's connection errors; None for anything else. Their modules are only looked up, not
    imported: an error of theirs means they are loaded."""
    redis_errors = sys.modules.get("redis.exceptions")
    kombu_errors = sys.modules.get("kombu.exceptions")
    if redis_errors and isinstance(e, redis_errors.InvalidResponse):
        return f"the broker's replies stopped making sense mid-command (is it still Redis?): {e}"
    if redis_errors and isinstance(e, redis_errors.ResponseError):
        return refusal(e, redis_errors)
    if redis_errors and isinstance(e, redis_errors.TimeoutError):
        return f"Redis did not answer in time, mid-command ({e}); is the server stopped or overloaded?"
    if redis_errors and isinstance(e, redis_errors.ConnectionError):
        return f"lost the connection to Redis mid-command: {e}"
    if kombu_errors and isinstance(e, kombu_errors.OperationalError):
        return f"the broker failed mid-command: {e}"
    return None


_REFUSALS = ("NOAUTH", "WRONGPASS", "NOPERM", "Authentication")

NEEDED_PERMISSIONS = (
    "the farm needs Redis' read, write, keyspace and Lua script commands (ACL: +@read +@write +@keyspace "
    "+@scripting, or +@all; read-only users can only read: status, results, reports)"
)


def refusal(e: BaseException, errors: Any) -> str | None:
    """One line for an error reply of Redis that the environment caused, by its class: a user the ACL refuses a
    command (the command named), a full Redis (``maxmemory``), a read-only replica, a key of the wrong type,
    scripts flushed mid-command, a refused login; None for any other. The reply only, never the command that a
    pipeline's error repeats (it may hold data)."""
    reply = str(e).split(" caused error: ", 1)[-1].strip()
    if isinstance(e, errors.NoPermissionError):
        return f"Redis refused this user a command the farm needs: {reply}; {NEEDED_PERMISSIONS}"
    if isinstance(e, errors.OutOfMemoryError):
        return (
            f"Redis is full and refuses writes ({reply}): raise its maxmemory or free memory (farm forget of old "
            "sweeps), then run the command again"
        )
    if isinstance(e, errors.ReadOnlyError):
        return f"Redis refuses writes: it is a read-only replica ({reply}); point the farm at the primary"
    if "WRONGTYPE" in reply:
        return (
            f"a key of the farm's Redis holds the wrong type ({reply}); a worker moves such keys aside to "
            "<prefix>:quarantined:..., or delete the key by hand"
        )
    if isinstance(e, errors.NoScriptError):
        return f"Redis lost the farm's Lua scripts mid-command ({reply}); run the command again"
    if reply.startswith(_REFUSALS):
        return f"Redis refused the farm's command (credentials or permissions): {reply}"
    return None  # any other error reply is the farm's bug (a malformed command): its traceback is wanted


def error_line(msg: str) -> None:
    """``error: msg`` as exactly one line on stderr: never wrapped to the terminal, markup in msg not read."""
    from farm.settings import mask_url

    text = " ".join(msg.split())
    text = " ".join(mask_url(w) if "://" in w else w for w in text.split(" "))  # a URL inside a library's message
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def check_html_option(path: Path | None) -> None:
    """Check a ``--html`` path and the plot extra before any Redis access or computation: a name that is not
    ``.html``/``.htm`` is a usage error (exit 2); a target that cannot be written, or an install without
    matplotlib, an environment failure (exit 1, one line saying what to install)."""
    if path is None:
        return
    if path.suffix.lower() not in (".html", ".htm"):
        fail(f"--html {path}: the file name should end in .html or .htm")
    if path.is_dir():
        fail(f"cannot write {path}: it is a directory", code=EXIT_UNAVAILABLE)
    if not path.parent.is_dir():
        fail(f"cannot write {path}: directory {path.parent} does not exist", code=EXIT_UNAVAILABLE)
    from farm.reports.html_page import require_plotting

    require_plotting()  # PlotExtraMissing is an OutputError: friendly_errors prints it in one line, exit 1


def check_file_options(output: Path | None, html: Path | None = None) -> None:
    """Check the files a command will write, ``-o/--output`` first and then ``--html``, before any Redis access or
    computation: a bad name or an unwritable place ends the command before it did work it would then throw away."""
    check_output_option(output)
    check_html_option(html)


def check_output_option(path: Path | None) -> None:
    """Check an ``-o/--output`` path before any Redis access or computation: an unknown suffix is a usage
    error (exit 2), a target that cannot be written an environment failure (exit 1)."""
    from farm.reports.files import check_output

    if path is None:
        return
    try:
        check_output(path)
    except ValueError as e:
        fail(str(e))
    except OutputError as e:
        fail(str(e), code=EXIT_UNAVAILABLE)


def untrusted(value: object) -> str:
    """A stranger's text (a job's error, a plugin's description, a worker's or device's name) for a rich markup
    string or a table cell: its markup escaped, so ``[red]`` or ``[link=…]`` in it is shown, never obeyed. Its
    control characters are escaped where everything printed passes (:meth:`FarmConsole._render_buffer`)."""
    return escape("" if value is None else str(value))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(msg: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: msg`` as one line and exit with ``code`` (2: usage, 1: environment)."""
    error_line(msg)
    raise typer.Exit(code)
