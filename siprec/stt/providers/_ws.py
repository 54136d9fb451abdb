"""WebSocket plumbing shared by the streaming vendors (Autobahn on Twisted).

A ``WebSocketStream`` connects when the leg opens, buffers audio until the
vendor is ready, sends it in ~100 ms frames, maps the vendor's stream clock
onto the call timeline (``TimeMap``), and turns every way a connection can
go wrong (refused handshake, 401, a drop mid-call, garbage) into one
``listener.failed`` call. Subclasses say how to start, frame audio, end, and
read messages.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
from autobahn.twisted.websocket import (
    WebSocketClientFactory, WebSocketClientProtocol, connectWS,
)
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from siprec.stt.audio import TimeMap, pcm_bytes
from siprec.stt.base import (
    Hypothesis, LegSpec, StreamListener, SttAuthError, SttError, SttProtocolError,
)

__all__ = ["WebSocketStream"]

log = Logger()

_MAX_MESSAGE = 1 << 20
_MAX_PENDING_SECONDS = 30  # audio held while connecting; more means the vendor is gone


class _Protocol(WebSocketClientProtocol):
    stream: "WebSocketStream"

    def onOpen(self) -> None:
        self.stream._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.stream._message(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.stream._closed(wasClean, code, reason)


class _Factory(WebSocketClientFactory):
    stream: "WebSocketStream"

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.stream._closed(False, None, f"cannot connect: {reason.getErrorMessage()}")


class WebSocketStream:
    """Base ProviderStream for one leg over one vendor WebSocket."""

    chunk_seconds = 0.1
    keepalive_seconds: float | None = None

    def __init__(self, provider: str, leg: LegSpec, listener: StreamListener, reactor: Any,
                 url: str, headers: Mapping[str, str], timeout: float = 30.0) -> None:
        self.provider = provider
        self.leg = leg
        self.listener = listener
        self._reactor = reactor
        self.timemap = TimeMap(leg.sample_rate)
        self._proto: _Protocol | None = None
        self._ready = False
        self._pending = bytearray()
        self._chunk = max(2, int(self.chunk_seconds * leg.sample_rate) * 2)
        self._finishing: Deferred | None = None
        self._done = False  # failed, aborted or finished: no more listener calls
        self._keepalive = None
        self.bytes_sent = 0
        factory = _Factory(url, headers=dict(headers))
        factory.setProtocolOptions(maxMessagePayloadSize=_MAX_MESSAGE,
                                   maxFramePayloadSize=_MAX_MESSAGE, openHandshakeTimeout=timeout)
        stream = self

        class Bound(_Protocol):
            pass

        Bound.stream = stream
        factory.protocol = Bound
        factory.stream = stream
        self._connector = connectWS(factory, timeout=timeout)

    # -- hooks for subclasses ------------------------------------------------

    def on_open(self) -> None:
        """Connected: send what the vendor wants first; call ``ready()`` when
        audio may flow (default: at once)."""
        self.ready()

    def audio_frame(self, data: bytes) -> tuple[bytes, bool]:
        """(payload, is_binary) for a chunk of PCM bytes."""
        return data, True

    def end_frames(self) -> list[tuple[bytes, bool]]:
        """Frames that tell the vendor no more audio will come."""
        return []

    def keepalive_frame(self) -> tuple[bytes, bool] | None:
        return None

    def on_text(self, message: Any) -> None:
        """A JSON text message from the vendor."""

    def on_binary(self, payload: bytes) -> None:
        raise SttProtocolError(self.provider, "unexpected binary message")

    def finished_by_server_close(self) -> bool:
        """Whether a clean close after the end frames means 'all results sent'."""
        return True

    # -- helpers for subclasses ----------------------------------------------

    def ready(self) -> None:
        self._ready = True
        self._send_audio(final=self._finishing is not None)
        if self._finishing is not None:
            self._send_end()

    def send_json(self, message: Any) -> None:
        if self._proto is not None:
            self._proto.sendMessage(json.dumps(message).encode(), isBinary=False)

    def emit(self, hyp: Hypothesis) -> None:
        if not self._done and hyp.text.strip():
            self.listener.hypothesis(hyp)

    def fail(self, error: SttError) -> None:
        if self._done:
            return
        self._done = True
        self._stop_keepalive()
        self.listener.failed(error)
        self._drop()
        self._fire_finish()

    def complete(self) -> None:
        """The vendor sent everything (end-of-transcript message)."""
        if self._finishing is None or self._done:
            return
        self._done = True
        self._stop_keepalive()
        if self._proto is not None:
            self._proto.sendClose(1000)
        self._fire_finish()

    def to_call(self, stream_seconds: float) -> float:
        return round(self.timemap.to_call(stream_seconds), 3)

    # -- ProviderStream ------------------------------------------------------

    def feed(self, pcm: np.ndarray, offset: int) -> None:
        if self._done or self._finishing is not None:
            return
        self.timemap.add(offset, len(pcm))
        self._pending += pcm_bytes(pcm)
        if not self._ready and len(self._pending) > _MAX_PENDING_SECONDS * 2 * self.leg.sample_rate:
            self.fail(SttError(self.provider, f"not ready after {_MAX_PENDING_SECONDS}s of audio"))
            return
        if self._ready:
            self._send_audio(final=False)

    def finish(self) -> Deferred:
        if self._finishing is None:
            self._finishing = Deferred()
            if self._done:
                self._fire_finish()
            elif self._ready:
                self._send_audio(final=True)
                self._send_end()
        return self._finishing

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._stop_keepalive()
            self._drop()
        self._fire_finish()

    # -- internals -------------------------------------------------------------

    def _send_audio(self, final: bool) -> None:
        if self._proto is None:
            return
        while len(self._pending) >= self._chunk or (final and self._pending):
            data = bytes(self._pending[: self._chunk])
            del self._pending[: self._chunk]
            payload, binary = self.audio_frame(data)
            self._proto.sendMessage(payload, isBinary=binary)
            self.bytes_sent += len(data)
        self._arm_keepalive()

    def _send_end(self) -> None:
        if self._proto is None:
            return
        self._stop_keepalive()
        for payload, binary in self.end_frames():
            self._proto.sendMessage(payload, isBinary=binary)

    def _arm_keepalive(self) -> None:
        if self.keepalive_seconds is None or self._finishing is not None or self._done:
            return
        self._stop_keepalive()
        self._keepalive = self._reactor.callLater(self.keepalive_seconds, self._send_keepalive)

    def _send_keepalive(self) -> None:
        self._keepalive = None
        frame = self.keepalive_frame()
        if frame is not None and self._proto is not None and not self._done:
            self._proto.sendMessage(frame[0], isBinary=frame[1])
            self._arm_keepalive()

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None

    def _opened(self, proto: _Protocol) -> None:
        if self._done:
            proto.sendClose(1000)
            return
        self._proto = proto
        try:
            self.on_open()
        except SttError as err:
            self.fail(err)

    def _message(self, payload: bytes, binary: bool) -> None:
        if self._done:
            return
        try:
            if binary:
                self.on_binary(payload)
                return
            try:
                message = json.loads(payload)
            except ValueError:
                raise SttProtocolError(self.provider, f"non-JSON message {payload[:80]!r}") from None
            self.on_text(message)
        except SttError as err:
            self.fail(err)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            self.fail(SttProtocolError(self.provider, f"malformed message ({err!r})"))

    def _closed(self, clean: bool, code: int | None, reason: str | None) -> None:
        self._proto = None
        if self._done:
            self._fire_finish()
            return
        text = reason or ""
        if self._finishing is not None and clean and self.finished_by_server_close():
            self._done = True
            self._fire_finish()
            return
        if not self._ready and ("401" in text or "403" in text):
            self.fail(SttAuthError(self.provider, f"handshake refused: {text}"))
        elif text.startswith("cannot connect"):
            self.fail(SttError(self.provider, text))
        else:
            self.fail(SttError(self.provider, f"connection closed (code {code}): {text}"))

    def _drop(self) -> None:
        if self._proto is not None:
            proto, self._proto = self._proto, None
            proto.dropConnection(abort=True)
        else:
            self._connector.disconnect()

    def _fire_finish(self) -> None:
        if self._finishing is not None and not self._finishing.called and self._done:
            self._finishing.callback(None)
