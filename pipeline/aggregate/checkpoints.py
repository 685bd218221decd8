"""Find retained checkpoints on a local filesystem, and path <-> URI conversion.

Flink writes ``<checkpoint_dir>/<job id>/chk-<n>/_metadata`` when checkpoint
``n`` completes; a directory without ``_metadata`` is incomplete and is never
a restore point. Every (re)start of the job gets a new job id, so the newest
checkpoint is searched across all job-id directories.
"""

from __future__ import annotations

from pathlib import Path


def to_uri(path_or_uri: str) -> str:
    """``/a/b`` -> ``file:///a/b``; URIs (``file://``, ``s3://``) are returned as they are."""
    if "://" in path_or_uri:
        return path_or_uri
    return Path(path_or_uri).expanduser().resolve().as_uri()


def local_path(path_or_uri: str) -> Path | None:
    """The local directory behind a path or ``file://`` URI; None for remote filesystems."""
    if path_or_uri.startswith("file://"):
        return Path(path_or_uri.removeprefix("file://"))
    if "://" in path_or_uri:
        return None
    return Path(path_or_uri).expanduser()


def retained_checkpoints(checkpoint_dir: str) -> list[Path]:
    """Complete checkpoints under ``checkpoint_dir``, oldest first."""
    root = local_path(checkpoint_dir)
    if root is None or not root.is_dir():
        return []
    found = [meta.parent for meta in root.glob("*/chk-*/_metadata") if meta.is_file()]
    return sorted(found, key=lambda p: ((p / "_metadata").stat().st_mtime, int(p.name[4:])))


def latest_checkpoint(checkpoint_dir: str) -> Path | None:
    """The newest complete checkpoint, or None (remote filesystems: always None)."""
    found = retained_checkpoints(checkpoint_dir)
    return found[-1] if found else None
