#!/usr/bin/env python3
"""A Docker-free local Elasticsearch: fetch, unpack, start, stop (one node or a small cluster).

Maven Central publishes Elasticsearch's own test distribution,
``org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>`` (a zip). This tool
fetches it with Maven (cached in ~/.m2), unpacks it once, and runs nodes on 127.0.0.1 with
their own config, data and log directories, as a non-root user (Elasticsearch refuses root),
with a small heap and disk watermarks off (CI disks are often fairly full).

    scripts/elasticsearch-local up                   # one node, prints CTIR_ES_TEST_URL=...
    scripts/elasticsearch-local up --nodes 3         # a 3-node cluster, waits for green
    scripts/elasticsearch-local url                  # the running cluster's URL
    scripts/elasticsearch-local status
    scripts/elasticsearch-local stop-node es-2 --kill    # SIGKILL one node (fault tests)
    scripts/elasticsearch-local start-node es-2
    scripts/elasticsearch-local down [--purge]
    scripts/elasticsearch-local versions             # which versions Maven Central serves

What the test distribution holds (checked on 8.15-9.2): the server (BM25, ``dense_vector``
and kNN, aliases, ``_msearch``, aggregations, ingest without processors) plus the
transport-netty4, x-pack-core (licence API, basic licence) and x-pack-security modules. It
lacks analysis-common (the ``english`` analyser, ``path_hierarchy``), ingest-common and
lang-painless (pipeline processors), reindex (``_reindex``) and the rank-rrf retrievers;
ctir-es detects each and falls back (see docs/elasticsearch.md, "The local node and what it lacks").

The ``english`` analyser matters most (category names are plural, titles singular), so this
tool gives the test distribution one: ``scripts/es-plugin/ctir-analysis`` is a stable-API
analysis plugin (one class wrapping Lucene's ``EnglishAnalyzer``, which is what
analysis-common's ``english`` builds), compiled here with the JDK's ``javac`` against the
distribution's own jars and installed with ``elasticsearch-plugin``. The index mapping is then
the production one. ``up --no-english`` leaves it out (to see the fallback).

Only the standard library: it runs before any virtualenv exists (CI calls it first).
"""

from __future__ import annotations

import argparse
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

GROUP = "org.elasticsearch.distribution.integ-test-zip"
ARTIFACT = "elasticsearch"
# The 8.19 line the docker compose file uses. 8.19.10 is not on Maven Central (404);
# 8.19.21 is the newest 8.19.x served (checked 2026-11-25 with `versions`).
DEFAULT_VERSION = "8.19.21"
CENTRAL = "https://repo.maven.apache.org/maven2"
RUN_USER = "ctir-es"
PLUGIN = "ctir-analysis"
PLUGIN_SOURCE = Path(__file__).resolve().parent / "es-plugin" / PLUGIN
DEFAULT_CLUSTER = "ctir-local"


class LocalEsError(Exception):
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


def m2_zip(version: str) -> Path:
    group = GROUP.replace(".", "/")
    return Path.home() / ".m2/repository" / group / ARTIFACT / version / f"{ARTIFACT}-{version}.zip"


# ------------------------------------------------------------------ versions and Java


def major(version: str) -> int:
    return int(version.split(".")[0])


def served_versions(timeout: float = 15.0) -> list[str]:
    """The versions Maven Central lists for the test distribution (metadata only)."""
    url = f"{CENTRAL}/{GROUP.replace('.', '/')}/{ARTIFACT}/maven-metadata.xml"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        raise LocalEsError(f"cannot read {url}: {exc}") from None
    return re.findall(r"<version>([^<]+)</version>", text)


def java_version(java_home: Path) -> int | None:
    release = java_home / "release"
    try:
        text = release.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(r'JAVA_VERSION="(\d+)', text)
    return int(found.group(1)) if found else None


def find_java(version: str) -> Path:
    """A JDK that runs ``version``: 8.x needs 17+, 9.x needs 21+ (ES_JAVA_HOME wins)."""
    need = 21 if major(version) >= 9 else 17
    candidates: list[Path] = []
    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]))
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
    raise LocalEsError(
        f"Elasticsearch {version} needs Java {need}+; none found (looked at: "
        f"{', '.join(seen) or 'nothing'}). Install a JDK (apt-get install openjdk-17-jdk-headless) "
        "or set ES_JAVA_HOME"
    )


# ------------------------------------------------------------------ fetch and unpack


def fetch(version: str, zip_file: str | None = None) -> Path:
    """The distribution zip: ``--zip``, else the Maven cache, else Maven Central via mvn."""
    if zip_file:
        path = Path(zip_file)
        if not path.is_file():
            raise LocalEsError(f"--zip {zip_file}: no such file")
        return path
    cached = m2_zip(version)
    if cached.is_file():
        return cached
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalEsError(
            "Maven (mvn) is not installed: install it (apt-get install maven) or download "
            f"{GROUP}:{ARTIFACT}:{version}:zip yourself and pass --zip FILE"
        )
    artifact = f"{GROUP}:{ARTIFACT}:{version}:zip"
    print(f"fetching {artifact} with Maven (about 100 MB, cached in ~/.m2) ...", file=sys.stderr)
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:get", f"-Dartifact={artifact}", "-Dtransitive=false"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0 or not cached.is_file():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln][:3]
        raise LocalEsError(
            f"Maven could not fetch {artifact}: {' | '.join(lines) or 'no error text'}. "
            "Is Maven Central reachable, and is the version served? "
            "(`scripts/elasticsearch-local versions` lists them)"
        )
    return cached


def unpack(version: str, zip_path: Path) -> Path:
    """Unpack once into ``home()/dist``; readable by everyone, writable by the owner."""
    dist = home() / "dist"
    target = dist / f"elasticsearch-{version}"
    if (target / "bin/elasticsearch").exists():
        return target
    dist.mkdir(parents=True, exist_ok=True)
    tmp = dist / f".unpack-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            extracted = Path(archive.extract(info, tmp))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                extracted.chmod(mode | 0o444 | (0o111 if extracted.is_dir() else 0))
    inner = tmp / f"elasticsearch-{version}"
    if not (inner / "bin/elasticsearch").exists():
        raise LocalEsError(f"{zip_path} does not hold elasticsearch-{version}/bin/elasticsearch")
    inner.rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    for path in [home(), dist, target]:
        path.chmod(0o755)
    return target


# ------------------------------------------------------------------ the english analyser plugin


def install_english(dist: Path, java_home: Path, version: str) -> str:
    """Build and install the ``english`` analyser plugin into ``dist`` unless the distribution
    has analysis-common or the plugin is there. Returns what was done, for the log."""
    if (dist / "modules" / "analysis-common").is_dir():
        return "analysis-common present"
    if (dist / "plugins" / PLUGIN).is_dir():
        return f"{PLUGIN} installed"
    javac, jar = java_home / "bin" / "javac", java_home / "bin" / "jar"
    if not javac.exists() or not jar.exists():
        raise LocalEsError(
            f"{java_home} has no javac/jar to build the {PLUGIN} plugin (the english analyser): "
            "install a JDK (apt-get install openjdk-17-jdk-headless) or pass --no-english"
        )
    release = "21" if major(version) >= 9 else "17"
    work = home() / "build" / f"{PLUGIN}-{version}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "classes").mkdir(parents=True)
    (work / "zip").mkdir()
    sources = sorted(str(p) for p in (PLUGIN_SOURCE / "src").rglob("*.java"))

    def run(command: list[str], what: str) -> None:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "ES_JAVA_HOME": str(java_home)})
        if proc.returncode != 0:
            raise LocalEsError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-800:]}")

    run([str(javac), "--release", release, "-cp", str(dist / "lib" / "*"), "-d",
         str(work / "classes"), *sources], f"compiling the {PLUGIN} plugin")
    run([str(jar), "cf", str(work / "zip" / f"{PLUGIN}.jar"), "-C", str(work / "classes"), "."],
        f"packaging the {PLUGIN} plugin")
    (work / "zip" / "stable-plugin-descriptor.properties").write_text(
        "description=The english analyser for distributions without analysis-common (ctir-es)\n"
        f"version=1.0.0\nname={PLUGIN}\njava.version={release}\nelasticsearch.version={version}\n",
        encoding="utf-8",
    )
    (work / "zip" / "named_components.json").write_text(
        json.dumps({"org.elasticsearch.plugin.analysis.AnalyzerFactory":
                    {"english": "org.ctir.analysis.EnglishAnalyzerFactory"}}),
        encoding="utf-8",
    )
    bundle = work / f"{PLUGIN}.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for item in sorted((work / "zip").iterdir()):
            archive.write(item, item.name)
    run([str(dist / "bin" / "elasticsearch-plugin"), "install", "--batch", bundle.as_uri()],
        f"installing the {PLUGIN} plugin")
    return f"{PLUGIN} built and installed (the english analyser)"


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
    def load(cls, name: str) -> Cluster:
        path = cls.state_file(name)
        if not path.is_file():
            raise LocalEsError(f"no local cluster {name!r} (start one: scripts/elasticsearch-local up)")
        data = json.loads(path.read_text(encoding="utf-8"))
        nodes = [Node(**n) for n in data.pop("nodes")]
        return cls(**data, nodes=nodes)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LocalEsError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")


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
        raise LocalEsError(f"no {count} free ports from {first} on 127.0.0.1")
    return out


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie or a reused pid of another program is not our node
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"org.elasticsearch" in cmdline


# ------------------------------------------------------------------ the run user


def run_user() -> tuple[int, int] | None:
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
            raise LocalEsError(
                f"Elasticsearch refuses to run as root and user {RUN_USER!r} could not be "
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


# ------------------------------------------------------------------ nodes


def node_settings(cluster: Cluster, node: Node) -> dict[str, object]:
    settings: dict[str, object] = {
        "cluster.name": cluster.name,
        "node.name": node.name,
        "network.host": "127.0.0.1",
        "http.port": node.http_port,
        "transport.port": node.transport_port,
        "path.data": str(Path(node.dir) / "data"),
        "path.logs": str(Path(node.dir) / "logs"),
        # no TLS or users on a loopback test node (x-pack-security is in the distribution)
        "xpack.security.enabled": False,
        # CI disks can be fairly full: never let watermarks block shard allocation
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    if len(cluster.nodes) == 1:
        settings["discovery.type"] = "single-node"
    else:
        settings["discovery.seed_hosts"] = [f"127.0.0.1:{n.transport_port}" for n in cluster.nodes]
        settings["cluster.initial_master_nodes"] = [n.name for n in cluster.nodes]
    return settings


def write_node_config(dist: Path, cluster: Cluster, node: Node, ids: tuple[int, int] | None) -> None:
    root = Path(node.dir)
    config = root / "config"
    if not config.exists():
        shutil.copytree(dist / "config", config)
    for sub in ("data", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = [f"{key}: {json.dumps(value)}" for key, value in node_settings(cluster, node).items()]
    (config / "elasticsearch.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    chown_tree(root, ids)


def last_log_lines(cluster: Cluster, node: Node, count: int = 25) -> str:
    log = Path(node.dir) / "logs" / f"{cluster.name}.log"
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    return "\n".join(lines[-count:])


def start_node(cluster: Cluster, node: Node, timeout: float) -> None:
    if alive(node.pid):
        return
    dist = home() / "dist" / f"elasticsearch-{cluster.version}"
    ids = run_user()
    write_node_config(dist, cluster, node, ids)
    pid_file = Path(node.dir) / "es.pid"
    pid_file.unlink(missing_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ES_JAVA_HOME": cluster.java_home,
        "ES_PATH_CONF": str(Path(node.dir) / "config"),
        "ES_JAVA_OPTS": f"-Xms{cluster.heap} -Xmx{cluster.heap}",
        "ES_TMPDIR": str(Path(node.dir) / "tmp"),
        "HOME": node.dir,
        "LANG": "C.UTF-8",
    }
    Path(env["ES_TMPDIR"]).mkdir(exist_ok=True)
    chown_tree(Path(env["ES_TMPDIR"]), ids)
    command = [str(dist / "bin/elasticsearch"), "-d", "-p", str(pid_file)]
    if ids is not None:
        runuser = shutil.which("runuser") or next(
            (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if Path(p).exists()), None
        )
        if runuser is None:
            raise LocalEsError(
                "running as root needs runuser (util-linux) to start Elasticsearch as "
                f"{RUN_USER!r}: install util-linux, or run this script as a non-root user"
            )
        command = [runuser, "-u", RUN_USER, "--", *command]
    # -d returns once the node has started (or failed to); bound it anyway
    try:
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, cwd=node.dir, check=False
        )
    except subprocess.TimeoutExpired:
        raise LocalEsError(
            f"node {node.name} did not start within {timeout:.0f} s; last log lines:\n"
            + last_log_lines(cluster, node)
        ) from None
    if proc.returncode != 0:
        raise LocalEsError(
            f"node {node.name} failed to start (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}\nlast log lines:\n"
            + last_log_lines(cluster, node)
        )
    for _ in range(50):
        if pid_file.exists() and pid_file.read_text().strip():
            node.pid = int(pid_file.read_text().strip())
            break
        time.sleep(0.1)
    cluster.save()


def stop_node(node: Node, kill: bool = False, timeout: float = 60.0) -> bool:
    """SIGTERM (or SIGKILL) the node and wait for it to exit. False when it was not running."""
    if not alive(node.pid):
        return False
    assert node.pid is not None
    os.kill(node.pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(node.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(node.pid):
        os.kill(node.pid, signal.SIGKILL)
        time.sleep(0.5)
    return True


def http_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def wait_for_health(
    cluster: Cluster, status: str, nodes: int, timeout: float, via: list[Node] | None = None
) -> dict:
    """Poll ``_cluster/health`` on any live node until ``status`` with ``nodes`` nodes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for node in via or cluster.nodes:
            if not alive(node.pid):
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
    dead = [n.name for n in cluster.nodes if not alive(n.pid)]
    tails = "\n".join(
        f"--- {n.name} ---\n{last_log_lines(cluster, n)}" for n in cluster.nodes[:3]
    )
    raise LocalEsError(
        f"cluster {cluster.name!r} not {status} with {nodes} node(s) after {timeout:.0f} s "
        f"({last}{'; exited: ' + ', '.join(dead) if dead else ''}); last log lines:\n{tails}"
    )


# ------------------------------------------------------------------ commands


def cmd_up(args: argparse.Namespace) -> int:
    name = args.cluster
    try:
        existing = Cluster.load(name)
    except LocalEsError:
        existing = None
    if existing and any(alive(n.pid) for n in existing.nodes):
        if existing.version != args.version or len(existing.nodes) != args.nodes:
            raise LocalEsError(
                f"cluster {name!r} is already running ({existing.version}, "
                f"{len(existing.nodes)} node(s)): run `scripts/elasticsearch-local down` first"
            )
        for node in existing.nodes:
            start_node(existing, node, args.timeout)
        wait_for_health(existing, "green" if args.nodes > 1 else "yellow", args.nodes, args.timeout)
        print(f"CTIR_ES_TEST_URL={existing.url}")
        return 0
    java = find_java(args.version)
    dist = unpack(args.version, fetch(args.version, args.zip))
    if args.no_english:
        plugin_dir = dist / "plugins" / PLUGIN
        if plugin_dir.is_dir():
            shutil.rmtree(plugin_dir)
        print("english analyser plugin left out (--no-english)", file=sys.stderr)
    else:
        print(install_english(dist, java, args.version), file=sys.stderr)
    # a stopped cluster keeps its data unless the shape changed
    if existing and (existing.version != args.version or len(existing.nodes) != args.nodes):
        shutil.rmtree(Cluster.state_file(name).parent, ignore_errors=True)
        existing = None
    if existing is None:
        first = args.port or 9200
        if args.port and not port_free(args.port):
            raise LocalEsError(f"port {args.port} on 127.0.0.1 is taken (choose another --port)")
        http_ports = pick_ports(first, args.nodes, set())
        transport = pick_ports(max(first + 100, 9300), args.nodes, set(http_ports))
        base = Cluster.state_file(name).parent
        nodes = [
            Node(f"es-{i + 1}", http_ports[i], transport[i], str(base / f"es-{i + 1}"))
            for i in range(args.nodes)
        ]
        heap = args.heap or ("1g" if args.nodes == 1 else "512m")
        existing = Cluster(name, args.version, str(java), heap, nodes)
    else:
        existing.java_home = str(java)
        for node in existing.nodes:
            if not port_free(node.http_port) or not port_free(node.transport_port):
                raise LocalEsError(
                    f"port {node.http_port} or {node.transport_port} of {node.name} is taken: "
                    "run `scripts/elasticsearch-local down --purge` to start afresh"
                )
    existing.save()
    home().chmod(0o755)
    for directory in [home() / "clusters", Cluster.state_file(name).parent]:
        directory.chmod(0o755)
    started = time.monotonic()
    print(
        f"starting Elasticsearch {args.version} ({len(existing.nodes)} node(s), heap "
        f"{existing.heap} each, Java {java_version(java)}) ...",
        file=sys.stderr,
    )
    try:
        for node in existing.nodes:
            start_node(existing, node, args.timeout)
        health = wait_for_health(
            existing, "green" if args.nodes > 1 else "yellow", args.nodes, args.timeout
        )
    except LocalEsError:
        for node in existing.nodes:
            stop_node(node, kill=True)
        existing.save()
        raise
    print(
        f"cluster {existing.name!r} {health['status']} with {health['number_of_nodes']} node(s) "
        f"in {time.monotonic() - started:.0f} s at {existing.url}",
        file=sys.stderr,
    )
    print(f"CTIR_ES_TEST_URL={existing.url}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        cluster = Cluster.load(args.cluster)
    except LocalEsError:
        print(f"no local cluster {args.cluster!r}", file=sys.stderr)
        return 0
    for node in cluster.nodes:
        if stop_node(node):
            print(f"stopped {node.name}", file=sys.stderr)
        node.pid = None
    cluster.save()
    if args.purge:
        shutil.rmtree(Cluster.state_file(args.cluster).parent, ignore_errors=True)
        print(f"removed the data of {args.cluster!r}", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = Cluster.load(args.cluster)
    out = {"cluster": cluster.name, "version": cluster.version, "url": cluster.url, "nodes": []}
    for node in cluster.nodes:
        out["nodes"].append(
            {"name": node.name, "url": node.url, "pid": node.pid, "running": alive(node.pid)}
        )
    live = [n for n in cluster.nodes if alive(n.pid)]
    if live:
        try:
            out["health"] = http_json(f"{live[0].url}/_cluster/health")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            out["health"] = {"error": str(exc)}
    print(json.dumps(out, indent=2))
    return 0


def cmd_url(args: argparse.Namespace) -> int:
    cluster = Cluster.load(args.cluster)
    live = [n for n in cluster.nodes if alive(n.pid)]
    if not live:
        raise LocalEsError(f"cluster {cluster.name!r} is not running (scripts/elasticsearch-local up)")
    print(live[0].url if args.any else cluster.url)
    return 0


def cmd_stop_node(args: argparse.Namespace) -> int:
    cluster = Cluster.load(args.cluster)
    node = cluster.node(args.node)
    if not stop_node(node, kill=args.kill):
        print(f"{node.name} was not running", file=sys.stderr)
    node.pid = None
    cluster.save()
    return 0


def cmd_start_node(args: argparse.Namespace) -> int:
    cluster = Cluster.load(args.cluster)
    node = cluster.node(args.node)
    start_node(cluster, node, args.timeout)
    live = sum(alive(n.pid) for n in cluster.nodes)
    wait_for_health(cluster, "yellow", live, args.timeout, via=[node])
    print(f"{node.name} up at {node.url}", file=sys.stderr)
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    for version in served_versions():
        if major(version) >= 8:
            print(version)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    print(unpack(args.version, fetch(args.version, args.zip)))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="scripts/elasticsearch-local", description=__doc__.split("\n\n")[0]
    )
    top.add_argument("--cluster", default=os.environ.get("CTIR_ES_LOCAL_CLUSTER", DEFAULT_CLUSTER))
    sub = top.add_subparsers(dest="command", required=True)
    version_default = os.environ.get("CTIR_ES_LOCAL_VERSION", DEFAULT_VERSION)

    up = sub.add_parser("up", help="fetch, unpack and start; wait for health; print the URL")
    up.add_argument("--version", default=version_default)
    up.add_argument("--nodes", type=int, default=1)
    up.add_argument("--port", type=int, default=0, help="first HTTP port (default: 9200 or the next free one)")
    up.add_argument("--heap", default=None, help="per node (default 1g, 512m with several nodes)")
    up.add_argument("--zip", default=None, help="a local copy of the distribution zip")
    up.add_argument("--timeout", type=float, default=240.0)
    up.add_argument("--no-english", action="store_true",
                    help=f"do not add the {PLUGIN} plugin (the english analyser) to the test distribution")
    up.set_defaults(run=cmd_up)

    down = sub.add_parser("down", help="stop every node")
    down.add_argument("--purge", action="store_true", help="also delete data and logs")
    down.set_defaults(run=cmd_down)

    sub.add_parser("status", help="nodes, pids and cluster health as JSON").set_defaults(run=cmd_status)
    url = sub.add_parser("url", help="the cluster's HTTP URL")
    url.add_argument("--any", action="store_true", help="the first running node's URL")
    url.set_defaults(run=cmd_url)

    stop = sub.add_parser("stop-node", help="stop one node (SIGTERM, or SIGKILL with --kill)")
    stop.add_argument("node")
    stop.add_argument("--kill", action="store_true")
    stop.set_defaults(run=cmd_stop_node)

    start = sub.add_parser("start-node", help="start a stopped node and wait until it joined")
    start.add_argument("node")
    start.add_argument("--timeout", type=float, default=240.0)
    start.set_defaults(run=cmd_start_node)

    fetch_cmd = sub.add_parser("fetch", help="only fetch and unpack; print the directory")
    fetch_cmd.add_argument("--version", default=version_default)
    fetch_cmd.add_argument("--zip", default=None)
    fetch_cmd.set_defaults(run=cmd_fetch)

    sub.add_parser("versions", help="8.x and 9.x versions Maven Central lists").set_defaults(
        run=cmd_versions
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except LocalEsError as exc:
        print(f"elasticsearch-local: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
