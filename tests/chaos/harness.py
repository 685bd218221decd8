"""Run the whole pipeline as processes on fresh topics and break it on purpose.

:class:`ChaosPipeline` starts ``finsentry aggregate``, ``classify`` and ``export``
(the same commands and ``FINSENTRY_*`` environment as the demo, with ports,
groups, checkpoint directory and transactional ids of this run's own), replays a
file into ``news.raw``, and reads every topic back with :class:`Progress`.
The fault methods SIGKILL a stage's whole process group (a PyFlink driver takes
its JVM with it) or stop and start the shared broker, and measure recovery:
the time from the fault until the stage's output topic grows again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.demo.observe import TopicReader, topic_offsets
from pipeline.demo.services import FINSENTRY, PipelineServices, Ports
from pipeline.kafka_io import delete_topics, ensure_topics
from pipeline.messages import (
    decode_dead_letter,
    decode_late,
    decode_raw,
    decode_scored,
    decode_window,
)
from pipeline.settings import KafkaSettings
from pipeline.stack.process import ManagedProcess, StackError

log = logging.getLogger(__name__)

STAGES = ("aggregate", "classify", "export")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_run(stack, kind: str, unique: str, group: str = "chaos") -> tuple[str, Path]:
    """A run id ``<kind>-<unique>`` and its fresh directory under the stack's run dir."""
    run_id = f"{kind}-{unique}"
    run_dir = stack.settings.run_dir / group / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_id, run_dir


def run_topics(stack, run_id: str) -> KafkaSettings:
    prefix = f"chaos.{run_id}."
    base = stack.kafka_settings()
    return base.model_copy(
        update={
            "topic_raw": prefix + base.topic_raw,
            "topic_scored": prefix + base.topic_scored,
            "topic_dlq": prefix + base.topic_dlq,
            "topic_windows": prefix + base.topic_windows,
            "partitions": 3,
        }
    )


@dataclass
class Progress:
    """Every topic of the run read from the beginning (no group), polled on demand."""

    kafka: KafkaSettings
    late_topic: str
    readers: dict[str, TopicReader] = field(init=False)

    def __post_init__(self) -> None:
        k = self.kafka
        self.readers = {
            "raw": TopicReader(k, k.topic_raw, lambda b: decode_raw(b, stage="chaos")),
            "scored": TopicReader(k, k.topic_scored, decode_scored),
            "dlq": TopicReader(k, k.topic_dlq, decode_dead_letter),
            "windows": TopicReader(k, k.topic_windows, decode_window, read_committed=True),
            "late": TopicReader(k, self.late_topic, decode_late, read_committed=True),
        }

    def poll(self) -> dict[str, int]:
        for reader in self.readers.values():
            try:
                reader.poll(timeout_ms=100)
            except Exception as exc:  # noqa: BLE001 - the broker may be down on purpose
                log.debug("poll failed: %s", exc)
        return self.counts()

    def counts(self) -> dict[str, int]:
        return {name: len(reader.records) for name, reader in self.readers.items()}

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


class ChaosPipeline:
    def __init__(self, stack, run_id: str, run_dir: Path) -> None:
        self.stack, self.run_id, self.run_dir = stack, run_id, run_dir
        self.kafka = run_topics(stack, run_id)
        self.late_topic = f"chaos.{run_id}.sentiment.late"
        ensure_topics(self.kafka, [*self.kafka.all_topics(), self.late_topic])
        self.ports = Ports(
            classifier=free_port(), exporter=free_port(), notifier=free_port(), articles=free_port()
        )
        self.services = PipelineServices(
            run_dir,
            self.kafka,
            stack.settings,
            self.ports,
            extra_env={
                # After a SIGKILL the dead member holds its partitions until its session
                # expires; 6 s is the broker's minimum (group.min.session.timeout.ms).
                "FINSENTRY_CLASSIFIER_SESSION_TIMEOUT_MS": "6000",
                # The shared broker, with every test's topics, takes 35-90 s to restart here;
                # the default (60 s) would make the classifier give up on a batch and exit.
                "FINSENTRY_CLASSIFIER_PRODUCE_TIMEOUT_SECONDS": "300",
                # For the same reason the Flink source must not call a partition idle
                # during the outage: partitions resuming one after the other would push
                # late records to sentiment.late (docs/aggregate.md, idle partitions).
                # Longer than any recovery the test accepts (RECOVERY_TIMEOUT_S).
                "FINSENTRY_AGGREGATE_SOURCE_IDLE_TIMEOUT_MS": "300000",
                "FINSENTRY_AGGREGATE_TRANSACTIONAL_ID_PREFIX": f"chaos-{run_id}",
                "FINSENTRY_AGGREGATE_TOPIC_LATE": self.late_topic,
                "FINSENTRY_AGGREGATE_SAVEPOINT_DIR": str(run_dir / "aggregate" / "savepoints"),
                "FINSENTRY_NOTIFIER_CONSOLE": "false",
            },
        )
        self.processes = self.services.processes
        self.replay = ManagedProcess("replay", run_dir)
        self.progress = Progress(self.kafka, self.late_topic)

    # -- starting -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.services.env()}

    def command(self, stage: str, restore: str = "none") -> list[str]:
        return {
            "aggregate": [
                *FINSENTRY,
                "aggregate",
                "--restore",
                restore,
                "--status-file",
                str(self.services.aggregate_status_file),
            ],
            "classify": [*FINSENTRY, "classify"],
            "export": [*FINSENTRY, "export", "--register"],
        }[stage]

    def start(self, timeout_seconds: float = 300.0) -> None:
        for stage in STAGES:
            self.processes[stage].start(self.command(stage), env=self.env())
        self.wait_ready(STAGES, timeout_seconds)

    def wait_ready(self, stages, timeout_seconds: float = 300.0) -> None:
        import httpx

        def http_ok(port: int) -> Callable[[], bool]:
            return lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200

        probes = {
            "aggregate": self.services._aggregate_running,
            "classify": http_ok(self.ports.classifier),
            "export": http_ok(self.ports.exporter),
        }
        for stage in stages:
            self.processes[stage].wait_ready(probes[stage], timeout_seconds)

    def start_replay(self, stream: Path, rate_per_second: float) -> None:
        self.replay.start(
            [
                *FINSENTRY,
                "replay",
                str(stream),
                "--rate",
                str(rate_per_second),
                "--timestamps",
                "rebase",
            ],
            env=self.env(),
        )

    def check_alive(self) -> None:
        for stage in STAGES:
            process = self.processes[stage]
            if not process.is_running():
                raise StackError(f"stage {stage} exited; see {process.log_file}:\n{process.log_tail(40)}")

    def check_replay(self, articles: int) -> None:
        """Fail fast when the replay exited before sending everything."""
        if not self.replay.is_running() and topic_offsets(self.kafka, self.kafka.topic_raw) < articles:
            raise StackError(f"replay exited early; see {self.replay.log_file}:\n{self.replay.log_tail(40)}")

    def stop(self) -> None:
        self.replay.stop(timeout_seconds=10)
        for stage in STAGES:
            self.processes[stage].stop(timeout_seconds=30)
        self.progress.close()

    def delete_topics(self) -> None:
        """Every partition left on the shared broker slows its restarts; logs stay in run_dir."""
        delete_topics(self.kafka, [*self.kafka.all_topics(), self.late_topic])

    # -- faults ---------------------------------------------------------------------------

    def kill_stage(self, stage: str) -> None:
        """SIGKILL the stage's process group: no shutdown hook, no savepoint, no commit."""
        process = self.processes[stage]
        pid = process.pid()
        if pid is None:
            raise StackError(f"chaos: {stage} is not running, cannot kill it")
        os.killpg(pid, signal.SIGKILL)
        process.kill()  # waits until the pid is gone and removes the pid file

    def restart_stage(self, stage: str) -> None:
        if stage == "aggregate":
            self.services.aggregate_status_file.unlink(missing_ok=True)
        self.processes[stage].start(self.command(stage, restore="auto"), env=self.env())

    def restart_broker(self) -> float:
        """Stop the shared broker (SIGTERM: a clean shutdown) and start it at once.

        Returns the seconds it was unreachable, until it answered metadata again."""
        kafka = self.stack.kafka
        began = time.monotonic()
        kafka.process.stop(timeout_seconds=60)
        kafka.start()
        kafka.process.wait_ready(kafka.is_ready, 120)
        return time.monotonic() - began

    def output_size(self, topic: str) -> int:
        """Exact size of one output now: end offsets for raw and scored (plain producers);
        for windows, the committed records after reading up to the end (end offsets of a
        transactional topic also move when a restarted job aborts its old transaction)."""
        if topic == "windows":
            reader = self.progress.readers["windows"]
            reader.drain(idle_ms=1000)
            return len(reader.records)
        return topic_offsets(self.kafka, getattr(self.kafka, f"topic_{topic}"))

    def wait_growth(self, topics: list[str], since: float, timeout_seconds: float) -> dict[str, float]:
        """Seconds from ``since`` (the fault) until each output in ``topics`` (raw, scored,
        windows) grows past its size measured now, after the fault."""
        baselines = {topic: self.output_size(topic) for topic in topics}
        grown: dict[str, float] = {}
        deadline = time.monotonic() + timeout_seconds
        while len(grown) < len(baselines):
            self.progress.poll()
            for topic, baseline in baselines.items():
                if topic not in grown and self.output_size(topic) > baseline:
                    grown[topic] = round(time.monotonic() - since, 2)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"chaos: {sorted(set(baselines) - set(grown))} did not grow past "
                    f"{baselines} within {timeout_seconds:.0f} s"
                )
            self.check_alive()
            time.sleep(0.3)
        return grown


def wait_until(
    predicate: Callable[[], bool], timeout_seconds: float, what: str, poll_seconds: float = 0.5
) -> None:
    """Poll ``predicate`` until it holds; ``TimeoutError`` naming ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"chaos: timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(poll_seconds)
