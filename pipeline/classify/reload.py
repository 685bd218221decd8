"""Hot model reload: watch the registry's ``current`` pointer, load beside, swap between batches.

A background thread polls ``registry.current_version()`` (one small file read)
every ``poll_seconds``. When it names a version other than the one serving, the
thread loads it completely (weights verified, precision applied, one warm-up
prediction) while the old model keeps scoring. The service calls
:meth:`ModelWatcher.take` between two batches; that is the only place the
classifier changes, so no batch is scored by two models and no record is
scored twice because of a switch. A version that fails to load is refused,
logged and counted once; the old model keeps serving until a different
version is promoted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from pipeline.classify.engine import Classifier

log = logging.getLogger(__name__)


class VersionSource(Protocol):
    def current_version(self) -> str | None: ...


#: Loads one version; raises (``RegistryError``) when it cannot serve.
Loader = Callable[[str], Classifier]
#: Called with ``(outcome, version, error)``; outcome is ``success`` or ``failure``.
ReloadListener = Callable[[str, str, str | None], None]


class ModelWatcher:
    """Loads newly promoted versions in the background; hands them over on :meth:`take`."""

    def __init__(
        self,
        source: VersionSource,
        loader: Loader,
        *,
        serving: str,
        poll_seconds: float,
        on_reload: ReloadListener | None = None,
    ) -> None:
        self._source = source
        self._loader = loader
        self._poll_seconds = poll_seconds
        self._on_reload = on_reload or (lambda outcome, version, error: None)
        self._serving = serving
        self._refused: set[str] = set()
        self._ready: Classifier | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> ModelWatcher:
        self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def take(self) -> Classifier | None:
        """The newly loaded classifier, once; None when nothing new is ready."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            self._serving = ready.version
        return ready

    def check_now(self) -> None:
        """Poll and load synchronously (the thread does this every ``poll_seconds``)."""
        try:
            version = self._source.current_version()
        except Exception as exc:  # noqa: BLE001 - an unreadable pointer must not stop serving
            log.warning("model reload: cannot read the registry pointer: %s", exc)
            return
        with self._lock:
            pending = self._ready.version if self._ready is not None else None
        if version is None or version in (self._serving, pending) or version in self._refused:
            return
        log.info("model reload: %s promoted, loading beside %s", version, self._serving)
        try:
            classifier = self._loader(version)
        except Exception as exc:  # noqa: BLE001 - refuse the entry, keep the old model
            self._refused.add(version)
            log.error("model reload: refused %s, still serving %s: %s", version, self._serving, exc)
            self._on_reload("failure", version, str(exc))
            return
        with self._lock:
            self._ready = classifier
        self._on_reload("success", version, None)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            self.check_now()
