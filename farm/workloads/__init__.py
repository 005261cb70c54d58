"""The workload registry: the only code a worker will ever run.

A job names a workload; it never carries code. Each workload is one module holding its parameter model
(validated at submit and again on the worker) and the functions that build its Keras model and prepare its
data. Framework imports happen inside those functions, so the registry itself stays light.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

P = TypeVar("P", bound=BaseModel)
"""A workload's own parameter model."""


@dataclass(frozen=True)
class Workload(Generic[P]):
    """A registered benchmark: what it trains on and how it builds its model."""

    name: str
    dataset: str
    params_model: type[P]
    build_model: Callable[[P, tuple[int, ...], int], Any]
    """(params, input_shape, num_classes) -> a compiled keras.Model."""
    prepare: Callable[[Any, Any], tuple[Any, Any]]
    """(x uint8 images, y int labels) -> arrays ready for ``fit`` (the seed's preprocessing)."""
    description: str = ""
    memory_estimate: Callable[[P, int], int] | None = None
    """(params, batch_size) -> bytes that training needs at the least, computed without any framework so the
    submit side can refuse a job no worker can hold; None where a workload cannot say."""

    def validate_params(self, params: dict[str, Any] | None) -> P:
        return self.params_model.model_validate(params or {})

    def definition_hash(self) -> str:
        """``name@hash``: a hash of the source files that define this workload (its parameter model, model
        builder and data preparation), so a result says which version of the benchmark produced it."""
        return f"{self.name}@{_definition_hash(self.params_model, self.build_model, self.prepare)}"


@functools.cache
def _definition_hash(*parts: Any) -> str:
    import hashlib
    import inspect

    digest = hashlib.sha256()
    files = sorted({inspect.getsourcefile(p) or "" for p in parts} - {""})
    for path in files:
        try:
            with open(path, "rb") as f:
                digest.update(f.read())
        except OSError:
            digest.update(path.encode())
    return digest.hexdigest()[:10]


MAX_PARAMETERS = 20_000_000_000
"""A model above this many parameters is refused whatever the workers: its float32 weights and gradients
alone (160 GB) exceed the largest accelerator's memory, and no benchmark here needs anything near it."""


class UnknownWorkload(KeyError):
    pass


_REGISTRY: dict[str, Workload[Any]] = {}


def register(workload: Workload[P]) -> Workload[P]:
    if workload.name in _REGISTRY:
        raise ValueError(f"workload {workload.name!r} is already registered")
    _REGISTRY[workload.name] = workload
    return workload


def get(name: str) -> Workload[Any]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownWorkload(f"unknown workload {name!r} (known: {known})") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from farm.workloads import cifar10_mlp, fashion_mnist_mlp  # noqa: F401 - imported to register themselves


_load_builtin()

__all__ = ["MAX_PARAMETERS", "UnknownWorkload", "Workload", "get", "names", "register"]
