"""The ``farm`` command: the subcommands composed into one Typer app.

Each subcommand lives in its own module, imported only when that command runs (or when the help lists it):
``farm status`` does not pay for what ``farm report`` or ``farm worker`` import.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
from typer.core import TyperGroup

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (the module that defines it, the function)
    "devices": ("cli.devices", "devices_cmd"),
    "worker": ("cli.worker", "worker_cmd"),
    "workers": ("cli.devices", "workers_cmd"),
    "workloads": ("cli.workloads", "workloads_cmd"),
    "submit": ("cli.submit", "submit_cmd"),
    "status": ("cli.status", "status_cmd"),
    "results": ("cli.results", "results_cmd"),
    "report": ("cli.results", "report_cmd"),
    "compare": ("cli.compare", "compare_cmd"),
    "history": ("cli.history", "history_cmd"),
    "dashboard": ("cli.dashboard", "dashboard_cmd"),
    "cancel": ("cli.lifecycle", "cancel_cmd"),
    "resume": ("cli.lifecycle", "resume_cmd"),
    "forget": ("cli.lifecycle", "forget_cmd"),
    "run": ("cli.run", "run_cmd"),
    "config": ("cli.config", "config_cmd"),
}
"""Every subcommand, in the order the help lists them, and where its function is."""


def command_function(name: str) -> Any:
    """The function behind subcommand ``name``, importing its module."""
    module_name, attr = COMMANDS[name]
    return getattr(importlib.import_module(module_name), attr)


def build_command(name: str) -> Any:
    """The click command for subcommand ``name``, built by Typer as ``app.command(name)`` would, with help that
    reads as prose: the docstring's paragraphs flow to the terminal's width (Typer keeps the source's line
    breaks, which cut sentences in half at any other width), and a flag shows no ``<bool>`` type."""
    fn = command_function(name)
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command(name, help=flowing(fn.__doc__ or ""))(fn)
    command = typer.main.get_command(one)
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    help_option = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option  # type: ignore[method-assign]
    return command


def flowing(doc: str) -> str:
    """A docstring's paragraphs, each on one line (a list item's lines, starting ``- ``, stay lines of their own)."""
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.lstrip().startswith("- "):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.strip())
        out.append("\n".join(lines))
    return "\n\n".join(out)


class LazyCommands(MutableMapping):
    """The group's commands: every name is known up front, each command is built on first lookup."""

    def __init__(self, loaded: MutableMapping[str, Any] | None = None) -> None:
        self.loaded: dict[str, Any] = dict(loaded or {})

    def __getitem__(self, name: str) -> Any:
        if name not in self.loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self.loaded[name] = build_command(name)
        return self.loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (n for n in self.loaded if n not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(1 for n in self.loaded if n not in COMMANDS)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self.loaded


class LazyGroup(TyperGroup):
    """A Typer group whose subcommands are imported on demand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(self.commands)


app = typer.Typer(
    name="farm",
    help="benchfarm: submit Keras benchmark sweeps to a farm of workers and get honest statistics back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)


@app.callback()
def _group() -> None:
    # The group itself takes no options; having a callback makes Typer build a group even though the
    # subcommands are not registered on ``app`` (LazyGroup supplies them). Its help is the app's.
    pass


LONG_RUNNING = frozenset({"worker", "run"})
"""Commands that run for hours or start workers: the process keeps Python's garbage-collector settings."""

START_UP_GC_THRESHOLD = (50_000, 20, 100)
"""Collector thresholds for the other commands. With Python's (700, 10, 10), importing what a command needs
(pydantic, redis, rich, ...) triggers about a hundred collections, one of them a full one, that walk every
object imported so far and find next to nothing: about a tenth of ``farm status``. Cycles are still collected,
just in larger steps, so a large report does not hold on to garbage."""

QUICK_EXIT = frozenset(
    {None, "status", "submit", "config", "workers", "cancel", "resume", "report", "results", "compare"}
)
"""Short commands (``None``: the help) that run without the collector (they make next to no reference cycles:
submitting 100,000 jobs peaks at the same memory with it off) and end by ``exit_now``: they leave no thread,
child process or open file behind, only sockets, which the operating system closes. ``status --watch``, the
one that may run for hours, turns the collector back on."""


def main() -> None:
    import gc
    import sys

    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command not in LONG_RUNNING:
        gc.set_threshold(*START_UP_GC_THRESHOLD)
    if command not in QUICK_EXIT:
        app()
        return
    gc.disable()
    try:
        app()
    except SystemExit as e:
        exit_now(e.code)
    exit_now(0)


def exit_now(code: object) -> None:
    """End the process as ``sys.exit(code)`` would, without tearing the interpreter down.

    Tearing down the ~500 modules a command has imported (pydantic, redis, rich, Celery, ...) takes about
    50 ms, a sixth of ``farm status``, and frees nothing the operating system would not. What a normal exit
    does that matters is done first: exit handlers run (logging's flush among them) and the standard streams
    are flushed; the exit status is the same, 120 included when stdout cannot be flushed.
    """
    import atexit
    import os
    import sys

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        sys.stderr.write(f"{code}\n")
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120
    os._exit(status)


if __name__ == "__main__":
    main()
