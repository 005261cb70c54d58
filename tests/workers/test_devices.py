"""Device probing and fingerprints: parsing nvidia-smi, GPU slugs and tags, keys, and the no-framework rule.

Everything here but the ``slow`` test runs without importing a framework, and most of it without a GPU:
GPUs are fed in as sample nvidia-smi output or a fake nvidia-smi on PATH.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from farm import fingerprint
from farm.fingerprint import (
    GPUInfo,
    hardware_key,
    host_facts,
    parse_cuda_version,
    parse_nvidia_smi_csv,
    query_nvidia_smi,
    software_key,
)
from tests.helpers import HOST_FACT_KEYS, REPO, assert_has_keys
from workers import devices
from workers.devices import (
    BackendInfo,
    DeviceReport,
    check_backend_gpu,
    derive_tags,
    gpu_model_slug,
    installed_backends,
    probe,
)

FRAMEWORKS = ("tensorflow", "keras", "jax", "jaxlib", "torch")

ONE_GPU = "0, NVIDIA H100 80GB HBM3, 81559, GPU-4b0c6b2e-1c2d-3e4f-5a6b-7c8d9e0f1a2b, 550.54.15\n"
FOUR_GPUS = """\
0, Tesla V100-SXM2-16GB, 16160, GPU-00000000-0000-0000-0000-000000000000, 470.182.03
1, Tesla V100-SXM2-16GB, 16160, GPU-11111111-1111-1111-1111-111111111111, 470.182.03
2, NVIDIA GeForce RTX 4090, 24564, GPU-22222222-2222-2222-2222-222222222222, 470.182.03
3, NVIDIA A100-SXM4-80GB, [N/A], [N/A], 470.182.03
"""
NVIDIA_SMI_HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


# --- nvidia-smi -----------------------------------------------------------------------------------------


def test_parse_one_gpu() -> None:
    assert parse_nvidia_smi_csv(ONE_GPU) == [
        GPUInfo(
            index=0,
            name="NVIDIA H100 80GB HBM3",
            memory_gb=79.6,
            uuid="GPU-4b0c6b2e-1c2d-3e4f-5a6b-7c8d9e0f1a2b",
            driver="550.54.15",
            cuda=None,
        )
    ]


def test_parse_four_gpus() -> None:
    gpus = parse_nvidia_smi_csv(FOUR_GPUS)
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert [g.name for g in gpus] == [
        "Tesla V100-SXM2-16GB",
        "Tesla V100-SXM2-16GB",
        "NVIDIA GeForce RTX 4090",
        "NVIDIA A100-SXM4-80GB",
    ]
    assert [g.memory_gb for g in gpus] == [15.8, 15.8, 24.0, 0.0]  # unreported memory: 0, never a guess
    assert gpus[3].uuid is None and gpus[3].driver == "470.182.03"
    assert all(g.cuda is None for g in gpus)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
        "NVIDIA driver is installed and running.\n",
        "No devices were found\n",
        "index, name, memory.total [MiB], uuid, driver_version\n",  # a header line is not a GPU
        "a,b,c,d,e\n\x00\xff, ,,,\n-1, ghost, 1, x, y\n",
    ],
)
def test_parse_garbage_gives_empty(garbage: str) -> None:
    assert parse_nvidia_smi_csv(garbage) == []


def test_parse_cuda_version() -> None:
    assert parse_cuda_version(NVIDIA_SMI_HEADER) == "12.4"
    assert parse_cuda_version("no header here") is None


def _fake_nvidia_smi(directory: Path, csv: str, header: str, rc: int = 0) -> None:
    script = directory / "nvidia-smi"
    script.write_text(
        f"#!/bin/sh\nif [ \"$#\" -gt 0 ]; then cat <<'EOF'\n{csv}EOF\nelse cat <<'EOF'\n{header}EOF\nfi\nexit {rc}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_query_nvidia_smi_with_fake_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvidia_smi(tmp_path, FOUR_GPUS, NVIDIA_SMI_HEADER)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    gpus = query_nvidia_smi(timeout=5)
    assert len(gpus) == 4 and all(g.cuda == "12.4" for g in gpus)


def test_query_nvidia_smi_failing_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvidia_smi(tmp_path, ONE_GPU, NVIDIA_SMI_HEADER, rc=9)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert query_nvidia_smi() == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert query_nvidia_smi() == []


# --- slugs and tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, slug",
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("Tesla V100-SXM2-16GB", "v100"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100 80GB PCIe", "a100"),
        ("NVIDIA H100 NVL", "h100"),
        ("Tesla T4", "t4"),
        ("NVIDIA GeForce GTX 1080 Ti", "gtx1080ti"),
        ("NVIDIA", "unknown"),
    ],
)
def test_gpu_model_slug(name: str, slug: str) -> None:
    assert gpu_model_slug(name) == slug


def test_derive_tags_cpu_only() -> None:
    assert derive_tags([], "Lab-PC_07.example.com") == ["cpu", "cpu.host-lab-pc-07-example-com"]


def test_derive_tags_multi_gpu_is_deterministic() -> None:
    gpus = parse_nvidia_smi_csv(FOUR_GPUS)
    tags = derive_tags(gpus, "gpu-box")
    # Only what every GPU of the box satisfies: no single model, memory up to the smallest card's.
    assert tags[:4] == ["cpu", "cpu.host-gpu-box", "gpu", "gpu.host-gpu-box"]
    assert not any("model-" in t for t in tags)
    assert tags == derive_tags(list(reversed(gpus)), "gpu-box")


# --- keys -----------------------------------------------------------------------------------------------

FACTS = {"host": "lab1", "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "cpu_cores_logical": 8}


def test_hardware_key() -> None:
    assert hardware_key(FACTS, None, "cpu") == "cpu:Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz x8"
    # A container limited to fewer CPUs is a different machine as far as timings go.
    assert hardware_key({**FACTS, "cpu_cores_usable": 2}, None, "cpu").endswith(" x2")
    h100 = parse_nvidia_smi_csv(ONE_GPU)
    assert hardware_key(FACTS, h100, "gpu") == "gpu:NVIDIA H100 80GB HBM3"
    four = parse_nvidia_smi_csv(FOUR_GPUS)
    key = hardware_key(FACTS, four, "gpu")
    assert key == ("gpu:NVIDIA A100-SXM4-80GB + NVIDIA GeForce RTX 4090 + Tesla V100-SXM2-16GB x2")
    assert hardware_key(FACTS, list(reversed(four)), "gpu") == key
    assert hardware_key(FACTS, [], "gpu") == "gpu:unknown"
    with pytest.raises(ValueError):
        hardware_key(FACTS, None, "tpu")


def test_software_key() -> None:
    versions = {"tensorflow": "2.21.0", "numpy": "2.1.0", "keras": "3.15.1", "python": "3.11.7"}
    assert software_key(versions) == "py3.11.7 keras3.15.1 tensorflow2.21.0"
    assert software_key(dict(reversed(list(versions.items())))) == software_key(versions)
    assert (
        software_key({"python": "3.12.1", "keras": "3.4.0", "torch": "2.3.0", "jax": "0.4.30"})
        == "py3.12.1 keras3.4.0 jax0.4.30 torch2.3.0"
    )
    assert software_key({}) == ""


# --- this machine ---------------------------------------------------------------------------------------


def test_host_facts_are_sane() -> None:
    facts = host_facts()
    assert_has_keys(facts, (*HOST_FACT_KEYS, "cpu_cores_physical"))
    assert facts["host"] and facts["os"] and facts["cpu_model"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", facts["python"])
    assert facts["cpu_cores_logical"] >= facts["cpu_cores_physical"] >= 1
    assert 1 <= facts["cpu_cores_usable"] <= facts["cpu_cores_logical"]
    assert facts["ram_gb"] > 0 and round(facts["ram_gb"], 1) == facts["ram_gb"]
    import farm

    assert facts["benchfarm"] == farm.__version__
    json.dumps(facts)  # travels in results and worker reports


def test_git_commit_of_the_source_tree() -> None:
    commit = fingerprint.git_commit()
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        assert commit is None
        return
    head = subprocess.run([git, "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else None
    assert commit == expected


def _expected_backend(name: str) -> tuple[bool, str | None]:
    """What installed_backends should say, computed independently from metadata (no import either)."""
    if importlib.util.find_spec(name) is None:
        return False, None
    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly") if name == "tensorflow" else (name,):
        try:
            return True, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return True, None


def test_installed_backends_does_not_import_frameworks() -> None:
    already = {m for m in FRAMEWORKS if m in sys.modules}
    backends = {b.name: b for b in installed_backends()}
    assert sorted(backends) == ["jax", "tensorflow", "torch"]
    for name, info in backends.items():
        installed, version = _expected_backend(name)
        assert info.installed is installed, name
        assert info.version == version, name
        assert info.sees_gpu is None and info.gpu_devices == [] and info.error is None
        if installed:
            assert version, f"{name} is importable but has no version in its metadata"
    assert {m for m in FRAMEWORKS if m in sys.modules} == already  # none imported here (an earlier test may have)


def test_modules_import_no_framework() -> None:
    code = (
        "import sys, json, farm.fingerprint, workers.devices; "
        f"print(json.dumps(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_probe_without_gpu_checks_uses_given_gpus() -> None:
    already = {m for m in FRAMEWORKS if m in sys.modules}
    gpus = parse_nvidia_smi_csv(ONE_GPU)
    report = probe(check_gpu_visibility=False, gpus=gpus)
    assert isinstance(report, DeviceReport)
    assert report.gpus == gpus
    assert report.tags[:3] == ["cpu", "cpu.host-" + report.tags[1].split("host-")[1], "gpu"]
    assert any(t.startswith("gpu.model-h100") for t in report.tags)
    assert all(b.sees_gpu is None for b in report.backends)
    assert report.gpu_backends == []
    if importlib.util.find_spec("keras") is not None:
        assert report.keras_version
    assert DeviceReport.model_validate_json(report.model_dump_json()) == report
    assert {m for m in FRAMEWORKS if m in sys.modules} == already  # the probe imports no framework here


# --- the GPU check's failure paths (fast: the snippet is replaced, no framework is imported) -------------


def _installed_backend() -> str:
    for info in installed_backends():
        if info.installed:
            return info.name
    pytest.skip("no Keras backend installed here")


def test_check_backend_gpu_reports_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _installed_backend()
    monkeypatch.setitem(devices._SNIPPETS, name, "import sys; sys.stderr.write('boom: no libcuda'); sys.exit(3)")
    info = check_backend_gpu(name, timeout=30)
    assert info.installed and info.sees_gpu is None
    assert info.error and "exit code 3" in info.error and "boom: no libcuda" in info.error


def test_check_backend_gpu_reports_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _installed_backend()
    monkeypatch.setitem(devices._SNIPPETS, name, "import time; time.sleep(60)")
    info = check_backend_gpu(name, timeout=0.5)
    assert info.sees_gpu is None and info.error and "timed out" in info.error


def test_check_backend_gpu_parses_the_last_json_line(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _installed_backend()
    monkeypatch.setitem(
        devices._SNIPPETS,
        name,
        (
            "import os, json; print('some framework chatter'); "
            "assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '3'; "
            "print(json.dumps({'version': 'x', 'sees_gpu': True, 'gpu_devices': ['gpu:0 Fake']}))"
        ),
    )
    info = check_backend_gpu(name, timeout=30)
    assert info.error is None and info.sees_gpu is True and info.gpu_devices == ["gpu:0 Fake"]


def test_check_backend_gpu_not_installed_or_unknown() -> None:
    if importlib.util.find_spec("torch") is None:
        assert check_backend_gpu("torch") == BackendInfo(name="torch", installed=False)
    with pytest.raises(ValueError):
        check_backend_gpu("mxnet")


@pytest.mark.slow
def test_check_backend_gpu_jax_for_real() -> None:
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    info = check_backend_gpu("jax", timeout=120)
    assert info.error is None, info.error
    assert info.installed and info.version
    if shutil.which("nvidia-smi") is None:
        assert info.sees_gpu is False and info.gpu_devices == []
    else:
        assert isinstance(info.sees_gpu, bool)
    # The probe runs JAX in a process of its own: the caller never imports it. Checked in a fresh interpreter,
    # since this test process may have imported JAX for an earlier test.
    code = (
        "import sys\nfrom workers.devices import check_backend_gpu\n"
        "check_backend_gpu('jax', timeout=120)\nprint('jax' in sys.modules)"
    )
    fresh = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert fresh.returncode == 0 and fresh.stdout.strip() == "False", (fresh.stdout, fresh.stderr[-2000:])
