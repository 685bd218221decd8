"""Find retained checkpoints on a local filesystem, and path <-> URI conversion.

Flink writes ``<checkpoint_dir>/<job id>/chk-<n>/_metadata`` when checkpoint
``n`` completes; a directory without ``_metadata`` is incomplete and is never
a restore point. Every (re)start of the job gets a new job id, so the newest
checkpoint is searched across all job-id directories.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def to_uri(path_or_uri: str) -> str:
    """``/a/b`` -> ``file:///a/b``; other URIs (``s3://``) are returned as they are."""
    local = local_path(path_or_uri)
    if local is None:
        return path_or_uri
    return local.expanduser().resolve().as_uri()


def local_path(path_or_uri: str) -> Path | None:
    """The local directory behind a path or a ``file:`` URI (Flink reports savepoints as
    ``file:/a/b``, users write ``file:///a/b``); None for remote filesystems."""
    if path_or_uri.startswith("file:"):
        return Path("/" + path_or_uri.removeprefix("file:").lstrip("/"))
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


def prune_older_runs(checkpoint_dir: str, keep: Path) -> list[Path]:
    """Delete the checkpoint directories of earlier runs, older than the run ``keep`` is from.

    Called when a new run restores from ``keep`` (a ``chk-N`` directory): every job-id
    directory last written before ``keep``'s run is superseded. ``keep``'s own run stays
    until the new run has checkpoints of its own (restore does not take ownership of it).
    """
    root = local_path(checkpoint_dir)
    if root is None or not root.is_dir():
        return []
    keep_run = keep.parent
    cutoff = keep_run.stat().st_mtime
    removed = []
    for run in root.iterdir():
        if run == keep_run or not run.is_dir() or not _JOB_ID.match(run.name):
            continue
        if run.stat().st_mtime < cutoff:
            shutil.rmtree(run, ignore_errors=True)
            removed.append(run)
    return removed
