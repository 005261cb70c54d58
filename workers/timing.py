"""Clocks for the training child: phase timers (wall and process CPU) and the Keras epoch callback.

Only epoch boundaries are timed inside ``fit``: a per-batch hook would make Keras convert its logs to numpy
every step, adding device synchronisations that a plain ``model.fit`` does not do.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator


class PhaseClock:
    """Wall and CPU seconds of named phases, in the order they ran."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = time.perf_counter() - w0
            self.cpu[name] = time.process_time() - c0


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def epoch_callback(emit: Callable[[dict[str, Any]], None], epochs: int) -> Any:
    """A Keras callback that times each epoch and reports it through ``emit`` as it ends."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[dict[str, Any]] = []
            self._w0 = self._c0 = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._w0, self._c0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # Keras has already synchronised to produce ``logs``, so the clock reads the end of the epoch's work.
            wall, cpu = time.perf_counter() - self._w0, time.process_time() - self._c0
            logs = logs or {}
            record = {
                "epoch": epoch + 1,
                "wall_s": wall,
                "cpu_s": cpu,
                "loss": _float(logs.get("loss")),
                "accuracy": _float(logs.get("accuracy")),
                "val_loss": _float(logs.get("val_loss")),
                "val_accuracy": _float(logs.get("val_accuracy")),
            }
            self.records.append(record)
            emit({"event": "epoch", "epochs": epochs, **record})

    return EpochTimer()
