"""The CUDA paths (engine precisions, the TF-IDF overlap, bf16 training) on the tiny encoder.

They need a CUDA device and say so when skipped: CI has none. Run them on a GPU
machine with ``pytest tests/models/test_cuda.py`` (``bash bench/gpu.sh`` does,
with the classifier benchmark); docs/benchmarks.md records the last run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.inference import EngineOptions, engine_from_registry
from models.lexical import fit_lexical
from models.registry import Registry
from models.testing import make_tiny_entry, tiny_base_dir, tiny_settings
from tests.models.test_inference import TEXTS
from tests.models.test_lexical import N_CLASSES, examples, one_hot
from tests.models.test_train import tiny_config

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)"
)

# Enough texts for several batches of 4, in an order unrelated to their lengths.
MANY = [f"{text} #{i}" for i in range(7) for text in TEXTS]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    root = tmp_path_factory.mktemp("registry")
    train, val = examples(1), examples(2, per_class=3)
    lexical, _ = fit_lexical(
        train, val, {t: one_hot(val, t) for t in N_CLASSES}, c_grid=(1.0,), weight_grid=(0.5,)
    )
    make_tiny_entry(root, seed=0, lexical=lexical)
    return Registry(root, tiny_base_dir(root))


@pytest.fixture(scope="module")
def cpu_fp32(registry):
    return engine_from_registry(registry, options=EngineOptions(device="cpu", precision="fp32"))


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("bf16", 0.03), ("fp16", 0.01)])
def test_cuda_precisions_agree_with_cpu_fp32_batch_by_batch(registry, cpu_fp32, precision, atol):
    engine = engine_from_registry(
        registry, options=EngineOptions(device="cuda", precision=precision, batch_size=4)
    )
    assert engine.mode == f"cuda/{precision}"
    assert engine.lexical is not None  # the TF-IDF part runs beside the GPU here
    for cuda, cpu in zip(engine.probabilities(MANY), cpu_fp32.probabilities(MANY), strict=True):
        assert np.isfinite(cuda).all()
        np.testing.assert_allclose(cuda, cpu, atol=atol)
    for a, b in zip(engine.predict(MANY[:5]), [engine.predict([t])[0] for t in MANY[:5]],
                    strict=True):
        assert (a.topic, a.sentiment) == (b.topic, b.sentiment)


def test_cuda_is_the_automatic_default_and_serves_bf16(registry):
    engine = engine_from_registry(registry)
    assert engine.mode == "cuda/bf16"
    assert len(engine.predict(MANY)) == len(MANY)


def test_training_on_cuda_with_bf16_autocast_writes_a_servable_entry(tiny_root, tmp_path):
    from models.train import train

    config = tiny_config(tiny_root, tmp_path, epochs=2, lexical_mixture=True)
    entry = train(config, tiny_settings(tiny_root, device="cuda"), progress=False)
    assert all(np.isfinite(v) and v > 0 for v in entry.temperatures.values())
    for task in ("topic", "sentiment"):
        assert 0.0 <= entry.metrics["heldout"][task]["accuracy"] <= 1.0
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    engine = engine_from_registry(registry, options=EngineOptions(device="cuda"))
    assert engine.mode == "cuda/bf16" and len(engine.predict(TEXTS)) == len(TEXTS)
