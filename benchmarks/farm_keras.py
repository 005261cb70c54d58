"""The farm child's side of the ablations: a workload's model, data and job built as ``workers.training.train``
builds them, timed under the child's threads. Imports Keras (and the farm's workloads): a script imports it after
setting its environment."""

from __future__ import annotations

from pathlib import Path

import keras

from benchmarks.common import Extras
from farm import workloads
from farm.job import JobSpec
from workers.datasets import load_dataset
from workers.timing import epoch_callback
from workers.training import fit, measure_offline


class FarmBlock:
    """The child's side: model, data and job built as ``workers.training.train`` builds them."""

    def __init__(self, name: str, params: dict, samples: int, batch: int, epochs: int, mode: str, cache: Path):
        self.job = JobSpec(
            sweep="ablation",
            workload=name,
            params=params,
            backend=keras.backend.backend(),
            epochs=epochs,
            batch_size=batch,
            data="synthetic",
            train_samples=samples,
            test_samples=16,
            mode=mode,
            input_pipeline="keras",
        )
        workload = workloads.get(name)
        valid = workload.validate_params(self.job.params)
        ds = load_dataset(
            workload.data_spec(valid),
            "synthetic",
            data_dir=None,
            cache_dir=cache,
            seed=self.job.seed_effective,
            train_samples=samples,
            test_samples=16,
        )
        self.x, self.y = workload.prepare(ds.x_train, ds.y_train)
        self.model, optimizer, loss = workload.build_model(valid, tuple(ds.input_shape), ds.num_classes)
        self.model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=["accuracy"],
            steps_per_execution=self.job.steps_per_execution,
            jit_compile=self.job.jit_compile,
        )

    def __call__(self) -> list[float]:
        with Extras() as extras:
            timer = epoch_callback(extras.emit, self.job.epochs)
            if self.job.mode == "inference":
                measure_offline(self.model, self.x, self.job, self.job.seed_effective, timer)
            else:
                fit(self.model, self.x, self.y, None, self.job, timer)
        return [r["wall_s"] for r in timer.records]
