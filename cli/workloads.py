"""``farm workloads``: what a sweep file may name — the workloads this install knows, their data and parameters.

Read from the registry on this machine (shipped workloads and installed plugins), without importing any
framework: parameter models and data specs are plain Pydantic and arithmetic.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.common import JsonOption, console, fail, friendly_errors, print_json, untrusted


def parameter_rows(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per parameter of a workload's JSON schema: its type, default, bounds and description."""
    rows = []
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        types = []
        for o in options:
            if "enum" in o:
                types.append(" | ".join(str(v) for v in o["enum"]))
            elif o.get("type") == "array":
                types.append(f"list of {o.get('items', {}).get('type', 'values')}")
            elif "const" in o:
                types.append(str(o["const"]))
            elif "type" in o:
                types.append(str(o["type"]))
        bounds = []
        for o in [prop, *options, *(o.get("items", {}) for o in options)]:
            for key, sign in (
                ("minimum", ">="),
                ("exclusiveMinimum", ">"),
                ("maximum", "<="),
                ("exclusiveMaximum", "<"),
            ):
                if key in o:
                    bounds.append(f"{sign} {o[key]}")
            for key, word in (("minItems", "at least"), ("maxItems", "at most")):
                if key in o:
                    bounds.append(f"{word} {o[key]} items")
        rows.append(
            {
                "name": name,
                "type": " or ".join(dict.fromkeys(types)) or "any",
                "default": prop.get("default"),
                "bounds": ", ".join(dict.fromkeys(bounds)),
                "description": prop.get("description", ""),
            }
        )
    return rows


def describe(name: str) -> dict[str, Any]:
    """A workload as ``farm workloads`` shows it: at its default parameters."""
    from farm import workloads

    w = workloads.get(name)
    params = w.validate_params({})
    spec = w.data_spec(params)
    return {
        "name": w.name,
        "description": w.description,
        "unit": w.unit,
        "data": {
            "default": spec.name,
            "kind": spec.kind,
            "sample_shape": list(spec.sample_shape),
            "classes": spec.num_classes,
            "real": spec.real,
        },
        "provider": w.advertised(),
        "parameters": parameter_rows(w.params_model.model_json_schema()),
    }


@friendly_errors
def workloads_cmd(
    name: str = typer.Argument(None, help="One workload: show its parameters."),
    as_json: bool = JsonOption,
) -> None:
    """The workloads a sweep may name here: shipped with benchfarm or installed as plugins, with their units,
    data (real where a real dataset fits the default shapes, else synthetic only) and parameters."""
    from farm import workloads

    errors = workloads.load_plugins()
    if name is not None:
        try:
            info = describe(name)
        except workloads.UnknownWorkload as e:
            fail(e.args[0], code=2)
        if as_json:
            print_json(info)
            return
        data = info["data"]
        provider = f"{info['provider']['package']} {info['provider']['version']}"
        # A plugin's words (description, unit, package): shown as they are, their markup never read.
        console.print(
            f"[bold]{untrusted(info['name'])}[/] ({untrusted(provider)}): {untrusted(info['description'])}\n"
            f"throughput in {untrusted(info['unit'])}/s; data at the defaults: {untrusted(data['default'])}"
            + (f" (real: {untrusted(data['real'])}, or synthetic)" if data["real"] else " (synthetic only)"),
            highlight=False,
            soft_wrap=True,
        )
        table = Table(title="parameters", title_justify="left")
        for col in ("name", "type", "default", "bounds", "description"):
            table.add_column(col, overflow="fold")
        for row in info["parameters"]:
            table.add_row(*(untrusted(row[c]) for c in ("name", "type", "default", "bounds", "description")))
        console.print(table)
        return
    infos = [describe(n) for n in workloads.names()]
    if as_json:
        print_json({"workloads": infos, "plugin_errors": errors})
        return
    table = Table(title="workloads", title_justify="left")
    for col in ("name", "unit", "data (defaults)", "provider", "description"):
        table.add_column(col, overflow="fold")
    for info in infos:
        data = info["data"]
        table.add_row(
            *map(
                untrusted,
                (
                    info["name"],
                    f"{info['unit']}/s",
                    data["default"] + ("" if data["real"] else " (synthetic)"),
                    f"{info['provider']['package']} {info['provider']['version']}",
                    info["description"],
                ),
            )
        )
    console.print(table)
    for entry, error in sorted(errors.items()):
        console.print(
            f"[yellow]plugin {untrusted(entry)} not loaded:[/] {untrusted(error)}", highlight=False, soft_wrap=True
        )
    console.print("`farm workloads NAME` shows a workload's parameters.", highlight=False)
