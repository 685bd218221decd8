"""The multi-task classifier: one PEFT-adapted encoder, two linear heads.

Read top to bottom: build the encoder (any Hugging Face encoder directory),
wrap it with the configured PEFT adapter, mean-pool the token states, and
project onto the topic (20) and sentiment (3) heads. ``multitask_loss`` masks
each task's loss with ``IGNORE_INDEX`` because every training example carries
exactly one task's label.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from models.config import AdapterConfig
from models.labels import IGNORE_INDEX, SENTIMENT_NAMES, TOPIC_NAMES

log = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """The encoder or adapter cannot be built or loaded."""


def peft_config(adapter: AdapterConfig):
    """The PEFT config object for ``adapter`` (None for method ``none``)."""
    import peft

    if adapter.method == "none":
        return None
    target = adapter.target_modules
    target = list(target) if isinstance(target, tuple) else target
    if adapter.method == "lora":
        return peft.LoraConfig(
            r=adapter.rank,
            lora_alpha=adapter.alpha,
            lora_dropout=adapter.dropout,
            target_modules=target,
            bias="none",
            **adapter.options,
        )
    if adapter.method == "adalora":
        options = {"total_step": 1000, **adapter.options}
        return peft.AdaLoraConfig(
            init_r=adapter.rank,
            lora_alpha=adapter.alpha,
            lora_dropout=adapter.dropout,
            target_modules=target,
            **options,
        )
    if adapter.method == "ia3":
        return peft.IA3Config(target_modules=target, **adapter.options)
    raise ModelError(f"model: unsupported adapter method {adapter.method!r}")


def load_encoder(base_model_dir: Path) -> nn.Module:
    """The bare encoder from a local Hugging Face directory; never reaches a hub."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    # the bundled encoder carries an unused pooler; its load report is noise
    hf_logging.set_verbosity_error()
    if not (Path(base_model_dir) / "config.json").is_file():
        raise ModelError(f"model: base model dir {base_model_dir} has no config.json")
    try:
        return AutoModel.from_pretrained(
            str(base_model_dir), local_files_only=True, add_pooling_layer=False
        )
    except TypeError:  # encoders without a pooler argument
        return AutoModel.from_pretrained(str(base_model_dir), local_files_only=True)
    except OSError as exc:
        raise ModelError(f"model: cannot load base encoder from {base_model_dir}: {exc}") from exc


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``attention_mask`` is 1: (batch, hidden)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MultiTaskClassifier(nn.Module):
    """Shared (PEFT-wrapped) encoder with a topic head and a sentiment head.

    ``forward`` returns ``{"topic_logits": (B, 20), "sentiment_logits": (B, 3)}``.
    Logits are un-calibrated; divide by the entry's temperatures for confidences.
    """

    def __init__(
        self,
        encoder: nn.Module,
        hidden_size: int,
        *,
        num_topics: int = len(TOPIC_NAMES),
        num_sentiments: int = len(SENTIMENT_NAMES),
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(head_dropout)
        self.topic_head = nn.Linear(hidden_size, num_topics)
        self.sentiment_head = nn.Linear(hidden_size, num_sentiments)

    @classmethod
    def build(
        cls,
        base_model_dir: Path,
        adapter: AdapterConfig,
        *,
        head_dropout: float = 0.1,
        encoder: nn.Module | None = None,
    ) -> MultiTaskClassifier:
        """A fresh model for training: base weights frozen, adapter and heads trainable."""
        import peft

        encoder = encoder if encoder is not None else load_encoder(base_model_dir)
        hidden_size = encoder.config.hidden_size
        config = peft_config(adapter)
        if config is None:
            for param in encoder.parameters():
                param.requires_grad_(False)
        else:
            encoder = peft.get_peft_model(encoder, config)
        return cls(encoder, hidden_size, head_dropout=head_dropout)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.heads(out.last_hidden_state, attention_mask)

    def heads(
        self, token_states: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Pool the encoder's last token states and apply both heads."""
        pooled = self.dropout(mean_pool(token_states, attention_mask))
        return {
            "topic_logits": self.topic_head(pooled),
            "sentiment_logits": self.sentiment_head(pooled),
        }

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Head weights only, contiguous CPU tensors ready for safetensors."""
        state = {}
        for name in ("topic_head", "sentiment_head"):
            for key, value in getattr(self, name).state_dict().items():
                state[f"{name}.{key}"] = value.detach().cpu().contiguous()
        return state

    def load_head_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("topic_head", "sentiment_head"):
            sub = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(name + ".")}
            getattr(self, name).load_state_dict(sub)

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(adapter parameters, head parameters) that require gradients."""
        heads = list(self.topic_head.parameters()) + list(self.sentiment_head.parameters())
        adapter = [p for p in self.encoder.parameters() if p.requires_grad]
        return adapter, heads


def multitask_loss(
    outputs: dict[str, torch.Tensor],
    topic_labels: torch.Tensor,
    sentiment_labels: torch.Tensor,
    *,
    topic_class_weight: torch.Tensor | None = None,
    sentiment_class_weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    topic_weight: float = 1.0,
    sentiment_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked multi-task cross-entropy.

    Each label tensor holds a class index or ``IGNORE_INDEX`` (-100) where the
    example has no label for that task. Each task's loss is the mean over its
    labelled examples; a task with no labelled example in the batch adds 0.
    Returns ``(weighted sum, {"topic": float, "sentiment": float})``.
    """
    total = outputs["topic_logits"].new_zeros(())
    parts: dict[str, float] = {}
    for task, logits, labels, class_weight, weight in (
        ("topic", outputs["topic_logits"], topic_labels, topic_class_weight, topic_weight),
        (
            "sentiment",
            outputs["sentiment_logits"],
            sentiment_labels,
            sentiment_class_weight,
            sentiment_weight,
        ),
    ):
        if not bool((labels != IGNORE_INDEX).any()):
            parts[task] = 0.0
            continue
        loss = F.cross_entropy(
            logits.float(),
            labels,
            weight=class_weight,
            ignore_index=IGNORE_INDEX,
            label_smoothing=label_smoothing,
        )
        parts[task] = float(loss.detach())
        total = total + weight * loss
    return total, parts
