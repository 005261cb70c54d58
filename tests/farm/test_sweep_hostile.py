"""Hostile sweep files and submit-time feasibility (issue 10, round two).

Each bad input must give one located line per problem naming the file, exit code 2 at the command line, no
traceback and nothing enqueued: duplicate keys, files that are not regular files or too large, integers too
long to convert, non-finite numbers, booleans and strings where counts and flags belong, control characters
in what is echoed back, and jobs too large for any machine or for the largest live worker.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from farm import defaults, feasibility, workloads
from farm.errors import Problem, SpecError, escape
from farm.job import JobSpec
from farm.sweep import Sweep, load_sweep
from farm.workloads import cifar10_mlp, fashion_mnist_mlp
from tests.helpers import REPO, throwaway_redis

HEAVY = ("tensorflow", "keras", "jax", "torch")


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> list[str]:
    """Load ``path``; expect a SpecError whose every line names the file; return its lines."""
    with pytest.raises(SpecError) as info:
        load_sweep(path)
    lines = str(info.value).splitlines()
    assert lines and all(line.startswith(f"{path}: ") for line in lines), lines
    return lines


def refused_text(tmp_path: Path, text: str, name: str = "sweep.yaml") -> str:
    return "\n".join(refused(write(tmp_path, text, name)))


# conftest's isolated_env: no FARM_* setting of the caller, no config file, never the machine's shared Redis.
pytestmark = pytest.mark.usefixtures("isolated_env")


def farm(args: list[str], tmp_path: Path, **kwargs: Any) -> subprocess.CompletedProcess:
    """The real command line in a subprocess: its stderr exactly as a terminal would get it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(FARM_CONFIG=str(tmp_path / "none.toml"), FARM_BROKER_URL="redis://127.0.0.1:1/0", COLUMNS="250")
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True, timeout=120, **kwargs
    )


def assert_refused_cleanly(out: subprocess.CompletedProcess, *needles: str) -> str:
    stderr = out.stderr.decode() if isinstance(out.stderr, bytes) else out.stderr
    assert out.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    flat = " ".join(stderr.split())
    for needle in needles:
        assert needle in flat, stderr
    return stderr


# -- 1. duplicate keys ------------------------------------------------------------------------------------------


def test_yaml_duplicate_key_refused_with_its_line(tmp_path: Path) -> None:
    msg = refused_text(tmp_path, "name: s\njobs:\n  - workload: cifar10_mlp\n    epochs: 1\n    epochs: 9999\n")
    assert "line 5, column 5: refused: duplicate key 'epochs' (first at line 4)" in msg


def test_yaml_duplicate_top_level_key_refused(tmp_path: Path) -> None:
    msg = refused_text(tmp_path, "name: s\nname: t\njobs: [{workload: cifar10_mlp}]\n")
    assert "line 2, column 1: refused: duplicate key 'name'" in msg


def test_yaml_merge_key_may_still_be_overridden(tmp_path: Path) -> None:
    # `<<: *anchor` followed by a key it also holds is YAML's way to override, not a duplicate.
    sweep = load_sweep(
        write(tmp_path, "name: s\njobs:\n  - &base {workload: cifar10_mlp, epochs: 1}\n  - {<<: *base, epochs: 2}\n")
    )
    assert sorted(j.epochs for j in sweep.jobs) == [1, 2]


def test_json_duplicate_key_refused_with_its_path(tmp_path: Path) -> None:
    msg = refused_text(
        tmp_path,
        json.dumps({"name": "s"})[:-1] + ', "jobs": [{"workload": "cifar10_mlp", "epochs": 1, "epochs": 9999}]}',
        "sweep.json",
    )
    assert msg.endswith(": jobs[0].epochs: duplicate key"), msg


def test_json_duplicate_top_level_key_refused(tmp_path: Path) -> None:
    msg = refused_text(tmp_path, '{"name": "s", "jobs": [{"workload": "cifar10_mlp"}], "name": "t"}', "sweep.json")
    assert msg.endswith(": name: duplicate key"), msg


def test_toml_duplicate_key_refused_with_its_line(tmp_path: Path) -> None:
    msg = refused_text(
        tmp_path, 'name = "s"\n[[jobs]]\nworkload = "cifar10_mlp"\nepochs = 1\nepochs = 9999\n', "sweep.toml"
    )
    assert "malformed TOML" in msg and "line 5" in msg


# -- 2. only regular files, never more than the cap plus one byte ------------------------------------------------


def test_directory_refused(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").mkdir()
    assert refused(tmp_path / "sweep.yaml") == [f"{tmp_path / 'sweep.yaml'}: refused: a directory, not a regular file"]


def test_socket_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="bf-") as d, socket.socket(socket.AF_UNIX) as s:
        path = Path(d) / "sweep.yaml"
        s.bind(str(path))
        assert refused(path) == [f"{path}: refused: a socket, not a regular file"]


@pytest.mark.parametrize("kind", ["fifo", pytest.param("/dev/zero", marks=pytest.mark.slow)])  # a real process each
def test_fifo_and_endless_device_refused_without_reading(tmp_path: Path, kind: str) -> None:
    # In a subprocess: before the fix a FIFO blocked its opener and /dev/zero was read until memory ran out.
    if kind == "fifo":
        path = tmp_path / "sweep.yaml"
        os.mkfifo(path)
    else:
        path = Path(kind)
    out = farm(["submit", str(path), "--dry-run"], tmp_path, text=True)
    assert_refused_cleanly(out, f"{path}: refused: a", "not a regular file")


def test_reading_stops_after_the_cap_plus_one_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "sweep.yaml"
    with open(big, "wb") as f:
        f.truncate(35_000_000)  # sparse: 35 MB on paper, nothing on disk
    read = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: read.append(len(b := real_read(fd, n))) or b)
    assert refused(big) == [f"{big}: refused: larger than {defaults.MAX_SWEEP_FILE_BYTES} bytes"]
    assert sum(read) == defaults.MAX_SWEEP_FILE_BYTES + 1


def test_a_file_at_the_cap_is_read(tmp_path: Path) -> None:
    text = "name: s\njobs: [{workload: cifar10_mlp}]\n"
    path = write(tmp_path, text + "#" * (defaults.MAX_SWEEP_FILE_BYTES - len(text) - 1) + "\n")
    assert path.stat().st_size == defaults.MAX_SWEEP_FILE_BYTES
    assert len(load_sweep(path).jobs) == 1


@pytest.mark.slow  # a real process; test_reading_stops_after_the_cap_plus_one_byte is the cap in this process
def test_a_long_stream_on_stdin_is_refused_after_the_cap(tmp_path: Path) -> None:
    # `farm submit -` reads standard input, but never more than the cap plus one byte of it: a 35 MB stream
    # (the writer is then cut off: the pipe closes under it) is refused in one line.
    out = farm(["submit", "-", "--dry-run"], tmp_path, input=b"x" * 35_000_000)
    assert_refused_cleanly(out, "<stdin>: refused: more than 1000000 bytes")


def test_a_sweep_on_stdin_is_read(tmp_path: Path) -> None:
    sweep = b"name: piped\ndefaults: {data: synthetic}\njobs:\n  - {workload: cifar10_mlp, epochs: 1}\n"
    out = farm(["submit", "-", "--dry-run", "--json"], tmp_path, input=sweep)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["jobs"] == 1
    dup = farm(["submit", "-", "--dry-run"], tmp_path, input=b"name: a\nname: b\njobs: []\n")
    assert_refused_cleanly(dup, "<stdin>: line 2, column 1: refused: duplicate key 'name'")


# -- 3. integers too long to convert, numbers that are not finite ----------------------------------------------

DIGITS = "9" * 5000


@pytest.mark.parametrize(
    "name, text, where",
    [
        ("sweep.yaml", f"name: s\njobs:\n  - workload: cifar10_mlp\n    epochs: {DIGITS}\n", "line 4, column 13"),
        (
            "sweep.json",
            f'{{"name": "s", "jobs": [{{"workload": "cifar10_mlp", "epochs": {DIGITS}}}]}}',
            "jobs[0].epochs",
        ),
        ("sweep.toml", f'name = "s"\n[[jobs]]\nworkload = "cifar10_mlp"\nepochs = {DIGITS}\n', "line 4, column 10"),
    ],
)
def test_a_5000_digit_integer_refused(tmp_path: Path, name: str, text: str, where: str) -> None:
    msg = refused_text(tmp_path, text, name)
    assert f": {where}: refused: an integer" in msg, msg


@pytest.mark.parametrize(
    "name, text, where",
    [
        ("sweep.toml", f'name = "s"\ntime_limit_s = {"7" * 400}\n[[jobs]]\nworkload = "cifar10_mlp"\n', "time_limit_s"),
        ("sweep.yaml", f"name: s\njobs: [{{workload: cifar10_mlp, seed: -{'1' * 31}}}]\n", "line 2, column 38"),
        ("sweep.json", f'{{"name": "s", "jobs": [{{"workload": "cifar10_mlp", "seed": {"1" * 31}}}]}}', "jobs[0].seed"),
    ],
)
def test_integers_past_30_digits_refused(tmp_path: Path, name: str, text: str, where: str) -> None:
    msg = refused_text(tmp_path, text, name)
    assert f": {where}: refused: an integer of " in msg and "(at most 30)" in msg, msg


@pytest.mark.parametrize(
    "name, text, where",
    [
        ("sweep.yaml", "name: s\ntime_limit_s: 1.0e+999\njobs: [{workload: cifar10_mlp}]\n", "time_limit_s"),
        (
            "sweep.yaml",
            "name: s\njobs: [{workload: cifar10_mlp, params: {learning_rate: -.inf}}]\n",
            "jobs[0].params.learning_rate",
        ),
        ("sweep.yaml", "name: s\njobs: [{workload: cifar10_mlp, target_accuracy: .nan}]\n", "jobs[0].target_accuracy"),
        (
            "sweep.json",
            '{"name": "s", "jobs": [{"workload": "cifar10_mlp", "time_limit_s": 1e999}]}',
            "jobs[0].time_limit_s",
        ),
        (
            "sweep.json",
            '{"name": "s", "jobs": [{"workload": "cifar10_mlp", "params": {"learning_rate": NaN}}]}',
            "jobs[0].params.learning_rate",
        ),
        (
            "sweep.json",
            '{"name": "s", "time_limit_s": Infinity, "jobs": [{"workload": "cifar10_mlp"}]}',
            "time_limit_s",
        ),
        (
            "sweep.toml",
            'name = "s"\n[[jobs]]\nworkload = "cifar10_mlp"\ntarget_accuracy = nan\n',
            "jobs[0].target_accuracy",
        ),
    ],
)
def test_non_finite_numbers_refused_where_they_stand(tmp_path: Path, name: str, text: str, where: str) -> None:
    msg = refused_text(tmp_path, text, name)
    assert f": {where}: refused: " in msg, msg


def test_a_number_spelled_as_a_yaml_string_is_not_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e999 and 1.0e999 (no sign in the exponent) as strings; pydantic turned them into infinity.
    msg = refused_text(tmp_path, "name: s\ntime_limit_s: 1e999\njobs: [{workload: cifar10_mlp}]\n")
    assert ": time_limit_s: Input should be a valid number" in msg, msg


def test_a_5000_digit_integer_at_the_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'{{"name": "s", "jobs": [{{"workload": "cifar10_mlp", "epochs": {DIGITS}}}]}}', "sweep.json"
    )
    result = CliRunner().invoke(app, ["submit", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "jobs[0].epochs: refused: an integer of 5000 digits" in " ".join(result.output.split())


# -- 4. strict counts and flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, where",
    [
        ("epochs: true", "jobs[0].epochs"),
        ("epochs: '3'", "jobs[0].epochs"),
        ("epochs: 3.0", "jobs[0].epochs"),
        ("batch_size: true", "jobs[0].batch_size"),
        ("batch_size: '64'", "jobs[0].batch_size"),
        ("train_samples: true", "jobs[0].train_samples"),
        ("test_samples: '100'", "jobs[0].test_samples"),
        ("seed: false", "jobs[0].seed"),
        ("steps_per_execution: true", "jobs[0].steps_per_execution"),
        ("jit_compile: 'true'", "jobs[0].jit_compile"),
        ("jit_compile: 1", "jobs[0].jit_compile"),
        ("mixed_precision: 1", "jobs[0].mixed_precision"),
        ("mixed_precision: 'false'", "jobs[0].mixed_precision"),
        ("target_accuracy: true", "jobs[0].target_accuracy"),
        ("target_accuracy: '0.5'", "jobs[0].target_accuracy"),
        ("requires: {min_gpu_memory_gb: true}\n    device: gpu", "jobs[0].requires.min_gpu_memory_gb"),
        ("params: {hidden_units: [true]}", "jobs[0].params.hidden_units[0]"),
        ("params: {hidden_units: ['3000']}", "jobs[0].params.hidden_units[0]"),
        ("params: {learning_rate: true}", "jobs[0].params.learning_rate"),
    ],
)
def test_booleans_and_strings_refused_where_counts_and_flags_belong(tmp_path: Path, entry: str, where: str) -> None:
    msg = refused_text(tmp_path, f"name: s\njobs:\n  - workload: cifar10_mlp\n    {entry}\n")
    assert f": {where}: " in msg, msg


@pytest.mark.parametrize(
    "entry, where",
    [
        ("hidden_layers: true", "hidden_layers"),
        ("units: '500'", "units"),
        ("hidden_layers: 2.0", "hidden_layers"),
    ],
)
def test_strict_counts_in_workload_params(tmp_path: Path, entry: str, where: str) -> None:
    msg = refused_text(tmp_path, f"name: s\njobs:\n  - workload: fashion_mnist_mlp\n    params: {{{entry}}}\n")
    assert f": jobs[0].params.{where}: " in msg, msg


@pytest.mark.parametrize("top", ["repeats: true", "repeats: '3'", "time_limit_s: true", "time_limit_s: '600'"])
def test_strict_top_level_fields(tmp_path: Path, top: str) -> None:
    msg = refused_text(tmp_path, f"name: s\n{top}\njobs: [{{workload: cifar10_mlp}}]\n")
    assert f": {top.split(':')[0]}: " in msg, msg


def test_numbers_where_numbers_belong_still_accepted(tmp_path: Path) -> None:
    # Floats accept integers; flags accept real booleans; jit_compile keeps 'auto'.
    sweep = load_sweep(
        write(
            tmp_path,
            "name: s\nrepeats: 2\ntime_limit_s: 900\njobs:\n"
            "  - {workload: cifar10_mlp, target_accuracy: 1, jit_compile: true, "
            "mixed_precision: false, device: gpu, requires: {min_gpu_memory_gb: 40},"
            " params: {learning_rate: 1}}\n"
            "  - {workload: fashion_mnist_mlp, jit_compile: auto, epochs: 3}\n",
        )
    )
    first = sweep.jobs[0]
    assert first.target_accuracy == 1.0 and first.jit_compile is True and first.params["learning_rate"] == 1.0
    assert first.requires.min_gpu_memory_gb == 40.0 and sweep.jobs[1].jit_compile == "auto"
    assert len(sweep.jobs) == 4


def test_jobspec_itself_is_strict() -> None:
    with pytest.raises(Exception, match="valid integer"):
        JobSpec(sweep="s", workload="cifar10_mlp", epochs=True)
    with pytest.raises(Exception, match="true, false or 'auto'"):
        JobSpec(sweep="s", workload="cifar10_mlp", jit_compile="yes")


# -- 5. any job field may be a matrix axis ----------------------------------------------------------------------


def test_matrix_of_workloads_with_an_empty_job_entry(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, "name: s\nmatrix:\n  workload: [cifar10_mlp, fashion_mnist_mlp]\njobs: [{}]\n"))
    assert [j.workload for j in sweep.jobs] == ["cifar10_mlp", "fashion_mnist_mlp"]


def test_matrix_of_workloads_crossed_with_entries_and_devices(tmp_path: Path) -> None:
    sweep = load_sweep(
        write(
            tmp_path,
            "name: s\nmatrix:\n  workload: [cifar10_mlp, fashion_mnist_mlp]\n"
            "  device: [cpu, gpu]\njobs: [{epochs: 1}, {epochs: 2}]\n",
        )
    )
    assert len(sweep.jobs) == 8
    assert {(j.workload, j.device, j.epochs) for j in sweep.jobs} == {
        (w, d, e) for w in ("cifar10_mlp", "fashion_mnist_mlp") for d in ("cpu", "gpu") for e in (1, 2)
    }


def test_unknown_workload_on_the_matrix_is_located_there(tmp_path: Path) -> None:
    msg = refused_text(tmp_path, "name: s\nmatrix:\n  workload: [cifar10_mlp, nope]\njobs: [{}]\n")
    assert ": matrix.workload[1]: unknown workload 'nope'" in msg, msg


def test_an_entry_with_no_workload_anywhere_is_still_refused(tmp_path: Path) -> None:
    msg = refused_text(tmp_path, "name: s\nmatrix:\n  device: [cpu]\njobs: [{}]\n")
    assert ": jobs[0].workload: field required" in msg, msg


def test_readme_params_axis(tmp_path: Path) -> None:
    sweep = load_sweep(
        write(tmp_path, "name: s\nmatrix:\n  params.hidden_layers: [1, 3, 5]\njobs: [{workload: fashion_mnist_mlp}]\n")
    )
    assert [j.params["hidden_layers"] for j in sweep.jobs] == [1, 3, 5]


@pytest.mark.parametrize(
    "axis, values, check",
    [
        ("params", "[{hidden_units: [10]}, {hidden_units: [20, 30]}]", lambda j: j.params["hidden_units"]),
        ("backend", "[tensorflow, jax, torch]", lambda j: j.backend),
        ("batch_size", "[32, 64]", lambda j: j.batch_size),
        ("data", "[real, synthetic]", lambda j: j.data),
        ("jit_compile", "[true, false, auto]", lambda j: j.jit_compile),
        ("input_pipeline", "[farm, keras]", lambda j: j.input_pipeline),
        ("requires", "[{host: a}, {host: b}]", lambda j: j.requires.host),
        ("target_accuracy", "[0.5, 0.9]", lambda j: j.target_accuracy),
    ],
)
def test_other_job_fields_as_matrix_axes(tmp_path: Path, axis: str, values: str, check: Any) -> None:
    sweep = load_sweep(write(tmp_path, f"name: s\nmatrix:\n  {axis}: {values}\njobs: [{{workload: cifar10_mlp}}]\n"))
    import yaml

    expected = yaml.safe_load(values)
    got = [check(j) for j in sweep.jobs]
    assert len(got) == len(expected)
    if axis == "params":
        assert got == [v["hidden_units"] for v in expected]
    elif axis == "requires":
        assert got == [v["host"] for v in expected]
    else:
        assert got == expected


# -- 6. control characters are escaped in every error ----------------------------------------------------------


def test_escape_keeps_text_and_escapes_controls() -> None:
    assert escape("épochs ✓ a b") == "épochs ✓ a b"
    assert escape("ep\x1b[31mochs") == "ep\\x1b[31mochs"
    assert escape("a\nb\tc\u202ed\x00") == "a\\nb\\tc\\u202ed\\x00"
    assert str(Problem("jobs[0].ep\x1bochs", "bad\nsecond line")) == "jobs[0].ep\\x1bochs: bad\\nsecond line"
    assert str(SpecError.one("x", "y", "dir/\x1b]0;title\x07.yaml")) == "dir/\\x1b]0;title\\x07.yaml: x: y"


@pytest.mark.parametrize(
    "name, text",
    [  # a real process each: the JSON file with the slow tests
        pytest.param(
            "sweep.json",
            '{"name": "s", "jobs": [{"workload": "cifar10_mlp", "ep\\u001b[31mochs": 1}]}',
            marks=pytest.mark.slow,
        ),
        ("sweep.yaml", 'name: s\njobs:\n  - workload: cifar10_mlp\n    "ep\\e[31mochs": 1\n'),
    ],
)
def test_control_characters_in_keys_never_reach_the_terminal(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, text, name)
    out = farm(["submit", str(path), "--dry-run"], tmp_path)
    stderr = out.stderr.decode()
    assert out.returncode == 2, stderr
    assert b"\x1b" not in out.stderr, stderr
    assert f"{path}: jobs[0].ep\\x1b[31mochs: unknown field" in stderr, stderr


def test_a_newline_in_a_key_cannot_forge_a_second_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"name": "s", "jobs": [{"workload": "cifar10_mlp", "x\\n  fake: ok": 1}]}', "sweep.json")
    lines = refused(path)
    assert lines == [f"{path}: jobs[0].x\\n  fake: ok: unknown field"]


def test_raw_control_characters_in_yaml_are_one_located_line(tmp_path: Path) -> None:
    lines = refused(write(tmp_path, "name: s\njobs:\n  - workload: cifar10_mlp\n    ep\x1bochs: 1\n"))
    assert len(lines) == 1 and "line 4, column 7: malformed YAML: character '\\x1b' is not allowed" in lines[0]


# -- 7. memory: absurd models at parse time, too large for the live workers at submit ---------------------------


def test_input_sizes_match_the_datasets() -> None:
    from workers.datasets import DATASETS

    assert math.prod(DATASETS["cifar10"].image_shape) == cifar10_mlp.INPUT_SIZE
    assert math.prod(DATASETS["fashion_mnist"].image_shape) == fashion_mnist_mlp.INPUT_SIZE
    assert DATASETS["cifar10"].num_classes == cifar10_mlp.NUM_CLASSES


def test_seed_parameter_counts() -> None:
    # What keras' model.count_params() says for the seed models: 3072→3000→1000→10 and 784→5×500→10.
    from farm.workloads._mlp import dense_parameters

    cifar = workloads.get("cifar10_mlp").validate_params({})
    fashion = workloads.get("fashion_mnist_mlp").validate_params({})
    assert dense_parameters(cifar10_mlp.layer_sizes(cifar)) == 12_230_010  # type: ignore[arg-type]
    assert dense_parameters(fashion_mnist_mlp.layer_sizes(fashion)) == 1_399_510  # type: ignore[arg-type]


def test_memory_estimate_counts_optimizer_state_and_activations() -> None:
    wl = workloads.get("cifar10_mlp")
    assert wl.memory_estimate is not None
    sgd = wl.memory_estimate(wl.validate_params({"optimizer": "sgd"}), 32)
    adam = wl.memory_estimate(wl.validate_params({"optimizer": "adam"}), 32)
    params = 12_230_010
    activations = (3072 + 3000 + 1000 + 10) * 32 * 2 * 4
    assert sgd == params * 2 * 4 + activations
    assert adam - sgd == params * 2 * 4
    assert wl.memory_estimate(wl.validate_params({}), 64) - sgd == activations


@pytest.mark.parametrize(
    "params",
    [
        "{hidden_units: [65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536]}",
    ],
)
def test_absurd_models_refused_at_parse_time(tmp_path: Path, params: str) -> None:
    msg = refused_text(tmp_path, f"name: s\njobs:\n  - workload: cifar10_mlp\n    params: {params}\n")
    assert ": jobs[0].params: the model would have 30,267,277,322 parameters, more than" in msg, msg


def test_absurd_model_from_the_matrix_names_the_axis(tmp_path: Path) -> None:
    msg = refused_text(
        tmp_path,
        "name: s\nmatrix:\n  params.units: [500, 65536]\n"
        "jobs: [{workload: fashion_mnist_mlp, params: {hidden_layers: 64}}]\n",
    )
    assert ": jobs[0].params with matrix.params.units[1]: the model would have" in msg, msg


def test_absurd_model_refused_by_the_job_spec_too() -> None:
    with pytest.raises(Exception, match="parameters, more than"):
        JobSpec(sweep="s", workload="fashion_mnist_mlp", params={"hidden_layers": 64, "units": 65536})


def big_sweep(tmp_path: Path, device: str = "cpu") -> Sweep:
    # 3072→65536→65536→10 with Adam: about 4.5 G parameters, 67 GB at the least (the other entry: 95 MB).
    return load_sweep(
        write(
            tmp_path,
            f"name: s\nmatrix:\n  batch_size: [32, 64]\njobs:\n"
            f"  - {{workload: cifar10_mlp, device: {device}}}\n"
            f"  - {{workload: cifar10_mlp, device: {device}, params: {{hidden_units: "
            f"[65536, 65536], optimizer: adam}}}}\n",
        )
    )


def test_too_big_names_the_entry_the_estimate_and_the_worker(tmp_path: Path) -> None:
    sweep = big_sweep(tmp_path)
    workers = [{"name": "a", "ram_gb": 31.3, "gpus": []}, {"name": "b", "ram_gb": 16}]
    problems = feasibility.too_big(sweep, workers)
    assert [p.loc for p in problems] == ["jobs[1] with matrix.batch_size[0]", "jobs[1] with matrix.batch_size[1]"]
    assert "needs about 67.0 GB of memory at batch size 32" in problems[0].msg
    assert "more than the 31.3 GB of the largest live CPU worker (RAM)" in problems[0].msg
    # A worker large enough, a worker of the other kind only, or no figure at all: nothing to refuse.
    assert feasibility.too_big(sweep, [{"ram_gb": 256}]) == []
    assert feasibility.too_big(sweep, [{"gpus": [{"memory_gb": 16}]}]) == []
    assert feasibility.too_big(sweep, [{"name": "old worker, no figures"}]) == []


def test_too_big_on_gpu_workers(tmp_path: Path) -> None:
    sweep = big_sweep(tmp_path, "gpu")
    problems = feasibility.too_big(
        sweep, [{"ram_gb": 2000, "gpus": [{"memory_gb": 23.6}]}, {"ram_gb": 2000, "gpus": [{"memory_gb": 44.3}]}]
    )
    assert (
        len(problems) == 2
        and "of GPU memory" in problems[0].msg
        and "44.3 GB of the largest live GPU" in problems[0].msg
    )


def test_registry_figures_are_checked_not_trusted() -> None:
    junk: list[Any] = [
        "x",
        None,
        {"ram_gb": True},
        {"ram_gb": "64"},
        {"ram_gb": float("nan")},
        {"ram_gb": -1},
        {"gpus": "none"},
        {"gpus": [None, {"memory_gb": "80"}]},
        {"ram_gb": 8},
    ]
    assert feasibility.largest_memory_gb(junk) == {"cpu": 8.0}


def test_too_big_lists_twenty_then_counts(tmp_path: Path) -> None:
    sweep = load_sweep(
        write(
            tmp_path,
            "name: s\nmatrix:\n  seed: [" + ", ".join(map(str, range(25))) + "]\njobs: [{workload: cifar10_mlp}]\n",
        )
    )
    problems = feasibility.too_big(sweep, [{"ram_gb": 0.01}])
    assert len(problems) == 21 and problems[-1] == Problem("", "and 5 more job(s) too large for every live worker")


@pytest.fixture
def farm_redis() -> Iterator[tuple[str, redis.Redis]]:
    with throwaway_redis() as server:
        client = redis.Redis.from_url(server.url)
        # A live CPU worker with 31 GB of RAM (the fields `farm worker` registers).
        client.set(
            "farm:worker:cpu@x",
            json.dumps({"name": "cpu@x", "queues": ["farm.cpu"], "ram_gb": 31.3, "gpus": [], "heartbeat_at": 0}),
        )
        try:
            yield server.url, client
        finally:
            client.close()


def test_submit_refuses_a_job_too_big_for_every_live_worker(
    tmp_path: Path, farm_redis: tuple[str, redis.Redis]
) -> None:
    url, client = farm_redis
    big_sweep(tmp_path)  # writes sweep.yaml
    path = tmp_path / "sweep.yaml"
    for extra in ([], ["--allow-unserved"]):
        result = CliRunner().invoke(app, ["submit", str(path), "--broker", url, *extra])
        assert result.exit_code == 2, result.output
        out = " ".join(result.output.split())
        assert f"{path}: jobs[1] with matrix.batch_size[0]: needs about 67.0 GB" in out, result.output
        assert "31.3 GB of the largest live CPU worker" in out and "Traceback" not in out
    assert client.llen("farm.cpu") == 0 and not client.keys("farm:state:*") and not client.keys("farm:sweep*")


def test_dry_run_shows_estimates_and_what_is_too_big(tmp_path: Path, farm_redis: tuple[str, redis.Redis]) -> None:
    url, _ = farm_redis
    big_sweep(tmp_path)
    path = tmp_path / "sweep.yaml"
    result = CliRunner().invoke(app, ["submit", str(path), "--broker", url, "--dry-run"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "memory" in out and "67.0 GB" in out and "67.1 GB" in out and "95 MB" in out
    assert "too large: jobs[1] with matrix.batch_size[1]: needs about" in out
    data = json.loads(CliRunner().invoke(app, ["submit", str(path), "--broker", url, "--dry-run", "--json"]).stdout)
    assert len(data["too_big"]) == 2 and all(v > 0 for v in data["memory_gb"].values())
    assert set(data["memory_gb"]) == set(data["job_ids"])


def test_feasibility_imports_no_framework() -> None:
    code = (
        "import sys, farm.feasibility, farm.sweep_file, farm.sweep; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
