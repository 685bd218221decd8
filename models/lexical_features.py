"""TF-IDF scores of several lexical heads from one pass over the text.

``sklearn``'s ``TfidfVectorizer.transform`` analyses every text and looks up
every n-gram in Python, once per vectoriser: with a word and a character
vectoriser per task and two tasks, each headline's ~340 character n-grams were
cut and looked up four times, about 0.26 ms per headline on one core, a sixth
of the served engine's time (docs/benchmarks.md). The heads' vectorisers share
their analysers (same settings, ``models.lexical.WORD_FEATURES`` and
``CHAR_FEATURES``) and differ only in vocabulary and idf, so
:class:`SharedTfidf` cuts the n-grams once per kind, looks each up once in
the union of the heads' vocabularies, and finishes each head's TF-IDF
(sublinear tf, its idf, l2 norm per kind) and logistic-regression scores with
array operations. The result equals sklearn's ``transform`` followed by the
head's coefficients (``tests/models/test_lexical_features.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

#: Column index for n-grams in no head's vocabulary.
_ABSENT = -1
#: Vectoriser settings that choose the vocabulary but do not change how text is cut.
_VOCABULARY_ONLY = frozenset({"vocabulary", "min_df", "max_df", "max_features"})


class SharedTfidf:
    """Logistic-regression scores, ``tfidf(text) @ coef.T + intercept``, for several heads.

    ``heads`` are :class:`models.lexical.LexicalHead` objects whose vectorisers
    all use the same analyser settings per kind (``kinds`` names them in
    column order). Their coefficients are copied into the union vocabulary's
    column order once, here; the heads are not kept.
    """

    def __init__(self, heads: Sequence[Any], kinds: Sequence[str]) -> None:
        from models.lexical import LexicalError  # that module imports this one

        if not heads:
            raise LexicalError("lexical: SharedTfidf needs at least one head")
        for kind in kinds:
            settings = {
                head.task: {
                    k: v
                    for k, v in head.vectorizers[kind].get_params().items()
                    if k not in _VOCABULARY_ONLY
                }
                for head in heads
            }
            if len({repr(sorted(v.items())) for v in settings.values()}) > 1:
                raise LexicalError(
                    f"lexical: the heads' {kind} vectorisers differ in settings, so their "
                    f"n-grams cannot be shared: {settings}"
                )
        self.tasks = [head.task for head in heads]
        self._intercepts = [np.asarray(head.intercept, np.float32) for head in heads]
        self._kinds = []
        offsets = [0] * len(heads)  # each head's first coefficient column of this kind
        for kind in kinds:
            vectorizers = [head.vectorizers[kind] for head in heads]
            self._kinds.append(_KindTables(vectorizers, heads, offsets))
            offsets = [o + len(v.vocabulary_) for o, v in zip(offsets, vectorizers, strict=True)]

    def scores(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per task, the regression's scores (logits), shape (len(texts), classes)."""
        out = {
            task: np.broadcast_to(b, (len(texts), len(b))).copy()
            for task, b in zip(self.tasks, self._intercepts, strict=True)
        }
        for tables in self._kinds:
            counts = tables.counts(texts)
            for task, contribution in zip(self.tasks, tables.scores(counts), strict=True):
                out[task] += contribution
        return out


class _KindTables:
    """One analyser kind ("words" or "chars"): the union vocabulary and, per head,
    its idf and coefficients over that vocabulary."""

    def __init__(
        self, vectorizers: Sequence[Any], heads: Sequence[Any], offsets: Sequence[int]
    ) -> None:
        self.analyse = vectorizers[0].build_analyzer()
        union: dict[str, int] = {}
        for vec in vectorizers:
            for term in vec.vocabulary_:
                union.setdefault(term, len(union))
        self.vocabulary = union
        self.idf, self.coef_t = [], []
        for vec, head, offset in zip(vectorizers, heads, offsets, strict=True):
            own = np.fromiter(vec.vocabulary_.values(), np.int64, len(vec.vocabulary_))
            cols = np.fromiter(
                (union[term] for term in vec.vocabulary_), np.int64, len(vec.vocabulary_)
            )
            idf = np.zeros(len(union), np.float32)  # 0: not in this head's vocabulary
            idf[cols] = np.asarray(vec.idf_, np.float32)[own]
            coef_t = np.zeros((len(union), head.coef.shape[0]), np.float32)
            coef_t[cols] = head.coef[:, offset + own].T
            self.idf.append(idf)
            self.coef_t.append(coef_t)

    def counts(self, texts: Sequence[str]) -> Any:
        """Term counts over the union vocabulary, one row per text (a scipy CSR matrix)."""
        from scipy.sparse import csr_matrix

        lookup = self.vocabulary.get
        columns: list[int] = []
        indptr = [0]
        for text in texts:
            grams = self.analyse(text)
            columns.extend(map(lookup, grams, repeat(_ABSENT)))
            indptr.append(len(columns))
        cols = np.asarray(columns, np.int64)
        rows = np.repeat(np.arange(len(texts)), np.diff(indptr))
        known = cols != _ABSENT
        counts = csr_matrix(
            (np.ones(int(known.sum()), np.float32), (rows[known], cols[known])),
            shape=(len(texts), len(self.vocabulary)),
        )
        counts.sum_duplicates()
        return counts

    def scores(self, counts: Any) -> list[np.ndarray]:
        """Per head, ``l2_normalise(sublinear_tf * idf) @ coef.T`` (sklearn's TF-IDF)."""
        from scipy.sparse import csr_matrix

        sublinear = np.log(counts.data) + 1.0
        row_of = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        out = []
        for idf, coef_t in zip(self.idf, self.coef_t, strict=True):
            values = sublinear * idf[counts.indices]
            norms = np.sqrt(np.bincount(row_of, values * values, minlength=counts.shape[0]))
            values = values / np.where(norms > 0, norms, 1.0)[row_of]
            tfidf = csr_matrix((values.astype(np.float32), counts.indices, counts.indptr),
                               shape=counts.shape)
            out.append(np.asarray(tfidf @ coef_t, np.float32))
        return out
