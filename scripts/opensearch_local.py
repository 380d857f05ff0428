#!/usr/bin/env python3
"""A Docker-free local OpenSearch with the k-NN plugin: fetch, assemble, start, stop.

Maven Central publishes OpenSearch's own test distribution,
``org.opensearch.distribution.integ-test-zip:opensearch:<version>`` (a zip holding the server
and transport-netty4 only: no security plugin, no lang-painless, no analysis-common, no
k-NN). This tool fetches it with Maven (cached in ~/.m2), unpacks it once and adds what
ctir-es needs:

- **lang-painless**, which k-NN extends (``extended.plugins=lang-painless``). Maven Central
  serves it only as a jar, so the module folder is assembled here the way the full
  distribution ships it: ``org.opensearch.plugin:lang-painless:<version>``, the dependencies its
  pom names (antlr4-runtime, asm, asm-util, asm-tree, asm-commons, asm-analysis and
  opensearch-scripting-painless-spi; what the server's ``lib/`` already holds is skipped), a
  ``plugin-descriptor.properties`` and the module's ``plugin-security.policy``.
- **analysis-common**, the module of the ``english`` analyser (and the other "built in"
  ones), served as a jar only too and assembled the same way (it extends lang-painless), so
  the text fields get the same analysis as on a production cluster and on the local
  Elasticsearch (whose script adds an ``english`` analyser plugin).
- **opensearch-knn**, ``org.opensearch.plugin:opensearch-knn:<version>.0`` (a plugin zip,
  installed with ``bin/opensearch-plugin``). It ships without its native libraries (the faiss
  and nmslib JNI), so only its Lucene engine answers (docs/opensearch.md, "Local node").

The node runs as a non-root user (OpenSearch refuses root) on 127.0.0.1, port 9400 by default
(9200 and 9201 are Elasticsearch's), heap 1 GB, disk watermarks off.

    scripts/opensearch-local up            # prints CTIR_ES_OS_URL=http://127.0.0.1:9400
    scripts/opensearch-local status        # nodes, pids and health as JSON
    scripts/opensearch-local url
    scripts/opensearch-local down [--purge]
    scripts/opensearch-local fetch         # only fetch, unpack and add the plugins

Only the standard library: it runs before any virtualenv exists (CI calls it first). What it
shares with scripts/elasticsearch-local lives in scripts/local_node.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import local_node
from local_node import Cluster, LocalNodeError, Node, home, java_version, pick_ports, port_free

ENGINE = "opensearch"
MARKER = b"org.opensearch"
GROUP = "org.opensearch.distribution.integ-test-zip"
ARTIFACT = "opensearch"
PLUGIN_GROUP = "org.opensearch.plugin"
DEFAULT_VERSION = "2.19.1"  # the 2.x line Java 17 runs; 3.x needs Java 21+
DEFAULT_CLUSTER = "ctir-os"
DEFAULT_PORT = 9400  # 9200 and 9201 are the local Elasticsearch's
URL_VAR = "CTIR_ES_OS_URL"
KNN = "opensearch-knn"
PAINLESS = "lang-painless"
ANALYSIS = "analysis-common"
# modules/lang-painless/src/main/plugin-metadata/plugin-security.policy in OpenSearch's sources
PAINLESS_POLICY = """grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";

  // needed to find the classloader to load whitelisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


def major(version: str) -> int:
    return int(version.split(".")[0])


def find_java(version: str) -> Path:
    """A JDK that runs ``version``: 2.x needs 11+ (17 here), 3.x needs 21+."""
    need = 21 if major(version) >= 3 else 17
    return local_node.find_java(
        need, f"OpenSearch {version}", ("OPENSEARCH_JAVA_HOME", "JAVA_HOME")
    )


# ------------------------------------------------------------------ fetch, unpack, plugins


def fetch(version: str, zip_file: str | None = None) -> Path:
    """The distribution zip: ``--zip``, else the Maven cache, else Maven Central via mvn."""
    if zip_file:
        path = Path(zip_file)
        if not path.is_file():
            raise LocalNodeError(f"--zip {zip_file}: no such file")
        return path
    return local_node.maven_get(GROUP, ARTIFACT, version, "zip", what="about 51 MB")


POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def pom_dependencies(pom: Path) -> list[tuple[str, str, str, bool]]:
    """(group, artifact, version, wildcard-excluded) of the compile/runtime dependencies a pom
    names. ``wildcard-excluded``: the pom excludes all of that dependency's own dependencies."""
    root = ET.parse(pom).getroot()
    out = []
    for dep in root.findall("m:dependencies/m:dependency", POM_NS):
        def text(tag: str, dep: ET.Element = dep) -> str:
            node = dep.find(f"m:{tag}", POM_NS)
            return (node.text or "").strip() if node is not None else ""

        if text("scope") not in ("", "compile", "runtime") or text("optional") == "true":
            continue
        group, artifact, version = text("groupId"), text("artifactId"), text("version")
        if not version or "${" in version:
            raise LocalNodeError(
                f"{pom.name} names {group}:{artifact} without a plain version ({version!r}): "
                "cannot assemble lang-painless from it"
            )
        excluded = any(
            (e.findtext("m:groupId", "", POM_NS), e.findtext("m:artifactId", "", POM_NS)) == ("*", "*")
            for e in dep.findall("m:exclusions/m:exclusion", POM_NS)
        )
        out.append((group, artifact, version, excluded))
    return out


def module_jars(dist: Path, artifact: str, version: str) -> list[Path]:
    """``org.opensearch.plugin:<artifact>:<version>``'s jar and every dependency its pom (and
    theirs) names that the server's ``lib/`` does not already hold, fetched with Maven."""
    in_lib = {p.name for p in (dist / "lib").glob("*.jar")}
    jars: list[Path] = []
    seen: set[str] = set()
    todo = [(PLUGIN_GROUP, artifact, version, False)]
    while todo:
        group, name, ver, excluded = todo.pop(0)
        key = f"{group}:{name}"
        if key in seen or f"{name}-{ver}.jar" in in_lib:
            continue
        seen.add(key)
        jars.append(local_node.maven_get(group, name, ver, "jar"))
        if not excluded:
            todo += pom_dependencies(local_node.maven_get(group, name, ver, "pom"))
    return jars


@dataclass(frozen=True)
class Module:
    """A module of the full distribution that Maven Central serves as a jar only."""

    name: str
    classname: str
    description: str
    extended: str = ""
    policy: str = ""


MODULES = (
    Module(PAINLESS, "org.opensearch.painless.PainlessPlugin",
           "An easy, safe and fast scripting language for OpenSearch", policy=PAINLESS_POLICY),
    # the english analyser (and every other "built in" one): what production clusters have
    Module(ANALYSIS, "org.opensearch.analysis.common.CommonAnalysisPlugin",
           'Adds "built in" analyzers to OpenSearch.', extended=PAINLESS),
)


def install_module(dist: Path, version: str, module: Module) -> str:
    """Assemble ``modules/<name>`` the way the full distribution ships it: the jars, a
    ``plugin-descriptor.properties`` and the module's ``plugin-security.policy``."""
    target = dist / "modules" / module.name
    if (target / "plugin-descriptor.properties").is_file():
        return f"{module.name} present"
    jars = module_jars(dist, module.name, version)
    tmp = dist / "modules" / f".{module.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for jar in jars:
        shutil.copy2(jar, tmp / jar.name)
    (tmp / "plugin-descriptor.properties").write_text(
        "# assembled by scripts/opensearch-local from Maven Central's jars (the zip is not served)\n"
        f"description={module.description}\nversion={version}\nname={module.name}\n"
        f"classname={module.classname}\njava.version=11\nopensearch.version={version}\n"
        f"custom.foldername=\nextended.plugins={module.extended}\nhas.native.controller=false\n",
        encoding="utf-8",
    )
    if module.policy:
        (tmp / "plugin-security.policy").write_text(module.policy, encoding="utf-8")
    for path in [tmp, *tmp.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    tmp.rename(target)
    return f"{module.name} assembled from {len(jars)} jar(s)"


def install_knn(dist: Path, version: str, java_home: Path) -> str:
    """Install the k-NN plugin zip with ``bin/opensearch-plugin`` (once)."""
    if (dist / "plugins" / KNN).is_dir():
        return f"{KNN} installed"
    bundle = local_node.maven_get(PLUGIN_GROUP, KNN, f"{version}.0", "zip", what="about 6 MB")
    proc = subprocess.run(
        [str(dist / "bin" / "opensearch-plugin"), "install", "--batch", bundle.as_uri()],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OPENSEARCH_JAVA_HOME": str(java_home)},
    )  # fmt: skip
    if proc.returncode != 0:
        raise LocalNodeError(
            f"installing {KNN} failed: {(proc.stderr or proc.stdout).strip()[-800:]}"
        )
    return f"{KNN} installed"


def prepare(version: str, zip_file: str | None, java_home: Path) -> Path:
    """The unpacked distribution with lang-painless and k-NN in it."""
    dist = local_node.unpack(fetch(version, zip_file), f"opensearch-{version}", "bin/opensearch")
    for module in MODULES:
        print(install_module(dist, version, module), file=sys.stderr)
    print(install_knn(dist, version, java_home), file=sys.stderr)
    return dist


# ------------------------------------------------------------------ the node


def node_settings(cluster: Cluster, node: Node) -> dict[str, object]:
    return {
        "cluster.name": cluster.name,
        "node.name": node.name,
        "network.host": "127.0.0.1",
        "http.port": node.http_port,
        "transport.port": node.transport_port,
        "path.data": str(Path(node.dir) / "data"),
        "path.logs": str(Path(node.dir) / "logs"),
        "discovery.type": "single-node",
        # CI disks can be fairly full: never let watermarks block shard allocation
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }


def absolute_jvm_paths(node_dir: Path) -> None:
    """The distribution's jvm.options name ``logs/gc.log``, ``data`` (heap dumps) and
    ``logs/hs_err_pid%p.log`` relative to the working directory, which the launcher does not
    keep: the JVM then fails to open the GC log ("Invalid -Xlog option"). Point them at the
    node's own folders."""
    options = node_dir / "config" / "jvm.options"
    text = options.read_text(encoding="utf-8")
    for relative, absolute in (
        ("file=logs/gc.log", f"file={node_dir}/logs/gc.log"),
        ("-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={node_dir}/data"),
        ("-XX:ErrorFile=logs/", f"-XX:ErrorFile={node_dir}/logs/"),
    ):
        text = text.replace(relative, absolute)
    options.write_text(text, encoding="utf-8")


def alive(pid: int | None) -> bool:
    return local_node.alive(pid, MARKER)


def start_node(cluster: Cluster, node: Node, timeout: float) -> None:
    if alive(node.pid):
        return
    dist = home() / "dist" / f"opensearch-{cluster.version}"
    ids = local_node.run_user("OpenSearch")
    local_node.write_node_config(dist, node, "opensearch.yml", node_settings(cluster, node), ids)
    absolute_jvm_paths(Path(node.dir))
    tmp = Path(node.dir) / "tmp"
    tmp.mkdir(exist_ok=True)
    local_node.chown_tree(tmp, ids)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OPENSEARCH_JAVA_HOME": cluster.java_home,
        "OPENSEARCH_PATH_CONF": str(Path(node.dir) / "config"),
        "OPENSEARCH_JAVA_OPTS": f"-Xms{cluster.heap} -Xmx{cluster.heap}",
        "OPENSEARCH_TMPDIR": str(tmp),
        "HOME": node.dir,
        "LANG": "C.UTF-8",
    }
    command = [str(dist / "bin/opensearch"), "-d", "-p", str(Path(node.dir) / "es.pid")]
    # bin/opensearch -d forks and returns: the JVM writes the pid file once it bootstraps
    local_node.launch(cluster, node, command, env, ids, timeout, "OpenSearch", pid_wait=timeout)
    if node.pid is None:
        raise LocalNodeError(
            f"node {node.name} wrote no pid file within {timeout:.0f} s: "
            f"{(Path(node.dir) / 'logs' / 'launch.out').read_text(errors='replace')[-800:]}\n"
            "last log lines:\n" + local_node.last_log_lines(cluster, node)
        )


def wait_for_health(cluster: Cluster, timeout: float) -> dict:
    return local_node.wait_for_health(cluster, "yellow", 1, timeout, marker=MARKER)


def plugins(url: str) -> list[str]:
    """The plugins the node loaded (``_cat/plugins``)."""
    rows = local_node.http_json(f"{url}/_cat/plugins?format=json")
    return sorted({str(row.get("component")) for row in rows})  # type: ignore[union-attr]


# ------------------------------------------------------------------ commands


def cmd_up(args: argparse.Namespace) -> int:
    name = args.cluster
    try:
        existing: Cluster | None = Cluster.load(name, ENGINE)
    except LocalNodeError as exc:
        if "is a" in str(exc):
            raise
        existing = None
    if existing and any(alive(n.pid) for n in existing.nodes):
        if existing.version != args.version:
            raise LocalNodeError(
                f"cluster {name!r} is already running ({existing.version}): "
                "run `scripts/opensearch-local down` first"
            )
        wait_for_health(existing, args.timeout)
        print(f"{URL_VAR}={existing.url}")
        return 0
    java = find_java(args.version)
    prepare(args.version, args.zip, java)
    if existing and existing.version != args.version:  # another version: start afresh
        shutil.rmtree(Cluster.state_file(name).parent, ignore_errors=True)
        existing = None
    if existing is None:
        if args.port and not port_free(args.port):
            raise LocalNodeError(f"port {args.port} on 127.0.0.1 is taken (choose another --port)")
        http = pick_ports(args.port or DEFAULT_PORT, 1, set())[0]
        transport = pick_ports(http + 100, 1, {http})[0]
        node = Node("os-1", http, transport, str(Cluster.state_file(name).parent / "os-1"))
        existing = Cluster(name, args.version, str(java), args.heap, [node], engine=ENGINE)
    else:
        existing.java_home, existing.heap = str(java), args.heap
        node = existing.nodes[0]
        if not port_free(node.http_port) or not port_free(node.transport_port):
            raise LocalNodeError(
                f"port {node.http_port} or {node.transport_port} of {node.name} is taken: "
                "run `scripts/opensearch-local down --purge` to start afresh"
            )
    existing.save()
    existing.prepare_dirs()
    started = time.monotonic()
    print(
        f"starting OpenSearch {args.version} (heap {existing.heap}, Java {java_version(java)}) ...",
        file=sys.stderr,
    )
    try:
        start_node(existing, existing.nodes[0], args.timeout)
        health = wait_for_health(existing, args.timeout)
        loaded = plugins(existing.url)
    except (LocalNodeError, OSError, ValueError) as exc:
        local_node.stop_node(existing.nodes[0], kill=True, marker=MARKER)
        existing.save()
        if isinstance(exc, LocalNodeError):
            raise
        raise LocalNodeError(f"the node started but did not list its plugins: {exc}") from None
    print(
        f"cluster {existing.name!r} {health['status']} in {time.monotonic() - started:.0f} s at "
        f"{existing.url}; plugins: {', '.join(loaded) or 'none'}",
        file=sys.stderr,
    )
    print(f"{URL_VAR}={existing.url}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    return local_node.down(args.cluster, ENGINE, args.purge, MARKER)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        cluster = Cluster.load(args.cluster, ENGINE)
    except LocalNodeError as exc:
        if "is a" in str(exc):
            raise
        print(json.dumps({"cluster": args.cluster, "running": False, "nodes": []}, indent=2))
        print(f"no local OpenSearch {args.cluster!r} (start one: scripts/opensearch-local up)",
              file=sys.stderr)
        return 3
    out = local_node.status(cluster, MARKER)
    out["running"] = any(n["running"] for n in out["nodes"])
    print(json.dumps(out, indent=2))
    if not out["running"]:
        print(f"OpenSearch {cluster.name!r} is stopped (scripts/opensearch-local up)", file=sys.stderr)
        return 3
    return 0


def cmd_url(args: argparse.Namespace) -> int:
    cluster = Cluster.load(args.cluster, ENGINE)
    if not any(alive(n.pid) for n in cluster.nodes):
        raise LocalNodeError(f"cluster {cluster.name!r} is not running (scripts/opensearch-local up)")
    print(cluster.url)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    print(prepare(args.version, args.zip, find_java(args.version)))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="scripts/opensearch-local", description=(__doc__ or "").split("\n\n")[0]
    )
    top.add_argument("--cluster", default=os.environ.get("CTIR_ES_OS_CLUSTER", DEFAULT_CLUSTER))
    sub = top.add_subparsers(dest="command", required=True)
    version_default = os.environ.get("CTIR_ES_OS_VERSION", DEFAULT_VERSION)

    up = sub.add_parser("up", help=f"fetch, assemble and start; wait for health; print {URL_VAR}=...")
    up.add_argument("--version", default=version_default)
    up.add_argument("--port", type=int, default=0,
                    help=f"HTTP port (default: {DEFAULT_PORT} or the next free one)")
    up.add_argument("--heap", default="1g")
    up.add_argument("--zip", default=None, help="a local copy of the distribution zip")
    up.add_argument("--timeout", type=float, default=240.0)
    up.set_defaults(run=cmd_up)

    down = sub.add_parser("down", help="stop the node")
    down.add_argument("--purge", action="store_true", help="also delete data and logs")
    down.set_defaults(run=cmd_down)

    sub.add_parser("status", help="node, pid and health as JSON (exit 3 when stopped)").set_defaults(
        run=cmd_status
    )
    sub.add_parser("url", help="the running node's HTTP URL").set_defaults(run=cmd_url)

    fetch_cmd = sub.add_parser("fetch", help="only fetch, unpack and add the plugins; print the directory")
    fetch_cmd.add_argument("--version", default=version_default)
    fetch_cmd.add_argument("--zip", default=None)
    fetch_cmd.set_defaults(run=cmd_fetch)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except LocalNodeError as exc:
        print(f"opensearch-local: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
