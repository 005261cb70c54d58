"""What dominates a job's memory is counted at submit, and a result's error is bounded (issue 24, items 7-8).

ResNet-50 at 512 pixels and batch 4,096 was estimated at 195 MB (no activations) and accepted; a Transformer on
4,096-token sequences at 5 GB (no attention scores, about 137 GB alone). A 20 MB error message was stored whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farm import feasibility
from farm.job import JobSpec
from farm.result import JobResult, JobStatus, cap_error
from farm.rows import result_row
from farm.sweep import load_sweep
from farm.workloads import mobilenet_v2, resnet50, text_transformer

GB = 2**30


def test_image_models_count_their_activations() -> None:
    huge = resnet50.memory_estimate(resnet50.ResNet50Params(image_size=512), 4096)
    assert huge > 1000 * GB, huge / GB  # terabytes: about 775 MB of layer outputs per 512-pixel image in float32
    # Activations grow with the batch and the image's area; the weights do not.
    small = resnet50.ResNet50Params(image_size=64)
    assert resnet50.memory_estimate(small, 64) - resnet50.memory_estimate(small, 32) == (
        resnet50.activations_per_sample(64) * 32 * 2
    )
    assert resnet50.activations_per_sample(448) == pytest.approx(4 * resnet50.activations_per_sample(224), rel=1e-6)
    mobile = mobilenet_v2.MobileNetV2Params(image_size=512, alpha=1.4)
    assert mobilenet_v2.memory_estimate(mobile, 4096) > 1000 * GB


def test_the_transformer_counts_its_attention_scores() -> None:
    params = text_transformer.TextTransformerParams(seq_len=4096, heads=16, depth=4, width=256)
    scores = 64 * 16 * 4096**2 * 4 * 2  # batch × heads × seq² × blocks × 2 bytes: 137 GB
    assert text_transformer.memory_estimate(params, 64) > scores > 100 * GB
    # Doubling the sequence quadruples the scores.
    shorter = params.model_copy(update={"seq_len": 2048})
    assert text_transformer.memory_estimate(params, 64) > 3.5 * text_transformer.memory_estimate(shorter, 64)


@pytest.mark.parametrize(
    ("job", "device", "workers", "needs", "largest"),
    [
        ("{workload: resnet50, params: {image_size: 512}, batch_size: 4096}", "cpu", [{"ram_gb": 256}], "1", "256"),
        (
            "{workload: text_transformer, params: {seq_len: 4096, heads: 16, depth: 4, width: 256}, batch_size: 64}",
            "gpu",
            [{"ram_gb": 2000, "gpus": [{"memory_gb": 79.6}]}],
            "1",
            "79.6",
        ),
    ],
)
def test_refused_at_submit_naming_the_estimate_and_the_largest_worker(
    tmp_path: Path, job: str, device: str, workers: list, needs: str, largest: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ndefaults: {{data: synthetic}}\njobs:\n  - {job[:-1]}, device: {device}}}\n")
    [problem] = feasibility.too_big(load_sweep(path), workers)
    assert problem.loc == "jobs[0]" and problem.msg.startswith(f"needs about {needs}"), problem.msg
    assert f"more than the {largest} GB of the largest live" in problem.msg


def test_an_error_is_stored_bounded_in_the_result_and_its_row() -> None:
    huge = "x" * (20 * 2**20)
    capped = cap_error(huge)
    assert capped is not None and capped.startswith("x" * 8192) and len(capped) < 8300
    assert capped.endswith(f"… ({20 * 2**20 - 8192} more characters)")
    assert cap_error("short") == "short" and cap_error(None) is None

    result = JobResult(
        job_id="j", sweep_id="s", job=JobSpec(sweep="s", workload="cifar10_mlp"), status=JobStatus.failed, error=huge
    )
    assert result.error is not None and len(result.error) < 8300
    assert len(result_row(result)["error"]) < 8300
    again = JobResult.model_validate_json(result.model_dump_json())
    assert again.error == result.error
