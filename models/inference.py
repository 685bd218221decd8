"""Batched inference for the multi-task classifier, on CPU or CUDA.

One :class:`InferenceEngine` wraps one loaded model. ``predict(texts)`` turns
texts into :class:`~pipeline.classify.engine.Prediction` objects, in order:

1. tokenise the whole call at once (the fast tokenizer's Rust core), truncating each text to
   ``max_tokens`` (``long_text="head"``: the title and the lead, which is what
   ``RawArticle.text`` puts first) or splitting it into overlapping chunks whose
   probabilities are averaged, weighted by chunk length (``long_text="chunks"``);
2. sort the sequences by length and cut them into batches of ``batch_size``,
   each padded only to its own longest sequence, so short headlines never pay
   for a long article;
3. run the forward pass under ``torch.inference_mode()`` in the chosen
   precision; softmax with the per-head temperatures (calibration) in fp32. On
   CUDA every batch is queued before the first result is read back (one
   synchronisation per call);
4. where the entry has one, mix in its TF-IDF model's probabilities
   (``models.lexical``: ``w * p_encoder + (1 - w) * p_lexical`` per task). The
   TF-IDF part runs on a thread of its own while the encoder runs;
5. ``openvino-int8`` only: texts whose served top two probabilities lie closer
   than a margin are scored again in float (``models.openvino_encoder``).

Precisions: on CUDA ``bf16`` (default), ``fp16`` or ``fp32``, inputs copied
from pinned memory without blocking. On CPU ``fp32``, ``bf16`` (only where the
CPU has ``avx512_bf16`` or AMX: elsewhere it is emulated and slower than fp32)
and ``int8`` (dynamic quantisation of the encoder's Linear layers; the small
heads stay fp32; opt-in, as it changes a few percent of labels); ``openvino``
(the graph compiled by OpenVINO, bf16 where native) and ``openvino-int8``
(OpenVINO static int8 with a float second look at close calls), both in
``models.openvino_encoder``. LoRA adapters
are merged into the base weights first, so the forward pass is a plain encoder.
Texts pass through ``normalise`` first (the service uses
``models.data.normalise_text``, exactly what training saw).

Use :func:`engine_from_registry` to serve a registry entry.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pipeline.classify.engine import Prediction

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8", "openvino", "openvino-int8"]
LongText = Literal["head", "chunks"]

#: Precisions served by OpenVINO's runtime (models.openvino_encoder), CPU only.
OPENVINO_PRECISIONS: tuple[str, ...] = ("openvino", "openvino-int8")
CPU_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8", *OPENVINO_PRECISIONS)
#: torch's own thread count before any engine changed it (one per usable core).
_DEFAULT_THREADS = torch.get_num_threads()
CUDA_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


class EngineError(RuntimeError):
    """The engine cannot be built or cannot run as configured."""


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True where bf16 matmuls run natively (AVX-512 BF16 or AMX), not emulated."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class EngineOptions:
    """How to run the model. ``auto`` picks what measured fastest (docs/benchmarks.md)."""

    #: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    precision: Precision = "auto"
    #: Sequences per forward pass (after sorting by length); None: 32 on CPU (fits its
    #: caches best, measured), 256 on CUDA.
    batch_size: int | None = None
    #: Token budget per sequence, special tokens included.
    max_tokens: int = 128
    long_text: LongText = "head"
    #: Tokens shared by consecutive chunks (``long_text="chunks"``); None: a quarter of max_tokens.
    chunk_overlap_tokens: int | None = None
    #: Chunks scored per text; the rest are counted in ``chunks_dropped``.
    max_chunks: int = 16
    #: CPU cores to use; None: torch's default (one per core).
    num_threads: int | None = None
    #: CPU only. ``batches``: each core runs its own sub-batches single-threaded
    #: (no barrier between cores per op; degrades gracefully when other processes
    #: compete for the cores); ``ops``: every op is split across the cores
    #: (torch's default intra-op parallelism). Measured in docs/benchmarks.md.
    cpu_parallelism: Literal["batches", "ops"] = "batches"

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise EngineError(f"engine: batch_size must be >= 1, got {self.batch_size}")
        if self.max_tokens < 8:
            raise EngineError(f"engine: max_tokens must be >= 8, got {self.max_tokens}")
        if (
            self.chunk_overlap_tokens is not None
            and not 0 <= self.chunk_overlap_tokens < self.max_tokens // 2
        ):
            raise EngineError(
                "engine: chunk_overlap_tokens must be in [0, max_tokens/2), "
                f"got {self.chunk_overlap_tokens}"
            )
        if self.max_chunks < 1:
            raise EngineError(f"engine: max_chunks must be >= 1, got {self.max_chunks}")
        if self.num_threads is not None and self.num_threads < 1:
            raise EngineError(f"engine: num_threads must be >= 1, got {self.num_threads}")
        if self.cpu_parallelism not in ("batches", "ops"):
            raise EngineError(
                f"engine: cpu_parallelism must be 'batches' or 'ops', got {self.cpu_parallelism!r}"
            )

    def resolve(self) -> tuple[str, str]:
        """The concrete (device, precision) these options mean on this machine."""
        device = self.device
        if device in ("", "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device != "cpu" and not device.startswith("cuda"):
            raise EngineError(f"engine: unknown device {device!r} (auto, cpu, cuda, cuda:N)")
        on_cuda = device.startswith("cuda")
        if on_cuda and not torch.cuda.is_available():
            raise EngineError(f"engine: device {device!r} requested but torch sees no CUDA device")
        precision = self.precision
        if precision == "auto":
            # Measured on the shipped MiniLM model (docs/benchmarks.md): native
            # bf16 is ~2x fp32 and agrees with it on >= 99.7% of labels; int8
            # dynamic quantisation is only ~1.3x bf16 and agrees on ~94-97%, so
            # it is opt-in. Without native bf16, fp32. On CUDA, bf16.
            if on_cuda or cpu_has_native_bf16():
                precision = "bf16"
            else:
                precision = "fp32"
        allowed = CUDA_PRECISIONS if on_cuda else CPU_PRECISIONS
        if precision not in allowed:
            raise EngineError(
                f"engine: precision {precision!r} is not available on {device} ({allowed})"
            )
        if device == "cpu" and precision == "bf16" and not cpu_has_native_bf16():
            raise EngineError(
                "engine: precision 'bf16' on this CPU would be emulated "
                "(no avx512_bf16/amx_bf16 flag); use 'int8' or 'fp32'"
            )
        return device, precision


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every PEFT adapter into its base weights (``merge_and_unload``), recursively."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return model
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    for name, child in list(model.named_children()):
        merged = merge_lora(child)
        if merged is not child:
            setattr(model, name, merged)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of the encoder's Linear layers (heads stay fp32).

    Weights per output channel (closer to fp32 than per tensor at the same
    speed), activations per tensor at run time.

    ``torch.ao.quantization.quantize_dynamic`` is deprecated in favour of
    torchao but still supported and fast in torch 2.13 (fbgemm/x86 with VNNI);
    its deprecation warnings are expected and logged once here, any other
    warning raised while quantising is passed on unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = {
            name: per_channel_dynamic_qconfig
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and "head" not in name
        }
        if not spec:
            raise EngineError("engine: int8 found no Linear layers to quantise")
        quantized = quantize_dynamic(model, qconfig_spec=spec, dtype=torch.qint8)
    expected = 0
    for warning in caught:
        text = str(warning.message)
        if "deprecated" in text and ("torch.ao.quantization" in text or "quantize_per" in text):
            expected += 1
            continue
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if expected:
        log.info(
            "int8: quantised %d Linear layers with torch.ao quantize_dynamic "
            "(%d deprecation warnings expected: torch.ao is deprecated in favour of torchao)",
            len(spec),
            expected,
        )
    return quantized


def prepare_model(
    model: nn.Module,
    device: str,
    precision: str,
    *,
    threads: int = 1,
    streams: int = 1,
    calibration_ids: Callable[[], Sequence[Sequence[int]]] | None = None,
) -> nn.Module:
    """Merge LoRA, switch to eval, and cast/quantise/move for (device, precision).

    ``threads``, ``streams`` and ``calibration_ids`` (token ids of the texts that
    calibrate int8 activations) are for the OpenVINO precisions only."""
    model = merge_lora(model).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    if device.startswith("cuda"):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return model.to(device=device, dtype=dtype)
    model = model.to("cpu")
    if precision in OPENVINO_PRECISIONS:
        from models.openvino_encoder import OpenVinoUnavailable, compile_encoder

        try:
            return compile_encoder(
                model,
                int8=precision == "openvino-int8",
                bf16=cpu_has_native_bf16(),
                threads=threads,
                streams=streams,
                calibration_ids=calibration_ids,
            )
        except OpenVinoUnavailable as exc:
            raise EngineError(f"engine: precision {precision!r}: {exc}") from exc
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        return quantize_int8(model)
    return model


class InferenceEngine:
    """Scores texts with one model; thread-compatible, not thread-safe (one caller at a time)."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        version: str,
        topic_names: Sequence[str],
        sentiment_names: Sequence[str],
        temperatures: dict[str, float] | None = None,
        options: EngineOptions | None = None,
        normalise: Callable[[str], str] | None = None,
        lexical: Any = None,
    ) -> None:
        self.options = options or EngineOptions()
        self.device, self.precision = self.options.resolve()
        self._on_cuda = self.device.startswith("cuda")
        self.batch_size = self.options.batch_size or (256 if self._on_cuda else 32)
        self._normalise = normalise
        self.lexical = lexical  # models.lexical.LexicalModel or None
        cores = self.options.num_threads or _DEFAULT_THREADS
        self.workers = 1
        if self._on_cuda:
            pass
        elif self.options.cpu_parallelism == "batches" and cores > 1:
            # One torch thread per op; parallelism comes from running sub-batches
            # on ``cores`` Python threads (torch kernels release the GIL).
            torch.set_num_threads(1)
            self.workers = cores
        elif torch.get_num_threads() != cores:
            torch.set_num_threads(cores)
        self._pool = ThreadPoolExecutor(self.workers, "engine") if self.workers > 1 else None
        self._lexical_pool = ThreadPoolExecutor(1, "engine-tfidf") if lexical is not None else None
        self._version = version
        self.topic_names = tuple(topic_names)
        self.sentiment_names = tuple(sentiment_names)
        missing = {"negative", "neutral", "positive"} - set(self.sentiment_names)
        if missing:
            raise EngineError(
                f"engine: sentiment names {self.sentiment_names} lack {sorted(missing)}"
            )
        self._neg = self.sentiment_names.index("negative")
        self._pos = self.sentiment_names.index("positive")
        temperatures = temperatures or {}
        self.topic_temperature = float(temperatures.get("topic", 1.0))
        self.sentiment_temperature = float(temperatures.get("sentiment", 1.0))
        for head, value in (
            ("topic", self.topic_temperature),
            ("sentiment", self.sentiment_temperature),
        ):
            if not value > 0:
                raise EngineError(
                    f"engine: temperature of the {head} head must be > 0, got {value}"
                )
        self.tokenizer = tokenizer
        self._encode_head = _head_encoder(tokenizer, self.options.max_tokens)
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else 0)
        started = time.perf_counter()
        self.model = prepare_model(
            model,
            self.device,
            self.precision,
            threads=cores,
            streams=self.workers,
            calibration_ids=self._calibration_ids,
        )
        self.chunks_dropped = 0
        #: openvino-int8: texts scored, and texts scored again in float (second look).
        self.rows_scored = 0
        self.rows_second_look = 0
        log.info(
            "engine ready: model %s on %s/%s, batch %d, %d worker(s), max %d tokens, "
            "long text %s (%.1fs)",
            version,
            self.device,
            self.precision,
            self.batch_size,
            self.workers,
            self.options.max_tokens,
            self.options.long_text,
            time.perf_counter() - started,
        )

    def _calibration_ids(self) -> list[list[int]]:
        """Token ids of the training texts that calibrate ``openvino-int8``."""
        from models.openvino_encoder import calibration_texts

        texts = calibration_texts()
        if self._normalise is not None:
            texts = [self._normalise(t) for t in texts]
        return self.token_ids(texts)[0]

    @property
    def version(self) -> str:
        return self._version

    @property
    def mode(self) -> str:
        """``device/precision``, e.g. ``cpu/int8``."""
        return f"{self.device}/{self.precision}"

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in the order given."""
        topic, sentiment = self.probabilities(texts)
        return self._predictions(topic, sentiment)

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (topic, sentiment) probabilities, shapes (n, 20) and (n, 3)."""
        n = len(texts)
        if n == 0:
            return np.zeros((0, len(self.topic_names)), np.float32), np.zeros((0, 3), np.float32)
        if self._normalise is not None:
            texts = [self._normalise(t) for t in texts]
        # The TF-IDF part runs on its own thread while the encoder runs. On CUDA it would
        # otherwise cap the served rate at its own; on CPU it fills the core left idle
        # while one thread finishes the last batches (+3% with openvino-int8, no change
        # with torch bf16: docs/benchmarks.md, "OpenVINO").
        lexical = None if self.lexical is None else self._lexical_pool.submit(self.lexical.scores, texts)
        topic, sentiment = self._encoder_probabilities(texts, self.model)
        scores = None if lexical is None else lexical.result()
        topic, sentiment = self._mixed(topic, sentiment, scores)
        second_look = getattr(self.model, "second_look", None)
        if second_look is not None:
            # openvino-int8: close calls of what is served are scored again in float,
            # mixed with the TF-IDF scores already computed for them.
            unsure = np.flatnonzero(
                (_top_two_gap(topic) < second_look.margin)
                | (_top_two_gap(sentiment) < second_look.margin)
            )
            self.rows_scored += n
            self.rows_second_look += len(unsure)
            if len(unsure):
                again = self._encoder_probabilities([texts[i] for i in unsure], second_look.model)
                rows = None if scores is None else {k: v[unsure] for k, v in scores.items()}
                topic[unsure], sentiment[unsure] = self._mixed(*again, rows)
        return topic, sentiment

    def _mixed(
        self, topic: np.ndarray, sentiment: np.ndarray, scores: dict[str, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encoder probabilities with the entry's TF-IDF ``scores`` mixed in (None: none)."""
        if scores is None:
            return topic, sentiment
        mixed = self.lexical.mix_scores({"topic": topic, "sentiment": sentiment}, scores)
        return mixed["topic"], mixed["sentiment"]

    def _encoder_probabilities(
        self, texts: Sequence[str], model: nn.Module
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(texts)
        ids, owners = self.token_ids(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        topic = np.empty((len(ids), len(self.topic_names)), np.float32)
        sentiment = np.empty((len(ids), len(self.sentiment_names)), np.float32)
        size = self.batch_size

        def run(rows: np.ndarray) -> None:
            with torch.inference_mode():  # thread-local: entered in the worker
                t, s = self._forward([ids[i] for i in rows], int(lengths[rows[-1]]), model)
            topic[rows] = t.cpu().numpy()  # disjoint rows per batch: no lock needed
            sentiment[rows] = s.cpu().numpy()

        batches = [order[start : start + size] for start in range(0, len(order), size)]
        if self._on_cuda:
            # Queue every batch before reading any result back: one synchronisation per
            # call instead of one per batch keeps the GPU busy while Python pads the next.
            with torch.inference_mode():
                outputs = [
                    self._forward([ids[i] for i in rows], int(lengths[rows[-1]]), model)
                    for rows in batches
                ]
                every = np.concatenate(batches)
                topic[every] = torch.cat([t for t, _ in outputs]).cpu().numpy()
                sentiment[every] = torch.cat([s for _, s in outputs]).cpu().numpy()
        elif self._pool is None or len(batches) == 1:
            for rows in batches:
                run(rows)
        else:
            # Longest batches first so that the workers finish together.
            for future in [self._pool.submit(run, rows) for rows in reversed(batches)]:
                future.result()
        if owners is None:
            return topic, sentiment
        return _aggregate(topic, owners, lengths, n), _aggregate(sentiment, owners, lengths, n)

    def token_ids(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray | None]:
        """The token ids the engine scores for normalised ``texts``, and for ``chunks`` the
        text each chunk belongs to (None in ``head`` mode: one sequence per text)."""
        opts = self.options
        if opts.long_text == "head":
            if self._encode_head is not None:
                return self._encode_head(list(texts)), None
            encoded = self.tokenizer(list(texts), truncation=True, max_length=opts.max_tokens)
            return encoded["input_ids"], None
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=opts.max_tokens,
            stride=opts.max_tokens // 4
            if opts.chunk_overlap_tokens is None
            else opts.chunk_overlap_tokens,
            return_overflowing_tokens=True,
        )
        owners = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)
        ids = encoded["input_ids"]
        keep = np.ones(len(ids), dtype=bool)
        seen: dict[int, int] = {}
        for i, owner in enumerate(owners):
            seen[owner] = seen.get(owner, 0) + 1
            if seen[owner] > opts.max_chunks:
                keep[i] = False
        if not keep.all():
            dropped = int((~keep).sum())
            self.chunks_dropped += dropped
            log.warning(
                "engine: %d chunks beyond max_chunks=%d not scored", dropped, opts.max_chunks
            )
            ids = [x for x, k in zip(ids, keep, strict=True) if k]
            owners = owners[keep]
        return ids, owners

    def _forward(
        self, batch: list[list[int]], width: int, model: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated (topic, sentiment) probabilities of one batch, fp32, on the model's device."""
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        ids_t, mask_t = torch.from_numpy(input_ids), torch.from_numpy(mask)
        if self._on_cuda:
            ids_t = ids_t.pin_memory().to(self.device, non_blocking=True)
            mask_t = mask_t.pin_memory().to(self.device, non_blocking=True)
        out = model(input_ids=ids_t, attention_mask=mask_t)
        topic = torch.softmax(out["topic_logits"].float() / self.topic_temperature, dim=-1)
        sentiment = torch.softmax(
            out["sentiment_logits"].float() / self.sentiment_temperature, dim=-1
        )
        return topic, sentiment

    def _predictions(self, topic: np.ndarray, sentiment: np.ndarray) -> list[Prediction]:
        topic_idx = topic.argmax(axis=1)
        sent_idx = sentiment.argmax(axis=1)
        out = []
        for i in range(len(topic)):
            t, s = int(topic_idx[i]), int(sent_idx[i])
            score = float(sentiment[i, self._pos] - sentiment[i, self._neg])
            out.append(
                Prediction(
                    topic=self.topic_names[t],
                    topic_score=_unit(topic[i, t]),
                    sentiment=self.sentiment_names[s],
                    sentiment_score=min(1.0, max(-1.0, score)),
                    confidence=_unit(sentiment[i, s]),
                    model_version=self._version,
                )
            )
        return out


def _head_encoder(tokenizer: Any, max_tokens: int) -> Callable[[list[str]], list[list[int]]] | None:
    """For a fast tokenizer, its Rust tokenizer truncating to ``max_tokens``: the same ids
    as ``tokenizer(texts, truncation=True, max_length=max_tokens)`` without building a
    BatchEncoding, which cost three quarters of the tokenizer's time (docs/benchmarks.md,
    CUDA). None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(backend.to_str())  # a copy: the caller's keeps its settings
    own.enable_truncation(max_length=max_tokens)
    own.no_padding()
    return lambda texts: [encoding.ids for encoding in own.encode_batch(texts)]


def _top_two_gap(probs: np.ndarray) -> np.ndarray:
    """Per row, the highest probability minus the second highest."""
    top_two = np.partition(probs, -2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def _unit(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def _aggregate(probs: np.ndarray, owners: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    """Mean of chunk probabilities per text, weighted by chunk length in tokens."""
    weights = lengths.astype(np.float32)[:, None]
    total = np.zeros((n, probs.shape[1]), np.float32)
    np.add.at(total, owners, probs * weights)
    norm = np.zeros((n, 1), np.float32)
    np.add.at(norm, owners, weights)
    return total / np.maximum(norm, 1e-9)


def engine_from_registry(
    registry: Any,
    version: str | None = None,
    *,
    options: EngineOptions | None = None,
    max_tokens: int | None = None,
    warmup: bool = True,
    lexical: bool = True,
) -> InferenceEngine:
    """An engine serving ``version`` (default: the current entry) of ``registry``.

    ``lexical`` False serves the encoder alone even where the entry has a TF-IDF
    model to mix in (benchmarks compare the two).

    ``max_tokens`` None uses the entry's training length. The entry is verified
    (file hashes, base-model hash) and, with ``warmup``, scores one text before
    it is returned, so a corrupt or incompatible entry raises
    ``models.registry.RegistryError`` here and never reaches the service loop.
    """
    import dataclasses

    from models.data import normalise_text
    from models.labels import SENTIMENT_NAMES, TOPIC_NAMES
    from models.loading import load_entry
    from models.registry import RegistryError

    entry = registry.get(version) if version is not None else registry.current()
    loaded = load_entry(entry, "cpu", base_model_dir=registry.base_model_dir)
    options = dataclasses.replace(
        options or EngineOptions(), max_tokens=max_tokens or loaded.max_length_tokens
    )
    try:
        engine = InferenceEngine(
            loaded.model,
            loaded.tokenizer,
            version=entry.version,
            topic_names=TOPIC_NAMES,
            sentiment_names=SENTIMENT_NAMES,
            temperatures=loaded.temperatures,
            options=options,
            normalise=normalise_text,
            lexical=loaded.lexical if lexical else None,
        )
        if warmup:
            engine.predict(["Fed holds rates steady; stocks rally on earnings"])
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means the entry cannot serve
        raise RegistryError(
            f"registry entry {entry.version!r}: incompatible with the inference engine: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return engine
