"""Install what the local stack runs: Maven-resolved jars and Debian packages.

Each step checks first and returns at once when its result is already there, so
``make setup`` on a set-up machine costs a few stat calls.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from pipeline.settings import REPO_ROOT
from pipeline.stack.process import StackError

log = logging.getLogger(__name__)

KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
FLINK_POM = REPO_ROOT / "deploy" / "flink" / "pom.xml"

#: Debian package -> the binary it provides.
DEBIAN_PACKAGES = {
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def _pom_stamp(pom: Path) -> str:
    import hashlib

    return hashlib.sha256(pom.read_bytes()).hexdigest()[:12]


def _maven_copy(pom: Path, dest: Path, *extra: str) -> Path:
    """Resolve a pom's dependencies into ``dest`` once per pom content."""
    stamp = dest / f".resolved-{_pom_stamp(pom)}"
    if stamp.exists():
        return dest
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not installed; apt-get install maven")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    log.info("resolving %s into %s with Maven", pom.relative_to(REPO_ROOT), dest)
    cmd = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={dest}", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"Maven could not resolve {pom}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    stamp.touch()
    return dest


def kafka_libs(cache_dir: Path) -> Path:
    """Directory with the Kafka broker's jars (``java -cp DIR/*``)."""
    return _maven_copy(KAFKA_POM, cache_dir / "kafka" / "libs", "-DincludeScope=runtime")


def flink_connector_jars(cache_dir: Path) -> list[Path]:
    """The Flink Kafka SQL connector jar(s) for the aggregation job's pipeline.jars."""
    lib = _maven_copy(FLINK_POM, cache_dir / "flink" / "lib", "-DexcludeTransitive=true")
    jars = sorted(lib.glob("*.jar"))
    if not jars:
        raise StackError(f"no connector jar in {lib}")
    return jars


def ensure_debian_packages() -> None:
    missing = [pkg for pkg, binary in DEBIAN_PACKAGES.items() if shutil.which(binary) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages {missing}; run: sudo apt-get install {' '.join(missing)}")
    log.info("installing Debian packages %s", missing)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")


def java_binary(java_home: Path | None) -> str:
    candidates = [java_home / "bin" / "java"] if java_home else []
    if env_home := os.environ.get("JAVA_HOME"):
        candidates.append(Path(env_home) / "bin" / "java")
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise StackError("no Java found: install a JDK 17+ or set FINSENTRY_STACK_JAVA_HOME")
    return found


def install_all(cache_dir: Path) -> None:
    """Everything ``finsentry stack up`` and the Flink job need, idempotently."""
    ensure_debian_packages()
    kafka_libs(cache_dir)
    flink_connector_jars(cache_dir)
