"""What the cluster can do: version and flavour (``GET /``, else ``GET _nodes``), modules
(``GET _nodes/plugins``) and licence (``GET /_license``).

Used to decide whether hybrid fusion may run server-side (one ``_search`` with an ``rrf`` or
``linear`` retriever) or must stay client-side (``_msearch`` + ``ctir_es.ranking.fusion``).
Facts behind the table below:

- retrievers, incl. ``rrf``: technical preview in 8.14, GA in 8.16
  (reference/8.14/retriever.html, reference/8.16/retriever.html);
- ``linear`` retriever: 8.18 / 9.0 (reference/8.18/retriever.html#linear-retriever);
- both are licensed features at ENTERPRISE level (x-pack ``rank-rrf`` plugin:
  ``LicensedFeature.momentary(null, "rank-rrf", OperationMode.ENTERPRISE)``; ``linear`` checks
  ``RRFRankPlugin.LINEAR_RETRIEVER_FEATURE``), so a ``basic`` (the default of the docker
  compose file) or ``platinum`` cluster answers 403 ``security_exception`` "current license is
  non-compliant"; a ``trial`` licence allows everything while it is active;
- ``GET /_license`` returns ``{"license": {"type", "status", ...}}``
  (reference/8.15/get-license.html); Serverless has no licence API and all retrievers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# index_options type -> the first version that has it (reference/8.x/dense-vector.html:
# int8_hnsw 8.12 (the default for float vectors from 8.14), int4_hnsw 8.15, bbq_hnsw 8.16)
INDEX_OPTION_MIN_VERSION: dict[str, tuple[int, int]] = {
    "hnsw": (8, 0),
    "flat": (8, 13),
    "int8_flat": (8, 13),
    "int8_hnsw": (8, 12),
    "int4_hnsw": (8, 15),
    "bbq_hnsw": (8, 16),
}
QUANTIZED_INDEX_OPTIONS: frozenset[str] = frozenset({"int8_hnsw", "int4_hnsw", "bbq_hnsw", "int8_flat"})
# knn ``rescore_vector`` (oversample, then rescore with the float vectors): 8.18+
RESCORE_VECTOR_MIN_VERSION = (8, 18)
# modules of the default distribution that ctir-es uses when present
ANALYSIS_MODULE = "analysis-common"  # the ``english`` analyser
# scripts/elasticsearch-local's stable plugin giving the test distribution ``english``
ENGLISH_PLUGIN = "ctir-analysis"
REINDEX_MODULE = "reindex"  # ``_reindex``
RETRIEVER_MODULE = "rank-rrf"  # the rrf and linear retrievers (x-pack)

# method -> minimum stack version
FUSION_MIN_VERSION: dict[str, tuple[int, int]] = {"rrf": (8, 16), "linear": (8, 18)}
FUSION_LICENCES: frozenset[str] = frozenset({"enterprise", "trial"})


def parse_version(number: str) -> tuple[int, int, int]:
    """``"8.19.10"`` / ``"9.1.0-SNAPSHOT"`` -> ``(8, 19, 10)``; unknown parts are 0."""
    out = []
    for part in number.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    while len(out) < 3:
        out.append(0)
    return out[0], out[1], out[2]


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The facts that decide what the client may ask for."""

    version: str
    flavor: str = "default"  # "serverless" on Elastic Cloud Serverless
    licence_type: str | None = None  # basic, trial, gold, platinum, enterprise; None = unknown
    licence_status: str | None = None  # active, expired, invalid
    licence_error: str | None = None  # why the licence could not be read
    # modules and plugins present on every node; None = unknown (no ``monitor`` privilege),
    # taken to be the default distribution's
    modules: frozenset[str] | None = None
    modules_error: str | None = None
    data_nodes: int | None = None  # nodes with a data role; None = unknown

    @classmethod
    def from_responses(
        cls,
        root: Mapping[str, Any],
        licence: Mapping[str, Any] | None,
        licence_error: str | None = None,
        *,
        modules: frozenset[str] | None = None,
        modules_error: str | None = None,
        data_nodes: int | None = None,
    ) -> ClusterInfo:
        version = root.get("version") or {}
        info = (licence or {}).get("license") or {}
        return cls(
            version=str(version.get("number", "0.0.0")),
            flavor=str(version.get("build_flavor") or "default"),
            licence_type=str(info["type"]).lower() if info.get("type") else None,
            licence_status=str(info["status"]).lower() if info.get("status") else None,
            licence_error=licence_error,
            modules=modules,
            modules_error=modules_error,
            data_nodes=data_nodes,
        )

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_version(self.version)

    @property
    def serverless(self) -> bool:
        return self.flavor == "serverless"

    @property
    def version_known(self) -> bool:
        return self.version_tuple != (0, 0, 0)

    def has_module(self, name: str) -> bool:
        """Whether every node has module ``name`` (assumed when the modules are unknown)."""
        return self.modules is None or name in self.modules

    @property
    def text_analyzer(self) -> str:
        """``english`` where analysis-common (or the local tool's ctir-analysis plugin) is
        there, else ``standard`` (no stemming)."""
        if self.has_module(ANALYSIS_MODULE) or self.has_module(ENGLISH_PLUGIN):
            return "english"
        return "standard"

    @property
    def default_replicas(self) -> int | None:
        """Replicas for a new index: 1 where a second data node can hold them, 0 on one node
        (a replica that can never be assigned leaves the cluster yellow); None = unknown."""
        if self.data_nodes is None:
            return None
        return 1 if self.data_nodes >= 2 else 0

    @property
    def server_reindex(self) -> bool:
        return self.has_module(REINDEX_MODULE)

    def index_options_support(self, index_options: str) -> tuple[bool, str]:
        """``(allowed, reason)`` for a ``dense_vector`` ``index_options`` type."""
        minimum = INDEX_OPTION_MIN_VERSION.get(index_options)
        if minimum is None or not self.version_known or self.serverless:
            return True, ""
        if self.version_tuple[:2] < minimum:
            need = ".".join(map(str, minimum))
            return False, (
                f"index_options {index_options} needs Elasticsearch {need}+, the cluster runs "
                f"{self.version}"
            )
        return True, ""

    def rescore_vector(self, index_options: str | None) -> bool:
        """Whether kNN on an index of this type can rescore with the float vectors."""
        if index_options not in QUANTIZED_INDEX_OPTIONS:
            return False
        return self.serverless or self.version_tuple[:2] >= RESCORE_VECTOR_MIN_VERSION

    def fusion_support(self, method: str) -> tuple[bool, str]:
        """``(allowed, reason)`` for a server-side ``rrf`` / ``linear`` retriever."""
        minimum = FUSION_MIN_VERSION.get(method)
        if minimum is None:
            return False, f"no server-side {method!r} fusion (supported: {', '.join(FUSION_MIN_VERSION)})"
        if self.serverless:
            return True, f"{method} retriever on Serverless"
        if not self.version_known:
            return False, "the cluster's version could not be read"
        if self.version_tuple[:2] < minimum:
            need = ".".join(map(str, minimum))
            return False, f"the {method} retriever needs Elasticsearch {need}+, the cluster runs {self.version}"
        if not self.has_module(RETRIEVER_MODULE):
            return False, f"the cluster has no {RETRIEVER_MODULE} module (x-pack)"
        if self.licence_type is None:
            why = f" ({self.licence_error})" if self.licence_error else ""
            return False, f"the cluster's licence could not be read{why}"
        if self.licence_status != "active":
            return False, f"the cluster's {self.licence_type} licence is {self.licence_status}"
        if self.licence_type not in FUSION_LICENCES:
            need = f"the {method} retriever needs an enterprise or trial licence"
            return False, f"{need}, the cluster has {self.licence_type}"
        return True, f"{method} retriever on Elasticsearch {self.version} ({self.licence_type})"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "flavor": self.flavor,
            "modules": sorted(self.modules) if self.modules is not None else None,
            "text_analyzer": self.text_analyzer,
            "data_nodes": self.data_nodes,
            "server_reindex": self.server_reindex,
            "licence": {"type": self.licence_type, "status": self.licence_status},
            "server_side_fusion": {
                method: {"allowed": ok, "reason": why}
                for method in FUSION_MIN_VERSION
                for ok, why in [self.fusion_support(method)]
            },
        }


def data_nodes_from_nodes(response: Mapping[str, Any] | None) -> int | None:
    """How many nodes hold data (a role starting with ``data``), from ``GET _nodes``."""
    nodes = (response or {}).get("nodes") or {}
    if not nodes or not all("roles" in n for n in nodes.values()):
        return None
    return sum(any(str(r).startswith("data") for r in n.get("roles") or []) for n in nodes.values())


def modules_from_nodes(response: Mapping[str, Any] | None) -> tuple[str | None, frozenset[str] | None]:
    """``(lowest node version, modules and plugins every node has)`` from ``GET _nodes/plugins``."""
    nodes = (response or {}).get("nodes") or {}
    if not nodes:
        return None, None
    versions = [str(n.get("version")) for n in nodes.values() if n.get("version")]
    sets = [
        frozenset(
            str(m.get("name")) for m in (n.get("modules") or []) + (n.get("plugins") or [])
        )
        for n in nodes.values()
    ]
    common = frozenset.intersection(*sets) if sets else None
    version = min(versions, key=parse_version) if versions else None
    return version, common
