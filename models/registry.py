"""Model registry: one self-describing directory per version, an atomic pointer.

Layout under the registry root::

    current                      {"version": ..., "history": [...]}, replaced atomically
    entries/<version>/entry.json manifest (sorted keys): config, base model name
                                 and hash, data snapshot, metrics, temperatures,
                                 library and code versions, sha256 of every file
    entries/<version>/adapter/   PEFT ``save_pretrained`` output
    entries/<version>/heads.safetensors
    entries/<version>/report/    evaluation report (JSON, confusion-matrix PNGs)

An entry is written into a temporary directory and renamed into place, so a
half-written entry is never visible. ``promote`` and ``rollback`` validate the
target (manifest, file hashes, base-model hash) before the pointer moves; a
refused entry leaves the current model serving.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.base import base_model_hash, base_model_name

log = logging.getLogger(__name__)

MANIFEST = "entry.json"
POINTER = "current"
SCHEMA_VERSION = 1
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REQUIRED_KEYS = (
    "schema",
    "version",
    "created_at",
    "base_model",
    "config",
    "files",
    "temperatures",
    "max_length_tokens",
    "metrics",
    "data",
)
HISTORY_LIMIT = 100


class RegistryError(RuntimeError):
    """A registry operation refused; the message names the entry and the problem."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of this checkout (``-dirty`` with local changes), or ``unknown``."""
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "models"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


@dataclass(frozen=True)
class RegistryEntry:
    """One registry version: its directory and parsed manifest."""

    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def heads_path(self) -> Path:
        return self.path / "heads.safetensors"

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    @property
    def lexical_dir(self) -> Path:
        return self.path / "lexical"

    @property
    def lexical(self) -> dict[str, Any] | None:
        """The manifest's description of the TF-IDF model mixed in (None: encoder alone)."""
        return self.manifest.get("lexical")

    @property
    def temperatures(self) -> dict[str, float]:
        """Calibration temperature per head (``topic``, ``sentiment``); logits / T."""
        return {k: float(v) for k, v in self.manifest["temperatures"].items()}

    @property
    def max_length_tokens(self) -> int:
        return int(self.manifest["max_length_tokens"])

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest["metrics"]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def base_model_hash(self) -> str:
        return self.manifest["base_model"]["hash"]

    @property
    def base_model_name(self) -> str:
        return self.manifest["base_model"]["name"]

    @property
    def created_at(self) -> str:
        return self.manifest["created_at"]

    @property
    def parent(self) -> str | None:
        return self.manifest.get("parent")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp makes 0600; readers may be other users
            json.dump(data, handle, sort_keys=True, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Registry:
    """The registry at ``root``; ``base_model_dir`` is the base available here.

    ``base_model_dir=None`` means the bundled default base (checked lazily).
    """

    def __init__(self, root: Path, base_model_dir: Path | None = None) -> None:
        self.root = Path(root)
        self._base_model_dir = Path(base_model_dir) if base_model_dir is not None else None

    @classmethod
    def from_settings(cls, settings) -> Registry:
        """From a ``pipeline.settings.ModelSettings``."""
        return cls(settings.registry_dir, settings.resolved_base_model_dir())

    @property
    def base_model_dir(self) -> Path:
        if self._base_model_dir is None:
            from models.base import default_base_model_dir

            self._base_model_dir = default_base_model_dir()
        return self._base_model_dir

    @property
    def entries_dir(self) -> Path:
        return self.root / "entries"

    # -- reading -------------------------------------------------------------

    def inspect(self, version: str) -> RegistryEntry:
        """The entry with its manifest read and checked for shape, files NOT verified."""
        return self._read_manifest(version)

    def _read_manifest(self, version: str) -> RegistryEntry:
        if not _VERSION_RE.match(version or ""):
            raise RegistryError(f"registry: invalid version name {version!r}")
        path = self.entries_dir / version
        if not path.is_dir():
            raise RegistryError(f"registry entry {version!r}: no such entry in {self.entries_dir}")
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(
                f"registry entry {version!r}: incomplete, {MANIFEST} missing"
            ) from None
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"registry entry {version!r}: unreadable {MANIFEST}: {exc}"
            ) from exc
        if not isinstance(manifest, dict):
            raise RegistryError(f"registry entry {version!r}: {MANIFEST} is not a JSON object")
        missing = [k for k in _REQUIRED_KEYS if k not in manifest]
        if missing:
            raise RegistryError(f"registry entry {version!r}: {MANIFEST} lacks {missing}")
        if manifest["version"] != version:
            raise RegistryError(
                f"registry entry {version!r}: manifest says version {manifest['version']!r}"
            )
        if manifest["schema"] != SCHEMA_VERSION:
            raise RegistryError(
                f"registry entry {version!r}: manifest schema {manifest['schema']!r}, "
                f"this code reads {SCHEMA_VERSION}"
            )
        return RegistryEntry(version, path, manifest)

    def verify(self, entry: RegistryEntry) -> None:
        """Raise RegistryError unless every file matches its hash and the base matches."""
        for rel, expected in sorted(entry.manifest["files"].items()):
            path = entry.path / rel
            if not path.is_file():
                raise RegistryError(f"registry entry {entry.version!r}: file {rel} is missing")
            actual = _sha256(path)
            if actual != expected:
                raise RegistryError(
                    f"registry entry {entry.version!r}: file {rel} is corrupt "
                    f"(sha256 {actual[:12]}..., manifest {expected[:12]}...)"
                )
        if "heads.safetensors" not in entry.manifest["files"]:
            raise RegistryError(f"registry entry {entry.version!r}: no heads.safetensors listed")
        available = base_model_hash(self.base_model_dir)
        if available != entry.base_model_hash:
            raise RegistryError(
                f"registry entry {entry.version!r}: incompatible base model: trained on "
                f"{entry.base_model_name!r} ({entry.base_model_hash[:19]}...), available base at "
                f"{self.base_model_dir} has {available[:19]}..."
            )

    def entries(self) -> list[RegistryEntry]:
        """Entries with a readable manifest, oldest first (unverified; see ``problems``)."""
        found = []
        if not self.entries_dir.is_dir():
            return found
        for path in self.entries_dir.iterdir():
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                found.append(self._read_manifest(path.name))
            except RegistryError as exc:
                log.warning("%s", exc)
        return sorted(found, key=lambda e: (e.created_at, e.version))

    def problem(self, version: str) -> str | None:
        """Why ``version`` cannot be served, or None when it can."""
        try:
            self.get(version)
        except RegistryError as exc:
            return str(exc)
        return None

    def get(self, version: str) -> RegistryEntry:
        """The verified entry ``version``; RegistryError naming the problem otherwise."""
        entry = self._read_manifest(version)
        self.verify(entry)
        return entry

    def _read_pointer(self) -> dict[str, Any]:
        path = self.root / POINTER
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": None, "history": []}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"registry: unreadable pointer {path}: {exc}") from exc
        if not isinstance(state, dict) or "version" not in state:
            raise RegistryError(f"registry: pointer {path} is not {{'version': ...}}")
        state.setdefault("history", [])
        return state

    def current_version(self) -> str | None:
        """The promoted version, or None; one small file read (safe to poll)."""
        return self._read_pointer()["version"]

    def history(self) -> list[str]:
        """Previously promoted versions, oldest first (what ``rollback`` returns to)."""
        return list(self._read_pointer()["history"])

    def current(self) -> RegistryEntry:
        """The verified current entry; RegistryError when none is promoted or it is broken."""
        version = self.current_version()
        if version is None:
            raise RegistryError(
                f"registry {self.root}: no model promoted yet "
                "(run `finsentry train` or `finsentry models promote VERSION`)"
            )
        return self.get(version)

    # -- writing -------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def promote(self, version: str) -> RegistryEntry:
        """Verify ``version`` and make it current atomically; the old one goes to history."""
        entry = self.get(version)
        with self._locked():
            state = self._read_pointer()
            if state["version"] == version:
                return entry
            history = list(state["history"])
            if state["version"] is not None:
                history.append(state["version"])
            _write_json_atomic(
                self.root / POINTER, {"version": version, "history": history[-HISTORY_LIMIT:]}
            )
        log.info("registry: promoted %s (previous %s)", version, state["version"])
        return entry

    def rollback(self) -> RegistryEntry:
        """Return to the previously promoted version, verified first."""
        with self._locked():
            state = self._read_pointer()
            if not state["history"]:
                raise RegistryError(
                    f"registry {self.root}: nothing to roll back to "
                    f"(current {state['version']!r} has no predecessor)"
                )
            previous = state["history"][-1]
            try:
                entry = self.get(previous)
            except RegistryError as exc:
                raise RegistryError(
                    f"registry: rollback refused, current stays {state['version']!r}: {exc}"
                ) from exc
            _write_json_atomic(
                self.root / POINTER, {"version": previous, "history": state["history"][:-1]}
            )
        log.info("registry: rolled back %s -> %s", state["version"], previous)
        return entry

    def add(
        self,
        model,
        *,
        config: dict[str, Any],
        max_length_tokens: int,
        temperatures: dict[str, float],
        metrics: dict[str, Any],
        data: dict[str, Any],
        parent: str | None = None,
        version: str | None = None,
        report_dir: Path | None = None,
        base_model_dir: Path | None = None,
        lexical=None,
    ) -> RegistryEntry:
        """Write ``model`` (a MultiTaskClassifier) as a new entry; does not promote it.

        ``data`` describes the training data (``snapshot_hash``, ``label_counts``);
        ``report_dir`` contents are copied into ``report/``; ``lexical`` (a
        ``models.lexical.LexicalModel``) is saved under ``lexical/`` and described
        in the manifest's ``lexical`` key.
        """
        from safetensors.torch import save_file

        base_dir = Path(base_model_dir) if base_model_dir is not None else self.base_model_dir
        created = dt.datetime.now(dt.UTC)
        version = version or f"{created:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        if not _VERSION_RE.match(version):
            raise RegistryError(f"registry: invalid version name {version!r}")
        final = self.entries_dir / version
        if final.exists():
            raise RegistryError(f"registry entry {version!r}: already exists")
        # Before the staging directory exists: inside a checkout (the shipped
        # registry is models/registry) it would count as a local change.
        code = code_version()
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.entries_dir))
        try:
            if hasattr(model.encoder, "peft_config"):
                model.encoder.save_pretrained(str(tmp / "adapter"))
            save_file(model.head_state_dict(), str(tmp / "heads.safetensors"))
            if report_dir is not None and Path(report_dir).is_dir():
                shutil.copytree(report_dir, tmp / "report")
            if lexical is not None:
                lexical.save(tmp / "lexical")
            files = {
                p.relative_to(tmp).as_posix(): _sha256(p)
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            manifest = {
                "schema": SCHEMA_VERSION,
                "version": version,
                "created_at": created.isoformat().replace("+00:00", "Z"),
                "code_version": code,
                "parent": parent,
                "base_model": {
                    "name": base_model_name(base_dir),
                    "hash": base_model_hash(base_dir),
                },
                "config": config,
                "libraries": library_versions(),
                "max_length_tokens": int(max_length_tokens),
                "temperatures": {k: float(v) for k, v in temperatures.items()},
                "metrics": metrics,
                "data": data,
                "files": files,
            }
            if lexical is not None:
                manifest["lexical"] = lexical.describe()
            _write_json_atomic(tmp / MANIFEST, manifest)
            tmp.chmod(0o755)  # mkdtemp makes 0700
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("registry: added %s at %s", version, final)
        return RegistryEntry(version, final, manifest)
