"""Prometheus metrics for the SRS, kept in a registry of our own.

Event counters (SIP traffic, calls, metadata warnings, HTTP requests) are
bumped by the components as things happen. Figures that already live in the
components (active calls, RTP totals, port pool) are read at scrape time from
registered *live sources*, so the media path never touches Prometheus per
packet.

Every label is bounded: SIP and HTTP methods outside a known set become
"other", status codes are strings from 100 to 699 (else "other"), and free-form
labels such as call-end reasons are limited in shape and in number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest
from twisted.logger import Logger

import siprec

log = Logger()

PREFIX = "siprec"
OTHER = "other"

SIP_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK",
    "REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_LABEL_SHAPE = re.compile(r"[a-z0-9_]{1,40}")


def method_label(method: object, known: frozenset = SIP_METHODS) -> str:
    """Keep a method label only when it is one we know (methods are case-sensitive)."""
    return method if isinstance(method, str) and method in known else OTHER


def status_label(status: object) -> str:
    """A SIP/HTTP status code as a string; anything outside 100..699 is "other"."""
    try:
        code = int(status)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return OTHER
    return str(code) if 100 <= code <= 699 else OTHER


class BoundedLabel:
    """Free-form label values limited in shape and in number of distinct values.

    Values are lower-cased; those not made of [a-z0-9_] (1 to 40 characters),
    and new values once `limit` distinct ones have been seen, become "other".
    """

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._seen: set = set()

    def __call__(self, value: object) -> str:
        if not isinstance(value, str):
            return OTHER
        value = value.strip().lower()
        if not _LABEL_SHAPE.fullmatch(value):
            return OTHER
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """Figures a component reports at scrape time; None means "not mine to report".

    Totals (rtp_*) must be cumulative over the life of the process. When
    several sources report the same figure, the values are added up.
    """

    active_calls: Optional[int] = None
    active_streams: Optional[int] = None
    rtp_packets_received: Optional[int] = None
    rtp_bytes_received: Optional[int] = None
    rtp_packets_dropped: Optional[int] = None
    rtp_packets_late: Optional[int] = None
    ports_in_use: Optional[int] = None
    ports_free: Optional[int] = None


LiveSource = Callable[[], LiveFigures]

# field -> (metric name without prefix, kind, help)
_LIVE_SERIES: Dict[str, Tuple[str, str, str]] = {
    "active_calls": ("active_calls", "gauge", "Recording sessions currently in progress."),
    "active_streams": ("active_streams", "gauge", "Media streams currently receiving."),
    "rtp_packets_received": ("rtp_packets_received", "counter", "RTP packets received on all streams."),
    "rtp_bytes_received": ("rtp_bytes_received", "counter", "RTP bytes received on all streams."),
    "rtp_packets_dropped": ("rtp_packets_dropped", "counter",
                            "RTP packets discarded (malformed, unknown SSRC, buffer full)."),
    "rtp_packets_late": ("rtp_packets_late", "counter",
                         "RTP packets that arrived too late for the jitter buffer."),
    "ports_in_use": ("rtp_ports_in_use", "gauge", "RTP ports allocated to streams."),
    "ports_free": ("rtp_ports_free", "gauge", "RTP ports left in the configured range."),
}
assert set(_LIVE_SERIES) == {f.name for f in fields(LiveFigures)}


class _LiveCollector:
    """Reads the registered live sources when Prometheus scrapes."""

    def __init__(self) -> None:
        self.sources: List[LiveSource] = []

    def describe(self) -> Iterator[Metric]:
        for field, (name, kind, doc) in _LIVE_SERIES.items():
            yield _family(kind, name, doc)

    def collect(self) -> Iterator[Metric]:
        totals: Dict[str, float] = {}
        for source in list(self.sources):
            try:
                figures = source()
                if not isinstance(figures, LiveFigures):
                    raise TypeError(f"live source returned {type(figures).__name__}, not LiveFigures")
                for field in _LIVE_SERIES:
                    value = getattr(figures, field)
                    if value is not None:
                        totals[field] = totals.get(field, 0) + float(value)
            except Exception:
                log.failure("Metrics live source {source!r} failed; its figures are left out",
                            source=source)
        for field, value in totals.items():
            name, kind, doc = _LIVE_SERIES[field]
            yield _family(kind, name, doc, value)


def _family(kind: str, name: str, doc: str, value: Optional[float] = None) -> Metric:
    full = f"{PREFIX}_{name}"
    if kind == "counter":
        return CounterMetricFamily(full, doc, value=value)
    return GaugeMetricFamily(full, doc, value=value)


class Metrics:
    """All siprec metrics, in a registry owned by this object (never the global one)."""

    def __init__(self, registry: Optional[CollectorRegistry] = None,
                 process_metrics: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self._end_reason = BoundedLabel()
        self._refusal_reason = BoundedLabel(64)
        self._live = _LiveCollector()
        reg.register(self._live)
        if process_metrics:
            ProcessCollector(namespace=PREFIX, registry=reg)

        self._build_info = Gauge(f"{PREFIX}_build_info", "Version of the running siprec.",
                                 ["version"], registry=reg)
        self._build_info.labels(version=siprec.__version__).set(1)
        self._sip_received = Counter(f"{PREFIX}_sip_requests_received",
                                     "SIP requests received, by method.", ["method"], registry=reg)
        self._sip_sent = Counter(f"{PREFIX}_sip_requests_sent",
                                 "SIP requests sent to SRCs, by method.", ["method"], registry=reg)
        self._sip_responses = Counter(f"{PREFIX}_sip_responses_sent",
                                      "SIP responses sent, by request method and status code.",
                                      ["method", "status"], registry=reg)
        self._calls_started = Counter(f"{PREFIX}_calls_started",
                                      "Recording sessions accepted.", registry=reg)
        self._calls_ended = Counter(f"{PREFIX}_calls_ended",
                                    "Recording sessions ended, by reason.", ["reason"], registry=reg)
        self._calls_refused = Counter(f"{PREFIX}_calls_refused",
                                      "INVITEs that will not be recorded, by status and reason.",
                                      ["status", "reason"], registry=reg)
        self._metadata_warnings = Counter(f"{PREFIX}_metadata_warnings",
                                          "Recording metadata accepted with warnings.", registry=reg)
        self._http_requests = Counter(f"{PREFIX}_http_requests",
                                      "HTTP API requests answered, by route, method and status.",
                                      ["route", "method", "status"], registry=reg)
        self._stream_mos = Histogram(
            f"{PREFIX}_stream_mos", "MOS (ITU-T G.107 E-model) of finished streams.",
            buckets=(1.0, 2.0, 2.6, 3.1, 3.6, 4.0, 4.2, 4.3, 4.4, 4.5), registry=reg)
        self._stream_loss = Histogram(
            f"{PREFIX}_stream_packet_loss_percent", "Packet loss of finished streams, percent.",
            buckets=(0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0), registry=reg)
        self._stream_jitter = Histogram(
            f"{PREFIX}_stream_jitter_ms", "Interarrival jitter (RFC 3550) of finished streams, ms.",
            buckets=(1.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0), registry=reg)
        self._http_duration = Histogram(f"{PREFIX}_http_request_duration_seconds",
                                        "Time to answer HTTP API requests, by route.", ["route"],
                                        registry=reg)

    # -- SIP core --------------------------------------------------------------
    def sip_request(self, method: str) -> None:
        """A SIP request was received."""
        self._sip_received.labels(method=method_label(method)).inc()

    def sip_request_sent(self, method: str) -> None:
        """We sent a SIP request (BYE, re-INVITE, ...) to an SRC."""
        self._sip_sent.labels(method=method_label(method)).inc()

    def sip_response(self, method: str, status: Union[int, str]) -> None:
        """We sent a SIP response to a request of `method`."""
        self._sip_responses.labels(method=method_label(method), status=status_label(status)).inc()

    # -- sessions ------------------------------------------------------------
    def call_started(self) -> None:
        self._calls_started.inc()

    def call_ended(self, reason: str) -> None:
        """A session ended; `reason` is a short word such as "bye" or "rtp_timeout"."""
        self._calls_ended.labels(reason=self._end_reason(reason)).inc()

    def call_refused(self, status: Union[int, str], reason: str) -> None:
        """A new INVITE was refused; ``reason`` a phrase such as "No RTP port available",
        exported as ``no_rtp_port_available``."""
        slug = re.sub(r"[^a-z0-9]+", "_", str(reason).lower()).strip("_")[:40]
        self._calls_refused.labels(status=status_label(status),
                                   reason=self._refusal_reason(slug)).inc()

    def metadata_warning(self) -> None:
        self._metadata_warnings.inc()

    # -- media quality -----------------------------------------------------------
    def stream_quality(self, mos: Optional[float], loss_percent: Optional[float],
                       jitter_ms: Optional[float]) -> None:
        """A finished stream's receive quality (ITU-T G.107 MOS, RFC 3550 loss/jitter)."""
        if mos is not None and mos == mos:
            self._stream_mos.observe(float(mos))
        if loss_percent is not None and loss_percent == loss_percent:
            self._stream_loss.observe(float(loss_percent))
        if jitter_ms is not None and jitter_ms == jitter_ms:
            self._stream_jitter.observe(float(jitter_ms))

    # -- HTTP API --------------------------------------------------------------
    def http_request(self, route: str, method: str, status: Union[int, str],
                     seconds: float) -> None:
        """An HTTP request was answered; `route` is a route template, never a raw path."""
        self._http_requests.labels(route=route, method=method_label(method, HTTP_METHODS),
                                   status=status_label(status)).inc()
        self._http_duration.labels(route=route).observe(max(0.0, seconds))

    # -- live figures ------------------------------------------------------------
    def add_live_source(self, source: LiveSource) -> None:
        """Have `source()` read at every scrape; it returns LiveFigures."""
        self._live.sources.append(source)

    def remove_live_source(self, source: LiveSource) -> None:
        if source in self._live.sources:
            self._live.sources.remove(source)

    # -- exposition ----------------------------------------------------------------
    def render(self, accept: Optional[str] = None) -> Tuple[bytes, str]:
        """Body and content type; OpenMetrics only when `accept` asks for it."""
        if accept:
            encoder, content_type = choose_encoder(accept)
            return encoder(self.registry), content_type
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
