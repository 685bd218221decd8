import json

import pytest

from models.registry import Registry, RegistryError
from models.testing import make_tiny_base, make_tiny_entry, tiny_base_dir


def test_promote_and_rollback(tiny_root):
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    assert registry.current_version() is None
    with pytest.raises(RegistryError, match="no model promoted"):
        registry.current()
    first = make_tiny_entry(tiny_root, seed=0)
    second = make_tiny_entry(tiny_root, seed=1)
    assert registry.current_version() == second.version
    assert registry.current().version == second.version
    assert [e.version for e in registry.entries()] == [first.version, second.version]
    assert registry.rollback().version == first.version
    assert registry.current_version() == first.version
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    registry.promote(second.version)
    assert registry.history() == [first.version]


def test_pointer_is_replaced_atomically(tiny_root):
    first = make_tiny_entry(tiny_root, seed=0)
    second = make_tiny_entry(tiny_root, seed=1, promote=False)
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    before = (tiny_root / "current").stat().st_ino
    registry.promote(second.version)
    # a new file renamed over the old one: readers see the old or the new, never half
    assert (tiny_root / "current").stat().st_ino != before
    assert json.loads((tiny_root / "current").read_text())["version"] == second.version
    assert not [p.name for p in tiny_root.iterdir() if p.name.startswith(".current")]
    assert not [p.name for p in (tiny_root / "entries").iterdir() if p.name.startswith(".")]
    assert first.version in registry.history()


def test_code_version_is_taken_before_the_entry_is_staged(tiny_root, monkeypatch):
    """In a checkout the staging directory is an untracked file: the version would
    read ``-dirty`` for every entry trained into the shipped registry."""
    import models.registry

    staged_when_asked = []

    def fake_code_version():
        entries = tiny_root / "entries"
        staged_when_asked.append(
            entries.is_dir() and any(p.name.startswith(".") for p in entries.iterdir())
        )
        return "abc123"

    monkeypatch.setattr(models.registry, "code_version", fake_code_version)
    entry = make_tiny_entry(tiny_root)
    assert staged_when_asked == [False]
    assert json.loads((entry.path / "entry.json").read_text())["code_version"] == "abc123"


def test_manifest_is_self_describing(tiny_root):
    entry = make_tiny_entry(tiny_root)
    manifest = json.loads((entry.path / "entry.json").read_text())
    for key in (
        "base_model",
        "code_version",
        "config",
        "created_at",
        "data",
        "libraries",
        "metrics",
        "parent",
        "temperatures",
        "files",
        "max_length_tokens",
    ):
        assert key in manifest
    assert manifest["base_model"]["hash"].startswith("sha256:")
    assert "adapter/adapter_config.json" in manifest["files"]
    assert list(manifest) == sorted(manifest)


def test_corrupt_entry_is_refused_and_current_keeps_serving(tiny_root):
    good = make_tiny_entry(tiny_root, seed=0)
    bad = make_tiny_entry(tiny_root, seed=1, promote=False)
    heads = bad.path / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:-10] + b"0123456789")
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    with pytest.raises(RegistryError, match=rf"{bad.version}.*heads.safetensors is corrupt"):
        registry.promote(bad.version)
    assert registry.current_version() == good.version
    assert registry.current().version == good.version


def test_incomplete_entry_is_refused(tiny_root):
    good = make_tiny_entry(tiny_root, seed=0)
    bad = make_tiny_entry(tiny_root, seed=1, promote=False)
    (bad.path / "adapter" / "adapter_model.safetensors").unlink()
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    with pytest.raises(RegistryError, match="adapter_model.safetensors is missing"):
        registry.promote(bad.version)
    (bad.path / "entry.json").unlink()
    with pytest.raises(RegistryError, match="incomplete, entry.json missing"):
        registry.promote(bad.version)
    assert registry.current_version() == good.version


def test_entry_on_another_base_is_refused(tiny_root, tmp_path):
    good = make_tiny_entry(tiny_root, seed=0)
    other_base = make_tiny_base(tmp_path / "other-base", seed=1)
    foreign = make_tiny_entry(tiny_root, seed=2, promote=False, base_model_dir=other_base)
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    with pytest.raises(RegistryError, match=rf"{foreign.version}.*incompatible base model"):
        registry.promote(foreign.version)
    assert registry.current_version() == good.version


def test_rollback_to_a_corrupted_entry_is_refused(tiny_root):
    first = make_tiny_entry(tiny_root, seed=0)
    second = make_tiny_entry(tiny_root, seed=1)
    (first.path / "heads.safetensors").write_bytes(b"garbage")
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    with pytest.raises(RegistryError, match="rollback refused, current stays"):
        registry.rollback()
    assert registry.current_version() == second.version


def test_unknown_version(tiny_root):
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    with pytest.raises(RegistryError, match="no such entry"):
        registry.get("v-missing")
    with pytest.raises(RegistryError, match="invalid version"):
        registry.get("../etc")


def test_loaded_tiny_model_predicts(tiny_root):
    from models.loading import load_current
    from models.testing import tiny_settings

    entry = make_tiny_entry(tiny_root)
    loaded = load_current(tiny_settings(tiny_root))
    assert loaded.version == entry.version
    preds = loaded.predict(["Apple shares slump", "Fed holds rates"])
    assert len(preds) == 2
    assert -1.0 <= preds[0].sentiment_score <= 1.0
    assert 0.0 < preds[0].confidence <= 1.0
