"""Test kit: a tiny randomly initialised encoder and registry entries made from it.

For tests where model quality does not matter (plumbing, hot reload, DLQ...).
Creating a base plus an entry takes about a second on CPU::

    from models.testing import make_tiny_entry, tiny_settings

    entry = make_tiny_entry(tmp_path / "registry")          # added AND promoted
    settings = tiny_settings(tmp_path / "registry")          # a ModelSettings
    # settings.registry_dir == tmp_path / "registry"
    # settings.base_model_dir == tmp_path / "registry" / "tiny-base"
    from models.loading import load_current
    loaded = load_current(settings)                          # LoadedModel, version == entry.version
    second = make_tiny_entry(tmp_path / "registry", seed=1)  # a different model, now current

The tiny base is a 2-layer BERT (hidden 32) that reuses the bundled MiniLM
tokenizer, saved deterministically (same seed -> same bytes -> same base hash)
into ``<registry_root>/tiny-base``. Entries made on it are refused when loaded
against the real MiniLM base, and vice versa: always pass ``tiny_settings``
(or ``base_model_dir=tiny_base_dir(root)``) alongside a tiny registry.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models.config import AdapterConfig
from models.registry import Registry, RegistryEntry

TINY_BASE = "tiny-base"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def tiny_base_dir(registry_root: Path) -> Path:
    return Path(registry_root) / TINY_BASE


def make_tiny_base(target: Path, *, seed: int = 0) -> Path:
    """Write a random 2-layer BERT (hidden 32) with the MiniLM tokenizer to ``target``."""
    import torch
    from transformers import BertConfig, BertModel

    from models.base import default_base_model_dir

    target = Path(target)
    if (target / "config.json").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    source = default_base_model_dir()
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(target))
    return target


def make_tiny_model(base_dir: Path, *, seed: int = 0, adapter: AdapterConfig | None = None):
    """A MultiTaskClassifier on the tiny base, with non-trivial random adapter and heads."""
    import torch

    from models.model import MultiTaskClassifier

    adapter = adapter or AdapterConfig(rank=4, alpha=8, target_modules=("query", "value"))
    torch.manual_seed(seed)
    model = MultiTaskClassifier.build(base_dir, adapter, head_dropout=0.0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and "lora_B" in name:
                param.normal_(0.0, 0.02)  # LoRA B starts at zero; make the adapter matter
    return model


def make_tiny_entry(
    registry_root: Path,
    *,
    seed: int = 0,
    promote: bool = True,
    version: str | None = None,
    base_model_dir: Path | None = None,
    max_length_tokens: int = 32,
    lexical=None,
) -> RegistryEntry:
    """Add (and by default promote) a tiny random entry to the registry at ``registry_root``.

    The base goes to ``tiny_base_dir(registry_root)`` unless ``base_model_dir``
    is given; ``lexical`` (a LexicalModel) is stored with it. Returns the
    RegistryEntry; ``entry.version`` names it.
    """
    base_dir = Path(base_model_dir) if base_model_dir is not None else tiny_base_dir(registry_root)
    make_tiny_base(base_dir)
    adapter = AdapterConfig(rank=4, alpha=8, target_modules=("query", "value"))
    model = make_tiny_model(base_dir, seed=seed, adapter=adapter)
    registry = Registry(registry_root, base_dir)
    entry = registry.add(
        model,
        config={"adapter": adapter.to_dict(), "head_dropout": 0.0, "tiny": True, "seed": seed},
        max_length_tokens=max_length_tokens,
        temperatures={"topic": 1.0, "sentiment": 1.0},
        metrics={"tiny": True},
        data={"snapshot_hash": "none", "label_counts": {}},
        version=version,
        lexical=lexical,
    )
    if promote:
        registry.promote(entry.version)
    return entry


def tiny_settings(registry_root: Path, **overrides):
    """ModelSettings for a registry made by ``make_tiny_entry`` (CPU, tiny base)."""
    from pipeline.settings import ModelSettings

    values = {
        "registry_dir": Path(registry_root),
        "base_model_dir": tiny_base_dir(registry_root),
        "device": "cpu",
    }
    values.update(overrides)
    return ModelSettings(**values)
