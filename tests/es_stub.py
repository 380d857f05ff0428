"""A small in-memory stand-in for Elasticsearch on 127.0.0.1, for client-side tests.

It answers the requests ``ElasticsearchStore`` makes the way Elasticsearch 8.x does - status
codes, error bodies (``{"error": {"root_cause": [...], "type", "reason"}, "status"}``), bulk
item results, the ``X-Elastic-Product`` header the client checks - and it can be told to fail:

- ``faults``: a queue consumed by ``_bulk`` requests, one entry per request:
  ``"429"`` / ``"502"`` / ``"503"`` / ``"504"`` (the whole request rejected, nothing applied),
  ``"drop"`` (the connection is closed without an answer, nothing applied),
  ``"drop-after-apply"`` (applied, then the answer is lost), ``("items429", n)`` (the first
  ``n`` items answered 429 inside a 200 response, the others applied), ``"ok"``;
- ``bad_ids``: documents answered 400 ``document_parsing_exception`` (a mapping error);
- ``always``: a status every ``_bulk`` request gets (a permanent failure).

It tests OUR retry and bookkeeping logic, not Elasticsearch: search requests get canned
answers, mappings are stored but not enforced. It accepts the REST-compatibility media types
(``application/vnd.elasticsearch+json; compatible-with=8``) that elasticsearch-py 9 sends.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

COMPAT_JSON = "application/vnd.elasticsearch+json;compatible-with=8"


def es_error(status: int, type_: str, reason: str) -> dict[str, Any]:
    cause = {"type": type_, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def ndjson(self) -> list[Any]:
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]


@dataclass
class EsState:
    version: str = "8.19.10"
    build_flavor: str = "default"
    licence: str | None = "basic"  # None: GET /_license answers 403
    indices: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {mappings, settings, docs}
    aliases: dict[str, list[str]] = field(default_factory=dict)
    pipelines: dict[str, Any] = field(default_factory=dict)
    faults: list[Any] = field(default_factory=list)
    always: int | None = None
    bad_ids: set[str] = field(default_factory=set)
    accepted: Counter[str] = field(default_factory=Counter)  # successful index ops per _id
    requests: list[Request] = field(default_factory=list)
    search_hits: list[dict[str, Any]] = field(default_factory=list)
    search_error: tuple[int, dict[str, Any]] | None = None  # (status, body) every _search answers
    # path segments answered with 403 (a user without that privilege): "" for GET /,
    # "_nodes", "_mapping", "_license", ...
    forbidden: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ helpers

    def resolve(self, name: str) -> list[str]:
        names: list[str] = []
        for part in name.split(","):
            if part in self.aliases:
                names += self.aliases[part]
            elif "*" in part:
                prefix = part.split("*")[0]
                names += [n for n in self.indices if n.startswith(prefix)]
            elif part in self.indices:
                names.append(part)
        return sorted(set(names))

    def write_index(self, name: str) -> str | None:
        if name in self.indices:
            return name
        targets = self.aliases.get(name, [])
        return targets[0] if len(targets) == 1 else None

    def docs(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n in self.resolve(name):
            out.update(self.indices[n]["docs"])
        return out

    def bulk_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]


class _Handler(BaseHTTPRequestHandler):
    state: EsState  # set per server class

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    # ------------------------------------------------------------ plumbing

    def _reply(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", COMPAT_JSON)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _not_found(self, name: str) -> None:
        self._reply(
            404,
            es_error(404, "index_not_found_exception", f"no such index [{name}]"),
        )

    def _drop(self) -> None:
        self.close_connection = True  # no answer at all: the client sees a connection error

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        req = Request(
            self.command,
            unquote(parts.path),
            query,
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        st = self.state
        with st.lock:
            st.requests.append(req)
            try:
                self._route(req)
            except _Dropped:
                self._drop()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    # ------------------------------------------------------------ routes

    def _route(self, req: Request) -> None:
        st = self.state
        segs = [s for s in req.path.split("/") if s]
        m = req.method
        if ({"", *segs} if not segs else set(segs)) & st.forbidden:
            return self._reply(
                403, es_error(403, "security_exception", f"action [{req.path}] is unauthorized")
            )
        if not segs:
            return self._reply(
                200,
                {
                    "name": "stub",
                    "cluster_name": "ctir-stub",
                    "version": {"number": st.version, "build_flavor": st.build_flavor},
                    "tagline": "You Know, for Search",
                },
            )
        head = segs[0]
        if head == "_license":
            if st.licence is None:
                return self._reply(
                    403, es_error(403, "security_exception", "action [cluster:monitor/xpack/license/get] is unauthorized")
                )
            return self._reply(200, {"license": {"status": "active", "type": st.licence, "uid": "x"}})
        if head == "_ingest" and len(segs) == 3:
            pid = segs[2]
            if m == "PUT":
                st.pipelines[pid] = req.json()
                return self._reply(200, {"acknowledged": True})
            if pid in st.pipelines:
                return self._reply(200, {pid: st.pipelines[pid]})
            return self._reply(404, {})
        if head == "_aliases":
            return self._aliases(req)
        if head == "_bulk" or (len(segs) == 2 and segs[1] == "_bulk"):
            return self._bulk(req)
        if head == "_reindex":
            return self._reindex(req)
        if head == "_msearch":
            searches = req.ndjson()
            n = len(searches) // 2
            return self._reply(200, {"took": 1, "responses": [self._hits() for _ in range(n)]})
        if head == "_alias" and len(segs) == 2:
            return self._get_alias(segs[1])
        name = head
        if len(segs) == 1:
            return self._index_op(req, name)
        op = segs[1]
        if op == "_alias":
            return self._get_alias_of(name)
        if op == "_mapping":
            return self._mapping(req, name)
        if op == "_refresh":
            return self._reply(200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})
        if op == "_count":
            if not st.resolve(name):
                return self._not_found(name)
            return self._reply(200, {"count": len(st.docs(name))})
        if op == "_search":
            if not st.resolve(name):
                return self._not_found(name)
            if st.search_error is not None:
                return self._reply(*st.search_error)
            return self._reply(200, self._hits())
        if op == "_mget":
            docs = st.docs(name)
            ids = (req.json() or {}).get("ids", [])
            return self._reply(
                200,
                {
                    "docs": [
                        {"_id": i, "found": True, "_source": docs[i]} if i in docs else {"_id": i, "found": False}
                        for i in ids
                    ]
                },
            )
        if op == "_doc" and len(segs) == 3:
            return self._doc(req, name, segs[2])
        return self._reply(400, es_error(400, "illegal_argument_exception", f"stub: no route {m} {req.path}"))

    def _hits(self) -> dict[str, Any]:
        return {"hits": {"hits": list(self.state.search_hits)}, "status": 200}

    def _index_op(self, req: Request, name: str) -> None:
        st = self.state
        if req.method == "HEAD":
            return self._reply(200 if st.resolve(name) else 404)
        if req.method == "PUT":
            if name in st.indices or name in st.aliases:
                return self._reply(
                    400,
                    es_error(400, "resource_already_exists_exception", f"index [{name}] already exists"),
                )
            body = req.json() or {}
            st.indices[name] = {
                "mappings": copy.deepcopy(body.get("mappings", {})),
                "settings": copy.deepcopy(body.get("settings", {})),
                "docs": {},
            }
            for alias in body.get("aliases", {}):
                st.aliases.setdefault(alias, []).append(name)
            return self._reply(200, {"acknowledged": True, "index": name})
        if req.method == "DELETE":
            targets = [n for n in name.split(",") if n in st.indices]
            if not targets:
                return self._not_found(name)
            for n in targets:
                del st.indices[n]
                for alias in list(st.aliases):
                    st.aliases[alias] = [i for i in st.aliases[alias] if i != n]
                    if not st.aliases[alias]:
                        del st.aliases[alias]
            return self._reply(200, {"acknowledged": True})
        if req.method == "GET":
            names = st.resolve(name)
            if not names:
                return self._not_found(name)
            return self._reply(200, {n: {"mappings": st.indices[n]["mappings"]} for n in names})
        return self._reply(405, {})

    def _mapping(self, req: Request, name: str) -> None:
        st = self.state
        names = st.resolve(name)
        if not names:
            return self._not_found(name)
        if req.method == "PUT":
            body = req.json() or {}
            for n in names:
                mappings = st.indices[n]["mappings"]
                mappings.setdefault("properties", {}).update(body.get("properties", {}))
                if "_meta" in body:
                    mappings["_meta"] = body["_meta"]
            return self._reply(200, {"acknowledged": True})
        return self._reply(200, {n: {"mappings": st.indices[n]["mappings"]} for n in names})

    def _get_alias(self, alias: str) -> None:
        st = self.state
        if alias not in st.aliases:
            return self._reply(404, {"error": f"alias [{alias}] missing", "status": 404})
        return self._reply(200, {n: {"aliases": {alias: {}}} for n in st.aliases[alias]})

    def _get_alias_of(self, pattern: str) -> None:
        st = self.state
        out = {}
        for n in st.resolve(pattern) if "*" in pattern else [p for p in pattern.split(",") if p in st.indices]:
            out[n] = {"aliases": {a: {} for a, idx in st.aliases.items() if n in idx}}
        if not out and "*" not in pattern:
            return self._not_found(pattern)
        return self._reply(200, out)

    def _aliases(self, req: Request) -> None:
        st = self.state
        actions = (req.json() or {}).get("actions", [])
        for action in actions:  # validate first: the real API is all-or-nothing
            (kind, spec), = action.items()
            index = spec["index"]
            if index not in st.indices:
                return self._not_found(index)
        for action in sorted(actions, key=lambda a: "remove_index" not in a):
            (kind, spec), = action.items()
            if kind == "remove_index":
                del st.indices[spec["index"]]
                st.aliases.pop(spec["index"], None)
            elif kind == "remove":
                st.aliases[spec["alias"]] = [i for i in st.aliases.get(spec["alias"], []) if i != spec["index"]]
            elif kind == "add":
                st.aliases.setdefault(spec["alias"], []).append(spec["index"])
        st.aliases = {a: i for a, i in st.aliases.items() if i}
        return self._reply(200, {"acknowledged": True})

    def _doc(self, req: Request, name: str, doc_id: str) -> None:
        st = self.state
        target = st.write_index(name)
        if target is None:
            return self._not_found(name)
        docs = st.indices[target]["docs"]
        if req.method in ("PUT", "POST"):
            docs[doc_id] = req.json()
            return self._reply(200, {"_index": target, "_id": doc_id, "result": "updated"})
        if req.method == "DELETE":
            if doc_id not in docs:
                return self._reply(404, {"_index": target, "_id": doc_id, "result": "not_found"})
            del docs[doc_id]
            return self._reply(200, {"_index": target, "_id": doc_id, "result": "deleted"})
        if doc_id not in docs:
            return self._reply(404, {"_index": target, "_id": doc_id, "found": False})
        return self._reply(200, {"_index": target, "_id": doc_id, "found": True, "_source": docs[doc_id]})

    def _apply_pipeline(self, pipeline: str | None, source: dict[str, Any]) -> dict[str, Any]:
        # ctir-es indices have no pipeline (documents carry their derived fields)
        if pipeline and pipeline not in self.state.pipelines and pipeline != "_none":
            raise ValueError(f"unknown pipeline {pipeline}")
        return source

    def _bulk(self, req: Request) -> None:
        st = self.state
        lines = req.ndjson()
        fault: Any = st.faults.pop(0) if st.faults else "ok"
        if st.always is not None:
            fault = str(st.always)
        if fault in ("429", "502", "503", "504"):
            status = int(fault)
            kind = {
                429: ("es_rejected_execution_exception", "rejected execution of coordinating operation"),
                502: ("bad_gateway", "upstream closed the connection"),
                503: ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];"),
                504: ("gateway_timeout", "upstream timed out"),
            }[status]
            return self._reply(status, es_error(status, *kind))
        if isinstance(fault, str) and fault.isdigit():
            status = int(fault)
            return self._reply(status, es_error(status, "illegal_argument_exception", "stub: request rejected"))
        if fault == "drop":
            raise _Dropped
        items429 = fault[1] if isinstance(fault, tuple) and fault[0] == "items429" else 0
        pipeline = req.query.get("pipeline")
        items = []
        for n, (action, source) in enumerate(zip(lines[::2], lines[1::2])):
            (op, meta), = action.items()
            doc_id, index = meta["_id"], meta.get("_index")
            target = st.write_index(index) if index else None
            if n < items429:
                items.append({op: {"_index": index, "_id": doc_id, "status": 429,
                                   "error": {"type": "es_rejected_execution_exception",
                                             "reason": "rejected execution of primary operation"}}})
            elif target is None:
                items.append({op: {"_index": index, "_id": doc_id, "status": 404,
                                   "error": {"type": "index_not_found_exception", "reason": f"no such index [{index}]"}}})
            elif doc_id in st.bad_ids:
                items.append({op: {"_index": target, "_id": doc_id, "status": 400,
                                   "error": {"type": "document_parsing_exception",
                                             "reason": "[1:42] failed to parse field [title] of type [text]"}}})
            else:
                st.indices[target]["docs"][doc_id] = self._apply_pipeline(pipeline, source)
                st.accepted[doc_id] += 1
                items.append({op: {"_index": target, "_id": doc_id, "status": 201, "result": "created"}})
        if fault == "drop-after-apply":
            raise _Dropped
        errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
        return self._reply(200, {"took": 3, "errors": errors, "items": items})

    def _reindex(self, req: Request) -> None:
        st = self.state
        body = req.json() or {}
        source, dest = body["source"]["index"], body["dest"]["index"]
        if not st.resolve(source):
            return self._not_found(source)
        if dest not in st.indices:
            return self._not_found(dest)
        docs = st.docs(source)
        pipeline = body["dest"].get("pipeline")
        for doc_id, src in docs.items():
            st.indices[dest]["docs"][doc_id] = self._apply_pipeline(pipeline, src)
        return self._reply(200, {"took": 5, "total": len(docs), "created": len(docs), "failures": []})


class _Dropped(Exception):
    pass


@dataclass
class EsStub:
    state: EsState
    url: str
    server: ThreadingHTTPServer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(state: EsState | None = None, port: int = 0) -> EsStub:
    state = state or EsState()
    handler = type("StubHandler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return EsStub(state, f"http://127.0.0.1:{server.server_address[1]}", server)


@contextmanager
def running(state: EsState | None = None) -> Iterator[EsStub]:
    stub = start(state)
    try:
        yield stub
    finally:
        stub.stop()
