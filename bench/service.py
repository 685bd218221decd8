"""Classifier service throughput through the real broker vs the engine alone; latency at half load.

    python bench/service.py            # 8,000 records (about 20 s at full load), 20 s of half load
    python bench/service.py --quick    # 400 records, 8 s of half load

Needs the local stack (``finsentry stack up``) and a promoted model. Runs
``finsentry classify`` as a subprocess on fresh topics, exactly as deployed:

1. engine alone: the same records through ``engine.predict`` in micro-batches
   of the service's batch size, in this process, before the service starts and
   after it stopped (the better of the two counts);
2. max throughput: with the service warm and idle, produce N records at once
   to ``news.raw``, time until all N are in ``news.scored``: the bench watches the
   topic's end offsets (one cheap request every 50 ms) rather than decoding every
   record while the service runs, so that it does not take CPU from the service;
   the records are read and checked (every id present) afterwards;
3. latency: produce at half the measured max rate for a while; latency is the
   time from ``send`` (stamped into ``fetched_at``) to this process reading the
   scored record, p50 and p99.

Writes bench/results/service.json (``service.quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from classifier import code_version, hardware, load_headlines, write_result  # noqa: E402

log = logging.getLogger("bench.service")


def raw_record(i: int, text: str, sent_at: float) -> tuple[bytes, bytes]:
    from pipeline.messages import RawArticle, encode

    when = datetime.fromtimestamp(sent_at, UTC)
    article = RawArticle(
        id=f"bench-{i}",
        source="bench",
        title=text[:1000],
        published_at=when,
        fetched_at=when,
        url=f"https://bench.example/{i}",
    )
    return article.id.encode(), encode(article)


def start_service(kafka, group_id: str, env_extra: dict, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "FINSENTRY_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FINSENTRY_KAFKA_TOPIC_RAW": kafka.topic_raw,
        "FINSENTRY_KAFKA_TOPIC_SCORED": kafka.topic_scored,
        "FINSENTRY_KAFKA_TOPIC_DLQ": kafka.topic_dlq,
        "FINSENTRY_CLASSIFIER_GROUP_ID": group_id,
        "FINSENTRY_CLASSIFIER_METRICS_PORT": "0",
        "FINSENTRY_CLASSIFIER_REGISTER_TARGET": "false",
        **env_extra,
    }
    finsentry = Path(sys.executable).parent / "finsentry"
    return subprocess.Popen(
        [str(finsentry), "classify"],
        env=env,
        cwd=REPO,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


class ScoredReader:
    """Reads news.scored from the beginning; remembers when each id arrived."""

    def __init__(self, kafka) -> None:
        from pipeline.kafka_io import make_consumer

        self.consumer = make_consumer(kafka, None, kafka.topic_scored)
        self.consumer_topic = kafka.topic_scored
        self.arrived: dict[str, float] = {}
        self.fetched: dict[str, float] = {}

    def wait_for_offsets(self, total: int, timeout: float, interval: float = 0.05) -> float | None:
        """When the end offsets of news.scored first summed to ``total`` (or None)."""
        from kafka.structs import TopicPartition

        topic = self.consumer_topic
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = self.consumer.end_offsets(partitions)
            if sum(ends.values()) >= total:
                return time.time()
            time.sleep(interval)
        return None

    def read_until(self, ids: set[str], timeout: float) -> bool:
        from pipeline.messages import decode_scored

        deadline = time.monotonic() + timeout
        while True:
            for records in self.consumer.poll(timeout_ms=200 if timeout else 0).values():
                now = time.time()
                for record in records:
                    article = decode_scored(record.value)
                    self.arrived.setdefault(article.id, now)
                    self.fetched.setdefault(article.id, article.fetched_at.timestamp())
            if ids <= self.arrived.keys() or time.monotonic() >= deadline:
                return ids <= self.arrived.keys()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--n", type=int, default=None, help="records for max throughput")
    parser.add_argument("--latency-seconds", type=float, default=None)
    parser.add_argument("--registry", type=Path, default=None)
    parser.add_argument("--precision", default=None, help="FINSENTRY_CLASSIFIER_PRECISION")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    import numpy as np

    from pipeline.kafka_io import delete_topics, ensure_topics, make_producer
    from pipeline.settings import ClassifierSettings, KafkaSettings, ModelSettings

    n = args.n or (400 if args.quick else 8000)
    latency_seconds = args.latency_seconds or (8.0 if args.quick else 20.0)
    texts = load_headlines()
    texts = (texts * (n // len(texts) + 1))[:n]
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        topic_raw=f"bench.{run}.news.raw",
        topic_scored=f"bench.{run}.news.scored",
        topic_dlq=f"bench.{run}.news.dlq",
        topic_windows=f"bench.{run}.windows",
    )
    ensure_topics(kafka, [kafka.topic_raw, kafka.topic_scored, kafka.topic_dlq])
    env_extra = {}
    if args.registry:
        env_extra["FINSENTRY_MODEL_REGISTRY_DIR"] = str(args.registry)
    if args.precision:
        env_extra["FINSENTRY_CLASSIFIER_PRECISION"] = args.precision
    service_settings = ClassifierSettings(
        **({"precision": args.precision} if args.precision else {})
    )
    log_path = Path(tempfile.gettempdir()) / f"finsentry-bench-service-{run}.log"
    # Engine alone, same records, same micro-batch size, in this process, measured
    # before the service starts and again after it stopped (best of the two: the
    # cores are shared, and the service must not be compared with a disturbed run).
    import torch

    from models.inference import engine_from_registry
    from models.registry import Registry
    from pipeline.classify.runner import engine_options

    threads_at_start = torch.get_num_threads()
    model_settings = ModelSettings(**({"registry_dir": args.registry} if args.registry else {}))
    registry = Registry.from_settings(model_settings)
    engine = engine_from_registry(
        registry, options=engine_options(service_settings, model_settings)
    )
    engine.predict(texts[:128])

    def engine_alone() -> float:
        started = time.perf_counter()
        for i in range(0, n, service_settings.batch_size):
            engine.predict(texts[i : i + service_settings.batch_size])
        return n / (time.perf_counter() - started)

    engine_before = engine_alone()
    log.info("engine alone: %.0f items/s", engine_before)
    process = start_service(kafka, f"bench-{run}", env_extra, log_path)
    producer = make_producer(kafka, linger_ms=5)
    reader = ScoredReader(kafka)
    report: dict = {}
    try:
        # Warm-up: the service is up and has scored one record.
        key, value = raw_record(-1, "Warm-up: stocks open higher", time.time())
        producer.send(kafka.topic_raw, key=key, value=value)
        producer.flush()
        if not reader.read_until({"bench--1"}, 180):
            raise SystemExit(f"service did not score the warm-up record; see {log_path}")
        log.info("service warm; max throughput over %d records", n)

        started = time.time()
        for i, text in enumerate(texts):
            key, value = raw_record(i, text, time.time())
            producer.send(kafka.topic_raw, key=key, value=value)
        producer.flush()
        produced = time.time()
        ids = {f"bench-{i}" for i in range(n)}
        # n records plus the warm-up one; the service is not killed here, so no duplicates.
        last = reader.wait_for_offsets(n + 1, 600)
        if last is None or not reader.read_until(ids, 60):
            raise SystemExit(f"only {len(ids & reader.arrived.keys())}/{n} scored; see {log_path}")
        service_ips = n / (last - started)
        log.info("service: %.0f items/s (produce took %.2fs)", service_ips, produced - started)

        rate = service_ips / 2
        log.info("latency at half load: %.0f records/s for %.0fs", rate, latency_seconds)
        count = int(rate * latency_seconds)
        base = n + 1000
        latency_ids = {f"bench-{base + j}" for j in range(count)}
        # Read on a thread while producing, so arrival times are taken as records come.
        reading = threading.Thread(
            target=reader.read_until, args=(latency_ids, latency_seconds + 120)
        )
        reading.start()
        t0 = time.time()
        for j in range(count):
            pause = t0 + j / rate - time.time()
            if pause > 0:
                time.sleep(pause)
            key, value = raw_record(base + j, texts[j % len(texts)], time.time())
            producer.send(kafka.topic_raw, key=key, value=value)  # linger 5 ms, then sent
        producer.flush()
        reading.join()
        latencies = np.array(
            [reader.arrived[i] - reader.fetched[i] for i in latency_ids if i in reader.arrived]
        )
        report.update(
            {
                "service_items_per_s": round(service_ips, 1),
                "half_load_rate_per_s": round(rate, 1),
                "half_load_records": count,
                "half_load_scored": int(len(latencies)),
                "latency_p50_seconds": round(float(np.percentile(latencies, 50)), 4),
                "latency_p99_seconds": round(float(np.percentile(latencies, 99)), 4),
            }
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        producer.close()
        reader.consumer.close()
        delete_topics(kafka, [kafka.topic_raw, kafka.topic_scored, kafka.topic_dlq])

    engine_after = engine_alone()
    engine_ips = max(engine_before, engine_after)
    report.update(
        {
            "benchmark": "service",
            "engine_items_per_s_before_after": [round(engine_before, 1), round(engine_after, 1)],
            "quick": args.quick,
            "records": n,
            "model_version": engine.version,
            "engine_mode": engine.mode,
            "engine_items_per_s": round(engine_ips, 1),
            "service_vs_engine": round(report["service_items_per_s"] / engine_ips, 3),
            "batch_size": service_settings.batch_size,
            "max_wait_ms": service_settings.max_wait_ms,
            "hardware": {**hardware(), "torch_threads_at_start": threads_at_start},
            "code_version": code_version(),
            "note": "service, broker, producer and reader share the 2 cores; so do other users",
        }
    )
    log_path.unlink(missing_ok=True)
    write_result(report, "service", args.quick, args.out, sort_keys=True, one_line=args.json)


if __name__ == "__main__":
    main()
