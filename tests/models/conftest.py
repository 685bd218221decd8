"""Fixtures for model tests: a tiny random encoder, registries in tmp dirs."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny random 2-layer BERT base directory, built once per session."""
    from models.testing import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("tiny") / "tiny-base")


@pytest.fixture
def tiny_root(tmp_path, tiny_base):
    """An empty registry root whose tiny-base is the session's tiny base."""
    root = tmp_path / "registry"
    root.mkdir()
    shutil.copytree(tiny_base, root / "tiny-base")
    return root
