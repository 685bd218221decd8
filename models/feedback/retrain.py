"""``finsentry retrain``: labels in, candidate trained, gated, recorded, maybe promoted.

One run:

1. snapshot the label store (every label up to the current highest id, resolved
   by the conflict rule) and hash it;
2. rebuild the parent's original splits (same data, fractions and seed as the
   current entry) and assemble the retrain data (:mod:`models.feedback.dataset`);
3. fine-tune a candidate from the current entry (or a fresh adapter on the
   base, ``init_from="base"``) on new labels (weighted) plus replayed originals;
4. evaluate candidate and current model on (a) the original held-out split and
   (b) the held-out new labels, with the same code;
5. gate (:func:`gate`); add the candidate to the registry with its lineage
   (parent version, label snapshot hash, both models' scores, the decision),
   promoted or not; promote atomically when it passed;
6. record the run in the label store (outcome, max label id: the next retrain's
   "new labels" start after it).

The running classifier hot-reloads from the registry's ``current`` pointer.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.feedback.store import LabelStore, snapshot_hash

log = logging.getLogger(__name__)

SPLITS = ("original_heldout", "new_labels")
#: Metrics scored on both splits for every candidate; the gate uses the configured ones.
GATE_METRICS = ("accuracy", "macro_f1", "brier")
#: Metrics where lower is better (the gate flips their sign: a gain is a decrease).
LOWER_IS_BETTER = frozenset({"brier"})


def improvement(metric: str, current: float, candidate: float) -> float:
    """How much better ``candidate`` is than ``current`` in ``metric`` (negative: worse)."""
    return current - candidate if metric in LOWER_IS_BETTER else candidate - current


class RetrainError(RuntimeError):
    """A retrain that cannot run or failed; the message names the stage and the cause."""


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    new_label_gain: float | None = None
    original_drop: dict[str, float] = field(default_factory=dict)


def gate(
    current: dict[str, dict[str, dict]], candidate: dict[str, dict[str, dict]], settings
) -> GateDecision:
    """The promotion rule, on scores ``{split: {task: {"n", metric...}}}``.

    (b) the mean over tasks, weighted by held-out label count, of candidate minus
    current in ``new_label_metric`` on the held-out new labels must exceed
    ``min_new_label_gain``; and (a) on no task may the candidate fall more than
    ``max_original_drop`` below the current model in ``original_metric`` on the
    original held-out split.
    """
    metric = settings.new_label_metric
    reasons = []
    weighted, total = 0.0, 0
    for task, cand in candidate["new_labels"].items():
        n = cand.get("n", 0)
        if n:
            weighted += n * improvement(metric, current["new_labels"][task][metric], cand[metric])
            total += n
    if total == 0:
        return GateDecision(False, ["no held-out new labels to judge the candidate on"])
    gain = weighted / total
    ok_b = gain > settings.min_new_label_gain
    if not ok_b:
        reasons.append(
            f"(b) held-out new labels: {metric} improvement {gain:+.4f} is not above "
            f"{settings.min_new_label_gain:+.4f}"
        )
    metric = settings.original_metric
    drops = {}
    for task, cand in candidate["original_heldout"].items():
        if not cand.get("n"):
            continue
        drops[task] = -improvement(metric, current["original_heldout"][task][metric], cand[metric])
        if drops[task] > settings.max_original_drop:
            reasons.append(
                f"(a) original held-out {task}: {metric} worse by {drops[task]:.4f}, "
                f"tolerance {settings.max_original_drop:.4f}"
            )
    passed = ok_b and not reasons
    return GateDecision(
        passed,
        reasons or [f"(b) {settings.new_label_metric} improvement {gain:+.4f}; (a) within tolerance"],
        round(gain, 6),
        {k: round(v, 6) for k, v in drops.items()},
    )


def _lock_path(registry_root: Path) -> Path:
    """The lock file of ``registry_root``'s retrains, inside the registry it guards.

    One file per registry and gone with it (a lock kept in the run directory was
    never removed, one per registry a test ever made).
    """
    return Path(registry_root) / ".retrain.lock"


@contextlib.contextmanager
def _exclusive(path: Path):
    """One retrain per registry at a time (a second one fails fast, it does not queue)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainError(f"retrain: another retrain holds {path}; try again later") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Retrainer:
    """Runs retrains against one label store, one registry and one set of settings."""

    def __init__(
        self, store: LabelStore, model_settings, settings, *, data_dir: Path | None = None
    ) -> None:
        self.store = store
        self.model_settings = model_settings
        self.settings = settings
        self.data_dir = data_dir

    def registry(self):
        from models.registry import Registry

        return Registry.from_settings(self.model_settings)

    def pending(self) -> int:
        return self.store.labels_since_last_retrain()

    def run(self, *, force: bool = False) -> dict[str, Any]:
        """One retrain; returns its report (``outcome``: promoted, rejected or skipped)."""
        from models.registry import RegistryError

        if not force and self.pending() == 0:
            return {"outcome": "skipped", "summary": "no new labels since the last retrain"}
        registry = self.registry()
        try:
            parent = registry.current()
        except RegistryError as exc:
            raise RetrainError(f"retrain: no current model to start from: {exc}") from exc
        max_id = self.store.max_label_id()
        labels = self.store.resolved(max_id=max_id)
        if len(labels) < self.settings.min_new_labels:
            return {
                "outcome": "skipped",
                "summary": f"{len(labels)} labels, need at least {self.settings.min_new_labels}",
            }
        with _exclusive(_lock_path(registry.root)):
            run_id = self.store.start_retrain(parent_version=parent.version, max_label_id=max_id)
            snapshot = "sha256:" + snapshot_hash(labels)
            try:
                report = self._run(registry, parent, labels, snapshot, max_id)
            except BaseException as exc:
                self.store.finish_retrain(
                    run_id,
                    outcome="failed",
                    candidate_version=None,
                    snapshot=snapshot,
                    report={"error": repr(exc)},
                )
                if isinstance(exc, RetrainError | KeyboardInterrupt):
                    raise
                raise RetrainError(f"retrain: failed: {exc}") from exc
            self.store.finish_retrain(
                run_id,
                outcome=report["outcome"],
                candidate_version=report["candidate"],
                snapshot=snapshot,
                report=report,
            )
        return report

    def _run(self, registry, parent, labels, snapshot: str, max_id: int) -> dict[str, Any]:
        import torch
        from transformers import AutoTokenizer

        from models.data import DATA_DIR, make_splits
        from models.feedback.dataset import assemble
        from models.feedback.finetune import (
            FinetuneOptions,
            finetune,
            fit_temperatures,
            model_from_base,
            model_from_entry,
        )
        from models.loading import load_lexical, resolve_device

        s = self.settings
        started = time.monotonic()
        base_dir = self.model_settings.resolved_base_model_dir()
        device = resolve_device(self.model_settings.device)
        if self.model_settings.torch_threads:
            torch.set_num_threads(self.model_settings.torch_threads)
        cfg = parent.config
        splits = make_splits(
            Path(self.data_dir or cfg.get("data_dir") or DATA_DIR),
            heldout_fraction=cfg.get("heldout_fraction", 0.15),
            validation_fraction=cfg.get("validation_fraction", 0.10),
            seed=cfg.get("seed", 13),
        )
        data = assemble(labels, splits, s)
        log.info("retrain: %s", {k: v for k, v in data.stats.items() if k != "label_counts"})
        if not data.new_heldout:
            raise RetrainError(
                f"retrain: none of the {len(labels)} labels fell in the held-out "
                "part; label more articles"
            )
        if not data.new_train:
            raise RetrainError("retrain: no new label is left to train on")
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
        max_len = parent.max_length_tokens

        parent_lexical = load_lexical(parent)
        current_model = model_from_entry(parent, base_dir).to(device).eval()
        scores_current = self._scores(
            current_model, tokenizer, data, parent.temperatures, max_len, device, parent_lexical
        )
        del current_model

        candidate = (
            model_from_entry(parent, base_dir)
            if s.init_from == "current"
            else model_from_base(parent, base_dir)
        )
        options = FinetuneOptions(
            epochs=s.epochs,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            head_learning_rate=s.head_learning_rate,
            seed=s.seed,
            max_length_tokens=max_len,
            max_train_seconds=s.max_train_seconds,
            cache_frozen_prefix=s.cache_frozen_prefix,
        )
        last_log = [time.monotonic()]

        def on_step(step: int, total: int, loss: float) -> None:
            if time.monotonic() - last_log[0] > 15 or step == total:
                last_log[0] = time.monotonic()
                log.info("retrain: step %d/%d loss %.4f", step, total, loss)

        training = finetune(
            candidate, tokenizer, data.train, options, device=device, on_step=on_step
        )
        temperatures = fit_temperatures(
            candidate, tokenizer, data.validation, max_length_tokens=max_len, device=device
        )
        lexical = None
        if parent_lexical is not None:
            # Same C and mixing weight as the parent, refitted with the new labels.
            lexical_started = time.monotonic()
            lexical = parent_lexical.refit(data.lexical_train)
            training["lexical_fit_seconds"] = round(time.monotonic() - lexical_started, 1)
        scores_candidate = self._scores(
            candidate, tokenizer, data, temperatures, max_len, device, lexical
        )
        decision = gate(scores_current, scores_candidate, s)
        outcome = "promoted" if decision.passed else "rejected"
        total_seconds = round(time.monotonic() - started, 1)
        lineage = {
            "parent": parent.version,
            "label_snapshot": snapshot,
            "max_label_id": max_id,
            "original_snapshot": splits.snapshot_hash,
            "init_from": s.init_from,
        }
        metrics = {
            "heldout": {
                t: m for t, m in scores_candidate["original_heldout"].items() if m.get("n")
            },
            "new_labels_heldout": scores_candidate["new_labels"],
            "retrain": {
                "outcome": outcome,
                "gate": {
                    "passed": decision.passed,
                    "reasons": decision.reasons,
                    "new_label_metric": s.new_label_metric,
                    "original_metric": s.original_metric,
                    "new_label_gain": decision.new_label_gain,
                    "original_drop": decision.original_drop,
                },
                "parent_scores": scores_current,
                "candidate_scores": scores_candidate,
                "training": training,
                "total_seconds": total_seconds,
                "lineage": lineage,
            },
            "train_seconds": training["train_seconds"],
            "device": device,
            "torch_threads": torch.get_num_threads(),
        }
        config = {**cfg, "retrain": {**s.model_dump(mode="json"), "parent": parent.version}}
        entry = registry.add(
            candidate,
            config=config,
            max_length_tokens=max_len,
            temperatures=temperatures,
            metrics=metrics,
            data={
                "snapshot_hash": snapshot,
                "label_counts": data.stats["label_counts"],
                "stats": {k: v for k, v in data.stats.items() if k != "label_counts"},
                "lineage": lineage,
            },
            parent=parent.version,
            base_model_dir=base_dir,
            lexical=lexical,
        )
        if decision.passed:
            registry.promote(entry.version)
        serving = scores_candidate if decision.passed else scores_current
        summary = (
            f"retrain {outcome}: candidate {entry.version} (parent {parent.version}), "
            f"{data.stats['new_train']} labels trained + {data.stats['replay']} replayed, "
            f"{data.stats['new_heldout']} held out, {training['train_seconds']:.0f}s training, "
            f"{total_seconds:.0f}s total\n"
            + "\n".join(f"  {r}" for r in decision.reasons)
            + "\n"
            + format_scores(scores_current, scores_candidate)
        )
        log.info("%s", summary)
        return {
            "outcome": outcome,
            "candidate": entry.version,
            "parent": parent.version,
            "current": registry.current_version(),
            "gate": metrics["retrain"]["gate"],
            "scores": {"current": scores_current, "candidate": scores_candidate},
            "serving_scores": serving,
            "data": data.stats,
            "training": training,
            "lineage": lineage,
            "total_seconds": total_seconds,
            "summary": summary,
        }

    def _scores(self, model, tokenizer, data, temperatures, max_len, device, lexical) -> dict:
        from models.feedback.finetune import evaluate
        from models.labels import TASKS

        out: dict[str, dict[str, dict]] = {split: {} for split in SPLITS}
        for task in TASKS:
            texts, labels = data.heldout_original(
                task, self.settings.eval_limit_per_task, self.settings.seed
            )
            out["original_heldout"][task] = evaluate(
                model,
                tokenizer,
                texts,
                labels,
                task,
                temperature=temperatures.get(task, 1.0),
                max_length_tokens=max_len,
                device=device,
                lexical=lexical,
            )
            texts, labels = data.heldout_new(task)
            out["new_labels"][task] = evaluate(
                model,
                tokenizer,
                texts,
                labels,
                task,
                temperature=temperatures.get(task, 1.0),
                max_length_tokens=max_len,
                device=device,
                lexical=lexical,
            )
        return out


def format_scores(current: dict, candidate: dict) -> str:
    """A table of both models' scores (every metric in GATE_METRICS) on every split and task."""
    lines = [
        f"  {'split':18s} {'task':10s} {'n':>5s} {'metric':9s} {'current':>8s} {'candidate':>9s}"
    ]
    for split in SPLITS:
        for task, cand in candidate[split].items():
            if cand.get("n"):
                for metric in GATE_METRICS:
                    lines.append(
                        f"  {split:18s} {task:10s} {cand['n']:5d} {metric:9s} "
                        f"{current[split][task][metric]:8.4f} {cand[metric]:9.4f}"
                    )
    return "\n".join(lines)


def metric_state(store: LabelStore) -> dict[str, Any]:
    """What LabelMetrics and RetrainMetrics show, read from the label store."""
    runs = store.retrains()
    finished = [r for r in runs if r.finished_at is not None]
    scores = {}
    for run in reversed(finished):
        serving = run.report.get("serving_scores")
        if serving:
            for split, tasks in serving.items():
                for task, values in tasks.items():
                    for name in GATE_METRICS:
                        if name in values:
                            scores[(split, task, name)] = float(values[name])
            break
    last = finished[-1] if finished else None
    return {
        "labels": store.counts_by_source_task(),
        "pending": store.labels_since_last_retrain(),
        "outcomes": {k: v for k, v in store.retrain_outcomes().items() if k != "running"},
        "scores": scores,
        "last_finished": last.finished_at.timestamp() if last else None,
        "last_duration": (last.finished_at - last.started_at).total_seconds() if last else None,
    }


def due(store: LabelStore, settings, now: datetime | None = None) -> str | None:
    """Why a retrain is due now (a readable reason), or None."""
    pending = store.labels_since_last_retrain()
    if pending == 0:
        return None
    if settings.trigger_new_labels and pending >= settings.trigger_new_labels:
        return f"{pending} new labels (trigger {settings.trigger_new_labels})"
    if settings.schedule_seconds:
        last = store.last_retrain()
        now = now or datetime.now(UTC)
        if last is None or (now - last.finished_at).total_seconds() >= settings.schedule_seconds:
            return f"schedule ({settings.schedule_seconds:.0f}s) with {pending} new labels"
    return None


def watch_loop(
    retrainer: Retrainer, stop: threading.Event | None = None, *, targets_dir: Path | None = None
) -> None:
    """Serve label/retrain metrics and retrain whenever :func:`due` says so, until stopped."""
    from pipeline.metrics.definitions import CollectorRegistry, LabelMetrics, RetrainMetrics
    from pipeline.metrics.server import serve_metrics
    from pipeline.settings import StackSettings

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    registry = CollectorRegistry()
    label_metrics, retrain_metrics = LabelMetrics(registry), RetrainMetrics(registry)
    s = retrainer.settings
    endpoint = serve_metrics(
        registry,
        "retrain",
        host=s.metrics_host,
        port=s.metrics_port,
        targets_dir=targets_dir or StackSettings().prometheus_targets_dir,
    )

    def refresh() -> None:
        state = metric_state(retrainer.store)
        label_metrics.update(state["labels"], state["pending"])
        retrain_metrics.update(
            state["outcomes"], state["scores"], state["last_finished"], state["last_duration"]
        )

    try:
        while not stop.is_set():
            refresh()
            reason = due(retrainer.store, s)
            if reason:
                log.info("retrain due: %s", reason)
                try:
                    report = retrainer.run()
                    log.info("retrain %s", report["outcome"])
                except RetrainError as exc:
                    log.error("%s", exc)
                refresh()
            stop.wait(s.poll_seconds)
    finally:
        endpoint.close()
