"""The encoder on OpenVINO's CPU runtime: the engine's ``openvino`` and ``openvino-int8`` precisions.

Why (docs/benchmarks.md, "OpenVINO"): torch runs the encoder's Linear layers at
about two thirds of what a core of this CPU does, so torch's fastest exact mode
(bf16) stops short of the issue's 10x over the plain pipeline. OpenVINO runs the
same merged network as one fused graph:

- ``openvino``: the merged encoder converted with ``openvino.convert_model`` and
  compiled in bf16 where the CPU has it natively (``avx512_bf16``/AMX), else f32.
  Measured 1.15-1.2x torch's bf16, agreeing with fp32 as closely.
- ``openvino-int8``: the same graph quantised to static int8 by NNCF's
  post-training quantisation (transformer preset: SmoothQuant, activations
  calibrated on ``CALIBRATION_TEXTS`` texts of the training split, never the
  held-out one), about 2x torch's bf16. Alone it changes 1-1.5% of the labels,
  so the engine takes a **second look** (:class:`SecondLook`): texts whose
  served top two probabilities lie closer than ``SECOND_LOOK_MARGIN`` on either
  head are scored again with the float graph, whose result replaces int8's.

The second look is decided on the probabilities the engine serves, after its
TF-IDF mixture: a close call of the encoder alone is not a close call of the
mixture, and the other way round.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

#: Texts whose served top-two probability gap is below this on either head are scored
#: again in float (docs/benchmarks.md, "OpenVINO").
SECOND_LOOK_MARGIN = 0.1
#: Training texts that calibrate the int8 activation ranges.
CALIBRATION_TEXTS = 300
CALIBRATION_SEED = 7


class OpenVinoUnavailable(RuntimeError):
    """openvino (or nncf, for int8) is not installed, cannot convert the model, or
    ``openvino-int8`` has no calibration texts."""


def _import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise OpenVinoUnavailable(
            f"the openvino precisions need the openvino package ({exc}); "
            "it is a finsentry dependency: reinstall with `make setup`"
        ) from exc
    return openvino


def calibration_texts(count: int = CALIBRATION_TEXTS) -> list[str]:
    """A seeded sample of the bundled training split (normalised, held-out excluded)."""
    from models.data import DataError, make_splits

    try:
        texts = [example.text for example in make_splits().train]
    except (DataError, OSError) as exc:
        raise OpenVinoUnavailable(
            f"openvino-int8 calibrates on the bundled training data (models/data), "
            f"which could not be read: {exc}"
        ) from exc
    random.Random(CALIBRATION_SEED).shuffle(texts)
    return texts[:count]


class HeadLogits(nn.Module):
    """The model as a function of (input_ids, attention_mask) to (topic, sentiment) logits:
    the form graph converters and exporters (OpenVINO here, ONNX in bench/) trace."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out["topic_logits"], out["sentiment_logits"]


@dataclass(frozen=True)
class SecondLook:
    """Score again with ``model`` the texts whose served top-two probability gap is below
    ``margin`` on either head (the engine applies it after the TF-IDF mixture)."""

    model: nn.Module
    margin: float = SECOND_LOOK_MARGIN


class CompiledGraph(nn.Module):
    """One OpenVINO compiled model where the engine expects the torch model: takes
    ``input_ids`` and ``attention_mask`` tensors, returns the two heads' logits. Safe to
    call from several threads at once (one infer request per thread).

    ``second_look`` is set on the int8 graph: the float graph and its margin."""

    def __init__(self, compiled) -> None:
        super().__init__()
        self.compiled = compiled
        self._local = threading.local()
        self.second_look: SecondLook | None = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({0: input_ids.numpy(), 1: attention_mask.numpy()})
        return {
            "topic_logits": torch.from_numpy(np.array(result[0], dtype=np.float32)),
            "sentiment_logits": torch.from_numpy(np.array(result[1], dtype=np.float32)),
        }


def compile_encoder(
    model: nn.Module,
    *,
    int8: bool,
    bf16: bool,
    threads: int,
    streams: int,
    calibration_ids: Callable[[], Sequence[Sequence[int]]] | None = None,
) -> CompiledGraph:
    """``model`` (merged, LoRA-free) compiled by OpenVINO in float (bf16 where ``bf16``,
    else f32), or with ``int8`` in static int8 with the float graph as its second look."""
    ov = _import_openvino()
    started = time.perf_counter()
    sample = torch.ones((2, 8), dtype=torch.long)
    shape = ov.PartialShape([-1, -1])
    try:
        with warnings.catch_warnings():
            # Expected while OpenVINO traces the model: transformers' masking code warns
            # that tracing fixes two shape checks as constants (both hold for every ids and
            # mask of equal shape), and torch that torch.jit.trace, which OpenVINO's torch
            # frontend uses, is deprecated. Anything else passes through.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.trace\w*` is deprecated", category=DeprecationWarning
            )
            with torch.no_grad():
                graph = ov.convert_model(
                    HeadLogits(model.eval()),
                    example_input=(sample, torch.ones_like(sample)),
                    input=[
                        ("input_ids", shape, ov.Type.i64),
                        ("attention_mask", shape, ov.Type.i64),
                    ],
                )
    except Exception as exc:  # noqa: BLE001 - any conversion failure means: not servable here
        raise OpenVinoUnavailable(f"openvino could not convert the model: {exc}") from exc
    precision = "bf16" if bf16 else "f32"
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": str(threads),
        "NUM_STREAMS": str(streams),
    }
    core = ov.Core()
    served = float_graph = CompiledGraph(core.compile_model(graph, "CPU", config))
    if int8:
        if calibration_ids is None:
            raise OpenVinoUnavailable("openvino-int8 needs calibration texts")
        served = CompiledGraph(core.compile_model(_quantise(graph, calibration_ids()), "CPU", config))
        served.second_look = SecondLook(float_graph)
    log.info(
        "openvino: encoder compiled (%s%s, %d threads, %d streams) in %.1fs",
        "int8, second look in " if int8 else "",
        precision,
        threads,
        streams,
        time.perf_counter() - started,
    )
    return served


def _quantise(graph, calibration: Sequence[Sequence[int]]):
    """Static int8 of ``graph`` by NNCF (transformer preset), activations calibrated on
    ``calibration`` (token ids, one unpadded sequence per item)."""
    if not calibration:
        raise OpenVinoUnavailable("openvino-int8: no calibration texts")
    try:
        import nncf
    except ImportError as exc:
        raise OpenVinoUnavailable(
            f"openvino-int8 needs the nncf package ({exc}); reinstall with `make setup`"
        ) from exc
    nncf.set_log_level(logging.ERROR)  # its per-step INFO lines and progress bars
    items = [
        {
            "input_ids": np.asarray([seq], dtype=np.int64),
            "attention_mask": np.ones((1, len(seq)), dtype=np.int64),
        }
        for seq in calibration
    ]
    # NNCF draws progress bars on stdout, which belongs to the commands' output (JSON of
    # `bench/classifier.py --json`); they go to stderr with the logs instead.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(
            graph,
            nncf.Dataset(items),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(items),
        )
