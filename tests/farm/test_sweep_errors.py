"""A sweep file's problems, all of them in one pass, each naming the file and the field, with a "did you mean"
for what looks misspelt: fields, workloads, workload parameters and values of a fixed set."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from farm.errors import SpecError, did_you_mean
from farm.sweep import load_sweep
from tests.helpers import REPO, farm_env, run_farm_together


def problems(tmp_path: Path, spec: dict) -> list[str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError) as e:
        load_sweep(path)
    lines = str(e.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines  # every line names the file
    return [line[len(f"{path}: ") :] for line in lines]


def test_an_unknown_field_and_a_bad_value_in_one_pass(tmp_path: Path) -> None:
    """Before, only the unknown field was reported; the value's error came after the first fix."""
    got = problems(tmp_path, {"name": "t", "jobs": [{"workload": "cifar10_mlp", "epochz": 3, "batch_size": 0}]})
    assert got == [
        "jobs[0].epochz: unknown field; did you mean `epochs`?",
        "jobs[0].batch_size: Input should be greater than or equal to 1",
    ]


def test_a_misspelt_top_level_field_does_not_hide_the_jobs_problems(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        {"name": "bad name!", "repeat": 3, "jobs": [{"workload": "fashion_mnist_mlp", "epochs": 0}]},
    )
    assert got[0].startswith("name: must be a slug")
    assert "repeat: unknown field; did you mean `repeats`?" in got
    assert "jobs[0].epochs: Input should be greater than or equal to 1" in got
    assert len(got) == 3


def test_did_you_mean_for_workloads_parameters_and_literal_values(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        {
            "name": "t",
            "defaults": {"backend": "tensorflw", "epoch": 2},
            "matrix": {"device": ["cpu", "gpuu"], "batchsize": [32]},
            "jobs": [
                {"workload": "cifar10_mpl"},
                {"workload": "fashion_mnist_mlp", "params": {"hidden_layer": 3}, "data": "synthetc"},
            ],
        },
    )
    joined = "\n".join(got)
    assert "defaults.epoch: unknown field; did you mean `epochs`?" in got
    assert "matrix.batchsize: unknown job field (use a job field or params.NAME); did you mean `batch_size`?" in got
    assert any(
        line.startswith("jobs[0].workload: unknown workload 'cifar10_mpl'") and line.endswith("`cifar10_mlp`?")
        for line in got
    ), joined
    assert "jobs[1].params.hidden_layer: unknown field; did you mean `hidden_layers`?" in got
    assert "defaults.backend: Input should be 'tensorflow', 'jax' or 'torch'; did you mean `tensorflow`?" in got
    assert "matrix.device[1]: Input should be 'cpu' or 'gpu'; did you mean `gpu`?" in got
    assert "jobs[1].data: Input should be 'real' or 'synthetic'; did you mean `synthetic`?" in got
    assert len(got) == len(set(got))  # each problem once, though every cell of the matrix has it


def test_no_suggestion_for_a_word_like_nothing_known() -> None:
    assert did_you_mean("zzzzqqq", ["epochs", "batch_size"]) == ""
    assert did_you_mean("epochs", ["epochs"]) == ""  # not a misspelling
    assert did_you_mean(3, ["epochs"]) == ""
    assert did_you_mean("epoch", ["epochs", "batch_size"]) == "; did you mean `epochs`?"


def test_the_command_lists_them_all_one_line_each_and_exits_2(tmp_path: Path) -> None:
    """`farm submit` (and its dry run) print every problem on a line of its own, unwrapped however long, no
    traceback, exit 2, before any broker is contacted."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "jobs": [{"workload": "cifar10_mpl", "epochz": 3, "batch_size": 0}]}))
    env = farm_env("redis://127.0.0.1:1/0", tmp_path / "cache")
    outs = run_farm_together(
        {"dry": (["submit", str(path), "--dry-run"], env), "submit": (["submit", str(path)], env)}, timeout=60
    )
    for out in outs.values():
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        lines = out.stderr.splitlines()
        assert lines[0] == "error: 3 problem(s)", out.stderr
        assert len(lines) == 4, out.stderr
        assert lines[1] == f"  {path}: jobs[0].epochz: unknown field; did you mean `epochs`?"
        assert lines[2].startswith(f"  {path}: jobs[0].workload: unknown workload 'cifar10_mpl' (known: ")
        assert lines[2].endswith("did you mean `cifar10_mlp`?") and len(lines[2]) > 80  # long, not wrapped
        assert lines[3] == f"  {path}: jobs[0].batch_size: Input should be greater than or equal to 1"


def test_the_shipped_examples_still_load() -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        assert load_sweep(path).jobs, path
