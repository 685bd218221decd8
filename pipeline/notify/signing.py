"""HMAC-SHA256 signatures of the generic webhook, for senders and receivers.

The signature covers ``<timestamp>.<body>`` so a captured request cannot be
replayed later with a new timestamp: receivers check the signature in constant
time and refuse timestamps older than a tolerance.

Headers: ``X-Finsentry-Timestamp`` (Unix seconds), ``X-Finsentry-Signature``
(``sha256=<hex>``).
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Finsentry-Timestamp"
SIGNATURE_HEADER = "X-Finsentry-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance_seconds: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when ``signature`` is ours for ``body`` and ``timestamp`` is recent enough."""
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = now if now is not None else time.time()
    if abs(current - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)
