"""Classifier throughput: a plain transformers pipeline vs the finsentry engine, one run.

    python bench/classifier.py                 # 3,717 held-out headlines, every mode
    python bench/classifier.py --quick --json  # 400 headlines, under a minute

The model is the registry's current entry (``FINSENTRY_MODEL_REGISTRY_DIR`` or
``--registry``). Baseline (a) is what a user would write:
``transformers.pipeline("text-classification")`` with default settings (one
text per forward pass, fp32) on the same network, i.e. the merged encoder plus
the sentiment head behind a ``BertPreTrainedModel`` wrapper, since the
pipeline knows nothing of a second head. (b) is ``models.inference`` in every
mode this machine has: CPU fp32 / bf16 (native only) / int8 / openvino /
openvino-int8 (``second_look_share``: the texts it scored again in float), CUDA
bf16 / fp16,
each serving the entry as the service does: where the entry has a TF-IDF model
(models/lexical.py) it is mixed in, and its cost alone is timed too
(``lexical_items_per_s``; the pipeline baseline runs the encoder only).
Agreement is the share of identical sentiment and topic labels versus the
engine in fp32; the pipeline itself is checked against fp32 too (same network,
so it should be 100%). Where CUDA is present the pipeline also runs with
``device=0`` (``baseline_cuda_items_per_s``), the CUDA modes are timed on the
headlines repeated 8 times, and the encoder alone is timed per batch size
(``cuda_encoder_only``). Prints one JSON object; writes bench/results/.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import os
import platform
import queue
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.classifier")

CUDA_TEXT_COPIES = 8
CUDA_SWEEP_BATCH_SIZES = (256, 512, 1024, 2048)


def load_headlines(n: int | None = None) -> list[str]:
    """Held-out headlines (models/data/heldout_*.csv), deduplicated; the shared train CSVs else."""
    candidates = sorted((REPO / "models" / "data").glob("heldout_*.csv"))
    if not candidates:
        candidates = sorted((REPO.parent / "shared" / "data").glob("*.csv"))
    seen: set[str] = set()
    texts: list[str] = []
    for path in candidates:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                text = row["text"].strip()
                if text and text.lower() not in seen:
                    seen.add(text.lower())
                    texts.append(text)
    # Interleave the files' rows deterministically so any prefix mixes both tasks.
    texts.sort(key=lambda t: hash_text(t))
    return texts[:n] if n else texts


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def hardware() -> dict:
    import torch

    from models.inference import cpu_flags

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": sorted(
            cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
        ),
        "torch": torch.__version__,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hf_pipeline(model, tokenizer, **options):
    """``pipeline("text-classification", **options)`` over the merged encoder + sentiment head."""
    from transformers import pipeline
    from transformers.modeling_outputs import SequenceClassifierOutput
    from transformers.models.bert.modeling_bert import BertPreTrainedModel

    from models.labels import SENTIMENT_NAMES
    from models.model import mean_pool

    class SentimentOnly(BertPreTrainedModel):
        def __init__(self, config, encoder, head):
            super().__init__(config)
            self.encoder = encoder
            self.head = head

        def forward(self, input_ids=None, attention_mask=None, **_):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            pooled = mean_pool(out.last_hidden_state, attention_mask)
            return SequenceClassifierOutput(logits=self.head(pooled))

    config = copy.deepcopy(model.encoder.config)
    config.id2label = dict(enumerate(SENTIMENT_NAMES))
    config.label2id = {name: i for i, name in enumerate(SENTIMENT_NAMES)}
    wrapped = SentimentOnly(config, model.encoder, model.sentiment_head).eval()
    from transformers.utils import logging as hf_logging

    # It logs an ERROR that the wrapper "is not supported for text-classification":
    # expected (the pipeline only needs .logits), so hidden while building it.
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity(hf_logging.CRITICAL)
    try:
        return pipeline("text-classification", model=wrapped, tokenizer=tokenizer, **options)
    finally:
        hf_logging.set_verbosity(previous)


def write_result(
    report: dict,
    name: str,
    quick: bool,
    out: Path | None,
    *,
    sort_keys: bool = False,
    one_line: bool = False,
) -> Path:
    """Write ``report`` to ``out`` or bench/results/<name>[.quick].json and print it
    (on one line with ``one_line``, for ``--json``)."""
    out = out or REPO / "bench" / "results" / (f"{name}.quick.json" if quick else f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=sort_keys) + "\n")
    print(json.dumps(report, indent=None if one_line else 2, sort_keys=sort_keys))
    return out


def engine_for(loaded, model, *, lexical: bool = True, **options):
    """An InferenceEngine serving ``model`` (a copy of ``loaded.model``, maybe altered) as
    the registry entry ``loaded`` would be served; ``options`` go to EngineOptions."""
    from models.data import normalise_text
    from models.inference import EngineOptions, InferenceEngine
    from models.labels import SENTIMENT_NAMES, TOPIC_NAMES

    return InferenceEngine(
        model,
        loaded.tokenizer,
        version=loaded.version,
        topic_names=TOPIC_NAMES,
        sentiment_names=SENTIMENT_NAMES,
        temperatures=loaded.temperatures,
        options=EngineOptions(max_tokens=loaded.max_length_tokens, **options),
        normalise=normalise_text,
        lexical=loaded.lexical if lexical else None,
    )


def cuda_encoder_sweep(loaded, texts, repeats: int) -> dict:
    """The encoder alone on CUDA bf16 (no TF-IDF part) per batch size: how fast MiniLM
    itself goes on this GPU, and where the time of one call goes."""
    import torch

    from models.data import normalise_text

    clean = [normalise_text(t) for t in texts]
    sweep = {}
    for batch_size in CUDA_SWEEP_BATCH_SIZES:
        engine = engine_for(
            loaded, copy.deepcopy(loaded.model), lexical=False, device="cuda",
            precision="bf16", batch_size=batch_size,
        )
        engine.probabilities(clean[:4096])  # warm-up
        best = 0.0
        for _ in range(repeats):
            torch.cuda.synchronize()
            started = time.perf_counter()
            engine.probabilities(clean)
            best = max(best, len(clean) / (time.perf_counter() - started))
        sweep[str(batch_size)] = round(best, 1)
        log.info("cuda/bf16 encoder alone, batch %d: %.0f items/s", batch_size, best)
    started = time.perf_counter()  # the engine's tokenizer: part of the CPU's share
    engine.token_ids(clean)
    sweep["engine_tokenize_items_per_s"] = round(len(clean) / (time.perf_counter() - started), 1)
    return sweep


def _replica(registry_dir, device, texts, barrier, results) -> None:
    """One replica in its own process (spawned): load the current entry as the service
    does, warm up, wait for the others, score ``texts`` twice; report both spans."""
    from models.inference import EngineOptions, engine_from_registry
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    settings = ModelSettings(**({"registry_dir": registry_dir} if registry_dir else {}))
    engine = engine_from_registry(
        Registry.from_settings(settings), options=EngineOptions(device=device, batch_size=512)
    )
    engine.probabilities(texts[:4096])
    spans = []
    for _ in range(2):
        barrier.wait()
        started = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
        engine.probabilities(texts)
        spans.append((started, time.perf_counter()))
    results.put(spans)


def replicas_throughput(registry_dir, device: str, texts: list[str], counts) -> dict:
    """Items/s of ``k`` engines in ``k`` processes sharing this machine's GPU, each
    serving the entry as the service does (its own TF-IDF part): the classifier
    service run as ``k`` replicas of one consumer group, without the broker."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    out = {}
    for k in counts:
        barrier, results = context.Barrier(k), context.Queue()
        workers = [
            context.Process(target=_replica, args=(registry_dir, device, texts, barrier, results))
            for _ in range(k)
        ]
        for worker in workers:
            worker.start()
        spans = []
        while len(spans) < k:
            try:
                spans.append(results.get(timeout=5))
            except queue.Empty:
                failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if failed:
                    for worker in workers:
                        worker.kill()
                    raise RuntimeError(f"a replica process failed (exit codes {failed})") from None
        for worker in workers:
            worker.join()
        best = max(
            k * len(texts) / (max(s[r][1] for s in spans) - min(s[r][0] for s in spans))
            for r in range(2)
        )
        out[str(k)] = round(best, 1)
        log.info("%d replicas on %s: %.0f items/s together", k, device, best)
    return out


def timed(fn, texts) -> tuple[float, float, object]:
    """(items per wall second, items per CPU second of this process, result)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    result = fn(texts)
    wall = time.perf_counter() - started
    return len(texts) / wall, len(texts) / (time.process_time() - started_cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="400 headlines (150 for the slow baseline), one repeat"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--n", type=int, default=None, help="headlines (default: all, 400 quick)")
    parser.add_argument(
        "--baseline-n",
        type=int,
        default=None,
        help="headlines for the slow baseline (default: same as --n)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per mode (best)")
    parser.add_argument("--registry", type=Path, default=None, help="registry dir")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="engine sequences per pass (default: the engine's, 32 CPU / 512 CUDA)",
    )
    parser.add_argument("--out", type=Path, default=None, help="result file")
    parser.add_argument(
        "--replicas",
        default="",
        help="CUDA only: comma-separated replica counts (e.g. 1,4,8); each runs that many "
        "engines in their own processes on the one GPU, as service replicas would",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    import numpy as np
    import torch

    from models.data import normalise_text
    from models.inference import (
        CUDA_PRECISIONS,
        cpu_has_native_bf16,
    )
    from models.labels import SENTIMENT_NAMES, TOPIC_NAMES
    from models.loading import load_entry
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    settings = ModelSettings(**({"registry_dir": args.registry} if args.registry else {}))
    registry = Registry.from_settings(settings)
    entry = registry.current()
    loaded = load_entry(entry, "cpu", base_model_dir=registry.base_model_dir)
    n = args.n or (400 if args.quick else None)
    texts = load_headlines(n)
    # The engine normalises like training did; give the pipeline the same input.
    clean = [normalise_text(t) for t in texts]
    # The pipeline is timed per item, so a prefix of the same headlines gives its
    # rate without spending most of the run on the slowest contender.
    baseline_n = args.baseline_n or (150 if args.quick else 1000)
    baseline_texts = clean[:baseline_n] if baseline_n else clean
    repeats = args.repeats or (1 if args.quick else 3)
    log.info(
        "model %s, %d headlines, %d torch threads, load %.1f",
        entry.version,
        len(texts),
        torch.get_num_threads(),
        os.getloadavg()[0],
    )

    pipe = hf_pipeline(copy.deepcopy(loaded.model), loaded.tokenizer)
    pipe(baseline_texts[:20])
    baseline_ips, baseline_cpu_ips, baseline_out = timed(pipe, baseline_texts)
    # The same pipeline on one thread: on shared cores torch's intra-op threads
    # wait on each other, so this is the fairer figure when the machine is busy.
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one_thread = baseline_texts[: max(50, len(baseline_texts) // 3)]
    baseline_1t_ips, _, _ = timed(pipe, one_thread)
    torch.set_num_threads(default_threads)
    log.info("hf pipeline: %.0f items/s (%.0f on one thread)", baseline_ips, baseline_1t_ips)
    baseline_cuda_ips = None
    if torch.cuda.is_available():
        # What a user with a GPU writes: the same pipeline with device=0 (fp32, one text
        # per forward pass).
        pipe_cuda = hf_pipeline(copy.deepcopy(loaded.model), loaded.tokenizer, device=0)
        pipe_cuda(baseline_texts[:20])
        baseline_cuda_ips, _, _ = timed(pipe_cuda, baseline_texts)
        del pipe_cuda
        log.info("hf pipeline on CUDA: %.0f items/s", baseline_cuda_ips)

    modes = [("cpu", "fp32"), ("cpu", "int8"), ("cpu", "openvino"), ("cpu", "openvino-int8")]
    if cpu_has_native_bf16():
        modes.insert(1, ("cpu", "bf16"))
    if torch.cuda.is_available():
        modes += [("cuda", p) for p in CUDA_PRECISIONS]
    engines = {}
    ready_s: dict[str, float] = {}
    for device, precision in modes:
        batch = args.batch_size or (None if device == "cpu" else 512)
        started = time.perf_counter()
        engines[f"{device}/{precision}"] = engine_for(
            loaded,
            copy.deepcopy(loaded.model),
            device=device,
            precision=precision,
            batch_size=batch,
            num_threads=args.threads,
        )
        ready_s[f"{device}/{precision}"] = time.perf_counter() - started
    for engine in engines.values():
        engine.predict(texts[:128])  # warm-up (allocator, oneDNN primitives, CUDA context)
    # Round robin, best of ``repeats`` per mode: a burst of load from another
    # process then hits one repeat of every mode rather than all repeats of one.
    wall: dict[str, float] = dict.fromkeys(engines, 0.0)
    cpu: dict[str, float] = dict.fromkeys(engines, 0.0)
    outputs: dict[str, tuple] = {}
    # A GPU scores the headlines in a fraction of a second: it is timed on them repeated
    # CUDA_TEXT_COPIES times (labels are compared on the first copy).
    cuda_texts = texts * CUDA_TEXT_COPIES
    for _ in range(repeats):
        for name, engine in engines.items():
            batch = cuda_texts if name.startswith("cuda/") else texts
            started, started_cpu = time.perf_counter(), time.process_time()
            topic, sentiment = engine.probabilities(batch)
            wall[name] = max(wall[name], len(batch) / (time.perf_counter() - started))
            cpu[name] = max(cpu[name], len(batch) / (time.process_time() - started_cpu))
            outputs[name] = (topic[: len(texts)], sentiment[: len(texts)])
    cuda_encoder = cuda_encoder_sweep(loaded, cuda_texts, repeats) if "cuda/bf16" in engines else None
    counts = [int(k) for k in args.replicas.split(",") if k.strip()]
    replicas = (
        replicas_throughput(args.registry, "cuda", cuda_texts, counts)
        if counts and "cuda/bf16" in engines
        else None
    )
    lexical_ips = None
    if loaded.lexical is not None:
        # What the mixture adds per call: both heads' TF-IDF probabilities on the same
        # texts, mixed into (here uniform) encoder probabilities as the engine does.
        encoder = {
            task: np.full((len(clean), n), 1.0 / n, np.float32)
            for task, n in (("topic", len(TOPIC_NAMES)), ("sentiment", len(SENTIMENT_NAMES)))
        }
        lexical_ips = 0.0
        for _ in range(repeats):
            started = time.perf_counter()
            loaded.lexical.mix_all(encoder, clean)
            lexical_ips = max(lexical_ips, len(clean) / (time.perf_counter() - started))
        log.info("lexical (TF-IDF) alone: %.0f items/s", lexical_ips)
    results: dict[str, dict] = {}
    reference = None
    for name, (topic, sentiment) in outputs.items():
        labels = (topic.argmax(1), sentiment.argmax(1))
        if reference is None:
            reference = labels  # cpu/fp32 comes first
        results[name] = {
            "items_per_s": round(wall[name], 1),
            "items_per_cpu_s": round(cpu[name], 1),
            "sentiment_agreement_with_fp32": round(float(np.mean(labels[1] == reference[1])), 4),
            "topic_agreement_with_fp32": round(float(np.mean(labels[0] == reference[0])), 4),
            "ready_s": round(ready_s[name], 1),
        }
        if engines[name].rows_scored:
            results[name]["second_look_share"] = round(
                engines[name].rows_second_look / engines[name].rows_scored, 4
            )
        log.info("%s: %s", name, results[name])

    baseline_labels = np.array([SENTIMENT_NAMES.index(o["label"]) for o in baseline_out])
    baseline_agreement = float(np.mean(baseline_labels == reference[1][: len(baseline_labels)]))

    def agreement(name: str) -> float:
        r = results[name]
        return min(r["sentiment_agreement_with_fp32"], r["topic_agreement_with_fp32"])

    eligible = [m for m in results if agreement(m) >= 0.99] or ["cpu/fp32"]
    best = max(eligible, key=lambda m: results[m]["items_per_s"])
    cpu_best = max(
        (m for m in eligible if m.startswith("cpu/")), key=lambda m: results[m]["items_per_s"]
    )
    report = {
        "benchmark": "classifier",
        "quick": args.quick,
        "model_version": entry.version,
        "base_model": entry.base_model_name,
        "headlines": len(texts),
        "baseline_headlines": len(baseline_texts),
        "max_tokens": loaded.max_length_tokens,
        "engine_batch_size": args.batch_size or "default (32 CPU, 512 CUDA)",
        "baseline": "transformers.pipeline('text-classification'), default settings, fp32",
        "baseline_items_per_s": round(baseline_ips, 1),
        "baseline_items_per_cpu_s": round(baseline_cpu_ips, 1),
        "baseline_1_thread_items_per_s": round(baseline_1t_ips, 1),
        "speedup_vs_hf_pipeline_1_thread": round(results[best]["items_per_s"] / baseline_1t_ips, 2),
        "baseline_sentiment_agreement_with_fp32": round(baseline_agreement, 4),
        "modes": results,
        "lexical_mixed": loaded.lexical is not None,
        "lexical_items_per_s": None if lexical_ips is None else round(lexical_ips, 1),
        "best_mode": best,
        "best_items_per_s": results[best]["items_per_s"],
        "speedup_vs_hf_pipeline": round(results[best]["items_per_s"] / baseline_ips, 2),
        "label_agreement": agreement(best),
        "cpu_best_mode": cpu_best,
        "cpu_speedup_vs_hf_pipeline": round(results[cpu_best]["items_per_s"] / baseline_ips, 2),
        "cpu_time_speedup_vs_hf_pipeline": round(
            results[cpu_best]["items_per_cpu_s"] / baseline_cpu_ips, 2
        ),
        "baseline_cuda_items_per_s": None
        if baseline_cuda_ips is None
        else round(baseline_cuda_ips, 1),
        "speedup_vs_hf_pipeline_cuda": None
        if baseline_cuda_ips is None
        else round(results[best]["items_per_s"] / baseline_cuda_ips, 2),
        "cuda_timed_items": len(cuda_texts) if cuda_encoder else None,
        "cuda_encoder_only": cuda_encoder,
        "cuda_replicas_items_per_s": replicas,
        "hardware": {**hardware(), "torch_threads": threads},
        "engine_cpu_parallelism": "batches: one torch thread per core, sub-batches in parallel",
        "code_version": code_version(),
        "note": (
            "Cores shared with other processes (load_average_1m). items_per_s is wall "
            "clock, the headline; items_per_cpu_s is this process's CPU time, less "
            "sensitive to other load (torch threads spin while waiting, so it is not "
            "immune either)."
        ),
    }
    write_result(report, "classifier", args.quick, args.out, sort_keys=True, one_line=args.json)


if __name__ == "__main__":
    main()
