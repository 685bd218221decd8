"""The classifier service against the real broker, on the tiny random encoder.

In-process runs (a thread) check exactly-once output of a clean run, the DLQ
and hot reload; ``finsentry classify`` as a subprocess checks kill -9 and SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from models.inference import EngineOptions, engine_from_registry
from models.registry import Registry
from models.testing import make_tiny_entry, tiny_base_dir
from pipeline.classify.reload import ModelWatcher
from pipeline.classify.service import ClassifierService
from pipeline.kafka_io import make_consumer, make_producer
from pipeline.messages import decode_dead_letter, decode_scored
from pipeline.metrics.definitions import ClassifierMetrics
from pipeline.settings import ClassifierSettings
from tests.classify.helpers import BAD_RECORDS, raw_bytes

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_registry(tmp_path) -> Registry:
    make_tiny_entry(tmp_path, seed=0, version="tiny-v1")
    return Registry(tmp_path, tiny_base_dir(tmp_path))


def _engine(registry: Registry, version: str | None = None, precision: str = "fp32"):
    return engine_from_registry(registry, version, options=EngineOptions(precision=precision))


def _produce(kafka, values: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = make_producer(kafka)
    for key, value in values:
        producer.send(kafka.topic_raw, key=key, value=value)
    producer.flush(timeout=30)
    producer.close()


def _read(kafka, topic: str, expected: int, timeout: float = 90.0, decode=None) -> list:
    """Everything on ``topic`` once at least ``expected`` records arrived (or the timeout)."""
    consumer = make_consumer(kafka, None, topic)
    found: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend(decode(r.value) if decode else r for r in records)
            if len(found) >= expected:
                # One more short poll so that duplicates beyond ``expected`` show up too.
                for records in consumer.poll(timeout_ms=1000).values():
                    found.extend(decode(r.value) if decode else r for r in records)
                break
    finally:
        consumer.close()
    return found


class _Running:
    """A ClassifierService on a thread; ``stop()`` drains and joins it."""

    def __init__(self, service: ClassifierService) -> None:
        self.service = service
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "service did not stop within 60 s"
        if self.error is not None:
            raise self.error


def _settings(group_id: str, **overrides) -> ClassifierSettings:
    values = dict(group_id=group_id, batch_size=32, max_wait_ms=20, session_timeout_ms=6000,
                  metrics_port=0, register_target=False)
    values.update(overrides)
    return ClassifierSettings(**values)


def _committed_everything(kafka, group_id: str) -> bool:
    consumer = make_consumer(kafka, group_id, kafka.topic_raw)
    try:
        consumer.poll(timeout_ms=0)  # metadata
        partitions = consumer.partitions_for_topic(kafka.topic_raw)
        from kafka.structs import TopicPartition

        tps = [TopicPartition(kafka.topic_raw, p) for p in partitions]
        ends = consumer.end_offsets(tps)
        return all((consumer.committed(tp) or 0) == ends[tp] for tp in tps)
    finally:
        consumer.close()


# openvino-int8: the CPU's fastest mode (OpenVINO int8 and its float second look) behind
# the same service loop.
@pytest.mark.parametrize("precision", ["fp32", "openvino-int8"])
def test_every_good_record_is_scored_once_and_every_bad_one_dead_lettered(
    kafka_settings, group_id, tiny_registry, precision
):
    good = [f"good-{i}" for i in range(120)]
    values = [(i.encode(), raw_bytes(i, title=f"Headline {i}: shares crash")) for i in good]
    values += [(name.encode(), value) for name, (value, _) in BAD_RECORDS.items()]
    values += [(b"huge", raw_bytes("huge", body="x" * 5_000))]
    _produce(kafka_settings, values)

    metrics_registry = CollectorRegistry()
    metrics = ClassifierMetrics(metrics_registry)
    service = ClassifierService(_engine(tiny_registry, precision=precision), kafka=kafka_settings,
                                settings=_settings(group_id, max_text_chars=1_000), metrics=metrics)
    running = _Running(service)
    try:
        scored = _read(kafka_settings, kafka_settings.topic_scored, len(good), decode=decode_scored)
        dead = _read(kafka_settings, kafka_settings.topic_dlq, len(BAD_RECORDS) + 1,
                     decode=decode_dead_letter)
    finally:
        running.stop()

    assert Counter(a.id for a in scored) == Counter(good)  # each exactly once
    assert {a.model_version for a in scored} == {"tiny-v1"}
    reasons = {d.key: d.reason for d in dead}
    assert reasons == {**{k: r for k, (_, r) in BAD_RECORDS.items()}, "huge": "text_too_long"}
    assert all(d.stage == "classify" and d.source_topic == kafka_settings.topic_raw for d in dead)
    assert _committed_everything(kafka_settings, group_id)

    sample = metrics_registry.get_sample_value
    assert sample("finsentry_classifier_records_consumed_total") == len(values)
    assert sum(sample("finsentry_classifier_records_scored_total", {"sentiment": s}) or 0
               for s in ("negative", "neutral", "positive")) == len(good)
    assert sample("finsentry_classifier_records_dead_lettered_total",
                  {"reason": "invalid_json"}) == 1
    assert sample("finsentry_classifier_records_dead_lettered_total",
                  {"reason": "text_too_long"}) == 1
    assert sample("finsentry_model_info", {"version": "tiny-v1"}) == 1
    assert sample("finsentry_classifier_batch_size_count") >= 1
    assert sample("finsentry_classifier_end_to_end_latency_seconds_count") == len(good)
    lag = [s for m in metrics_registry.collect() for s in m.samples
           if s.name == "finsentry_classifier_consumer_lag_records"]
    assert lag and sum(s.value for s in lag) == 0


def test_hot_reload_mid_stream_loses_nothing_and_refuses_a_corrupt_entry(
    kafka_settings, group_id, tiny_registry, tmp_path
):
    registry = tiny_registry
    metrics_registry = CollectorRegistry()
    metrics = ClassifierMetrics(metrics_registry)
    watcher = ModelWatcher(
        registry, lambda v: _engine(registry, v), serving="tiny-v1", poll_seconds=0.1,
        on_reload=lambda outcome, v, e: metrics.model_reloads.labels(outcome=outcome).inc(),
    ).start()
    service = ClassifierService(_engine(registry), kafka=kafka_settings,
                                settings=_settings(group_id, batch_size=8), metrics=metrics,
                                watcher=watcher)
    running = _Running(service)
    ids: list[str] = []

    def produce(prefix: str, n: int) -> None:
        batch = [f"{prefix}-{i}" for i in range(n)]
        ids.extend(batch)
        _produce(kafka_settings, [(i.encode(), raw_bytes(i)) for i in batch])

    try:
        produce("a", 60)
        assert len(_read(kafka_settings, kafka_settings.topic_scored, 60)) >= 60

        # A corrupt entry appears as current (e.g. bit rot after promotion): refused.
        broken = make_tiny_entry(tmp_path, seed=2, version="tiny-broken", promote=False)
        (broken.path / "heads.safetensors").write_bytes(b"corrupt")
        (tmp_path / "current").write_text('{"version": "tiny-broken", "history": ["tiny-v1"]}')
        deadline = time.monotonic() + 30
        while not metrics_registry.get_sample_value(
            "finsentry_classifier_model_reloads_total", {"outcome": "failure"}
        ) and time.monotonic() < deadline:
            produce("b", 5)
            time.sleep(0.2)
        assert metrics_registry.get_sample_value(
            "finsentry_classifier_model_reloads_total", {"outcome": "failure"}) == 1

        # A good promotion while records keep flowing.
        make_tiny_entry(tmp_path, seed=1, version="tiny-v2", promote=False)
        registry.promote("tiny-v2")
        for _ in range(30):
            produce("c", 10)
            time.sleep(0.05)
        scored = _read(kafka_settings, kafka_settings.topic_scored, len(ids), decode=decode_scored)
    finally:
        running.stop()
        watcher.close()

    assert Counter(a.id for a in scored) == Counter(ids)  # nothing lost, nothing twice
    versions = Counter(a.model_version for a in scored)
    assert set(versions) == {"tiny-v1", "tiny-v2"}, versions
    assert all(a.model_version == "tiny-v1" for a in scored if a.id.startswith(("a-", "b-")))
    assert metrics_registry.get_sample_value("finsentry_model_info", {"version": "tiny-v2"}) == 1
    assert metrics_registry.get_sample_value(
        "finsentry_classifier_model_reloads_total", {"outcome": "success"}) == 1


def _start_cli(kafka, group_id: str, registry_root: Path, log_path: Path,
               **extra_env: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "FINSENTRY_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FINSENTRY_KAFKA_TOPIC_RAW": kafka.topic_raw,
        "FINSENTRY_KAFKA_TOPIC_SCORED": kafka.topic_scored,
        "FINSENTRY_KAFKA_TOPIC_DLQ": kafka.topic_dlq,
        "FINSENTRY_MODEL_REGISTRY_DIR": str(registry_root),
        "FINSENTRY_MODEL_BASE_MODEL_DIR": str(tiny_base_dir(registry_root)),
        "FINSENTRY_MODEL_DEVICE": "cpu",
        "FINSENTRY_MODEL_TORCH_THREADS": "1",
        "FINSENTRY_CLASSIFIER_GROUP_ID": group_id,
        "FINSENTRY_CLASSIFIER_BATCH_SIZE": "16",
        "FINSENTRY_CLASSIFIER_MAX_WAIT_MS": "20",
        "FINSENTRY_CLASSIFIER_METRICS_PORT": "0",
        "FINSENTRY_CLASSIFIER_REGISTER_TARGET": "false",
        "FINSENTRY_CLASSIFIER_SESSION_TIMEOUT_MS": "6000",
        **extra_env,
    }
    finsentry = Path(sys.executable).parent / "finsentry"
    handle = log_path.open("ab")
    return subprocess.Popen([str(finsentry), "classify"], env=env, cwd=REPO, stdout=handle,
                            stderr=subprocess.STDOUT)


@contextlib.contextmanager
def _running_cli(kafka, group_id: str, registry_root: Path, log_path: Path, **extra_env: str):
    """`finsentry classify` for the block; killed at the end if it is still running."""
    process = _start_cli(kafka, group_id, registry_root, log_path, **extra_env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _sigterm_drains_and_commits(process, log_path: Path, kafka, group_id: str) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log_path.read_text()[-3000:]
    assert _committed_everything(kafka, group_id)


def _scored_ids(kafka, n: int, timeout: float) -> Counter:
    return Counter(decode_scored(r.value).id for r in _read(kafka, kafka.topic_scored, n, timeout))


def test_after_kill_9_and_a_restart_every_id_is_scored(kafka_settings, group_id, tiny_registry,
                                                       tmp_path):
    log_path = tmp_path / "classify.log"
    ids = [f"k-{i}" for i in range(600)]
    process = _start_cli(kafka_settings, group_id, tiny_registry.root, log_path)
    stop_producing = threading.Event()

    def produce_steadily() -> None:  # 600 records over ~6 s: the kill lands mid-stream
        producer = make_producer(kafka_settings, linger_ms=0)
        for i, article in enumerate(ids):
            producer.send(kafka_settings.topic_raw, key=article.encode(), value=raw_bytes(article))
            if i % 10 == 9:
                producer.flush()
                time.sleep(0.1)
            if stop_producing.is_set():
                break
        producer.flush(timeout=30)
        producer.close()

    try:
        # Wait until the service is up and scoring, then start the stream and kill it mid-way.
        _produce(kafka_settings, [(b"warm", raw_bytes("warm"))])
        assert _scored_ids(kafka_settings, 1, 120)["warm"] >= 1, log_path.read_text()[-3000:]
        producer = threading.Thread(target=produce_steadily)
        producer.start()
        deadline = time.monotonic() + 60
        while len(_scored_ids(kafka_settings, 40, 5)) < 40 and time.monotonic() < deadline:
            pass
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        scored_before_kill = _scored_ids(kafka_settings, 1, 5)
        assert len(scored_before_kill) < len(ids) + 1, "kill landed after the stream ended"

        process = _start_cli(kafka_settings, group_id, tiny_registry.root, log_path)
        producer.join(60)
        after = _scored_ids(kafka_settings, len(ids) + 1, 180)
        assert set(after) == set(ids) | {"warm"}, (
            f"missing {sorted(set(ids) - set(after))[:10]}...\n{log_path.read_text()[-3000:]}"
        )

        # The restarted replica serves /metrics and counted what it consumed.
        urls = re.findall(r"classifier metrics on (http://\S+/metrics)", log_path.read_text())
        exposition = httpx.get(urls[-1], timeout=5).text
        assert "finsentry_classifier_records_consumed_total" in exposition
        assert 'finsentry_model_info{version="tiny-v1"} 1.0' in exposition

        # SIGTERM: drains, commits, exits 0; then the group has committed everything.
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()[-3000:]
        assert _committed_everything(kafka_settings, group_id)
    finally:
        stop_producing.set()
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_unacknowledged_output_stops_the_cli_with_a_clear_error_and_loses_nothing(
    kafka_settings, group_id, tiny_registry, tmp_path
):
    """Kafka not acknowledging a batch within produce_timeout_seconds (here a microsecond,
    shorter than any round trip) and no outage tolerated stops `finsentry classify` with
    status 3 and a message, commits nothing, and a restart scores every record."""
    log_path = tmp_path / "classify.log"
    ids = [f"t-{i}" for i in range(40)]
    _produce(kafka_settings, [(i.encode(), raw_bytes(i)) for i in ids])
    process = _start_cli(kafka_settings, group_id, tiny_registry.root, log_path,
                         FINSENTRY_CLASSIFIER_PRODUCE_TIMEOUT_SECONDS="0.000001",
                         FINSENTRY_CLASSIFIER_BROKER_OUTAGE_TOLERANCE_SECONDS="0")
    try:
        assert process.wait(180) == 3, log_path.read_text()[-3000:]
        log = log_path.read_text()
        assert "classify: stopped: Kafka did not acknowledge" in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert not _committed_everything(kafka_settings, group_id)

        process = _start_cli(kafka_settings, group_id, tiny_registry.root, log_path)
        assert set(_scored_ids(kafka_settings, len(ids), 180)) == set(ids), log_path.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()[-3000:]
        assert _committed_everything(kafka_settings, group_id)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_output_not_acknowledged_in_time_is_waited_for_within_the_outage_tolerance(
    kafka_settings, group_id, tiny_registry, tmp_path
):
    """The same microsecond produce timeout with the default outage tolerance: every flush
    "times out", the service keeps waiting for the acknowledgements (offsets uncommitted)
    instead of exiting, and every record is scored exactly once."""
    log_path = tmp_path / "classify.log"
    ids = [f"w-{i}" for i in range(40)]
    _produce(kafka_settings, [(i.encode(), raw_bytes(i)) for i in ids])
    with _running_cli(kafka_settings, group_id, tiny_registry.root, log_path,
                      FINSENTRY_CLASSIFIER_PRODUCE_TIMEOUT_SECONDS="0.000001") as process:
        scored = _scored_ids(kafka_settings, len(ids), 180)
        assert set(scored) == set(ids) and max(scored.values()) == 1, log_path.read_text()[-3000:]
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert "retrying, offsets stay uncommitted" in log_path.read_text()
        _sigterm_drains_and_commits(process, log_path, kafka_settings, group_id)


@pytest.fixture
def stopped_private_broker(tmp_path):
    """A private broker (tests/fixtures/brokers.py), configured but not started; stopped
    at the end whatever the test did with it."""
    from tests.fixtures.brokers import private_broker

    broker = private_broker(tmp_path / "run")
    yield broker
    broker.process.stop(timeout_seconds=60)


def test_the_service_waits_for_kafka_and_rides_out_a_broker_outage(
    stopped_private_broker, tiny_registry, tmp_path, unique
):
    """`finsentry classify` started before its broker waits for it instead of exiting;
    the broker stopped and started again while records stream in, the service keeps
    running, and every id is scored with nothing committed that was not acknowledged."""
    from pipeline.kafka_io import ensure_topics
    from tests.fixtures.brokers import client_settings, start_and_wait

    broker = stopped_private_broker
    kafka = client_settings(broker, f"outage.{unique}")
    group = f"outage-{unique}"
    log_path = tmp_path / "classify.log"
    ids = [f"o-{i}" for i in range(150)]

    def produce_steadily() -> None:  # 150 records over ~7 s, across the outage
        producer = make_producer(kafka, linger_ms=0)
        for i, article in enumerate(ids):
            producer.send(kafka.topic_raw, key=article.encode(), value=raw_bytes(article))
            if i % 10 == 9:
                time.sleep(0.5)
        producer.flush(timeout=120)  # buffered while the broker is away
        producer.close()

    with _running_cli(kafka, group, tiny_registry.root, log_path,
                      FINSENTRY_CLASSIFIER_PRODUCE_TIMEOUT_SECONDS="2") as process:
        deadline = time.monotonic() + 120  # kafka-python's bootstrap gives up after 30 s
        while "unreachable" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
        assert "unreachable" in log_path.read_text(), log_path.read_text()[-3000:]
        start_and_wait(broker)
        ensure_topics(kafka)
        _produce(kafka, [(b"first", raw_bytes("first"))])
        assert set(_scored_ids(kafka, 1, 120)) == {"first"}, log_path.read_text()[-3000:]

        streaming = threading.Thread(target=produce_steadily)
        streaming.start()
        time.sleep(2)
        broker.process.stop(timeout_seconds=60)
        time.sleep(8)  # several produce timeouts and reconnect attempts
        assert process.poll() is None, log_path.read_text()[-3000:]
        start_and_wait(broker)
        streaming.join(150)
        scored = _scored_ids(kafka, len(ids) + 1, 180)
        assert set(scored) == {"first", *ids}, (
            sorted(set(ids) - set(scored))[:10], log_path.read_text()[-3000:])
        assert process.poll() is None, log_path.read_text()[-3000:]
        _sigterm_drains_and_commits(process, log_path, kafka, group)


def test_output_the_kafka_client_gave_up_on_is_sent_again(
    stopped_private_broker, tiny_registry, unique, caplog
):
    """Output records kafka-python expired while the broker was away (its
    delivery_timeout_ms: 120 s by default, 3 s here) are sent again, and the batch is
    delivered once the broker is back, within the outage tolerance."""
    from pipeline.kafka_io import ensure_topics
    from tests.fixtures.brokers import client_settings, start_and_wait

    broker = stopped_private_broker
    kafka = client_settings(broker, f"expired.{unique}")
    start_and_wait(broker)
    ensure_topics(kafka)
    producer = make_producer(
        kafka, request_timeout_ms=2000, delivery_timeout_ms=3000, max_block_ms=2000
    )
    producer.send(kafka.topic_scored, key=b"warm", value=b"warm").get(timeout=30)  # metadata
    service = ClassifierService(
        _engine(tiny_registry),
        kafka=kafka,
        settings=_settings(f"expired-{unique}", produce_timeout_seconds=1,
                           broker_outage_tolerance_seconds=180),
        metrics=ClassifierMetrics(CollectorRegistry()),
    )
    messages = [(kafka.topic_scored, f"e-{i}".encode(), f"e-{i}".encode()) for i in range(20)]
    outcome: list[BaseException | None] = []

    def deliver() -> None:
        try:
            service._deliver(producer, messages)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)

    broker.process.stop(timeout_seconds=60)
    with caplog.at_level(logging.WARNING, logger="pipeline.classify.service"):
        delivering = threading.Thread(target=deliver, daemon=True)
        delivering.start()
        deadline = time.monotonic() + 60
        while "gave up on" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "sending 20 output records again that the Kafka client gave up on" in (
            caplog.text), caplog.text[-3000:]
        assert not outcome, "delivered with the broker stopped"
        start_and_wait(broker)
        delivering.join(120)
    producer.close(timeout=10)
    assert outcome == [None], outcome
    delivered = {r.key for r in _read(kafka, kafka.topic_scored, len(messages) + 1, 60)}
    assert {key for _, key, _ in messages} <= delivered


def test_the_bad_record_corpus_through_the_running_classifier(
    kafka_settings, group_id, tiny_registry, unique
):
    """Issue 10's corpus (tests/fixtures/bad_records.py) through a running service: every
    record dead-lettered with its reason and counted, or scored by its documented rule, and
    the service keeps going (a good record after the corpus is scored)."""
    from tests.fixtures.bad_records import bad_records

    corpus = [r for r in bad_records(run=unique) if r.fits_kafka]  # 10 MB: refused by the broker
    values = [(r.key, r.value) for r in corpus]
    values.append((b"after-the-corpus", raw_bytes("after-the-corpus", title="Shares rise after the storm")))
    _produce(kafka_settings, values)
    dead_expected = [r for r in corpus if r.outcome == "dead_letter"]
    handled = [r for r in corpus if r.outcome == "handled"]

    metrics_registry = CollectorRegistry()
    service = ClassifierService(_engine(tiny_registry), kafka=kafka_settings, settings=_settings(group_id),
                                metrics=ClassifierMetrics(metrics_registry))
    running = _Running(service)
    try:
        scored = _read(kafka_settings, kafka_settings.topic_scored, len(handled) + 1, decode=decode_scored)
        dead = _read(kafka_settings, kafka_settings.topic_dlq, len(dead_expected), decode=decode_dead_letter)
        assert running.thread.is_alive(), running.error
    finally:
        running.stop()

    for record in dead_expected:
        assert any(d.key == record.id and d.reason == record.reason for d in dead), (
            record.name, record.reason, [(d.key, d.reason) for d in dead if d.key == record.id])
    assert len(dead) == len(dead_expected)
    assert all(d.error and d.stage == "classify" for d in dead)
    fields = set(type(scored[0]).model_fields)
    for record in handled:
        matching = [a for a in scored if a.id == record.id]
        assert matching, record.name
        for name, value in record.expected.items():
            if name in fields:
                assert any(getattr(a, name) == value for a in matching), (record.name, name, value)
    assert "after-the-corpus" in {a.id for a in scored}

    sample = metrics_registry.get_sample_value
    for reason, count in Counter(r.reason for r in dead_expected).items():
        assert sample("finsentry_classifier_records_dead_lettered_total", {"reason": reason}) == count, reason
    assert sample("finsentry_classifier_records_consumed_total") == len(values)
