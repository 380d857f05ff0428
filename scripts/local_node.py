"""What ``scripts/elasticsearch-local`` and ``scripts/opensearch-local`` share: fetching a test
distribution with Maven, unpacking it once, Java, ports, the non-root run user, starting a
daemonised node and waiting for its health, and the per-cluster state file.

Both engines are forks of one code base and start the same way (``bin/<engine> -d -p PIDFILE``,
a config directory with ``<engine>.yml``, ``logs/<cluster>.log``, refusing root), so the
engine-specific scripts only hold their settings, plugins and commands. Only the standard
library: it runs before any virtualenv exists (CI calls it first).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_USER = "ctir-es"


class LocalNodeError(Exception):
    """A failure with a one-line explanation for the user."""


# ------------------------------------------------------------------ locations


def home() -> Path:
    """Where distributions and clusters live. Readable by the run user (not under /root)."""
    configured = os.environ.get("CTIR_ES_LOCAL_HOME")
    if configured:
        return Path(configured).resolve()
    if os.geteuid() == 0:
        return Path("/var/tmp/ctir-es-local")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ctir-es-local"


def m2_path(group: str, artifact: str, version: str, ext: str = "jar") -> Path:
    """Where Maven caches ``group:artifact:version`` (``ext`` is the packaging: jar, zip, pom)."""
    return (
        Path.home() / ".m2/repository" / group.replace(".", "/") / artifact / version
        / f"{artifact}-{version}.{ext}"
    )  # fmt: skip


def maven_get(group: str, artifact: str, version: str, ext: str = "jar", *,
              what: str = "", hint: str = "") -> Path:
    """``group:artifact:version:ext`` from the Maven cache, else from Maven Central via
    ``mvn dependency:get`` (no transitive dependencies). ``what`` is a size note for the
    progress line, ``hint`` is added to the error."""
    cached = m2_path(group, artifact, version, ext)
    if cached.is_file():
        return cached
    coords = f"{group}:{artifact}:{version}:{ext}"
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalNodeError(
            f"Maven (mvn) is not installed: install it (apt-get install maven) to fetch {coords}"
        )
    print(f"fetching {coords} with Maven{f' ({what})' if what else ''}, cached in ~/.m2 ...",
          file=sys.stderr)
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:get", f"-Dartifact={coords}", "-Dtransitive=false"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if proc.returncode != 0 or not cached.is_file():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln][:3]
        raise LocalNodeError(
            f"Maven could not fetch {coords}: {' | '.join(lines) or 'no error text'}. "
            f"Is Maven Central reachable, and is the version served?{' ' + hint if hint else ''}"
        )
    return cached


def unpack(zip_path: Path, name: str, launcher: str) -> Path:
    """Unpack ``zip_path`` (whose top folder is ``name``) once into ``home()/dist/name``;
    readable by everyone, writable by the owner. ``launcher`` (``bin/...``) proves it whole."""
    dist = home() / "dist"
    target = dist / name
    if (target / launcher).exists():
        return target
    dist.mkdir(parents=True, exist_ok=True)
    tmp = dist / f".unpack-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            extracted = Path(archive.extract(info, tmp))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                extracted.chmod(mode | 0o444 | (0o111 if extracted.is_dir() else 0))
    inner = tmp / name
    if not (inner / launcher).exists():
        raise LocalNodeError(f"{zip_path} does not hold {name}/{launcher}")
    shutil.rmtree(target, ignore_errors=True)
    inner.rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    for path in [home(), dist, target]:
        path.chmod(0o755)
    return target


# ------------------------------------------------------------------ Java


def java_version(java_home: Path) -> int | None:
    release = java_home / "release"
    try:
        text = release.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(r'JAVA_VERSION="(\d+)', text)
    return int(found.group(1)) if found else None


def find_java(need: int, what: str, env_vars: tuple[str, ...]) -> Path:
    """A JDK of version ``need`` or newer: the first of ``env_vars`` that is set and fits, else
    the oldest fitting one under /usr/lib/jvm. ``what`` names the engine in the error."""
    candidates: list[Path] = [Path(os.environ[v]) for v in env_vars if os.environ.get(v)]
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        found = [p for p in jvm.iterdir() if p.is_dir() and not p.is_symlink()]
        candidates += sorted(found, key=lambda p: java_version(p) or 0)
    seen: list[str] = []
    for candidate in candidates:
        got = java_version(candidate)
        seen.append(f"{candidate} ({got or 'unknown'})")
        if got is not None and got >= need and (candidate / "bin/java").exists():
            return candidate
    raise LocalNodeError(
        f"{what} needs Java {need}+; none found (looked at: {', '.join(seen) or 'nothing'}). "
        f"Install a JDK (apt-get install openjdk-17-jdk-headless) or set {env_vars[0]}"
    )


# ------------------------------------------------------------------ cluster state


@dataclass
class Node:
    name: str
    http_port: int
    transport_port: int
    dir: str
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class Cluster:
    name: str
    version: str
    java_home: str
    heap: str
    nodes: list[Node] = field(default_factory=list)
    engine: str = "elasticsearch"  # state files written before OpenSearch lack it

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @staticmethod
    def state_file(name: str) -> Path:
        return home() / "clusters" / name / "state.json"

    def save(self) -> None:
        path = self.state_file(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, name: str, engine: str = "elasticsearch") -> Cluster:
        tool = f"scripts/{engine}-local"
        path = cls.state_file(name)
        if not path.is_file():
            raise LocalNodeError(f"no local cluster {name!r} (start one: {tool} up)")
        data = json.loads(path.read_text(encoding="utf-8"))
        nodes = [Node(**n) for n in data.pop("nodes")]
        cluster = cls(**data, nodes=nodes)
        if cluster.engine != engine:
            raise LocalNodeError(
                f"local cluster {name!r} is a {cluster.engine} cluster: use "
                f"scripts/{cluster.engine}-local, or another --cluster for {tool}"
            )
        return cluster

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LocalNodeError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def prepare_dirs(self) -> None:
        """The state folder and its parents, readable by the run user."""
        home().chmod(0o755)
        for directory in [home() / "clusters", self.state_file(self.name).parent]:
            directory.chmod(0o755)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(first: int, count: int, taken: set[int]) -> list[int]:
    """``count`` free ports from ``first`` upwards (skipping ``taken``)."""
    out: list[int] = []
    port = first
    while len(out) < count and port < 65000:
        if port not in taken and port_free(port):
            out.append(port)
        port += 1
    if len(out) < count:
        raise LocalNodeError(f"no {count} free ports from {first} on 127.0.0.1")
    return out


def alive(pid: int | None, marker: bytes = b"org.elasticsearch") -> bool:
    """Whether ``pid`` is a running node (its command line holds ``marker``, the engine's
    Java package: a zombie or a reused pid of another program is not our node)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return marker in cmdline


# ------------------------------------------------------------------ the run user


def run_user(engine: str = "Elasticsearch") -> tuple[int, int] | None:
    """(uid, gid) to run as when we are root (creating the user once), else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(RUN_USER)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LocalNodeError(
                f"{engine} refuses to run as root and user {RUN_USER!r} could not be "
                f"created: {proc.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(RUN_USER)
    return entry.pw_uid, entry.pw_gid


def chown_tree(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, *ids)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), *ids)


def as_run_user(command: list[str], ids: tuple[int, int] | None, engine: str) -> list[str]:
    """``command`` wrapped in ``runuser -u ctir-es --`` when we are root."""
    if ids is None:
        return command
    runuser = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if Path(p).exists()), None
    )
    if runuser is None:
        raise LocalNodeError(
            f"running as root needs runuser (util-linux) to start {engine} as "
            f"{RUN_USER!r}: install util-linux, or run this script as a non-root user"
        )
    return [runuser, "-u", RUN_USER, "--", *command]


# ------------------------------------------------------------------ nodes


def write_node_config(dist: Path, node: Node, config_name: str, settings: dict[str, object],
                      ids: tuple[int, int] | None) -> None:
    """The node's own config folder (a copy of the distribution's), data and logs, and
    ``config_name`` (``elasticsearch.yml`` / ``opensearch.yml``) holding ``settings``."""
    root = Path(node.dir)
    config = root / "config"
    if not config.exists():
        shutil.copytree(dist / "config", config)
    for sub in ("data", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    (config / config_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    chown_tree(root, ids)


def last_log_lines(cluster: Cluster, node: Node, count: int = 25) -> str:
    log = Path(node.dir) / "logs" / f"{cluster.name}.log"
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    return "\n".join(lines[-count:])


def launch(cluster: Cluster, node: Node, command: list[str], env: dict[str, str],
           ids: tuple[int, int] | None, timeout: float, engine: str, pid_wait: float = 5.0) -> None:
    """Run the daemonising ``command`` (``bin/<engine> -d -p <node.dir>/es.pid``) as the run
    user, then record the node's pid from the pid file (waiting up to ``pid_wait`` s for it).

    The launcher's output goes to ``logs/launch.out``, not to pipes: OpenSearch's ``-d`` returns
    at once and its JVM keeps the inherited stdout open, so a pipe never reached end-of-file."""
    pid_file = Path(node.dir) / "es.pid"
    pid_file.unlink(missing_ok=True)
    command = as_run_user(command, ids, engine)
    out_file = Path(node.dir) / "logs" / "launch.out"

    def output() -> str:
        try:
            return out_file.read_text(encoding="utf-8", errors="replace").strip()[-800:]
        except OSError:
            return ""

    # -d returns once the node has started (Elasticsearch) or forked (OpenSearch); bound it anyway
    try:
        with out_file.open("w", encoding="utf-8") as out:
            proc = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=timeout, cwd=node.dir, check=False,
            )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise LocalNodeError(
            f"node {node.name} did not start within {timeout:.0f} s; last log lines:\n"
            + last_log_lines(cluster, node)
        ) from None
    if proc.returncode != 0:
        raise LocalNodeError(
            f"node {node.name} failed to start (exit {proc.returncode}): {output()}\n"
            "last log lines:\n" + last_log_lines(cluster, node)
        )
    deadline = time.monotonic() + pid_wait
    while time.monotonic() < deadline:
        if pid_file.exists() and pid_file.read_text().strip():
            node.pid = int(pid_file.read_text().strip())
            break
        time.sleep(0.1)
    cluster.save()


def stop_node(node: Node, kill: bool = False, timeout: float = 60.0,
              marker: bytes = b"org.elasticsearch") -> bool:
    """SIGTERM (or SIGKILL) the node and wait for it to exit. False when it was not running."""
    if not alive(node.pid, marker):
        return False
    assert node.pid is not None
    os.kill(node.pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(node.pid, marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(node.pid, marker):
        os.kill(node.pid, signal.SIGKILL)
        time.sleep(0.5)
    return True


def http_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def wait_for_health(
    cluster: Cluster, status: str, nodes: int, timeout: float, via: list[Node] | None = None,
    marker: bytes = b"org.elasticsearch",
) -> dict:
    """Poll ``_cluster/health`` on any live node until ``status`` with ``nodes`` nodes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for node in via or cluster.nodes:
            if not alive(node.pid, marker):
                continue
            try:
                health = http_json(
                    f"{node.url}/_cluster/health?wait_for_status={status}"
                    f"&wait_for_nodes={nodes}&timeout=2s"
                )
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = f"{node.name}: {exc}"
                continue
            if not health.get("timed_out"):
                return health
            last = f"{node.name}: status {health.get('status')}, {health.get('number_of_nodes')} nodes"
        time.sleep(1.0)
    dead = [n.name for n in cluster.nodes if not alive(n.pid, marker)]
    tails = "\n".join(
        f"--- {n.name} ---\n{last_log_lines(cluster, n)}" for n in cluster.nodes[:3]
    )
    raise LocalNodeError(
        f"cluster {cluster.name!r} not {status} with {nodes} node(s) after {timeout:.0f} s "
        f"({last}{'; exited: ' + ', '.join(dead) if dead else ''}); last log lines:\n{tails}"
    )


# ------------------------------------------------------------------ commands both tools share


def down(name: str, engine: str, purge: bool, marker: bytes) -> int:
    """Stop every node of cluster ``name`` (and delete its data with ``purge``)."""
    try:
        cluster = Cluster.load(name, engine)
    except LocalNodeError:
        print(f"no local cluster {name!r}", file=sys.stderr)
        return 0
    for node in cluster.nodes:
        if stop_node(node, marker=marker):
            print(f"stopped {node.name}", file=sys.stderr)
        node.pid = None
    cluster.save()
    if purge:
        shutil.rmtree(Cluster.state_file(name).parent, ignore_errors=True)
        print(f"removed the data of {name!r}", file=sys.stderr)
    return 0


def status(cluster: Cluster, marker: bytes) -> dict:
    """Nodes, pids and, when one runs, the cluster's health."""
    out: dict = {"cluster": cluster.name, "version": cluster.version, "url": cluster.url, "nodes": []}
    for node in cluster.nodes:
        out["nodes"].append(
            {"name": node.name, "url": node.url, "pid": node.pid, "running": alive(node.pid, marker)}
        )
    live = [n for n in cluster.nodes if alive(n.pid, marker)]
    if live:
        try:
            out["health"] = http_json(f"{live[0].url}/_cluster/health")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            out["health"] = {"error": str(exc)}
    return out
