"""What every command shares: settings from flags, error rendering and exit codes, JSON output."""

from __future__ import annotations

import functools
import json
import sys
import tomllib
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import typer
from rich.console import Console

from farm.errors import FarmUnavailable, SpecError, problems_from_validation

if TYPE_CHECKING:
    from farm.settings import FarmSettings
    from farm.store import Store

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

BrokerOption = typer.Option(None, "--broker", "-b", help="Redis URL of the farm (default: FARM_BROKER_URL, the "
                            "config file, or redis://127.0.0.1:6379/0).", show_default=False)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1


def settings(**overrides: Any) -> "FarmSettings":
    # Imported here, not at the top: `farm --help` must not pay for pydantic-settings and the Redis client.
    from pydantic import ValidationError

    from farm.settings import config_path, load_settings

    try:
        return load_settings(**overrides)
    except ValidationError as e:
        raise SpecError(problems_from_validation(e), "settings") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError.one("", f"malformed TOML: {e}", str(config_path())) from None


def open_store(broker: str | None) -> "Store":
    """The farm's store at ``broker`` (or the configured one), failing fast when Redis is not there."""
    from farm.store import Store

    return Store.from_settings(settings(broker_url=broker))


def friendly_errors(fn: F) -> F:
    """A user's mistake prints ``source: field.path: message`` lines and exits 2; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            err_console.print(f"[bold red]error:[/] {len(e.problems)} problem(s)", highlight=False)
            for line in str(e).splitlines():
                err_console.print(f"  {line}", highlight=False, markup=False)
            raise typer.Exit(EXIT_USAGE) from None
        except FarmUnavailable as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(EXIT_UNAVAILABLE) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(msg: str, code: int = EXIT_USAGE) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", highlight=False)
    raise typer.Exit(code)
