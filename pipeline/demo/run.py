"""``finsentry demo``: the whole pipeline on the local stack, a replayed spike, the alert.

One run: start the stack; create fresh topics for this run (so every count
below belongs to it); start the Flink job, classifier, exporter and notifier;
point Alertmanager at the notifier and the notifier at a local receiver;
replay the demo stream time-compressed; watch every stage; stop when the spike
alert has been delivered and the pipeline has drained; check that the counts
agree; write a report.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kafka.errors import KafkaError

from pipeline.demo.observe import TopicReader, prometheus_query, topic_offsets
from pipeline.demo.services import FINSENTRY, PipelineServices, Ports
from pipeline.kafka_io import ensure_topics
from pipeline.messages import decode_dead_letter, decode_scored, decode_window
from pipeline.settings import REPO_ROOT, KafkaSettings
from pipeline.stack import LocalStack
from pipeline.stack.process import ManagedProcess

log = logging.getLogger(__name__)

DEFAULT_STREAM = REPO_ROOT / "pipeline" / "ingest" / "data" / "demo_stream.jsonl"
SPIKE_ALERT = "NegativeSentimentSpike"


@dataclass(frozen=True)
class DemoOptions:
    stream: Path = DEFAULT_STREAM
    #: Event time runs this many times faster than wall time.
    speedup: float = 10.0
    #: Replay at this many items per second instead (0: as fast as Kafka takes them).
    rate_per_second: float | None = None
    keep: bool = False
    timeout_seconds: float = 900.0
    #: After the replay ends, how long to wait for late stages to drain.
    drain_timeout_seconds: float = 120.0
    report_dir: Path | None = None
    #: Stop as soon as the spike alert is delivered and the pipeline has drained
    #: (False: also wait for the replay to finish).
    stop_after_alert: bool = False
    expect_alert: bool = True
    ports: Ports = field(default_factory=Ports)


@dataclass
class StageCounts:
    raw: int = 0
    scored: int = 0
    scored_distinct: int = 0
    dead_lettered: int = 0
    windows: int = 0
    closed_all_window_articles: int = 0
    scored_in_closed_windows: int = 0

    @property
    def agree(self) -> bool:
        """Nothing lost: raw = distinct scored + dead-lettered, and the closed ``all``
        windows count every distinct article whose event time they cover exactly once."""
        return (self.raw == self.scored_distinct + self.dead_lettered
                and self.closed_all_window_articles == self.scored_in_closed_windows)


@dataclass
class DemoResult:
    run_id: str
    run_dir: Path
    truth: dict
    counts: StageCounts
    replay_started_at: datetime | None = None
    #: Prometheus ALERTS series of the spike alert now: "dimension=key [window, severity]" -> state.
    alert_states: dict[str, str] = field(default_factory=dict)
    #: Every spike alert that reached "firing" during the run, with when it was first seen.
    alerts_fired: dict[str, datetime] = field(default_factory=dict)
    notifications: list[dict] = field(default_factory=list)
    first_delivery_at: datetime | None = None
    windows: list = field(default_factory=list)
    #: The topic readers at the end of the run (records and their Kafka timestamps).
    readers: dict = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)

    @property
    def spike_wall_start(self) -> datetime | None:
        """When the first spike article was sent (replay start + offset / speedup)."""
        if self.replay_started_at is None or not self.truth:
            return None
        offset = self.truth["spike"]["start_offset_seconds"] / self.truth.get("speedup", 1.0)
        return datetime.fromtimestamp(self.replay_started_at.timestamp() + offset, UTC)

    @property
    def detection_delay_seconds(self) -> float | None:
        start = self.spike_wall_start
        if start is None or self.first_delivery_at is None:
            return None
        return (self.first_delivery_at - start).total_seconds()

    def spike_keys(self) -> set[str]:
        """The keys the injected spike is on: its topic (or ticker) and the ticker it carries."""
        spike = self.truth.get("spike", {})
        return {k for k in (spike.get("key"), spike.get("ticker")) if k}

    def spike_notifications(self) -> list[dict]:
        keys = self.spike_keys()
        return [n for n in self.notifications
                if any(a["labels"].get("alertname") == SPIKE_ALERT and a["status"] == "firing"
                       and a["labels"].get("pipeline") == self.run_id
                       and (not keys or a["labels"].get("key") in keys) for a in n["alerts"])]


def run_demo(options: DemoOptions, on_progress: Callable[[dict], None] | None = None) -> DemoResult:
    """Run the pipeline once; see the module docstring. Raises StackError when a stage dies."""
    from pipeline.notify.testing import WebhookReceiver

    stack = LocalStack()
    stack.up()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = stack.settings.run_dir / "demo" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    kafka = _run_topics(stack, run_id)
    ensure_topics(kafka)

    secret = secrets.token_hex(16)
    receiver = WebhookReceiver(secret=secret)
    services = PipelineServices(
        run_dir, kafka, stack.settings, options.ports,
        extra_env={
            "FINSENTRY_NOTIFIER_WEBHOOK_URL": receiver.url,
            "FINSENTRY_NOTIFIER_WEBHOOK_SECRET": secret,
            "FINSENTRY_NOTIFIER_CONSOLE": "false",
        },
    )
    result = DemoResult(run_id, run_dir, {}, StageCounts())
    previous_notifier = stack.alertmanager.notifier_url()
    replay = ManagedProcess("replay", run_dir)
    readers = {
        "scored": TopicReader(kafka, kafka.topic_scored, decode_scored),
        "dlq": TopicReader(kafka, kafka.topic_dlq, decode_dead_letter),
        "windows": TopicReader(kafka, kafka.topic_windows, decode_window, read_committed=True),
    }
    try:
        services.start()
        stack.alertmanager.reload(services.notifier_url)
        services.wait_ready()
        truth_out = run_dir / "truth.json"
        pacing = (["--rate", str(options.rate_per_second)] if options.rate_per_second is not None
                  else ["--speedup", str(options.speedup)])
        replay.start(
            [*FINSENTRY, "replay", str(options.stream), *pacing,
             "--timestamps", "rebase", "--id-salt", run_id, "--truth-out", str(truth_out)],
            env={**os.environ, **services.env()},
        )
        result.replay_started_at = datetime.now(UTC)
        deadline = time.monotonic() + options.timeout_seconds
        drained_since: float | None = None
        while time.monotonic() < deadline:
            services.check_alive()
            try:
                _observe(result, kafka, readers, receiver, stack.settings.prometheus_url)
            except KafkaError as exc:
                # The stages ride out a broker restart; so does the observer.
                log.warning("observing the pipeline failed (%s); retrying", exc)
                time.sleep(2.0)
                continue
            if not result.truth and truth_out.exists():
                result.truth = {**json.loads(truth_out.read_text()), "speedup": options.speedup}
            replay_done = not replay.is_running()
            drained = result.counts.raw > 0 and (
                result.counts.scored_distinct + result.counts.dead_lettered >= result.counts.raw)
            alert_done = bool(result.spike_notifications()) or not options.expect_alert
            if on_progress:
                on_progress(_progress(result, replay_done))
            if drained and alert_done and (replay_done or options.stop_after_alert):
                drained_since = drained_since or time.monotonic()
                # Give the windows of the last articles one checkpoint to be committed.
                if time.monotonic() - drained_since > 10:
                    break
            elif replay_done and drained and not alert_done and drained_since is None:
                drained_since = time.monotonic()
            elif (drained_since is not None and replay_done
                  and time.monotonic() - drained_since > options.drain_timeout_seconds):
                break
            time.sleep(1.0)
        if replay.is_running():
            replay.stop()
        _observe(result, kafka, readers, receiver, stack.settings.prometheus_url)
        result.windows = list(readers["windows"].records)
        result.readers = readers
        _count_closed_windows(result, readers["scored"].records)
        from pipeline.demo.report import write_report

        result.report_files = write_report(result, options.report_dir or run_dir / "report")
        return result
    finally:
        for reader in readers.values():
            reader.close()
        if not options.keep:
            services.stop()
            stack.alertmanager.reload(previous_notifier)
        receiver.close()


def _run_topics(stack: LocalStack, run_id: str) -> KafkaSettings:
    base = KafkaSettings(bootstrap_servers=stack.settings.kafka_bootstrap)
    prefix = f"demo.{run_id}."
    return base.model_copy(update={
        "topic_raw": prefix + base.topic_raw,
        "topic_scored": prefix + base.topic_scored,
        "topic_dlq": prefix + base.topic_dlq,
        "topic_windows": prefix + base.topic_windows,
    })


def _observe(result: DemoResult, kafka: KafkaSettings, readers: dict, receiver, prometheus_url: str) -> None:
    counts = result.counts
    counts.raw = topic_offsets(kafka, kafka.topic_raw)
    readers["scored"].poll()
    readers["dlq"].poll()
    readers["windows"].poll()
    counts.scored = len(readers["scored"].records)
    counts.scored_distinct = len({a.id for a in readers["scored"].records})
    counts.dead_lettered = len(readers["dlq"].records)
    counts.windows = len(readers["windows"].records)
    try:
        series = prometheus_query(
            prometheus_url, f'ALERTS{{alertname="{SPIKE_ALERT}",pipeline="{result.run_id}"}}')
    except Exception:  # noqa: BLE001 - progress display only; the delivery is what counts
        series = []
    result.alert_states = {}
    for s in series:
        m = s["metric"]
        name = f'{m.get("dimension")}={m.get("key")} [{m.get("window")}, {m.get("severity")}]'
        result.alert_states[name] = m["alertstate"]
        if m["alertstate"] == "firing":
            result.alerts_fired.setdefault(name, datetime.now(UTC))
    received = [r.json() for r in receiver.requests if r.signature_valid]
    if len(received) > len(result.notifications):
        result.notifications = received
        if result.spike_notifications() and result.first_delivery_at is None:
            result.first_delivery_at = datetime.now(UTC)


def _count_closed_windows(result: DemoResult, scored: list) -> None:
    """Compare the tumbling ``all`` windows with the distinct articles they cover."""
    tumbling = [w for w in result.windows if w.dimension == "all" and w.window_seconds == _min_window(result)]
    if not tumbling:
        return
    closed_end = max(w.window_end for w in tumbling)
    first_start = min(w.window_start for w in tumbling)
    result.counts.closed_all_window_articles = sum(w.articles for w in tumbling)
    result.counts.scored_in_closed_windows = len({
        a.id for a in scored if first_start <= a.published_at < closed_end and a.duplicate_of is None
    })


def _min_window(result: DemoResult) -> int:
    return min((w.window_seconds for w in result.windows if w.dimension == "all"), default=0)


def _progress(result: DemoResult, replay_done: bool) -> dict:
    return {
        "raw": result.counts.raw,
        "scored": result.counts.scored_distinct,
        "dead_lettered": result.counts.dead_lettered,
        "windows": result.counts.windows,
        "alerts_pending": sum(1 for s in result.alert_states.values() if s == "pending"),
        "alerts_firing": sum(1 for s in result.alert_states.values() if s == "firing"),
        "notifications": len(result.spike_notifications()),
        "replay_done": replay_done,
    }
