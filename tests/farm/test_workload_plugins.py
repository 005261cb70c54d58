"""Workload plugins through the real entry-point machinery: a distribution written into a temporary directory
(its dist-info with ``entry_points.txt``, and its module) put on ``sys.path``, then the registry's loader."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from farm import workloads
from farm.job import JobSpec
from farm.routing import required_tag, with_plugins
from tests.helpers import REPO

PLUGIN = """
from pydantic import BaseModel, ConfigDict, Field

from farm.workloads import Workload


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(default=8, ge=1, le=64)


def build(params, input_shape, num_classes):
    raise RuntimeError("not built in these tests")


def prepare(x, y):
    return x, y


WORKLOAD = Workload(
    name="{name}", dataset="cifar10", params_model=Params, build_model=build, prepare=prepare, unit="images"
)
"""


def write_distribution(root: Path, dist: str, version: str, entries: dict[str, str], modules: dict[str, str]) -> Path:
    """An installed distribution as pip leaves it in a site directory: its modules and its dist-info."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{workloads.ENTRY_POINT_GROUP}]\n{lines}")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Put distributions on sys.path for one test; the registry is as it was afterwards."""
    saved = (dict(workloads._REGISTRY), dict(workloads._PLUGIN_ERRORS), workloads._plugins_loaded)
    workloads._plugins_loaded = False
    workloads._PLUGIN_ERRORS.clear()
    made: list[str] = []

    def make(dist: str, version: str, entries: dict[str, str], modules: dict[str, str]) -> Path:
        site = write_distribution(tmp_path / f"site-{len(made)}", dist, version, entries, modules)
        monkeypatch.syspath_prepend(str(site))
        made.extend(modules)
        importlib.invalidate_caches()
        return site

    yield make
    for module in made:
        sys.modules.pop(module, None)
    workloads._REGISTRY.clear()
    workloads._REGISTRY.update(saved[0])
    workloads._PLUGIN_ERRORS.clear()
    workloads._PLUGIN_ERRORS.update(saved[1])
    workloads._plugins_loaded = saved[2]


def test_an_installed_plugin_registers_with_its_package_and_routes_to_its_own_queues(plugin_site) -> None:
    plugin_site(
        "lab-models", "0.3.1", {"lab_cnn": "lab_cnn_mod:WORKLOAD"}, {"lab_cnn_mod": PLUGIN.format(name="lab_cnn")}
    )
    assert "lab_cnn" in workloads.names() and "cifar10_mlp" in workloads.names()
    w = workloads.get("lab_cnn")
    assert (w.package, w.package_version, w.unit, w.is_plugin) == ("lab-models", "0.3.1", "images", True)
    assert w.definition_hash().startswith("lab_cnn@") and w.definition_hash().endswith("/lab-models==0.3.1")
    assert workloads.advertised()["lab_cnn"] == {"package": "lab-models", "version": "0.3.1"}
    assert workloads.advertised()["cifar10_mlp"]["package"] == "benchfarm"

    # Validated by the plugin's own parameter model, like any workload.
    job = JobSpec(sweep="s", workload="lab_cnn", params={"width": 16})
    assert job.params == {"width": 16}
    with pytest.raises(ValueError, match="width"):
        JobSpec(sweep="s", workload="lab_cnn", params={"width": 1000})
    # Only a worker that has the plugin consumes its jobs' queue; the shipped workloads route as before.
    assert required_tag(job) == "cpu.wl-lab_cnn"
    assert required_tag(JobSpec(sweep="s", workload="cifar10_mlp")) == "cpu"
    gpu_job = JobSpec(sweep="s", workload="lab_cnn", device="gpu", requires={"gpu_model": "H100"})
    assert required_tag(gpu_job) == "gpu.model-h100.wl-lab_cnn"
    tags = with_plugins(["gpu", "gpu.model-h100"], ["lab_cnn"])
    assert tags == ["gpu", "gpu.model-h100", "gpu.wl-lab_cnn", "gpu.model-h100.wl-lab_cnn"]
    assert required_tag(gpu_job) in tags and required_tag(gpu_job) not in with_plugins(["gpu", "gpu.model-h100"], [])


def test_a_plugin_that_fails_to_load_is_left_out_with_its_reason(plugin_site) -> None:
    plugin_site(
        "broken-models",
        "1.0",
        {"broken": "broken_mod:WORKLOAD", "not_one": "plain_mod:THING", "renamed": "renamed_mod:WORKLOAD"},
        {
            "broken_mod": "import no_such_module_here\n",
            "plain_mod": "THING = 42\n",
            "renamed_mod": PLUGIN.format(name="other_name"),
        },
    )
    errors = workloads.load_plugins()
    assert set(errors) == {"broken", "not_one", "renamed"}
    assert "broken-models 1.0" in errors["broken"] and "ModuleNotFoundError" in errors["broken"]
    assert "not a benchfarm Workload" in errors["not_one"]
    assert "'other_name'" in errors["renamed"]
    with pytest.raises(workloads.UnknownWorkload, match="failed to import"):
        workloads.get("broken")
    assert "cifar10_mlp" in workloads.names()  # the others are untouched
    with pytest.raises(ValueError, match="unknown workload 'broken'"):
        JobSpec(sweep="s", workload="broken")


def test_a_name_provided_twice_is_refused_naming_both_providers(plugin_site) -> None:
    plugin_site(
        "imposter", "2.0", {"cifar10_mlp": "imposter_mod:WORKLOAD"}, {"imposter_mod": PLUGIN.format(name="cifar10_mlp")}
    )
    with pytest.raises(
        workloads.WorkloadConflict, match=r"'cifar10_mlp' is provided twice: by benchfarm itself and by imposter 2\.0"
    ):
        workloads.load_plugins()


def test_two_plugins_with_one_name_stop_the_worker_before_it_serves(tmp_path: Path) -> None:
    """`farm worker` refuses to start, with one line naming both packages, exit 2, before touching Redis."""
    for i, dist in enumerate(["alpha-models", "beta-models"]):
        write_distribution(
            tmp_path / "site",
            dist,
            "1.0",
            {"same_name": f"mod_{i}:WORKLOAD"},
            {f"mod_{i}": PLUGIN.format(name="same_name")},
        )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path / "site"),
        "FARM_BROKER_URL": "redis://127.0.0.1:1/0",
        "HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker", "--cpu-only", "--no-check-backends"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'same_name' is provided twice" in lines[0], out.stderr
    assert "alpha-models 1.0" in lines[0] and "beta-models 1.0" in lines[0]
    assert "Traceback" not in out.stderr


def test_workload_names_are_safe_for_queue_names() -> None:
    for bad in ["", "Caps", "has space", "dot.ted", "x" * 64, "-dash"]:
        with pytest.raises(ValueError, match="workload name"):
            workloads.register(
                workloads.Workload(
                    name=bad,
                    dataset="cifar10",
                    params_model=workloads.get("cifar10_mlp").params_model,
                    build_model=lambda *a: None,
                    prepare=lambda x, y: (x, y),
                )
            )
