"""Clocks for the training child: phase timers (wall and process CPU), the Keras timing callback, and an idle
sampler that catches stalls.

How step times stay honest without extra synchronisation: the callback overrides only the *begin* hooks
(``on_train_batch_begin``, ``on_epoch_begin``, ``on_test_begin``). Keras pythonifies logs (which forces the
device to finish) only for batch *end* hooks, and overriding one of those would also turn off Keras 3's
asynchronous callback dispatch; begin hooks receive no logs, so recording a timestamp there adds one Python
call per step and no device synchronisation. The interval between two step starts is a step's time:

- on CPU (every backend) the train function returns when the step is done, so the interval is exact;
- on a GPU with an asynchronous backend (TensorFlow, JAX; PyTorch too for kernels) the host may run ahead of
  the device, so an interval is the host's dispatch time; within an epoch the queue fills and the host waits
  for the device, so steady-state intervals follow device time, and their sum always equals the epoch's time
  because the epoch's end synchronises (Keras reads the metrics). Per-step percentiles on async devices are
  therefore of dispatch intervals, which smooth the device's own variation; the mean is exact.

In inference, each pass of ``predict`` over the samples is timed as an epoch, its batches as steps.

Epoch wall times exclude validation (timed apart as ``val_s``) so ``target_accuracy`` does not slow the
figures it reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

from farm import defaults


class PhaseClock:
    """Wall and CPU seconds of named phases, in the order they ran."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.bounds: dict[str, tuple[float, float]] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            w1 = time.perf_counter()
            self.wall[name] = w1 - w0
            self.cpu[name] = time.process_time() - c0
            self.bounds[name] = (w0, w1)


class IdleSampler:
    """Samples the process' CPU time in a thread; windows of near-zero CPU use are stalls.

    A stall is at least ``min_gap_s`` during which the whole process used under ``max_busy`` of one core.
    The sampler wakes a few times a second and costs nothing measurable. On a GPU job a long device-bound
    step can also look idle to the CPU, so stalls are reported with the phase and epoch they fell in.
    """

    def __init__(self, period_s: float = 0.2, min_gap_s: float = defaults.STALL_GAP_S, max_busy: float = 0.1) -> None:
        self.period_s, self.min_gap_s, self.max_busy = period_s, min_gap_s, max_busy
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="farm-idle-sampler")

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.samples.append((time.perf_counter(), time.process_time()))

    def start(self) -> IdleSampler:
        self.samples.append((time.perf_counter(), time.process_time()))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.samples.append((time.perf_counter(), time.process_time()))

    def stalls(self) -> list[tuple[float, float]]:
        """(start, duration) of each idle window, on the perf_counter clock."""
        out: list[tuple[float, float]] = []
        start: float | None = None
        last_idle_end = 0.0
        samples = list(self.samples)  # a snapshot: the sampling thread may still be appending
        for (t0, c0), (t1, c1) in pairwise(samples):
            idle = (c1 - c0) < self.max_busy * (t1 - t0)
            if idle and start is None:
                start = t0
            if idle:
                last_idle_end = t1
            if not idle and start is not None:
                if last_idle_end - start >= self.min_gap_s:
                    out.append((start, last_idle_end - start))
                start = None
        if start is not None and last_idle_end - start >= self.min_gap_s:
            out.append((start, last_idle_end - start))
        return out


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def epoch_callback(emit: Callable[[dict[str, Any]], None], epochs: int) -> Any:
    """A Keras callback that times epochs (validation apart) and steps, reporting each epoch as it ends."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[dict[str, Any]] = []
            self.step_starts: list[list[tuple[int, float]]] = []
            self.epoch_bounds: list[tuple[float, float]] = []
            self._w0 = self._c0 = 0.0
            self._val_start: float | None = None
            self._val_s = 0.0
            self._train_end: float | None = None
            self.first_step_at: float | None = None
            self.train_end_at: float | None = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.step_starts.append([])
            self._val_s, self._val_start, self._train_end = 0.0, None, None
            self._w0, self._c0 = time.perf_counter(), time.process_time()

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            if self.first_step_at is None:
                self.first_step_at = time.time()
            self.step_starts[-1].append((batch, time.perf_counter()))

        # An inference pass is timed as an epoch of predict steps (workers.inference opens and closes it).
        on_predict_batch_begin = on_train_batch_begin

        def on_train_end(self, logs: dict | None = None) -> None:
            self.train_end_at = time.time()

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._val_start = time.perf_counter()
            if self._train_end is None:
                self._train_end = self._val_start

        def on_test_end(self, logs: dict | None = None) -> None:
            if self._val_start is not None:
                self._val_s += time.perf_counter() - self._val_start

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # Keras has already synchronised to produce ``logs``: the clock reads the end of the epoch's work.
            now, cpu = time.perf_counter(), time.process_time() - self._c0
            train_end = self._train_end if self._train_end is not None else now
            self.epoch_bounds.append((self._w0, train_end))
            logs = logs or {}
            record = {
                "epoch": epoch + 1,
                "wall_s": (now - self._w0) - self._val_s,
                "cpu_s": cpu,
                "val_s": self._val_s or None,
                "loss": _float(logs.get("loss")),
                "accuracy": _float(logs.get("accuracy")),
                "val_loss": _float(logs.get("val_loss")),
                "val_accuracy": _float(logs.get("val_accuracy")),
            }
            self.records.append(record)
            emit({"event": "epoch", "epochs": epochs, **record})

        def step_times(self, first_epoch: int = 1) -> list[float]:
            """Per-step seconds of the epochs from ``first_epoch`` (0-based) on; a chunk of several steps
            (``steps_per_execution``) counts as that many steps of its mean time."""
            out: list[float] = []
            # Not strict: an epoch under way has its step starts and no bounds yet.
            for starts, (_, end) in zip(self.step_starts[first_epoch:], self.epoch_bounds[first_epoch:], strict=False):
                marks = [*starts, (starts[-1][0] + max(1, steps_per_call(starts)), end)] if starts else []
                for (b0, t0), (b1, t1) in pairwise(marks):
                    n = max(1, b1 - b0)
                    out.extend([(t1 - t0) / n] * n)
            return out

    return EpochTimer()


def steps_per_call(starts: list[tuple[int, float]]) -> int:
    """Steps per callback call (1 unless ``steps_per_execution`` groups them)."""
    return starts[1][0] - starts[0][0] if len(starts) > 1 else 1
