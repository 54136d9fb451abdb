"""AWS Signature Version 4 query-string signing (presigned URLs), sans-IO.

Amazon Transcribe's WebSocket endpoint takes its credentials in the URL:
the canonical request (GET, path, sorted URI-encoded query, ``host``
header, SHA-256 of the empty payload) is hashed into a string to sign,
which is HMAC-signed with a key derived from the secret, date, region and
service; the signature is appended as ``X-Amz-Signature``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import quote, urlsplit

__all__ = ["presign_url", "signing_key"]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _quote(text: str) -> str:
    return quote(text, safe="-_.~")


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{_quote(k)}={_quote(str(v))}" for k, v in sorted(params.items()))


def presign_url(url: str, params: Mapping[str, str], access_key: str, secret_key: str,
                region: str, service: str, when: datetime, expires: int = 300,
                session_token: str = "") -> str:
    """``url`` (scheme://host[:port]/path) with ``params`` and a SigV4 signature."""
    parts = urlsplit(url)
    host = parts.netloc
    path = parts.path or "/"
    when = when.astimezone(timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = when.strftime("%Y%m%d")
    scope = f"{date}/{region}/{service}/aws4_request"
    query = dict(params)
    query.update({
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    })
    if session_token:
        query["X-Amz-Security-Token"] = session_token
    canonical = "\n".join([
        "GET", quote(path, safe="/-_.~"), canonical_query(query), f"host:{host}\n", "host",
        EMPTY_SHA256,
    ])
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, date, region, service), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    query["X-Amz-Signature"] = signature
    return f"{parts.scheme}://{host}{path}?{canonical_query(query)}"
