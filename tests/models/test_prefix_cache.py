"""The cached frozen bottom of the encoder gives the plain forward pass's logits."""

import pytest
import torch

from models.batching import collate, encode
from models.config import AdapterConfig
from models.data import Example
from models.prefix_cache import FrozenPrefix, PrefixCacheError, forward_from_prefix, frozen_depth
from models.testing import make_tiny_model

TEXTS = [
    "Oil falls",
    "Fed holds rates steady as inflation cools, traders trim bets on cuts",
    "$AAPL beats",
    "Shares of the miner soar after a record quarter and a higher dividend forecast",
    "Treasury yields edge up",
]


def _top_layer_model(tiny_base):
    """LoRA on the top layer only: the embeddings and layer 0 stay frozen."""
    adapter = AdapterConfig(
        rank=4, alpha=8, target_modules=("query", "value"), options={"layers_to_transform": [1]}
    )
    return make_tiny_model(tiny_base, adapter=adapter)


def _encoded(tiny_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base), local_files_only=True)
    examples = [Example(text, "topic", i % 3) for i, text in enumerate(TEXTS)]
    return encode(examples, tokenizer, 32), tokenizer.pad_token_id


def test_frozen_depth_counts_the_layers_below_the_first_adapted_one(tiny_base):
    assert frozen_depth(_top_layer_model(tiny_base)) == 1
    assert frozen_depth(make_tiny_model(tiny_base)) == 0  # LoRA on both layers


def test_cached_prefix_gives_the_plain_forward_logits(tiny_base):
    model = _top_layer_model(tiny_base).eval()
    data, pad_id = _encoded(tiny_base)
    prefix = FrozenPrefix.build(model, data, pad_id, "cpu", batch_size=2)
    assert prefix is not None and prefix.depth == 1
    assert [s.shape[0] for s in prefix.states] == [len(ids) for ids in data.input_ids]
    indices = [4, 0, 3]  # any order, padded to this batch's own longest
    batch = collate(data, indices, pad_id)
    with torch.inference_mode():
        plain = model(batch["input_ids"], batch["attention_mask"])
        cached = forward_from_prefix(
            model, prefix.depth, prefix.collate(indices), batch["attention_mask"]
        )
    for key in ("topic_logits", "sentiment_logits"):
        torch.testing.assert_close(cached[key], plain[key], rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_adapter_through_the_cached_path(tiny_base):
    model = _top_layer_model(tiny_base).train()
    data, pad_id = _encoded(tiny_base)
    prefix = FrozenPrefix.build(model, data, pad_id, "cpu")
    assert model.training  # build leaves the mode as it found it
    batch = collate(data, [0, 1], pad_id)
    out = forward_from_prefix(model, prefix.depth, prefix.collate([0, 1]), batch["attention_mask"])
    out["topic_logits"].sum().backward()
    lora = [p for n, p in model.named_parameters() if "lora_A" in n]
    assert lora and all(p.grad is not None for p in lora)


def test_nothing_frozen_means_no_cache(tiny_base):
    data, pad_id = _encoded(tiny_base)
    assert FrozenPrefix.build(make_tiny_model(tiny_base), data, pad_id, "cpu") is None


def test_an_unsupported_encoder_is_refused_by_name(tiny_base):
    model = _top_layer_model(tiny_base)
    model.encoder.get_base_model().config.model_type = "mpnet"
    with pytest.raises(PrefixCacheError, match="'mpnet' is not supported"):
        frozen_depth(model)


def _finetune(tiny_base, cache: bool):
    from transformers import AutoTokenizer

    from models.feedback.finetune import FinetuneOptions, WeightedExample, finetune

    model = _top_layer_model(tiny_base)
    for module in model.modules():  # without dropout the two paths compute the same steps
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base), local_files_only=True)
    examples = [
        WeightedExample(text, "topic" if i % 2 else "sentiment", i % 3, weight=1.0 + i)
        for i, text in enumerate(TEXTS)
    ]
    options = FinetuneOptions(epochs=3, batch_size=2, learning_rate=1e-2, cache_frozen_prefix=cache)
    report = finetune(model, tokenizer, examples * 2, options)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return report, trained


def test_a_retrain_fine_tune_on_the_cache_takes_the_same_steps_as_without(tiny_base):
    plain_report, plain = _finetune(tiny_base, cache=False)
    cached_report, cached = _finetune(tiny_base, cache=True)
    assert (plain_report["cached_frozen_layers"], cached_report["cached_frozen_layers"]) == (0, 1)
    assert plain_report["steps"] == cached_report["steps"] == 15
    untouched = _top_layer_model(tiny_base)
    moved = [n for n, p in untouched.named_parameters() if p.requires_grad and not torch.equal(p, plain[n])]
    assert moved  # training did something, and the cached path did the same
    for name in plain:
        torch.testing.assert_close(cached[name], plain[name], rtol=1e-4, atol=1e-5)


def test_a_fine_tune_falls_back_to_the_plain_path_for_an_unsupported_encoder(tiny_base, caplog):
    from models.feedback.finetune import _frozen_prefix

    model = _top_layer_model(tiny_base)
    model.encoder.get_base_model().config.model_type = "mpnet"
    data, pad_id = _encoded(tiny_base)
    with caplog.at_level("INFO"):
        assert _frozen_prefix(model, data, pad_id, "cpu") is None
    assert "without the frozen-prefix cache" in caplog.text
