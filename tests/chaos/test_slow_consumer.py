"""Slow consumer (issue 10): the classifier falls behind, its lag alert fires, nothing
is dropped; once it catches up the alert resolves.

The classifier is starved of CPU the way an overloaded host starves it: a duty
cycle of SIGSTOP and SIGCONT to its process group (runs 10% of the time, in slices of 100 ms). Its
metrics endpoint still answers between stops (a scrape waits under a second),
so the lag gauge keeps flowing and ClassifierDown stays quiet. The replay
produces faster than the starved classifier scores, so ``ConsumerLagGrowing``
(deploy/prometheus/rules/pipeline.yml: lag > 1000 and growing over [2m], for 1m)
goes pending, then firing, and reaches Alertmanager. Then the throttle lifts,
the classifier catches up while the replay goes on, the alert resolves, the
replay stops, and every id that reached ``news.raw`` must be in ``news.scored``
or ``news.dlq``.

Runs only the classifier (no Flink job, exporter or notifier): the rule reads the
classifier's own gauge. The rule sums every classifier Prometheus scrapes, so the
test first waits until no ``ConsumerLagGrowing`` is active (tests run one at a time).
About four minutes; ``FINSENTRY_SLOW_CONSUMER_RATE`` sets the replay rate.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pipeline.demo.observe import alertmanager_alerts, prometheus_query
from tests.chaos.harness import ChaosPipeline, new_run, wait_until
from tests.chaos.stream import write_calm_stream

LAG_ALERT = "ConsumerLagGrowing"
#: Articles per second into news.raw: above the starved classifier, below the free one.
RATE = float(os.environ.get("FINSENTRY_SLOW_CONSUMER_RATE", "80"))
#: Enough rows for ten minutes of replay; the test stops the replay once the alert resolved.
ARTICLES = int(RATE * 600)
RUN_SECONDS, STOPPED_SECONDS = 0.1, 0.9
#: Small batches: a starved classifier still finishes one (and updates its lag gauge)
#: within a run slice, and its metrics thread answers every scrape.
BATCH_SIZE = 8
LAG_THRESHOLD = 1000

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class CpuStarvation(threading.Thread):
    """SIGSTOP/SIGCONT duty cycle on a process group; :meth:`lift` always leaves it running."""

    def __init__(self, pid: int, run_seconds: float, stopped_seconds: float) -> None:
        super().__init__(daemon=True, name="cpu-starvation")
        self.pid, self.run_seconds, self.stopped_seconds = pid, run_seconds, stopped_seconds
        self._lifted = threading.Event()

    def run(self) -> None:
        while not self._lifted.is_set():
            os.killpg(self.pid, signal.SIGSTOP)
            self._lifted.wait(self.stopped_seconds)
            os.killpg(self.pid, signal.SIGCONT)
            self._lifted.wait(self.run_seconds)

    def lift(self) -> None:
        self._lifted.set()
        self.join(timeout=5)
        os.killpg(self.pid, signal.SIGCONT)


def lag_alert_states(prometheus_url: str) -> set[str]:
    """Alert states (pending, firing) of ConsumerLagGrowing in Prometheus now."""
    series = prometheus_query(prometheus_url, f'ALERTS{{alertname="{LAG_ALERT}"}}')
    return {s["metric"]["alertstate"] for s in series}


def total_lag(prometheus_url: str) -> float | None:
    series = prometheus_query(prometheus_url, "sum(finsentry_classifier_consumer_lag_records)")
    return float(series[0]["value"][1]) if series else None


def test_lagging_classifier_fires_the_lag_alert_loses_nothing_and_resolves(stack, unique):
    prometheus, alertmanager = stack.settings.prometheus_url, stack.settings.alertmanager_url
    wait_until(lambda: not lag_alert_states(prometheus), 180, f"an earlier {LAG_ALERT} to clear")

    run_id, run_dir = new_run(stack, "slow", unique)
    stream = run_dir / "stream.jsonl"
    write_calm_stream(stream, run_id, ARTICLES)
    pipe = ChaosPipeline(stack, run_id, run_dir)
    classify = pipe.processes["classify"]
    timeline: dict[str, float] = {}
    starvation = None
    try:
        # The default session timeout (45 s): the chaos runs' 6 s (for quick recovery after a
        # SIGKILL) is shorter than a starved heartbeat thread needs, and a member that drops
        # out of its group stops reporting lag at all (docs/reliability.md).
        slow = {"FINSENTRY_CLASSIFIER_SESSION_TIMEOUT_MS": "45000",
                "FINSENTRY_CLASSIFIER_BATCH_SIZE": str(BATCH_SIZE)}
        classify.start(pipe.command("classify"), env={**pipe.env(), **slow})
        pipe.wait_ready(["classify"])
        pipe.start_replay(stream, RATE)
        began = time.monotonic()
        starvation = CpuStarvation(classify.pid(), RUN_SECONDS, STOPPED_SECONDS)
        starvation.start()

        def seen(state: str) -> bool:
            assert classify.is_running(), classify.log_tail(40)
            assert pipe.replay.is_running(), pipe.replay.log_tail(40)
            if state in lag_alert_states(prometheus):
                timeline.setdefault(state, round(time.monotonic() - began, 1))
                return True
            return False

        wait_until(lambda: (total_lag(prometheus) or 0) > LAG_THRESHOLD, 150,
                   f"the starved classifier to fall {LAG_THRESHOLD} records behind "
                   f"(it keeps up with {RATE:g}/s: raise FINSENTRY_SLOW_CONSUMER_RATE)")
        timeline["lag_over_threshold"] = round(time.monotonic() - began, 1)
        wait_until(lambda: seen("pending") or seen("firing"), 120, f"{LAG_ALERT} pending")
        wait_until(lambda: seen("firing"), 180, f"{LAG_ALERT} firing")
        wait_until(lambda: bool(alertmanager_alerts(alertmanager, alertname=LAG_ALERT)), 60,
                   f"{LAG_ALERT} in Alertmanager")
        timeline["in_alertmanager"] = round(time.monotonic() - began, 1)
        lag_at_peak = total_lag(prometheus)

        starvation.lift()
        timeline["throttle_lifted"] = round(time.monotonic() - began, 1)
        wait_until(lambda: not lag_alert_states(prometheus) and pipe.replay.is_running(), 240,
                   f"{LAG_ALERT} to resolve while the replay goes on")
        timeline["resolved"] = round(time.monotonic() - began, 1)
        pipe.replay.stop(timeout_seconds=30)

        raw_ids = drain_raw_ids(pipe)
        wait_until(lambda: raw_ids <= handled_ids(pipe), 300, "every id in news.raw to be handled")
    finally:
        if starvation is not None:
            starvation.lift()
        pipe.replay.stop(timeout_seconds=10)
        classify.stop(timeout_seconds=30)
        pipe.progress.close()
    print(f"slow consumer: {len(raw_ids)} articles at {RATE:g}/s, peak lag {lag_at_peak}, "
          f"timeline (s after the replay began): {timeline}")
    pipe.delete_topics()

    scored = pipe.progress.readers["scored"].records
    dead = pipe.progress.readers["dlq"].records
    assert raw_ids, "nothing was replayed"
    assert raw_ids <= {a.id for a in scored} | {d.key for d in dead}
    assert all(d.reason and d.error for d in dead)
    assert timeline["firing"] <= timeline["throttle_lifted"] < timeline["resolved"]


def drain_raw_ids(pipe: ChaosPipeline) -> set[str]:
    reader = pipe.progress.readers["raw"]
    reader.drain(idle_ms=2000)
    return {a.id for a in reader.records}


def handled_ids(pipe: ChaosPipeline) -> set[str]:
    pipe.progress.poll()
    scored = {a.id for a in pipe.progress.readers["scored"].records}
    return scored | {d.key for d in pipe.progress.readers["dlq"].records}
