"""Two sweeps measured to a precision through `farm run` (the console script, a Redis the test starts), the second
with a slowdown planted for real (its worker's TensorFlow may use one thread instead of all cores: the same cell,
the same hardware key, slower training), then `farm compare`: it reaches a verdict, "slower", with p < 0.05 —
which a fixed 3 repeats a side could never give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import farm_env, run_farm

pytestmark = pytest.mark.slow

REPEATS = 6
"""Valid repeats a side: the cell's min and max, so each side ends with exactly this many."""


def precise_sweep(tmp_path: Path) -> Path:
    spec = {
        "name": "planted",
        "precision": {"ci": 0.2, "min_repeats": REPEATS, "max_repeats": REPEATS, "max_invalid": 6},
        "defaults": {"backend": "tensorflow", "data": "synthetic", "train_samples": 2000, "test_samples": 32},
        "jobs": [{"workload": "fashion_mnist_mlp", "epochs": 3, "params": {"hidden_layers": 3, "units": 400}}],
    }
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_compare_of_two_precise_sweeps_finds_a_planted_slowdown(redis_url: str, tmp_path: Path) -> None:
    sweep = precise_sweep(tmp_path)
    # Repeats judged by the threshold a lab may set (the suite's own load must not make them invalid here: what
    # is checked is the verdict of compare, not the contended mark, which other tests check).
    env = farm_env(redis_url, tmp_path / "cache", FARM_CONTENTION_CPU_THRESHOLD="10")
    slow_env = {**env, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    ids = {}
    for name, run_env in (("fast", env), ("slow", slow_env)):
        out = run_farm(
            ["run", str(sweep), "-o", str(tmp_path / name), "--name", f"planted-{name}", "--broker", redis_url],
            run_env,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
        assert "target met" in out.stdout or "cap reached" in out.stdout, out.stdout
        ids[name] = next(line.split()[1].rstrip(":") for line in out.stdout.splitlines() if line.startswith("sweep "))
    compared = run_farm(["compare", ids["fast"], ids["slow"], "--json"], env)
    assert compared.returncode == 0, compared.stderr
    (cell,) = json.loads(compared.stdout)["cells"]
    assert (cell["n_a"], cell["n_b"]) == (REPEATS, REPEATS), cell
    assert cell["change"] == "slower" and cell["p_value"] < 0.05, cell
