"""Start and stop one server process that the local stack owns.

A process is identified by its PID *and* its start time (field 22 of
/proc/PID/stat), both written to ``<run_dir>/<name>/<name>.pid``, so that a
recycled PID never makes ``stop`` kill somebody else's process. Servers run in
their own session (``start_new_session``) so they outlive ``finsentry stack up``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A server of the local stack could not be installed, started or stopped."""


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after ')' are fixed.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class ManagedProcess:
    name: str
    run_dir: Path

    @property
    def dir(self) -> Path:
        return self.run_dir / self.name

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """PID of our live process, or None (a stale pid file is removed)."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid, ticks = int(record["pid"]), record.get("start_ticks")
        if _start_ticks(pid) is None or _start_ticks(pid) != ticks or _is_zombie(pid):
            _reap(pid)
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, command: Sequence[str], env: dict[str, str] | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.dir.mkdir(parents=True, exist_ok=True)
        log.info("starting %s: %s", self.name, " ".join(command))
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                list(command),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=self.dir,
                start_new_session=True,
            )
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "start_ticks": _start_ticks(proc.pid)}))
        return proc.pid

    def wait_ready(self, probe: Callable[[], bool], timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        last_error = "probe answered not ready"
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during start-up; see {self.log_file}:\n{self.log_tail()}")
            try:
                if probe():
                    return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}"
                log.debug("%s not ready: %s", self.name, last_error)
            time.sleep(0.25)
        raise StackError(
            f"{self.name} not ready after {timeout_seconds:.0f} s (last probe: {last_error}); "
            f"see {self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, timeout_seconds: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after the timeout. True when a process was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        log.info("stopping %s (pid %d)", self.name, pid)
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline and _start_ticks(pid) is not None:
            if _is_zombie(pid):
                break
            time.sleep(0.1)
        if _start_ticks(pid) is not None and not _is_zombie(pid):
            log.warning("%s ignored SIGTERM for %.0f s; killing", self.name, timeout_seconds)
            self._signal(pid, signal.SIGKILL)
            while _start_ticks(pid) is not None and not _is_zombie(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL without grace, for fault-injection tests."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGKILL)
            while _start_ticks(pid) is not None and not _is_zombie(pid):
                time.sleep(0.05)
            self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    """Collect the exit status of our own exited child, so it does not stay a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
