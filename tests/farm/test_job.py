"""JobSpec / JobEnvelope: validation bounds, content-hash ids, the envelope's integrity check, the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import BaseModel, ValidationError

from farm import defaults, workloads
from farm.job import JOB_ID_RE, JobEnvelope, JobSpec
from tests.helpers import REPO

SPEC = {
    "sweep": "stable",
    "workload": "fashion_mnist_mlp",
    "device": "gpu",
    "epochs": 3,
    "batch_size": 128,
    "seed": 7,
    "repeat": 2,
    "params": {"hidden_layers": 3, "units": 256, "learning_rate": 0.001},
}


def spec(**overrides) -> JobSpec:
    return JobSpec(**{**SPEC, **overrides})


# -- validation bounds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 1),
        ("epochs", defaults.MAX_EPOCHS),
        ("batch_size", 1),
        ("batch_size", defaults.MAX_BATCH_SIZE),
        ("seed", 0),
        ("seed", 2**31 - 1),
        ("repeat", 0),
        ("repeat", defaults.MAX_REPEATS - 1),
        ("steps_per_execution", 1),
        ("steps_per_execution", 100_000),
        ("train_samples", 1),
        ("train_samples", defaults.MAX_SAMPLES),
        ("test_samples", defaults.MAX_SAMPLES),
        ("target_accuracy", 1.0),
        ("target_accuracy", 0.5),
        ("jit_compile", True),
        ("jit_compile", False),
        ("jit_compile", "auto"),
        ("device", "cpu"),
        ("backend", "jax"),
        ("backend", "torch"),
        ("data", "synthetic"),
        ("input_pipeline", "keras"),
        ("mixed_precision", True),
        ("sweep", "a"),
        ("sweep", "A" + "b" * 99),
        ("sweep", "seed-cpu_vs.gpu2"),
        ("requires", {"gpu_model": "H100", "min_gpu_memory_gb": 40, "host": "lab3"}),
    ],
)
def test_accepted_values(field: str, value) -> None:
    job = spec(**{field: value})
    assert JOB_ID_RE.match(job.job_id)


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", defaults.MAX_EPOCHS + 1),
        ("epochs", "ten"),
        ("epochs", 1.5),
        ("batch_size", 0),
        ("batch_size", defaults.MAX_BATCH_SIZE + 1),
        ("seed", -1),
        ("seed", 2**31),
        ("repeat", -1),
        ("repeat", defaults.MAX_REPEATS),
        ("steps_per_execution", 0),
        ("steps_per_execution", 100_001),
        ("train_samples", 0),
        ("train_samples", defaults.MAX_SAMPLES + 1),
        ("test_samples", 0),
        ("target_accuracy", 0),
        ("target_accuracy", 1.01),
        ("jit_compile", "sometimes"),
        ("device", "tpu"),
        ("backend", "mxnet"),
        ("data", "fake"),
        ("input_pipeline", "tf.data"),
        ("sweep", "my sweep"),
        ("sweep", ""),
        ("sweep", "-leading-dash"),
        ("sweep", "a" * 101),
        ("sweep", "../etc"),
        ("requires", {"gpu_model": "H100", "colour": "red"}),
        ("requires", {"min_gpu_memory_gb": 0}),
        ("requires", {"gpu_model": "x" * (defaults.MAX_STRING_LENGTH + 1)}),
        ("params", {"hidden_layers": 0}),
        ("params", {"hidden_layers": defaults.MAX_HIDDEN_LAYERS + 1}),
        ("params", {"units": defaults.MAX_UNITS + 1}),
        ("params", {"bogus": 1}),
        ("params", {"optimizer": "lbfgs"}),
        ("params", {"learning_rate": 0}),
        ("params", "hidden_layers=3"),
    ],
)
def test_refused_values(field: str, value) -> None:
    with pytest.raises(ValidationError):
        spec(**{field: value})


def test_unknown_top_level_field_refused() -> None:
    with pytest.raises(ValidationError) as info:
        spec(bogus=1)
    assert "bogus" in str(info.value)


def test_unknown_workload_refused() -> None:
    with pytest.raises(ValidationError) as info:
        spec(workload="no_such_model", params={})
    text = str(info.value)
    assert "unknown workload 'no_such_model'" in text
    assert "cifar10_mlp" in text and "fashion_mnist_mlp" in text  # the known ones are listed


def test_spec_is_frozen() -> None:
    job = spec()
    with pytest.raises(ValidationError):
        job.epochs = 5  # type: ignore[misc]


def test_params_stored_with_workload_defaults() -> None:
    job = spec(params={"hidden_layers": 2})
    assert job.params == {
        "activation": "relu",
        "output_activation": "sigmoid",
        "optimizer": "adam",
        "learning_rate": None,
        "hidden_layers": 2,
        "units": 500,
    }
    cifar = spec(workload="cifar10_mlp", params={})
    assert cifar.params["hidden_units"] == [3000, 1000] and cifar.params["optimizer"] == "sgd"


def test_workload_param_models_differ() -> None:
    # hidden_layers is a fashion_mnist_mlp parameter only.
    with pytest.raises(ValidationError):
        spec(workload="cifar10_mlp", params={"hidden_layers": 3})


# -- ids ---------------------------------------------------------------------------------------------------------


def test_job_id_is_20_hex_chars() -> None:
    job_id = spec().job_id
    assert len(job_id) == 20
    assert JOB_ID_RE.match(job_id)
    assert all(c in "0123456789abcdef" for c in job_id)


def test_job_id_depends_on_content_only() -> None:
    a = spec()
    assert a.job_id == spec().job_id
    assert a.job_id == JobSpec.model_validate_json(a.model_dump_json()).job_id
    for change in (
        {"epochs": 4},
        {"device": "cpu"},
        {"repeat": 3},
        {"sweep": "other"},
        {"seed": 8},
        {"params": {**SPEC["params"], "units": 257}},
        {"requires": {"gpu_model": "H100"}},
    ):
        assert spec(**change).job_id != a.job_id, change


def test_explicit_defaults_hash_like_omitted_ones() -> None:
    short = spec(params={"hidden_layers": 3})
    long = spec(
        params={
            "hidden_layers": 3,
            "units": 500,
            "activation": "relu",
            "optimizer": "adam",
            "output_activation": "sigmoid",
            "learning_rate": None,
        }
    )
    assert short.job_id == long.job_id
    # Key order and int-vs-float spellings of the same value do not matter either.
    assert spec(params={"learning_rate": 0.001, "units": 256, "hidden_layers": 3}).job_id == spec().job_id
    assert (
        spec(params={**SPEC["params"], "learning_rate": 1}).job_id
        == spec(params={**SPEC["params"], "learning_rate": 1.0}).job_id
    )


def test_job_id_stable_across_processes() -> None:
    code = "import json, sys; from farm.job import JobSpec; print(JobSpec(**json.loads(sys.argv[1])).job_id)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(SPEC)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == spec().job_id


def test_job_id_pinned_value() -> None:
    # The hash is part of the farm's data: a change here orphans every stored result.
    job = JobSpec(sweep="seed-cpu-vs-gpu", workload="cifar10_mlp", epochs=10, params={})
    assert job.job_id == "4263680259bd6e3c6bda"


def test_job_id_is_computed_once_and_follows_copies() -> None:
    a = spec()
    first = a.job_id
    assert a.job_id is first  # cached: a sweep asks for each id several times
    assert a == spec() and spec() == a  # the cache is no part of the value
    assert "job_id" not in a.model_dump() and "job_id" not in a.model_dump_json()
    changed = a.model_copy(update={"repeat": 3})
    assert changed.job_id == spec(repeat=3).job_id != first
    assert a.model_copy().job_id == first and a.model_copy(deep=True).job_id == first


def test_job_id_cannot_be_set() -> None:
    a = spec()
    with pytest.raises(AttributeError):
        a.job_id = "0" * 20  # type: ignore[misc]
    assert a.job_id == spec().job_id


def test_seed_effective_is_seed_plus_repeat() -> None:
    assert spec(seed=7, repeat=2).seed_effective == 9
    assert spec(seed=0, repeat=0).seed_effective == 0
    assert JobSpec(sweep="s", workload="cifar10_mlp", params={}, repeat=4).seed_effective == defaults.SEED + 4


def test_cell_leaves_out_the_repeat_only() -> None:
    a, b = spec(repeat=0), spec(repeat=5)
    assert a.cell() == b.cell()
    assert "repeat" not in a.cell()
    assert spec(repeat=0, epochs=9).cell() != a.cell()


def test_default_time_limit_bounds() -> None:
    assert spec(epochs=1).default_time_limit_s() == defaults.JOB_TIME_LIMIT_FLOOR_S
    assert spec(epochs=3).default_time_limit_s() == 3 * defaults.JOB_TIME_LIMIT_PER_EPOCH_S
    assert spec(epochs=defaults.MAX_EPOCHS).default_time_limit_s() == defaults.MAX_TIME_LIMIT_S


def test_omitted_params_hash_like_empty_params() -> None:
    omitted = JobSpec(sweep="s", workload="cifar10_mlp")
    given = JobSpec(sweep="s", workload="cifar10_mlp", params={})
    assert omitted.params == given.params
    assert omitted.job_id == given.job_id


# -- envelope ----------------------------------------------------------------------------------------------------


def test_envelope_round_trips_through_json() -> None:
    env = JobEnvelope.for_job(spec(), "stable-0123abcd")
    raw = env.model_dump_json()
    assert json.loads(raw)["job_id"] == env.job_id
    back = JobEnvelope.model_validate_json(raw)
    assert back == env
    assert back.job.job_id == env.job_id
    # And through the plain-JSON form that travels in a Celery message.
    assert JobEnvelope.model_validate(json.loads(json.dumps(env.model_dump(mode="json")))) == env


def test_envelope_time_limit() -> None:
    job = spec(epochs=3)
    assert JobEnvelope.for_job(job, "s-1").time_limit_s == job.default_time_limit_s()
    assert JobEnvelope.for_job(job, "s-1", 42.0).time_limit_s == 42.0
    with pytest.raises(ValidationError):
        JobEnvelope(job_id=job.job_id, sweep_id="s-1", job=job, time_limit_s=0)
    with pytest.raises(ValidationError):
        JobEnvelope(job_id=job.job_id, sweep_id="s-1", job=job, time_limit_s=defaults.MAX_TIME_LIMIT_S + 1)


def test_envelope_refuses_a_job_id_not_matching_the_spec() -> None:
    job = spec()
    other = spec(epochs=4).job_id
    with pytest.raises(ValidationError) as info:
        JobEnvelope(job_id=other, sweep_id="s-1", job=job, time_limit_s=60)
    assert "does not match" in str(info.value)


def test_envelope_detects_a_tampered_spec_in_json() -> None:
    env = JobEnvelope.for_job(spec(), "s-1")
    data = json.loads(env.model_dump_json())
    data["job"]["epochs"] = 999
    with pytest.raises(ValidationError):
        JobEnvelope.model_validate(data)


@pytest.mark.parametrize("job_id", ["", "abc", "0" * 19, "0" * 21, "G" * 20, "ABCDEF0123456789ABCD"])
def test_envelope_refuses_malformed_job_ids(job_id: str) -> None:
    with pytest.raises(ValidationError):
        JobEnvelope(job_id=job_id, sweep_id="s-1", job=spec(), time_limit_s=60)


def test_envelope_refuses_unknown_fields() -> None:
    data = json.loads(JobEnvelope.for_job(spec(), "s-1").model_dump_json())
    data["code"] = "import os"
    with pytest.raises(ValidationError):
        JobEnvelope.model_validate(data)


def test_envelope_with_unknown_workload_refused() -> None:
    data = json.loads(JobEnvelope.for_job(spec(), "s-1").model_dump_json())
    data["job"]["workload"] = "rm_rf"
    with pytest.raises(ValidationError) as info:
        JobEnvelope.model_validate(data)
    assert "unknown workload" in str(info.value)


def test_envelope_of_a_spec_without_params_round_trips() -> None:
    env = JobEnvelope.for_job(JobSpec(sweep="s", workload="cifar10_mlp"), "s-1")
    assert JobEnvelope.model_validate_json(env.model_dump_json()) == env


# -- the registry ------------------------------------------------------------------------------------------------


def test_builtin_workloads_registered() -> None:
    assert workloads.names() == [
        "cifar10_mlp",
        "fashion_mnist_mlp",
        "mobilenet_v2",
        "resnet50",
        "sequence_rnn",
        "text_transformer",
    ]
    assert workloads.get("cifar10_mlp").dataset == "cifar10"
    assert workloads.get("fashion_mnist_mlp").dataset == "fashion_mnist"


def test_registry_unknown_name_raises() -> None:
    with pytest.raises(workloads.UnknownWorkload) as info:
        workloads.get("nope")
    assert isinstance(info.value, KeyError)
    assert "nope" in info.value.args[0] and "cifar10_mlp" in info.value.args[0]


class _Params(BaseModel):
    width: int = 4


def _workload(name: str) -> workloads.Workload:
    return workloads.Workload(
        name=name,
        dataset="cifar10",
        params_model=_Params,
        build_model=lambda p, shape, n: None,
        prepare=lambda x, y: (x, y),
    )


def test_registry_refuses_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workloads, "_REGISTRY", dict(workloads._REGISTRY))
    with pytest.raises(workloads.WorkloadConflict, match="'cifar10_mlp' is provided twice: by benchfarm itself and by"):
        workloads.register(_workload("cifar10_mlp"))
    assert workloads.get("cifar10_mlp").dataset == "cifar10"  # the original is untouched
    workloads.register(_workload("test_only_mlp"))
    with pytest.raises(workloads.WorkloadConflict, match="provided twice"):
        workloads.register(_workload("test_only_mlp"))


def test_registered_workload_usable_in_a_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workloads, "_REGISTRY", dict(workloads._REGISTRY))
    workloads.register(_workload("test_only_mlp"))
    job = JobSpec(sweep="s", workload="test_only_mlp", params={})
    assert job.params == {"width": 4}
    assert "test_only_mlp" in workloads.names()


def test_registry_left_clean_by_the_tests_above() -> None:
    assert "test_only_mlp" not in workloads.names()


def test_workload_modules_do_not_import_frameworks() -> None:
    code = (
        "import sys, farm.workloads, farm.job, farm.sweep; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
