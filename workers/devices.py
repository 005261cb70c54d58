"""What a worker can run on: installed Keras backends, whether each sees a GPU, and the queue tags to serve.

The worker process itself never imports TensorFlow, JAX or torch: importing one takes seconds, grabs GPU
memory or threads, and a framework that crashes on import (a broken CUDA install) must not take the worker
down. So installed frameworks are found from package metadata, and GPU visibility is asked of a short-lived
``python -c`` child per framework, with a timeout, in parallel.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from farm.fingerprint import GPUInfo, host_facts, query_nvidia_smi
from farm.routing import derive_tags, gpu_model_slug, host_slug
from workers.processes import describe_exit, kill_group

BackendName = Literal["tensorflow", "jax", "torch"]
BACKENDS: tuple[BackendName, ...] = get_args(BackendName)

# Every distribution that installs the ``tensorflow`` module; the first one installed gives the version.
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "tensorflow": (
        "tensorflow",
        "tensorflow-cpu",
        "tf-nightly",
        "tf-nightly-cpu",
        "tensorflow-gpu",
        "tensorflow-intel",
        "tensorflow-macos",
        "tensorflow-aarch64",
    ),
    "jax": ("jax",),
    "torch": ("torch",),
    "keras": ("keras", "keras-nightly"),
}

# Each snippet prints exactly one JSON line: {"version": str, "sees_gpu": bool, "gpu_devices": [str]}.
_SNIPPETS: dict[str, str] = {
    "tensorflow": """
import json, tensorflow as tf
devs = tf.config.list_physical_devices("GPU")
names = []
for d in devs:
    try:
        detail = tf.config.experimental.get_device_details(d).get("device_name", "")
    except Exception:
        detail = ""
    names.append((d.name + " " + detail).strip())
print(json.dumps({"version": tf.__version__, "sees_gpu": bool(devs), "gpu_devices": names}))
""",
    "jax": """
import json, jax
try:
    devs = [d for d in jax.devices() if d.platform == "gpu"]
except RuntimeError:
    devs = []
if not devs:
    try:
        devs = list(jax.devices("gpu"))
    except RuntimeError:
        devs = []
names = [(f"{d.platform}:{d.id} " + str(getattr(d, "device_kind", ""))).strip() for d in devs]
print(json.dumps({"version": jax.__version__, "sees_gpu": bool(devs), "gpu_devices": names}))
""",
    "torch": """
import json, torch
ok = bool(torch.cuda.is_available())
names = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())] if ok else []
print(json.dumps({"version": torch.__version__, "sees_gpu": ok, "gpu_devices": names}))
""",
}

# Frameworks log to stderr; keep it short. JAX would otherwise reserve 75% of every GPU's memory just to
# list devices, which could starve a job already running there.
_CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
_ERROR_TAIL_CHARS = 2000


class BackendInfo(BaseModel):
    """One Keras backend on this worker: installed or not, its version, and whether it can use a GPU."""

    model_config = ConfigDict(extra="forbid")

    name: BackendName
    installed: bool
    version: str | None = None
    sees_gpu: bool | None = Field(default=None, description="None: not checked, or the check failed.")
    gpu_devices: list[str] = Field(default_factory=list)
    error: str | None = None


class DeviceReport(BaseModel):
    """Everything a worker knows about its hardware and software, sent when it starts and kept with results."""

    model_config = ConfigDict(extra="forbid")

    host: dict = Field(description="farm.fingerprint.host_facts()")
    gpus: list[GPUInfo] = Field(default_factory=list)
    keras_version: str | None = None
    backends: list[BackendInfo] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    def backend(self, name: str) -> BackendInfo | None:
        """The entry for one backend, or None if it is not in the report."""
        return next((b for b in self.backends if b.name == name), None)

    @property
    def gpu_backends(self) -> list[str]:
        """Backends verified to see a GPU. The ``gpu`` tag only says a GPU exists; a CPU-only framework
        build on a GPU host would silently run "GPU" jobs on the CPU, so check this before serving them."""
        return [b.name for b in self.backends if b.sees_gpu]


def _dist_version(module: str) -> str | None:
    """The installed version of the distribution providing ``module``, read from metadata (no import)."""
    for dist in _DISTRIBUTIONS.get(module, (module,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:  # any other distribution that installs the module (a vendor build, a renamed wheel)
        for dist in importlib.metadata.packages_distributions().get(module, []):
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    except Exception:  # noqa: BLE001 - metadata of some unrelated, broken distribution must not break the probe
        pass
    return None


def _module_present(module: str) -> bool:
    """Whether ``module`` can be imported, decided without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _installed(name: str) -> BackendInfo:
    present = _module_present(name)
    return BackendInfo(name=name, installed=present, version=_dist_version(name) if present else None)


def installed_backends() -> list[BackendInfo]:
    """The three Keras backends with installed/version filled in from metadata; frameworks are not imported.

    ``sees_gpu`` stays None: whether a GPU is usable is only known by importing, see check_backend_gpu.
    """
    return [_installed(name) for name in BACKENDS]


def keras_version() -> str | None:
    """Keras' installed version from metadata, or None when Keras is not importable here."""
    return _dist_version("keras") if _module_present("keras") else None


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _ERROR_TAIL_CHARS else "..." + text[-_ERROR_TAIL_CHARS:]


def _parse_child_output(stdout: str) -> dict | None:
    # Frameworks may print to stdout before our line, so take the last line that is our JSON object.
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "sees_gpu" in obj:
            return obj
    return None


def check_backend_gpu(name: str, timeout: float = 60.0) -> BackendInfo:
    """Import one framework in a child process and ask whether it sees a GPU.

    A child because importing a framework is slow, stateful and may crash; the timeout because a wedged
    driver can hang an import forever. The child runs in its own process group so that a timeout kills
    anything it spawned too. Any failure is reported in ``error`` with ``sees_gpu`` None (unknown), never
    as False, so a broken install is not mistaken for a CPU-only one. Not installed: returned unchecked.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    info = _installed(name)
    if not info.installed:
        return info
    env = {**os.environ, **_CHILD_ENV}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SNIPPETS[name]],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as e:
        return info.model_copy(update={"error": f"could not start the {name} check: {e}"})
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            _, stderr = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild still holds the pipes; give up on its output
            stderr = ""
        msg = f"importing {name} to list GPUs timed out after {timeout:g} s"
        return info.model_copy(update={"error": msg + (f": {_tail(stderr)}" if stderr.strip() else "")})
    finally:
        if proc.poll() is None:
            kill_group(proc)
    result = _parse_child_output(stdout) if proc.returncode == 0 else None
    if result is None:
        detail = _tail(stderr) or _tail(stdout) or "no output"
        return info.model_copy(
            update={"error": f"the {name} GPU check failed ({describe_exit(proc.returncode)}): {detail}"}
        )
    return info.model_copy(
        update={
            "version": info.version or result.get("version"),
            "sees_gpu": bool(result["sees_gpu"]),
            "gpu_devices": [str(d) for d in result.get("gpu_devices") or []],
        }
    )


def probe(check_gpu_visibility: bool = True, gpus: list[GPUInfo] | None = None) -> DeviceReport:
    """Fingerprint this worker: host facts, physical GPUs, Keras and backend versions, and its queue tags.

    ``gpus`` lets the caller pass an ``nvidia-smi`` result it already has (or a fake in tests). The GPU
    visibility checks import each installed framework in its own child, in parallel threads, since each
    import takes seconds; ``check_gpu_visibility=False`` skips them for a fast, metadata-only report.
    """
    if gpus is None:
        gpus = query_nvidia_smi()
    backends = installed_backends()
    if check_gpu_visibility:
        to_check = [b.name for b in backends if b.installed]
        if to_check:
            with ThreadPoolExecutor(max_workers=len(to_check), thread_name_prefix="gpu-check") as pool:
                checked = dict(zip(to_check, pool.map(check_backend_gpu, to_check), strict=True))
            backends = [checked.get(b.name, b) for b in backends]
    facts = host_facts()
    return DeviceReport(
        host=facts, gpus=gpus, keras_version=keras_version(), backends=backends, tags=derive_tags(gpus, facts["host"])
    )


def offered_backends(report: DeviceReport, allowed: str | None = None) -> list[str]:
    """The Keras backends this worker offers: installed (found without importing them) beside Keras itself, and
    among ``allowed`` (the ``FARM_BACKENDS`` setting) when given. It advertises them in the registry: submit
    refuses a job whose backend no live worker offers, and a job never reaches a worker without its backend."""
    if report.keras_version is None:
        return []
    wanted = set(allowed.split(",")) if allowed else set(BACKENDS)
    return [b.name for b in report.backends if b.installed and b.name in wanted]


def offered_here(allowed: str | None = None) -> list[str]:
    """The backends a ``farm worker`` started on this machine offers (:func:`offered_backends`), found without
    probing the GPUs: ``farm run`` sends only the jobs whose queues its local workers consume."""
    return offered_backends(
        DeviceReport(host={}, keras_version=keras_version(), backends=installed_backends()), allowed
    )


__all__ = [
    "BACKENDS",
    "BackendInfo",
    "DeviceReport",
    "check_backend_gpu",
    "derive_tags",
    "gpu_model_slug",
    "host_slug",
    "installed_backends",
    "keras_version",
    "offered_backends",
    "offered_here",
    "probe",
]
