"""Ways to run the encoder in int8 on CPU, against the shipped bf16 and fp32 modes, one run.

    python bench/int8_variants.py            # 1,500 held-out headlines
    python bench/int8_variants.py --quick    # 300 headlines, one repeat (make bench)

Why: the engine's int8 mode (``torch.ao`` dynamic quantisation: weights per
output channel, activations per tensor) is its fastest CPU mode but changes
about 5% of the labels against fp32, so ``auto`` serves bf16. This measures
what finer activation scales buy, on the same merged encoder and headlines
(encoder only, no TF-IDF mixture: this is about the network):

- ``torch.ao per-tensor activations``: the engine's ``int8`` mode;
- ``per-row activations, eager``: weights per output channel, each token's
  activations with their own scale, ``torch._int_mm`` for the product;
- ``per-row activations, torch.compile``: the same, compiled (dynamic shapes),
  so the quantise/dequantise steps fuse;
- ``torchao Int8DynamicActivationInt8Weight``: torchao's equivalent, when the
  ``torchao`` package is installed (it is not a finsentry dependency:
  ``pip install torchao`` to include this row);
- ``onnxruntime ...``: the encoder exported to ONNX (eager attention, fused by
  onnxruntime's BERT optimiser) and run by onnxruntime in fp32, in dynamic
  int8 (weights per channel, activations per tensor, like torch.ao) and as
  8-bit ``MatMulNBits`` with int8 compute (weights and activations quantised in
  blocks of 32 along the inner dimension), when ``onnxruntime`` and ``onnx``
  are installed (not finsentry dependencies: ``pip install onnxruntime onnx``
  to include these rows).

``second_look`` answers one more question: how fast would int8 be with bf16
scoring again the texts int8 is unsure of (top two probabilities closer than a
margin on either head), and how often would it then agree with fp32? It is
computed from the rows above (labels of both stages, their measured rates).

Agreement is the share of identical labels against fp32. Writes
bench/results/int8_variants.json and prints it.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from classifier import (  # noqa: E402
    code_version,
    engine_for,
    hardware,
    load_headlines,
    write_result,
)

log = logging.getLogger("bench.int8_variants")


def row_int8_linear_class():
    """An int8 Linear with per-output-channel weight scales and per-row activation scales."""
    import torch
    from torch import nn

    class RowScaledInt8Linear(nn.Module):
        def __init__(self, linear: nn.Linear) -> None:
            super().__init__()
            weight = linear.weight.detach().float()
            scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
            self.register_buffer(
                "weight_t", torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous()
            )
            self.register_buffer("weight_scale", scale)
            self.register_buffer(
                "bias", None if linear.bias is None else linear.bias.detach().float()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = x.reshape(-1, x.shape[-1])
            scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
            product = torch._int_mm(torch.round(rows / scale).to(torch.int8), self.weight_t)
            out = product.float() * scale * self.weight_scale
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], -1)

    return RowScaledInt8Linear


def encoder_linears(model) -> list[str]:
    from torch import nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and "head" not in n]


def swap_row_int8(model):
    cls = row_int8_linear_class()
    for name in encoder_linears(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, cls(getattr(parent, child)))
    return model


def torchao_int8(model):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    targets = set(encoder_linears(model))
    quantize_(
        model, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda _m, fqn: fqn in targets
    )
    return model


def onnxruntime_variants(merged, sample_ids, work_dir: Path) -> dict:
    """Builders of engine-servable modules that run ``merged`` in onnxruntime, by variant name.

    ``merged`` is exported once (legacy exporter, eager attention so that the optimiser
    can fuse it), fused by onnxruntime's BERT optimiser, then quantised per variant.
    Each session uses one thread: the engine runs one batch per core on its own threads.
    """
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )
    from onnxruntime.transformers import optimizer

    from models.openvino_encoder import HeadLogits

    class SessionModule(torch.nn.Module):
        """Serves an onnxruntime session where the engine expects the torch model."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )

        def forward(self, input_ids, attention_mask):
            feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
            topic, sentiment = self.session.run(None, feed)
            return {
                "topic_logits": torch.from_numpy(topic),
                "sentiment_logits": torch.from_numpy(sentiment),
            }

    model = copy.deepcopy(merged)
    model.encoder.config._attn_implementation = "eager"  # sdpa's graph is not fused
    exported, fused = work_dir / "encoder.onnx", work_dir / "encoder.fused.onnx"
    dims = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's own deprecation notices
        torch.onnx.export(
            HeadLogits(model).eval(),
            (sample_ids, torch.ones_like(sample_ids)),
            str(exported),
            input_names=["input_ids", "attention_mask"],
            output_names=["topic_logits", "sentiment_logits"],
            dynamic_axes={"input_ids": dims, "attention_mask": dims},
            opset_version=17,
            dynamo=False,
        )
    config = model.encoder.config
    optimizer.optimize_model(
        str(exported),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
    ).save_model_to_file(str(fused))

    def int8() -> SessionModule:
        path = work_dir / "encoder.int8.onnx"
        quantize_dynamic(
            fused,
            path,
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        return SessionModule(path)

    def nbits8() -> SessionModule:
        path = work_dir / "encoder.nbits8.onnx"
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(fused)),
            algo_config=DefaultWeightOnlyQuantConfig(
                block_size=32, is_symmetric=True, accuracy_level=4, bits=8
            ),
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(path), False)
        return SessionModule(path)

    version = ort.__version__
    return {
        f"onnxruntime {version} fp32": lambda: SessionModule(fused),
        ORT_INT8.format(version=version): int8,
        f"onnxruntime {version} MatMulNBits 8-bit, blocks of 32, int8 compute": nbits8,
    }


#: Names of the variants (keys of the result) that the second-look sweep combines.
BF16 = "bf16 (auto on this CPU)"
ENGINE_INT8 = "torch.ao per-tensor activations (engine int8)"
ROW_INT8_EAGER = "per-row activations, eager"
ROW_INT8_COMPILED = "per-row activations, torch.compile"
ORT_INT8 = "onnxruntime {version} int8, activations per tensor"
#: Top-two probability gaps under which a text would be scored again in bf16.
SECOND_LOOK_MARGINS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def second_look_sweep(first, exact, reference, results, first_name, exact_name) -> list[dict]:
    """What a cascade would give: ``first`` (int8) for every text, ``exact`` (bf16) again
    for those whose top-two gap under ``first`` is below a margin on either head.

    Agreement is computed from both stages' labels on the same headlines; the rate is
    estimated from the two stages' measured rates, ``1 / (1/r_first + share/r_exact)``
    (an upper bound: it leaves out the cost of picking and re-batching the texts).
    """
    import numpy as np

    def gap(probs):
        ordered = np.sort(probs, axis=1)
        return ordered[:, -1] - ordered[:, -2]

    smallest = np.minimum(gap(first[0]), gap(first[1]))
    r_first, r_exact = results[first_name]["items_per_s"], results[exact_name]["items_per_s"]
    rows = []
    for margin in SECOND_LOOK_MARGINS:
        again = smallest < margin
        agreement = [
            float(np.mean(np.where(again, e.argmax(1), f.argmax(1)) == ref))
            for f, e, ref in zip(first, exact, reference, strict=True)
        ]
        share = float(again.mean())
        rows.append({
            "margin": margin,
            "scored_again": round(share, 4),
            "topic_agreement_with_fp32": round(agreement[0], 4),
            "sentiment_agreement_with_fp32": round(agreement[1], 4),
            "estimated_items_per_s": round(1 / (1 / r_first + share / r_exact), 1),
        })
        log.info("second look after %s, margin %.2f: %s", first_name, margin, rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 headlines, one repeat")
    parser.add_argument("--n", type=int, default=None, help="headlines (default 1,500)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per variant (best)")
    parser.add_argument("--out", type=Path, default=None, help="result file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*deprecated.*")

    import numpy as np
    import torch

    from models.inference import merge_lora
    from models.loading import load_entry
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    registry = Registry.from_settings(ModelSettings())
    entry = registry.current()
    loaded = load_entry(entry, "cpu", base_model_dir=registry.base_model_dir)
    merged = merge_lora(copy.deepcopy(loaded.model)).eval()
    texts = load_headlines(args.n or (300 if args.quick else 1500))
    repeats = args.repeats or (1 if args.quick else 3)

    def engine(model, precision: str):
        return engine_for(loaded, model, lexical=False, device="cpu", precision=precision)

    def compiled_row_int8():
        return torch.compile(swap_row_int8(copy.deepcopy(merged)), dynamic=True)

    variants = {
        "fp32": lambda: engine(copy.deepcopy(merged), "fp32"),
        BF16: lambda: engine(copy.deepcopy(merged), "bf16"),
        ENGINE_INT8: lambda: engine(copy.deepcopy(merged), "int8"),
        ROW_INT8_EAGER: lambda: engine(swap_row_int8(copy.deepcopy(merged)), "fp32"),
        ROW_INT8_COMPILED: lambda: engine(compiled_row_int8(), "fp32"),
    }
    try:
        import torchao

        variants[f"torchao {torchao.__version__} Int8DynamicActivationInt8Weight"] = (
            lambda: engine(torchao_int8(copy.deepcopy(merged)), "fp32")
        )
    except ImportError:
        torchao = None
        log.info("torchao not installed: its row is skipped (pip install torchao to include it)")
    onnx_dir = tempfile.TemporaryDirectory(prefix="finsentry-onnx-")
    try:
        import onnxruntime

        sample = torch.tensor([loaded.tokenizer("Fed holds rates steady")["input_ids"]] * 2)
        for name, build in onnxruntime_variants(merged, sample, Path(onnx_dir.name)).items():
            variants[name] = lambda build=build: engine(build(), "fp32")
    except ImportError:
        onnxruntime = None
        log.info(
            "onnxruntime or onnx not installed: their rows are skipped "
            "(pip install onnxruntime onnx to include them)"
        )

    results: dict[str, dict] = {}
    outputs: dict[str, tuple] = {}
    reference = None
    for name, build in variants.items():
        started = time.perf_counter()
        eng = build()
        eng.probabilities(texts[:64])  # warm-up; compiles where compiled
        ready_s = time.perf_counter() - started
        best = 0.0
        for _ in range(repeats):
            started = time.perf_counter()
            topic, sentiment = eng.probabilities(texts)
            best = max(best, len(texts) / (time.perf_counter() - started))
        outputs[name] = (topic, sentiment)
        labels = (topic.argmax(1), sentiment.argmax(1))
        reference = reference or labels
        results[name] = {
            "items_per_s": round(best, 1),
            "ready_s": round(ready_s, 1),
            "topic_agreement_with_fp32": round(float(np.mean(labels[0] == reference[0])), 4),
            "sentiment_agreement_with_fp32": round(float(np.mean(labels[1] == reference[1])), 4),
        }
        log.info("%s: %s", name, results[name])
    firsts = [ENGINE_INT8, ROW_INT8_EAGER, ROW_INT8_COMPILED]
    if onnxruntime is not None:
        firsts.append(ORT_INT8.format(version=onnxruntime.__version__))
    second_look = {
        first: second_look_sweep(outputs[first], outputs[BF16], reference, results, first, BF16)
        for first in firsts
    }
    onnx_dir.cleanup()
    report = {
        "benchmark": "int8_variants",
        "model_version": entry.version,
        "quick": args.quick,
        "headlines": len(texts),
        "lexical_mixed": False,
        "variants": results,
        "second_look": second_look,
        "torchao": None if torchao is None else torchao.__version__,
        "onnxruntime": None if onnxruntime is None else onnxruntime.__version__,
        "hardware": hardware(),
        "code_version": code_version(),
    }
    write_result(report, "int8_variants", args.quick, args.out)


if __name__ == "__main__":
    main()
