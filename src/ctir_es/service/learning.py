"""``serve --learn``: ``ctir-es learn`` in the background while the service keeps answering.

The learner works on its own ``Search`` (its own SQLite connection or Elasticsearch client),
never the serving one. While it runs, queries are served as before; ``GET /health`` shows its
``learning`` entry (``status``). When it keeps its model, a freshly opened ``Search`` is swapped
in (``Service.swap``: work under way finishes on the old one); when it does not, nothing changes;
when it fails, serving goes on and ``/health`` says why in one line.

A thread, not a process: the learner needs nothing from the service but the settings, and hands
back a ``Search`` to serve, which lives in this process anyway. Torch and NumPy release the GIL
in their kernels, as onnxruntime and SQLite do for the requests, so the event loop keeps
answering (``tests/test_serve_learn.py`` queries it mid-training); a child process would need
the progress marshalled across, and forking after torch or onnxruntime started their threads is
unsafe. The thread is a daemon and checks a stop flag at every progress event before the write,
so a shutdown never waits long for it; a write cut short is resumed by the next ``learn``
(``learn.fill``'s job record), and the schema names the new field only once it is whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import CtirError, described, one_line
from ..learn.fill import WRITE_STAGE
from ..search import Search

if TYPE_CHECKING:
    from ..learn import LearnConfig, LearnReport
    from .runtime import Service

log = logging.getLogger("ctir_es.service")

STOP_GRACE = 10.0  # seconds a shutdown waits for the learner before leaving it (daemon) behind


class LearnStopped(Exception):
    """Raised inside ``learn`` (through its progress callback) when the service shuts down
    before the write began."""


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _scrubber(store: object) -> Callable[[str], str]:
    """Removes the store's secrets (Elasticsearch credentials, URL userinfo) from a message."""
    scrub = getattr(getattr(store, "connection", None), "scrub", None)
    if callable(scrub):
        return lambda text: str(scrub(text))
    from ..store.elasticsearch.connection import redact_url

    return redact_url


class BackgroundLearn:
    """One ``learn`` run beside a ``Service``: its state for ``/health``, and the swap."""

    def __init__(self, service: Service, settings: Settings, config: LearnConfig,
                 announce: Callable[[str], None] | None = None) -> None:
        self.service = service
        self.settings = settings
        self.config = config
        self._scrub = _scrubber(service.search.store)
        self._say = announce or log.info  # one line per outcome (``serve`` prints it to stderr)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._writing = False
        self._state: dict[str, Any] = {"state": "running", "stage": "starting", "progress": None,
                                       "started": _now(), "finished": None}
        self._thread = threading.Thread(target=self._run, name="ctir-es-learn", daemon=True)

    def start(self) -> BackgroundLearn:
        self._thread.start()
        return self

    def status(self) -> dict[str, Any]:
        """The ``learning`` entry of ``/health`` (a copy)."""
        with self._lock:
            return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._state.items()}

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = STOP_GRACE) -> bool:
        """Ask the learner to stop (honoured before the write begins) and wait up to ``timeout``
        seconds; True when it has ended."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the learner thread ---------------------------------------------------------------

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state.update(changes)

    def _on_event(self, event: str, info: dict[str, Any]) -> None:
        if info.get("stage") == WRITE_STAGE:
            self._writing = True
        if self._stop.is_set() and not self._writing:
            raise LearnStopped
        if event == "progress":
            self._update(stage=str(info["stage"]), progress={"done": info["done"], "total": info["total"]})
        elif event == "stage":
            self._update(stage=str(info["stage"]), progress=None)
        elif event == "epoch":
            self._update(stage="training", progress={"done": info["epoch"], "total": info["epochs"]})

    def _end(self, state: str, **fields: Any) -> None:
        self._update(state=state, stage=None, progress=None, finished=_now(), **fields)

    def _run(self) -> None:
        from ..learn import learn

        started = time.monotonic()
        try:
            learner = Search.open(self.settings)  # its own store handle, never the serving one
            try:
                report = learn(learner, self.settings, self.config, progress=self._on_event)
            finally:
                learner.close()
        except LearnStopped:
            message = "the service shut down before the model was written; nothing changed"
            self._say(f"learning stopped: {message}")
            self._end("stopped", error=message)
            return
        except CtirError as exc:
            self._fail(one_line(exc))
            return
        except Exception as exc:  # a bug: one line for /health, the traceback only with -v
            self._fail(described(exc))
            log.debug("learning failed", exc_info=True)
            return
        self._finished(report, time.monotonic() - started)

    def _fail(self, message: str) -> None:
        message = self._scrub(message)
        self._say(f"learning failed: {message} (serving goes on unchanged)")
        self._end("failed", error=message)

    def _finished(self, report: LearnReport, seconds: float) -> None:
        outcome = {"model": report.model, "reason": report.reason, "headline_p10": report.headline(),
                   "seconds": round(seconds, 1)}
        if not report.kept:
            self._say(f"learning: model {report.model} not kept ({report.reason}); serving unchanged")
            self._end("not-kept", **outcome)
            return
        if self._stop.is_set():  # written, but the service is closing: the next start serves it
            self._end("kept", **outcome, note="written; served from the next start")
            return
        self._update(stage="opening the index with the new model", progress=None)
        try:
            # as serve opens it: a model folder gone meanwhile is served without, and /health says so
            fresh = Search.open(self.settings, allow_missing_model=True)
        except CtirError as exc:
            self._fail(f"model {report.model} was kept and written, but the index could not be reopened with "
                       f"it ({one_line(exc)}); restart the service to serve it")
            return
        self.service.swap(fresh)
        self._say(f"learning: model {report.model} kept and now served ({report.reason})")
        self._end("kept", **outcome)
