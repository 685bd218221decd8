"""Hot reload: a new version is loaded beside the old one and handed over once; bad ones refused."""

from __future__ import annotations

import pytest

from models.registry import Registry, RegistryError
from models.testing import make_tiny_entry, tiny_base_dir
from pipeline.classify.reload import ModelWatcher
from tests.classify.helpers import ScriptedClassifier


class Pointer:
    def __init__(self, version: str | None) -> None:
        self.version = version

    def current_version(self) -> str | None:
        return self.version


def _watcher(pointer, loader, events):
    return ModelWatcher(pointer, loader, serving="v1", poll_seconds=3600,
                        on_reload=lambda *event: events.append(event))


def test_a_promoted_version_is_loaded_once_and_handed_over_once():
    pointer, events, loads = Pointer("v1"), [], []

    def load(version):
        loads.append(version)
        return ScriptedClassifier(version)

    watcher = _watcher(pointer, load, events)
    watcher.check_now()
    assert watcher.take() is None and loads == []
    pointer.version = "v2"
    watcher.check_now()
    watcher.check_now()  # already loaded and pending: not loaded again
    assert loads == ["v2"]
    assert watcher.take().version == "v2"
    assert watcher.take() is None
    watcher.check_now()  # v2 is now serving
    assert loads == ["v2"] and events == [("success", "v2", None)]


def test_a_refused_version_keeps_the_old_model_and_is_not_retried():
    pointer, events, loads = Pointer("broken"), [], []

    def load(version):
        loads.append(version)
        raise RegistryError(f"registry entry {version!r}: file heads.safetensors is corrupt")

    watcher = _watcher(pointer, load, events)
    watcher.check_now()
    watcher.check_now()
    assert watcher.take() is None
    assert loads == ["broken"]
    assert events[0][:2] == ("failure", "broken") and "corrupt" in events[0][2]


def test_an_unreadable_pointer_does_not_raise(caplog):
    class Broken:
        def current_version(self):
            raise RegistryError("registry: unreadable pointer")

    watcher = _watcher(Broken(), lambda v: pytest.fail("must not load"), [])
    watcher.check_now()
    assert "cannot read the registry pointer" in caplog.text


def test_the_background_thread_picks_up_a_promotion(tmp_path):
    from models.inference import EngineOptions, engine_from_registry

    first = make_tiny_entry(tmp_path, seed=0)
    registry = Registry(tmp_path, tiny_base_dir(tmp_path))
    events = []
    watcher = ModelWatcher(
        registry,
        lambda v: engine_from_registry(registry, v, options=EngineOptions(precision="fp32")),
        serving=first.version, poll_seconds=0.05, on_reload=lambda *e: events.append(e),
    ).start()
    try:
        second = make_tiny_entry(tmp_path, seed=1)
        import time

        deadline = time.monotonic() + 60
        new = None
        while new is None and time.monotonic() < deadline:
            new = watcher.take()
            time.sleep(0.05)
    finally:
        watcher.close()
    assert new is not None and new.version == second.version
    assert new.predict(["Fed cuts rates"])[0].model_version == second.version
    assert events == [("success", second.version, None)]
