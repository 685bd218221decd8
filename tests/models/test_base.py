"""Packaged base encoders: joined from their PyPI parts and unpacked once."""

import io
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from models import base
from models.base import BaseModelError, packaged_base_dir, resolve_base_model_dir


class _FakeFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    def locate(self) -> Path:
        return self.path


class _FakeDistribution:
    def __init__(self, part: Path) -> None:
        self.files = [_FakeFile(part.parent / "__init__.py"), _FakeFile(part)]


def _split_archive(tmp_path: Path, name: str, parts: int) -> dict[str, _FakeDistribution]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(f"{name}/config.json", '{"model_type": "bert"}')
        bundle.writestr(f"{name}/vocab.txt", "[PAD]\n" * 500)
    data = buffer.getvalue()
    size = len(data) // parts + 1
    distributions = {}
    for i in range(parts):
        part = tmp_path / f"pkg{i}" / f"{name}.zip.{i + 1:03d}"
        part.parent.mkdir()
        part.write_bytes(data[i * size : (i + 1) * size])
        distributions[f"{name}-part-{i + 1:03d}"] = _FakeDistribution(part)
    return distributions


def test_a_packaged_base_is_joined_unpacked_once_and_named_in_configs(tmp_path, monkeypatch):
    distributions = _split_archive(tmp_path, "fake-base", 3)
    monkeypatch.setitem(base.PACKAGED_BASES, "fake-base", tuple(distributions))
    monkeypatch.setattr(metadata, "distribution", lambda name: distributions[name])
    monkeypatch.setenv("FINSENTRY_CACHE_DIR", str(tmp_path / "cache"))
    path = resolve_base_model_dir("package:fake-base", Path("/unused"))
    assert path == tmp_path / "cache" / "bases" / "fake-base" / "fake-base"
    assert (path / "vocab.txt").read_text().count("[PAD]") == 500
    monkeypatch.setattr(metadata, "distribution", lambda name: pytest.fail("unpacked twice"))
    assert packaged_base_dir("fake-base") == path
    assert resolve_base_model_dir(None, Path("/default")) == Path("/default")
    assert resolve_base_model_dir("/some/dir", Path("/default")) == Path("/some/dir")


def test_a_missing_or_unknown_packaged_base_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSENTRY_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(BaseModelError, match="not a packaged base"):
        packaged_base_dir("no-such-base")
    monkeypatch.setitem(base.PACKAGED_BASES, "absent", ("finsentry-no-such-package-001",))
    with pytest.raises(BaseModelError, match=r"finsentry-no-such-package-001 is not installed"):
        packaged_base_dir("absent")
