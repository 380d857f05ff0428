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
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import local_node
from local_node import (
    Cluster,
    LocalNodeError,
    Node,
    home,
    java_version,
    pick_ports,
    port_free,
    run_user,
    wait_for_health,
)

GROUP = "org.elasticsearch.distribution.integ-test-zip"
ARTIFACT = "elasticsearch"
# The 8.19 line the docker compose file uses. 8.19.10 is not on Maven Central (404);
# 8.19.21 is the newest 8.19.x served (checked 2026-11-25 with `versions`).
DEFAULT_VERSION = "8.19.21"
CENTRAL = "https://repo.maven.apache.org/maven2"
PLUGIN = "ctir-analysis"
PLUGIN_SOURCE = Path(__file__).resolve().parent / "es-plugin" / PLUGIN
DEFAULT_CLUSTER = "ctir-local"


# the shared module's error, under the name this tool always raised
LocalEsError = LocalNodeError


# ------------------------------------------------------------------ locations


def m2_zip(version: str) -> Path:
    return local_node.m2_path(GROUP, ARTIFACT, version, "zip")


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


def find_java(version: str) -> Path:
    """A JDK that runs ``version``: 8.x needs 17+, 9.x needs 21+ (ES_JAVA_HOME wins)."""
    need = 21 if major(version) >= 9 else 17
    return local_node.find_java(need, f"Elasticsearch {version}", ("ES_JAVA_HOME", "JAVA_HOME"))


# ------------------------------------------------------------------ fetch and unpack


def fetch(version: str, zip_file: str | None = None) -> Path:
    """The distribution zip: ``--zip``, else the Maven cache, else Maven Central via mvn."""
    if zip_file:
        path = Path(zip_file)
        if not path.is_file():
            raise LocalEsError(f"--zip {zip_file}: no such file")
        return path
    if shutil.which("mvn") is None and not m2_zip(version).is_file():
        raise LocalEsError(
            "Maven (mvn) is not installed: install it (apt-get install maven) or download "
            f"{GROUP}:{ARTIFACT}:{version}:zip yourself and pass --zip FILE"
        )
    return local_node.maven_get(
        GROUP, ARTIFACT, version, "zip", what="about 100 MB",
        hint="(`scripts/elasticsearch-local versions` lists them)",
    )  # fmt: skip


def unpack(version: str, zip_path: Path) -> Path:
    """Unpack once into ``home()/dist``."""
    return local_node.unpack(zip_path, f"elasticsearch-{version}", "bin/elasticsearch")


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


def alive(pid: int | None) -> bool:
    return local_node.alive(pid, b"org.elasticsearch")


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


def start_node(cluster: Cluster, node: Node, timeout: float) -> None:
    if alive(node.pid):
        return
    dist = home() / "dist" / f"elasticsearch-{cluster.version}"
    ids = run_user("Elasticsearch")
    local_node.write_node_config(dist, node, "elasticsearch.yml", node_settings(cluster, node), ids)
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
    local_node.chown_tree(Path(env["ES_TMPDIR"]), ids)
    command = [str(dist / "bin/elasticsearch"), "-d", "-p", str(Path(node.dir) / "es.pid")]
    local_node.launch(cluster, node, command, env, ids, timeout, "Elasticsearch")


def stop_node(node: Node, kill: bool = False, timeout: float = 60.0) -> bool:
    """SIGTERM (or SIGKILL) the node and wait for it to exit. False when it was not running."""
    return local_node.stop_node(node, kill, timeout, b"org.elasticsearch")


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
    existing.prepare_dirs()
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
    return local_node.down(args.cluster, "elasticsearch", args.purge, b"org.elasticsearch")


def cmd_status(args: argparse.Namespace) -> int:
    cluster = Cluster.load(args.cluster)
    print(json.dumps(local_node.status(cluster, b"org.elasticsearch"), indent=2))
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
