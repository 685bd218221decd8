"""Load a registry entry for inference: ``load_entry(entry, device) -> LoadedModel``.

The base encoder comes from a local directory (never a hub); its hash must
match the one the entry was trained on. LoRA/IA3 adapters are merged into the
base weights after loading, so inference costs the same as the bare encoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.base import base_model_hash, default_base_model_dir
from models.labels import SENTIMENT_NAMES, TOPIC_NAMES
from models.registry import Registry, RegistryEntry, RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One text's classification.

    ``topic_score``: calibrated probability of ``topic``; ``sentiment_score``:
    p(positive) - p(negative) in [-1, 1]; ``confidence``: calibrated
    probability of ``sentiment``; ``probabilities``: the sentiment distribution.
    """

    topic: str
    topic_score: float
    sentiment: str
    sentiment_score: float
    confidence: float
    probabilities: dict[str, float]


def resolve_device(device: str | None) -> str:
    """``auto``/None -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class LoadedModel:
    """An entry ready to score: model in eval mode, tokenizer, temperatures."""

    model: Any  # MultiTaskClassifier
    tokenizer: Any
    temperatures: dict[str, float]
    version: str
    max_length_tokens: int
    device: str
    entry: RegistryEntry
    #: The entry's TF-IDF model mixed into the probabilities (None: encoder alone).
    lexical: Any = None

    def logits(self, texts: list[str], *, batch_size: int = 64) -> dict[str, Any]:
        """Raw logits as float32 numpy arrays ``topic`` (N, 20) and ``sentiment`` (N, 3).

        Texts are normalised like the training data (``models.data.normalise_text``)
        and truncated to ``max_length_tokens`` tokens; callers that care about
        long articles pass title plus lead (or chunks) themselves.
        """
        return compute_logits(
            self.model,
            self.tokenizer,
            texts,
            max_length_tokens=self.max_length_tokens,
            device=self.device,
            batch_size=batch_size,
        )

    def predict_proba(self, texts: list[str], *, batch_size: int = 64) -> dict[str, Any]:
        """Probabilities per head, as served: softmax(logits / temperature), mixed with
        the entry's lexical model where it has one."""
        from models.calibration import softmax
        from models.data import normalise_text

        raw = self.logits(texts, batch_size=batch_size)
        probs = {task: softmax(raw[task] / self.temperatures.get(task, 1.0)) for task in raw}
        if self.lexical is None:
            return probs
        return self.lexical.mix_all(probs, [normalise_text(t) for t in texts])

    def predict(self, texts: list[str], *, batch_size: int = 64) -> list[Prediction]:
        probs = self.predict_proba(texts, batch_size=batch_size)
        results = []
        for topic_p, sent_p in zip(probs["topic"], probs["sentiment"], strict=True):
            t, s = int(topic_p.argmax()), int(sent_p.argmax())
            results.append(
                Prediction(
                    topic=TOPIC_NAMES[t],
                    topic_score=float(topic_p[t]),
                    sentiment=SENTIMENT_NAMES[s],
                    sentiment_score=float(sent_p[2] - sent_p[0]),
                    confidence=float(sent_p[s]),
                    probabilities={
                        name: float(p) for name, p in zip(SENTIMENT_NAMES, sent_p, strict=True)
                    },
                )
            )
        return results


def compute_logits(
    model, tokenizer, texts: list[str], *, max_length_tokens: int, device: str, batch_size: int = 64
) -> dict[str, Any]:
    """Logits of ``model`` (eval mode) for ``texts``, length-sorted batches, in input order."""
    import numpy as np
    import torch

    from models.data import normalise_text

    n = len(texts)
    out = {
        "topic": np.zeros((n, len(TOPIC_NAMES)), np.float32),
        "sentiment": np.zeros((n, len(SENTIMENT_NAMES)), np.float32),
    }
    if n == 0:
        return out
    clean = [normalise_text(t) for t in texts]
    order = sorted(range(n), key=lambda i: len(clean[i]))
    use_bf16 = device.startswith("cuda")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [clean[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length_tokens,
                return_tensors="pt",
            )
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                res = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            out["topic"][idx] = res["topic_logits"].float().cpu().numpy()
            out["sentiment"][idx] = res["sentiment_logits"].float().cpu().numpy()
    return out


def build_model_for_entry(entry: RegistryEntry, base_model_dir: Path):
    """The MultiTaskClassifier of ``entry`` with adapter and heads loaded (train mode, unmerged)."""
    import peft
    from safetensors.torch import load_file

    from models.model import MultiTaskClassifier, load_encoder

    encoder = load_encoder(base_model_dir)
    hidden = encoder.config.hidden_size
    try:
        if entry.adapter_dir.is_dir():
            encoder = peft.PeftModel.from_pretrained(encoder, str(entry.adapter_dir))
        model = MultiTaskClassifier(
            encoder, hidden, head_dropout=float(entry.config.get("head_dropout", 0.0))
        )
        model.load_head_state_dict(load_file(str(entry.heads_path)))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise RegistryError(
            f"registry entry {entry.version!r}: cannot load weights: {exc}"
        ) from exc
    return model


def load_lexical(entry: RegistryEntry):
    """The entry's ``models.lexical.LexicalModel``, None when it has none; RegistryError
    when it is listed but cannot be read."""
    from models.lexical import LexicalError, LexicalModel

    if not entry.lexical:
        return None
    try:
        return LexicalModel.load(entry.lexical_dir, entry.lexical)
    except LexicalError as exc:
        raise RegistryError(f"registry entry {entry.version!r}: {exc}") from exc


def load_entry(
    entry: RegistryEntry, device: str | None = "cpu", *, base_model_dir: Path | None = None
) -> LoadedModel:
    """Load ``entry`` on ``device`` ("cpu", "cuda", "cuda:1", "auto").

    ``base_model_dir`` defaults to the bundled all-MiniLM-L6-v2; an entry
    trained on another base is refused with RegistryError.
    """
    from transformers import AutoTokenizer

    base_dir = Path(base_model_dir) if base_model_dir is not None else default_base_model_dir()
    available = base_model_hash(base_dir)
    if available != entry.base_model_hash:
        raise RegistryError(
            f"registry entry {entry.version!r}: incompatible base model at {base_dir} "
            f"({available[:19]}...; entry needs {entry.base_model_hash[:19]}...)"
        )
    device = resolve_device(device)
    model = build_model_for_entry(entry, base_dir)
    if hasattr(model.encoder, "merge_and_unload"):
        try:
            model.encoder = model.encoder.merge_and_unload()
        except (ValueError, NotImplementedError, AttributeError) as exc:
            log.info("loading %s: adapter not merged (%s); serving unmerged", entry.version, exc)
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    log.info("loaded model %s on %s", entry.version, device)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        temperatures=entry.temperatures,
        version=entry.version,
        max_length_tokens=entry.max_length_tokens,
        device=device,
        entry=entry,
        lexical=load_lexical(entry),
    )


def load_current(settings=None) -> LoadedModel:
    """The promoted entry of the configured registry (``ModelSettings`` by default)."""
    from pipeline.settings import ModelSettings

    settings = settings or ModelSettings()
    registry = Registry.from_settings(settings)
    return load_entry(
        registry.current(), settings.device, base_model_dir=settings.resolved_base_model_dir()
    )
