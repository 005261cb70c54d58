"""The workload registry: the only code a worker will ever run.

A job names a workload; it never carries code. Each workload is one module holding its parameter model
(validated at submit and again on the worker) and the functions that build its Keras model and prepare its
data. Framework imports happen inside those functions, so the registry itself stays light.

Workloads come from two places through the same contract: the ones shipped in this package, and plugins that
installed packages declare in the ``benchfarm.workloads`` entry-point group, each entry naming a
:class:`Workload` object (``lab_models.cnn:WORKLOAD``). Plugins load on first need: the first lookup of a name
that is not built in, or the first listing. A plugin that fails to import is left out, and its error is kept
for the worker to report (:func:`plugin_errors`). A plugin whose name another workload already has stops the
loading with :class:`WorkloadConflict`, which names both providers: which one a job would run must never
depend on the order packages were installed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from farm.workloads.data import REAL_DATASETS, DataSpec

P = TypeVar("P", bound=BaseModel)
"""A workload's own parameter model."""


@dataclass(frozen=True)
class Workload(Generic[P]):
    """A registered benchmark: what it trains on and how it builds its model."""

    name: str
    dataset: str | None
    """The real dataset it trains on (``cifar10``, ``fashion_mnist``); None for a workload whose data depends
    on its parameters (then ``data`` says what it is)."""
    params_model: type[P]
    build_model: Callable[[P, tuple[int, ...], int], Any]
    """(params, input_shape, num_classes) -> (keras.Model, optimizer, loss); benchfarm compiles them."""
    prepare: Callable[[Any, Any], tuple[Any, Any]]
    """(x samples as generated or loaded: uint8 images or int32 tokens, y int labels) -> arrays ready for
    ``fit`` and ``predict`` (e.g. pixels scaled to [0, 1])."""
    description: str = ""
    memory_estimate: Callable[[P, int], int] | None = None
    """(params, batch_size) -> bytes that training needs at the least, computed without any framework so the
    submit side can refuse a job no worker can hold; None where a workload cannot say."""
    unit: str = "samples"
    """What one sample is, for the reports' throughput (``images``, ``sequences``)."""
    data: Callable[[P], DataSpec] | None = None
    """(params) -> the shapes of its samples; None means the real ``dataset``'s shapes."""
    package: str | None = None
    """The installed distribution that provides a plugin workload, with ``package_version``; None for the
    workloads shipped with benchfarm (set by the plugin loader, not by the plugin)."""
    package_version: str | None = None

    @property
    def is_plugin(self) -> bool:
        return self.package is not None

    def __post_init__(self) -> None:
        if self.data is None and self.dataset not in REAL_DATASETS:
            raise ValueError(
                f"workload {self.name!r}: dataset {self.dataset!r} is not one benchfarm can load "
                f"({', '.join(sorted(REAL_DATASETS))}); give a data function for synthetic shapes"
            )

    def validate_params(self, params: dict[str, Any] | None) -> P:
        return self.params_model.model_validate(params or {})

    def data_spec(self, params: P) -> DataSpec:
        """The data this workload trains on with these (validated) parameters."""
        if self.data is not None:
            return self.data(params)
        assert self.dataset is not None  # checked in __post_init__
        return DataSpec.of_real(self.dataset)

    def definition_hash(self) -> str:
        """``name@hash``: a hash of the source files that define this workload (its parameter model, model
        builder and data preparation), so a result says which version of the benchmark produced it. A plugin's
        adds its package and version (``name@hash/lab-models==0.2.0``)."""
        parts = (self.params_model, self.build_model, self.prepare) + ((self.data,) if self.data else ())
        tag = f"{self.name}@{_definition_hash(*parts)}"
        return f"{tag}/{self.package}=={self.package_version}" if self.is_plugin else tag

    def advertised(self) -> dict[str, Any]:
        """What a worker says of this workload in the registry (``farm workers``)."""
        return {"package": self.package or "benchfarm", "version": self.package_version or _own_version()}


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


ENTRY_POINT_GROUP = "benchfarm.workloads"
"""The entry-point group a package declares its workloads in (``[project.entry-points."benchfarm.workloads"]``)."""

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""A workload's name: it becomes part of queue names and file names."""


class UnknownWorkload(KeyError):
    pass


class WorkloadConflict(ValueError):
    """Two providers for one workload name."""


_REGISTRY: dict[str, Workload[Any]] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def _provider(workload: Workload[Any]) -> str:
    """Who provides a workload, for a clash's message: a plugin's package, else the module that defines it."""
    if workload.is_plugin:
        return f"{workload.package} {workload.package_version}"
    module = getattr(workload.build_model, "__module__", None) or "?"
    return "benchfarm itself" if module.startswith("farm.workloads") else f"module {module}"


def register(workload: Workload[P]) -> Workload[P]:
    if not NAME_RE.match(workload.name):
        raise ValueError(f"workload name {workload.name!r}: use lowercase letters, digits and '_', 1-63 characters")
    if workload.name in _REGISTRY:
        raise WorkloadConflict(
            f"workload {workload.name!r} is provided twice: by {_provider(_REGISTRY[workload.name])} and by "
            f"{_provider(workload)}; uninstall one, or rename one of them"
        )
    _REGISTRY[workload.name] = workload
    return workload


def load_plugins() -> dict[str, str]:
    """Register every installed plugin workload once; returns the plugins that could not be loaded, by entry
    name, with their error. Raises :class:`WorkloadConflict` when a name is provided twice."""
    global _plugins_loaded
    if _plugins_loaded:
        return dict(_PLUGIN_ERRORS)
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = entry.dist
        package, version = (dist.name, dist.version) if dist is not None else (entry.value.split(":")[0], "unknown")
        try:
            workload = entry.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not take the others (or the worker) down
            _PLUGIN_ERRORS[entry.name] = f"{package} {version}: {entry.value} failed to import: {type(e).__name__}: {e}"
            continue
        if not isinstance(workload, Workload):
            _PLUGIN_ERRORS[entry.name] = (
                f"{package} {version}: {entry.value} is a {type(workload).__name__}, not a benchfarm Workload"
            )
            continue
        if workload.name != entry.name:
            _PLUGIN_ERRORS[entry.name] = (
                f"{package} {version}: the entry point is named {entry.name!r} but its workload {workload.name!r}"
            )
            continue
        register(dataclasses.replace(workload, package=package, package_version=version))
    return dict(_PLUGIN_ERRORS)


def plugin_errors() -> dict[str, str]:
    """The plugins that failed to load, by entry name (empty until plugins were loaded)."""
    return dict(_PLUGIN_ERRORS)


def get(name: str) -> Workload[Any]:
    if name not in _REGISTRY and not _plugins_loaded:
        load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        broken = f"; {_PLUGIN_ERRORS[name]}" if name in _PLUGIN_ERRORS else ""
        raise UnknownWorkload(f"unknown workload {name!r} (known: {known}){broken}") from None


def names() -> list[str]:
    load_plugins()
    return sorted(_REGISTRY)


def plugin_names() -> list[str]:
    """The installed plugin workloads: what a worker's queues must name (:func:`farm.routing.with_plugins`)."""
    return [name for name in names() if _REGISTRY[name].is_plugin]


def advertised() -> dict[str, dict[str, Any]]:
    """Every workload this process can run, as a worker advertises them: name → package and version."""
    return {name: get(name).advertised() for name in names()}


def _own_version() -> str:
    from farm import __version__

    return __version__


def _load_builtin() -> None:
    from farm.workloads import (  # noqa: F401 - imported to register themselves
        cifar10_mlp,
        fashion_mnist_mlp,
        mobilenet_v2,
        resnet50,
        sequence_rnn,
        text_transformer,
    )


_load_builtin()

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_PARAMETERS",
    "REAL_DATASETS",
    "DataSpec",
    "UnknownWorkload",
    "Workload",
    "WorkloadConflict",
    "advertised",
    "get",
    "load_plugins",
    "names",
    "plugin_errors",
    "plugin_names",
    "register",
]
