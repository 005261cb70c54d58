"""Two sweeps measured to a precision through `farm run` (the console script, a Redis the test starts), the second
with a slowdown planted for real, then `farm compare`: it reaches a verdict, "slower", with p < 0.05 — which a
fixed 3 repeats a side could never give.

The plant: a workload plugin (a distribution written into a site directory on the farm's PYTHONPATH) whose model
sleeps in every training step for ``PLANTED_DELAY_S`` seconds, read from the worker's environment. Both sweeps
are the same cell on the same hardware; only the second's worker has the delay. A sleep costs the same on a busy
machine as on a quiet one, so the difference holds whatever else loads the machine (a plant through threads or
priority did not: under load it even reversed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.farm.test_workload_plugins import write_distribution
from tests.helpers import farm_env, run_farm

pytestmark = pytest.mark.slow

REPEATS = 5
"""Valid repeats a side: the cell's min and max, so each side ends with exactly this many."""

PLANTED = """
import os
import time

from pydantic import BaseModel, ConfigDict, Field

from farm.workloads import Workload


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    units: int = Field(default=32, ge=1, le=512)


def build(params, input_shape, num_classes):
    import keras  # on the worker only: the submit side never imports Keras

    delay = float(os.environ.get("PLANTED_DELAY_S", "0"))

    class Slowed(keras.Sequential):
        def compile(self, *args, **kwargs):
            super().compile(*args, **{**kwargs, "run_eagerly": True, "jit_compile": False})

        def train_step(self, data):
            time.sleep(delay)  # eager: every step
            return super().train_step(data)

    model = Slowed(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(params.units, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )
    return model, keras.optimizers.Adam(), keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def prepare(x, y):
    return x.astype("float32") / 255.0, y


WORKLOAD = Workload(
    name="planted_mlp", dataset="fashion_mnist", params_model=Params, build_model=build, prepare=prepare, unit="images"
)
"""


def precise_sweep(tmp_path: Path) -> Path:
    spec = {
        "name": "planted",
        "precision": {"ci": 0.2, "min_repeats": REPEATS, "max_repeats": REPEATS, "max_invalid": 6},
        "defaults": {"backend": "tensorflow", "data": "synthetic", "train_samples": 320, "test_samples": 32},
        "jobs": [{"workload": "planted_mlp", "epochs": 2}],
    }
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_compare_of_two_precise_sweeps_finds_a_planted_slowdown(redis_url: str, tmp_path: Path) -> None:
    site = write_distribution(
        tmp_path / "site", "planted-models", "0.1", {"planted_mlp": "planted_mod:WORKLOAD"}, {"planted_mod": PLANTED}
    )
    sweep = precise_sweep(tmp_path)
    # Repeats judged by the threshold a lab may set (the suite's own load must not make them invalid here: what
    # is checked is the verdict of compare, not the contended mark, which other tests check).
    env = farm_env(redis_url, tmp_path / "cache", FARM_CONTENTION_CPU_THRESHOLD="10")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    ids = {}
    # 10 steps an epoch: +2 s an epoch, where the whole epoch's compute is a fraction of a second even on a machine
    # the suite keeps busy (a smaller plant, 0.2 s an epoch, was lost in that load's swings: CI saw "faster").
    for name, delay in (("fast", "0"), ("slow", "0.2")):
        out = run_farm(
            ["run", str(sweep), "-o", str(tmp_path / name), "--name", f"planted-{name}", "--broker", redis_url],
            {**env, "PLANTED_DELAY_S": delay},
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
