"""HTTP plumbing shared by the request-per-utterance vendors (treq)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterable, Mapping

import treq
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from treq.client import HTTPClient

from siprec.stt.base import SttAuthError, SttError, SttProtocolError

__all__ = ["HttpClient", "encode_multipart"]

_MAX_RESPONSE = 4 * 1024 * 1024


def encode_multipart(fields: Iterable[tuple[str, str]],
                     files: Iterable[tuple[str, str, str, bytes]]) -> tuple[bytes, str]:
    """multipart/form-data body and content type; files are (field, name, type, data)."""
    boundary = f"siprec-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    for field, filename, content_type, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
            + data + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class HttpClient:
    """A treq client on the given reactor that maps HTTP trouble to SttError."""

    def __init__(self, provider: str, reactor: Any, timeout: float) -> None:
        self.provider = provider
        self._reactor = reactor
        self.timeout = timeout
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        self._pool = pool
        self._client = HTTPClient(Agent(reactor, pool=pool))

    @inlineCallbacks
    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Deferred:
        """POST ``body``; fires with the decoded JSON answer, or fails with SttError."""
        try:
            response = yield self._client.post(
                url, data=body,
                headers=Headers({k.encode(): [v.encode()] for k, v in headers.items()}),
                timeout=self.timeout, reactor=self._reactor,
            )
            content = yield treq.content(response)
        except (CancelledError, TimeoutError):
            raise SttError(self.provider, f"no answer from {url} in {self.timeout:g}s") from None
        except ResponseNeverReceived as err:
            if any(reason.check(CancelledError) for reason in err.reasons):
                raise SttError(self.provider,
                               f"no answer from {url} in {self.timeout:g}s") from None
            raise SttError(self.provider, f"cannot reach {url}: {err.__class__.__name__}") from None
        except (ConnectError, DNSLookupError, ConnectionLost, ResponseFailed) as err:
            raise SttError(self.provider, f"cannot reach {url}: {err.__class__.__name__}") from None
        return self.check(response.code, content)

    def check(self, code: int, content: bytes) -> Any:
        """The JSON of a successful answer; SttAuthError/SttError otherwise."""
        snippet = content[:200].decode("utf-8", "replace").strip()
        if code in (401, 403):
            raise SttAuthError(self.provider, f"HTTP {code}: credentials refused ({snippet})")
        if code >= 400:
            error = SttError(self.provider, f"HTTP {code}: {snippet}")
            error.retryable = code == 429 or code >= 500
            raise error
        if len(content) > _MAX_RESPONSE:
            raise SttProtocolError(self.provider, f"answer of {len(content)} bytes is too big")
        try:
            return json.loads(content)
        except ValueError:
            raise SttProtocolError(self.provider, f"answer is not JSON: {snippet!r}") from None

    def close(self) -> Deferred:
        return self._pool.closeCachedConnections()
