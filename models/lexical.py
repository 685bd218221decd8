"""A TF-IDF + logistic-regression model whose probabilities are mixed with the encoder's.

A sentence encoder and a bag of n-grams err on different headlines, so mixing
their calibrated probabilities scores better than either (docs/model.md, "What
each step bought"). New fits mix geometrically, ``p ~ p_encoder^w *
p_lexical^(1-w)`` (a product of experts: where one model is sure and the other
merely unsure, the sure one wins); entries fitted before that (29 Nov 2026,
14:00 UTC) mix arithmetically, ``w * p_encoder + (1 - w) * p_lexical``, and are served so
(``mixing`` in the manifest). Per task:

- features: word 1-2-gram TF-IDF and character 2-5-gram TF-IDF (``char_wb``),
  sublinear term frequency, terms seen in at least two fitting texts;
- a multinomial logistic regression, one per ``C`` of the grid, fitted on the
  training split;
- ``C`` and the mixing weight ``w`` chosen together on the validation
  macro-F1 of the mixture with the encoder's calibrated validation
  probabilities (``w = 1`` is the encoder alone, so validation may switch the
  lexical part off for a task);
- a temperature for the mixture, ``softmax(log(p_mix) / T)``, fitted on the same
  validation split (NLL), because a mixture of a calibrated encoder and a less
  calibrated regression is not calibrated itself; it changes no label;
- then, with ``C``, ``w`` and ``T`` fixed, the vectorisers and the regression
  fitted once more on training plus validation (``refit_on_validation``): the
  choices need held-apart texts, the served regression gains from 15% more of
  them (models/experiments/lexical_refit_validation.json: 20 of 24 held-out
  figures up over six encoders). The encoder never trains on validation.

It is fitted at the end of ``finsentry train`` (:func:`fit_lexical`) and
refitted with the analysts' labels by ``finsentry retrain``
(:meth:`LexicalModel.refit`, same ``C``, ``w``, ``T`` and mixing). A registry entry stores it
as ``lexical/<task>.safetensors`` (idf per vocabulary, coefficients in fp16,
intercepts) and ``lexical/<task>.vocab.json`` (the terms in column order), with
``C``, ``w``, ``T``, mixing and sizes in the manifest's ``lexical`` key: plain arrays, no
pickle, so an entry never runs code when it is loaded. An entry without that
key is served by the encoder alone.

Texts must already be normalised (``models.data.normalise_text``), as for the
encoder.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import softmax
from models.labels import class_names
from models.lexical_features import SharedTfidf

log = logging.getLogger(__name__)

#: The two vectorisers' settings (sklearn ``TfidfVectorizer`` keyword arguments).
WORD_FEATURES: dict[str, Any] = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
CHAR_FEATURES: dict[str, Any] = {
    "analyzer": "char_wb",
    "ngram_range": (2, 5),
    "sublinear_tf": True,
    "min_df": 2,
}
_KINDS = (("words", WORD_FEATURES), ("chars", CHAR_FEATURES))
#: The kinds in coefficient column order.
KIND_NAMES: tuple[str, ...] = tuple(kind for kind, _ in _KINDS)
#: Regularisation strengths tried on validation (larger C: weaker regularisation).
C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
#: Encoder weights tried on validation; 1.0 is the encoder alone.
WEIGHT_GRID: tuple[float, ...] = tuple(i / 10 for i in range(11))
MAX_ITER = 3000
#: How new fits mix (``LexicalHead.mixing``); manifests without the key are "arithmetic".
MIXINGS = ("geometric", "arithmetic")


class LexicalError(RuntimeError):
    """A lexical model that cannot be fitted, saved or loaded; says which and why."""


def _vectorizer(settings: dict[str, Any], vocabulary: list[str] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    if vocabulary is None:
        return TfidfVectorizer(**settings)
    kwargs = {k: v for k, v in settings.items() if k != "min_df"}
    return TfidfVectorizer(**kwargs, vocabulary={term: i for i, term in enumerate(vocabulary)})


def _macro_f1(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


@dataclass
class LexicalHead:
    """One task's vectorisers, regression weights and mixing weight."""

    task: str
    vectorizers: dict[str, Any]  # "words"/"chars" -> fitted TfidfVectorizer
    coef: np.ndarray  # (classes, features), float32
    intercept: np.ndarray  # (classes,), float32
    c: float
    model_weight: float
    #: Of the mixture: softmax(log(p_mix) / temperature); 1.0 leaves it as mixed.
    temperature: float = 1.0
    #: "geometric": log p_mix = w log p_encoder + (1 - w) log p_lexical (+ const);
    #: "arithmetic": p_mix = w p_encoder + (1 - w) p_lexical (entries fitted before geometric).
    mixing: str = "arithmetic"
    #: Built on first use from the vectorisers and coefficients, which never change.
    _features: SharedTfidf | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mixing not in MIXINGS:
            raise LexicalError(f"unknown mixing {self.mixing!r}, expected one of {MIXINGS}")

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """p(class | text) of the logistic regression alone, shape (n, classes)."""
        if self._features is None:
            self._features = SharedTfidf([self], KIND_NAMES)
        return softmax(self._features.scores(texts)[self.task])

    def mix(self, encoder_probs: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The encoder's probabilities mixed with this head's on ``texts`` (the encoder's
        array itself when w is 1)."""
        if self.model_weight >= 1.0:
            return encoder_probs
        return self.mixed(encoder_probs, self.probabilities(texts))

    def mixed(self, encoder_probs: np.ndarray, lexical_probs: np.ndarray) -> np.ndarray:
        """The mixture of given probabilities, tempered by the mixture's temperature."""
        if self.model_weight >= 1.0:
            return encoder_probs
        return softmax(
            log_mixture(encoder_probs, lexical_probs, self.model_weight, self.mixing)
            / np.float32(self.temperature)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "C": self.c,
            "model_weight": self.model_weight,
            "temperature": self.temperature,
            "mixing": self.mixing,
            "features": {kind: len(self.vectorizers[kind].vocabulary_) for kind, _ in _KINDS},
            "classes": len(self.intercept),
        }


def log_mixture(
    encoder_probs: np.ndarray, lexical_probs: np.ndarray, weight: float, mixing: str
) -> np.ndarray:
    """Log-probabilities of the mixture (up to a constant per row for "geometric")."""
    w = np.float32(weight)
    if mixing == "geometric":
        return w * np.log(np.maximum(encoder_probs, 1e-12)) + (1 - w) * np.log(
            np.maximum(lexical_probs, 1e-12)
        )
    if mixing == "arithmetic":
        return np.log(np.maximum(w * encoder_probs + (1 - w) * lexical_probs, 1e-12))
    raise LexicalError(f"lexical: mixing must be one of {MIXINGS}, got {mixing!r}")


def _fit_vectorizers(texts: Sequence[str]):
    """The two vectorisers fitted on ``texts`` and the stacked features of ``texts``."""
    from scipy.sparse import hstack

    vectorizers = {kind: _vectorizer(settings) for kind, settings in _KINDS}
    x = hstack([vectorizers[k].fit_transform(texts) for k, _ in _KINDS]).tocsr()
    return vectorizers, x


def _fit_head(
    task: str,
    vectorizers: dict[str, Any],
    x,
    labels: np.ndarray,
    c: float,
    sample_weight: np.ndarray | None = None,
) -> LexicalHead:
    """The logistic regression on features ``x`` (rows of ``vectorizers``' columns)."""
    n_classes = len(class_names(task))
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=MAX_ITER)
    clf.fit(x, labels, sample_weight=sample_weight)
    # Classes absent from the training labels still get a (never chosen) column.
    coef = np.zeros((n_classes, x.shape[1]), np.float32)
    intercept = np.full(n_classes, -30.0, np.float32)
    if len(clf.classes_) == 2:  # sklearn's binary form: p(second) = sigmoid(w.x + b)
        coef[clf.classes_[1]] = clf.coef_[0]
        intercept[clf.classes_] = (0.0, clf.intercept_[0])
    else:
        coef[clf.classes_] = clf.coef_
        intercept[clf.classes_] = clf.intercept_
    # Stored in fp16: serve exactly what validation measured.
    coef = coef.astype(np.float16).astype(np.float32)
    return LexicalHead(task, vectorizers, coef, intercept, float(c), 1.0)


def _refitted(
    head: LexicalHead, texts: Sequence[str], labels: np.ndarray, sample_weight=None
) -> LexicalHead:
    """``head`` fitted anew on ``texts`` (new vectorisers) with its C, mixing weight,
    temperature and mixing."""
    vectorizers, x = _fit_vectorizers(texts)
    new = _fit_head(head.task, vectorizers, x, labels, head.c, sample_weight=sample_weight)
    new.model_weight, new.temperature, new.mixing = (
        head.model_weight, head.temperature, head.mixing
    )
    return new


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


class LexicalModel:
    """One :class:`LexicalHead` per task; tasks without one are served by the encoder alone."""

    def __init__(self, heads: dict[str, LexicalHead]) -> None:
        self.heads = dict(heads)
        self._features: SharedTfidf | None = None  # all heads' n-grams cut once per text

    def mix(self, task: str, encoder_probs: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        head = self.heads.get(task)
        return encoder_probs if head is None else head.mix(encoder_probs, texts)

    def mix_all(self, probs: dict[str, np.ndarray], texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``mix`` for every task in ``probs``, analysing each text once for all of them."""
        return self.mix_scores(probs, self.scores(texts))

    def scores(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each mixed-in head's logits for ``texts`` (each text analysed once for all heads);
        needs no encoder output, so it can run beside the encoder."""
        if len(texts) == 0 or not any(h.model_weight < 1.0 for h in self.heads.values()):
            return {}
        if self._features is None:
            self._features = SharedTfidf(
                [h for h in self.heads.values() if h.model_weight < 1.0], KIND_NAMES
            )
        return self._features.scores(texts)

    def mix_scores(
        self, probs: dict[str, np.ndarray], scores: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """``probs`` with each task that has ``scores`` (from :meth:`scores`) mixed in."""
        return {
            task: self.heads[task].mixed(p, softmax(scores[task])) if task in scores else p
            for task, p in probs.items()
        }

    def describe(self) -> dict[str, Any]:
        """The manifest's ``lexical`` key."""
        return {
            "kind": "tfidf-logistic-regression",
            "word_features": _jsonable(WORD_FEATURES),
            "char_features": _jsonable(CHAR_FEATURES),
            "tasks": {task: head.describe() for task, head in sorted(self.heads.items())},
        }

    def refit(self, examples: Sequence) -> LexicalModel:
        """A new model fitted on ``examples`` (text, task, label[, weight]) with this one's
        C, mixing weights and temperatures; the vectorisers are fitted anew on the new texts."""
        heads = {}
        for task, head in self.heads.items():
            rows = [e for e in examples if e.task == task]
            if not rows:
                raise LexicalError(f"lexical: no {task} examples to refit on")
            weights = np.array([float(getattr(e, "weight", 1.0)) for e in rows])
            heads[task] = _refitted(
                head, [e.text for e in rows], np.array([e.label for e in rows]), weights
            )
        return LexicalModel(heads)

    # -- storage -------------------------------------------------------------

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for task, head in self.heads.items():
            tensors = {
                "coef": head.coef.astype(np.float16),
                "intercept": head.intercept.astype(np.float32),
            }
            vocab = {}
            for kind, _ in _KINDS:
                vec = head.vectorizers[kind]
                terms = [""] * len(vec.vocabulary_)
                for term, i in vec.vocabulary_.items():
                    terms[i] = term
                vocab[kind] = terms
                tensors[f"{kind}_idf"] = np.asarray(vec.idf_, np.float32)
            save_file(tensors, str(directory / f"{task}.safetensors"))
            (directory / f"{task}.vocab.json").write_text(
                json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
            )

    @classmethod
    def load(cls, directory: Path, description: dict[str, Any]) -> LexicalModel:
        """The model saved in ``directory``; LexicalError names what is wrong."""
        from safetensors.numpy import load_file

        heads = {}
        for task, meta in description.get("tasks", {}).items():
            try:
                tensors = load_file(str(Path(directory) / f"{task}.safetensors"))
                vocab = json.loads(
                    (Path(directory) / f"{task}.vocab.json").read_text(encoding="utf-8")
                )
                vectorizers = {}
                offset = 0
                for kind, settings in _KINDS:
                    vec = _vectorizer(settings, vocab[kind])
                    vec.idf_ = tensors[f"{kind}_idf"]
                    vectorizers[kind] = vec
                    offset += len(vocab[kind])
                coef = tensors["coef"].astype(np.float32)
                intercept = tensors["intercept"].astype(np.float32)
                if coef.shape != (len(intercept), offset):
                    raise LexicalError(
                        f"coefficients {coef.shape} do not match {len(intercept)} classes "
                        f"x {offset} terms"
                    )
                if len(intercept) != int(meta["classes"]):
                    raise LexicalError(f"{len(intercept)} classes, manifest says {meta['classes']}")
                heads[task] = LexicalHead(
                    task, vectorizers, coef, intercept, float(meta["C"]),
                    float(meta["model_weight"]),
                    float(meta.get("temperature", 1.0)),
                    str(meta.get("mixing", "arithmetic")),
                )
            except LexicalError as exc:
                raise LexicalError(f"lexical model for {task}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - safetensors, json, sklearn: all mean unreadable
                raise LexicalError(
                    f"lexical model for {task}: unreadable: {type(exc).__name__}: {exc}"
                ) from exc
        return cls(heads)


def fit_lexical(
    train: Sequence,
    validation: Sequence,
    encoder_validation_probs: dict[str, np.ndarray],
    *,
    c_grid: Sequence[float] = C_GRID,
    weight_grid: Sequence[float] = WEIGHT_GRID,
    mixing: str = "geometric",
    refit_on_validation: bool = True,
) -> tuple[LexicalModel, dict[str, Any]]:
    """Fit one head per task in ``encoder_validation_probs`` and choose C and w on validation.

    ``train``/``validation`` hold objects with ``text`` (normalised), ``task`` and
    ``label`` (head index); ``encoder_validation_probs[task]`` are the encoder's
    calibrated probabilities for that task's validation examples, in order.
    With ``refit_on_validation``, a head that is mixed in (w < 1) is fitted again
    on training plus validation once C, w and T are chosen.
    Returns the model and a report (validation macro-F1 of the regression alone per C,
    and of the mixture per weight at the chosen C, both from the training-only fits).
    """
    if mixing not in MIXINGS:
        raise LexicalError(f"lexical: mixing must be one of {MIXINGS}, got {mixing!r}")
    heads, report = {}, {}
    for task, encoder_val in encoder_validation_probs.items():
        rows = [e for e in train if e.task == task]
        val = [e for e in validation if e.task == task]
        if not rows or not val:
            raise LexicalError(f"lexical: {task} needs training and validation examples")
        if len(val) != len(encoder_val):
            raise LexicalError(
                f"lexical: {len(val)} {task} validation examples, "
                f"{len(encoder_val)} encoder probabilities"
            )
        texts, labels = [e.text for e in rows], np.array([e.label for e in rows])
        val_texts, val_labels = [e.text for e in val], np.array([e.label for e in val])
        vectorizers, x = _fit_vectorizers(texts)
        fits = {}  # C -> (head, its validation probabilities)
        for c in c_grid:
            head = _fit_head(task, vectorizers, x, labels, c)
            fits[c] = (head, head.probabilities(val_texts))
        # C and w together on the mixture's validation macro-F1; ties go to the larger
        # encoder weight (the simpler model), then to the smaller C (the smoother regression).
        by_c_and_w = {
            (c, w): _macro_f1(val_labels, log_mixture(encoder_val, lexical_val, w, mixing))
            for c, (_, lexical_val) in fits.items()
            for w in weight_grid
        }
        c, w = max(by_c_and_w, key=lambda cw: (by_c_and_w[cw], cw[1], -cw[0]))
        head, lexical_val = fits[c]
        head.model_weight, head.mixing = w, mixing
        ece = {}
        if w < 1.0:
            from models.calibration import expected_calibration_error, fit_temperature

            logits = log_mixture(encoder_val, lexical_val, w, mixing)
            head.temperature = fit_temperature(logits, val_labels)
            ece = {
                "validation_ece_mixed": round(
                    expected_calibration_error(softmax(logits), val_labels), 4
                ),
                "validation_ece_after_temperature": round(
                    expected_calibration_error(head.mixed(encoder_val, lexical_val), val_labels), 4
                ),
            }
        log.info(
            "lexical %s: C=%g, encoder weight %.1f, %s mixing (validation macro-F1 %.4f; "
            "encoder alone %.4f), mixture temperature %.3f %s",
            task, c, w, mixing, by_c_and_w[(c, w)],
            by_c_and_w.get((c, 1.0), float("nan")), head.temperature, ece,
        )
        fitted_on = "train"
        if refit_on_validation and w < 1.0:
            started = time.monotonic()
            head = _refitted(head, texts + val_texts, np.concatenate([labels, val_labels]))
            fitted_on = "train+validation"
            log.info("lexical %s: refitted on training plus validation in %.0f s",
                     task, time.monotonic() - started)
        heads[task] = head
        report[task] = {
            "C": c,
            "model_weight": w,
            "mixing": mixing,
            "temperature": head.temperature,
            "fitted_on": fitted_on,
            **ece,
            "features": head.n_features,
            "validation_macro_f1_by_C": {
                str(k): round(_macro_f1(val_labels, v), 4) for k, (_, v) in fits.items()
            },
            "validation_macro_f1_by_weight": {
                str(k): round(by_c_and_w[(c, k)], 4) for k in weight_grid
            },
        }
    return LexicalModel(heads), report
