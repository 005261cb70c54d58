"""Job modes and workload data specs on the submit side: ids that stay put, refusals that name the problem."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from farm import workloads
from farm.job import JobSpec
from farm.workloads import REAL_DATASETS, DataSpec, Workload


def test_train_jobs_keep_their_ids() -> None:
    """``mode`` was added after results were recorded: a training job's canonical JSON (hence its id) does not
    mention it, so a sweep submitted before and after the change is the same jobs."""
    job = JobSpec(sweep="s", workload="cifar10_mlp", data="synthetic")
    assert '"mode"' not in job.canonical_json()
    assert job.job_id == JobSpec(sweep="s", workload="cifar10_mlp", data="synthetic", mode="train").job_id
    inference = JobSpec(sweep="s", workload="cifar10_mlp", data="synthetic", mode="inference")
    assert '"mode":"inference"' in inference.canonical_json()
    assert inference.job_id != job.job_id
    assert inference.cell()["mode"] == "inference" and job.cell()["mode"] == "train"


def test_mode_is_validated() -> None:
    with pytest.raises(ValidationError, match="mode"):
        JobSpec(sweep="s", workload="cifar10_mlp", mode="serve")
    with pytest.raises(ValidationError, match="target_accuracy needs mode: train"):
        JobSpec(sweep="s", workload="cifar10_mlp", mode="inference", target_accuracy=0.5)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    side: int = 32


def _shaped(params: _Params) -> DataSpec:
    real = "cifar10" if params.side == 32 else None
    return DataSpec(sample_shape=(params.side, params.side, 3), num_classes=10, real=real)


@pytest.fixture
def shaped_workload(monkeypatch: pytest.MonkeyPatch) -> Workload[_Params]:
    monkeypatch.setattr(workloads, "_REGISTRY", dict(workloads._REGISTRY))
    return workloads.register(
        Workload(
            name="test_shaped",
            dataset=None,
            params_model=_Params,
            build_model=lambda p, shape, n: None,
            prepare=lambda x, y: (x, y),
            data=_shaped,
        )
    )


def test_real_data_only_where_a_real_dataset_fits(shaped_workload: Workload[_Params]) -> None:
    JobSpec(sweep="s", workload="test_shaped", params={"side": 32}, data="real")  # CIFAR-10's shape: fine
    with pytest.raises(ValidationError, match=r"images_64x64x3_c10 samples.*use data: synthetic"):
        JobSpec(sweep="s", workload="test_shaped", params={"side": 64}, data="real")
    job = JobSpec(sweep="s", workload="test_shaped", params={"side": 64}, data="synthetic")
    assert job.data_spec().sample_shape == (64, 64, 3)


def test_a_workload_needs_real_data_or_a_data_function() -> None:
    with pytest.raises(ValueError, match="not one benchfarm can load"):
        Workload(
            name="x", dataset="imagenet", params_model=_Params, build_model=lambda *a: None, prepare=lambda x, y: (x, y)
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_shape": (), "num_classes": 10}, "positive dimensions"),
        ({"sample_shape": (0, 3), "num_classes": 10}, "positive dimensions"),
        ({"sample_shape": (8,), "num_classes": 1}, "at least 2 classes"),
        ({"sample_shape": (8,), "num_classes": 2, "kind": "tokens"}, "vocab_size"),
        ({"sample_shape": (32, 32, 3), "num_classes": 100, "real": "cifar10"}, "not 100 classes"),
        ({"sample_shape": (32, 32, 3), "num_classes": 10, "real": "imagenet"}, "unknown real dataset"),
    ],
)
def test_data_spec_refuses_nonsense(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataSpec(**kwargs)


def test_data_spec_names() -> None:
    assert DataSpec.of_real("cifar10").name == "cifar10"
    tokens = DataSpec(sample_shape=(128,), num_classes=2, kind="tokens", vocab_size=20000)
    assert tokens.name == "tokens_128_v20000_c2"
    assert tokens.tokens_per_sample == 128 and tokens.sample_bytes() == 512
    image = DataSpec(sample_shape=(224, 224, 3), num_classes=1000)
    assert image.name == "images_224x224x3_c1000" and image.tokens_per_sample is None


def test_real_datasets_match_the_worker_catalogue() -> None:
    """The submit side's shapes (no numpy) and the worker's archive catalogue describe the same datasets."""
    from workers.datasets import DATASETS

    assert set(REAL_DATASETS) == set(DATASETS)
    for name, real in REAL_DATASETS.items():
        info = DATASETS[name]
        assert (real.sample_shape, real.num_classes, real.train_size, real.test_size) == (
            info.image_shape,
            info.num_classes,
            info.train_size,
            info.test_size,
        )
