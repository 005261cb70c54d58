"""``farm workloads``: what a sweep file may name, read from the registry without any framework."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from typer.testing import Result

from cli.workloads import parameter_rows
from farm import workloads


def test_lists_every_registered_workload(invoke: Callable[..., Result]) -> None:
    result = invoke("workloads", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [w["name"] for w in listed["workloads"]] == workloads.names()
    cifar = next(w for w in listed["workloads"] if w["name"] == "cifar10_mlp")
    assert cifar["data"] == {
        "default": "cifar10",
        "kind": "image",
        "sample_shape": [32, 32, 3],
        "classes": 10,
        "real": "cifar10",
    }
    assert cifar["provider"]["package"] == "benchfarm"


def test_one_workload_shows_its_parameters(invoke: Callable[..., Result]) -> None:
    result = invoke("workloads", "cifar10_mlp", "--json")
    assert result.exit_code == 0, result.output
    params = {p["name"]: p for p in json.loads(result.output)["parameters"]}
    assert params["hidden_units"]["default"] == [3000, 1000]
    assert ">= 1" in params["hidden_units"]["bounds"] and "at most" in params["hidden_units"]["bounds"]
    assert params["optimizer"]["type"] == "sgd | adam | adamw | rmsprop"
    assert params["learning_rate"]["bounds"] == "> 0, <= 10"


def test_unknown_workload_is_one_line_exit_2(invoke: Callable[..., Result]) -> None:
    result = invoke("workloads", "resnet5O")
    assert result.exit_code == 2
    assert "unknown workload 'resnet5O'" in result.output and "Traceback" not in result.output


def test_parameter_rows_read_a_schema() -> None:
    schema = {
        "properties": {
            "n": {"type": "integer", "minimum": 1, "exclusiveMaximum": 9, "default": 2, "description": "How many."},
            "mode": {"enum": ["a", "b"], "default": "a"},
            "rate": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}], "default": None},
        }
    }
    rows = {r["name"]: r for r in parameter_rows(schema)}
    assert rows["n"] == {
        "name": "n",
        "type": "integer",
        "default": 2,
        "bounds": ">= 1, < 9",
        "description": "How many.",
    }
    assert rows["mode"]["type"] == "a | b"
    assert rows["rate"]["type"] == "number or null" and rows["rate"]["bounds"] == "> 0"


def test_no_framework_is_imported() -> None:
    code = (
        "import sys\nfrom cli.main import main\nsys.argv = ['farm', 'workloads', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('checked: no framework')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("checked: no framework")  # the check ran (the command did not exit first)
