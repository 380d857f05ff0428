"""What the cluster can do, from ``GET /`` (version, build flavour) and ``GET /_license``.

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

    @classmethod
    def from_responses(
        cls,
        root: Mapping[str, Any],
        licence: Mapping[str, Any] | None,
        licence_error: str | None = None,
    ) -> ClusterInfo:
        version = root.get("version") or {}
        info = (licence or {}).get("license") or {}
        return cls(
            version=str(version.get("number", "0.0.0")),
            flavor=str(version.get("build_flavor") or "default"),
            licence_type=str(info["type"]).lower() if info.get("type") else None,
            licence_status=str(info["status"]).lower() if info.get("status") else None,
            licence_error=licence_error,
        )

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_version(self.version)

    @property
    def serverless(self) -> bool:
        return self.flavor == "serverless"

    def fusion_support(self, method: str) -> tuple[bool, str]:
        """``(allowed, reason)`` for a server-side ``rrf`` / ``linear`` retriever."""
        minimum = FUSION_MIN_VERSION.get(method)
        if minimum is None:
            return False, f"no server-side {method!r} fusion (supported: {', '.join(FUSION_MIN_VERSION)})"
        if self.serverless:
            return True, f"{method} retriever on Serverless"
        if self.version_tuple[:2] < minimum:
            need = ".".join(map(str, minimum))
            return False, f"the {method} retriever needs Elasticsearch {need}+, the cluster runs {self.version}"
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
            "licence": {"type": self.licence_type, "status": self.licence_status},
            "server_side_fusion": {
                method: {"allowed": ok, "reason": why}
                for method in FUSION_MIN_VERSION
                for ok, why in [self.fusion_support(method)]
            },
        }
