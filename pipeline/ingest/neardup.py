"""Near-duplicate stories across sources (MinHash over word shingles, LSH lookup).

The same wire story syndicated by ten sites differs in headline, byline and
boilerplate; its word 3-shingles mostly do not. A story whose estimated
Jaccard similarity to an earlier one reaches the threshold is emitted with
``duplicate_of`` = the earlier story's id, so aggregation can count it once.
Only originals are indexed, so ``duplicate_of`` always names an original.
"""

from __future__ import annotations

import re
import time

import numpy as np
from datasketch import MinHash, MinHashLSH

_URL = re.compile(r"https?://\S+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

#: datasketch hashing scheme; stored signatures are only comparable within one scheme.
SCHEME = "affine32"
SHINGLE_WORDS = 3
#: Texts with fewer words are too short to call near-duplicates reliably.
MIN_WORDS = 12


def shingles(text: str) -> set[bytes]:
    words = _WORD.findall(_URL.sub(" ", text.lower()))
    if len(words) < MIN_WORDS:
        return set()
    return {
        " ".join(words[i : i + SHINGLE_WORDS]).encode("utf-8")
        for i in range(len(words) - SHINGLE_WORDS + 1)
    }


class NearDuplicateIndex:
    def __init__(self, threshold: float, num_perm: int, horizon_seconds: float) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.horizon_seconds = horizon_seconds
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._entries: dict[str, tuple[MinHash, float]] = {}

    def signature(self, text: str) -> MinHash | None:
        grams = shingles(text)
        if not grams:
            return None
        minhash = MinHash(num_perm=self.num_perm, scheme=SCHEME)
        minhash.update_batch(sorted(grams))
        return minhash

    def to_bytes(self, minhash: MinHash) -> bytes:
        return np.asarray(minhash.hashvalues, dtype=np.uint32).tobytes()

    def from_bytes(self, data: bytes) -> MinHash | None:
        if len(data) != self.num_perm * 4:
            return None  # written with another minhash_permutations setting
        values = np.frombuffer(data, dtype=np.uint32).copy()
        return MinHash(num_perm=self.num_perm, hashvalues=values, scheme=SCHEME)

    def find(self, minhash: MinHash) -> str | None:
        """Id of the earliest indexed story similar enough to ``minhash``, or None."""
        best: tuple[float, str] | None = None
        for key in self._lsh.query(minhash):
            other, added = self._entries[key]
            if other.jaccard(minhash) >= self.threshold and (best is None or added < best[0]):
                best = (added, key)
        return best[1] if best else None

    def add(self, key: str, minhash: MinHash, added_at: float | None = None) -> None:
        if key in self._entries:
            return
        self._entries[key] = (minhash, added_at if added_at is not None else time.time())
        self._lsh.insert(key, minhash)

    def remove(self, key: str) -> None:
        if self._entries.pop(key, None) is not None:
            self._lsh.remove(key)

    def expire(self, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - self.horizon_seconds
        old = [key for key, (_sig, added) in self._entries.items() if added < cutoff]
        for key in old:
            self._lsh.remove(key)
            del self._entries[key]
        return len(old)

    def __len__(self) -> int:
        return len(self._entries)
