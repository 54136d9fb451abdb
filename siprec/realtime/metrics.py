"""Prometheus series for real-time delivery, read from the components at scrape time.

Register with ``metrics.registry.register(RealtimeCollector(bus, ws_factories,
amqp_publisher))``; nothing here is touched per event. Endpoint labels are
the broker's position in the configuration (``1``, ``2`` …), never its URL,
so credentials never reach a label and the label set stays bounded.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.logger import Logger

__all__ = ["RealtimeCollector"]

log = Logger()


class RealtimeCollector:
    """Bus, WebSocket and AMQP figures; any part may be None (not configured)."""

    def __init__(self, bus: Any = None, websocket_factories: Sequence[Any] = (),
                 amqp: Optional[Any] = None) -> None:
        self.bus = bus
        self.websocket_factories = list(websocket_factories)
        self.amqp = amqp

    def describe(self) -> Iterable[Metric]:
        return []  # figures are read at collect time only

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._bus()
            yield from self._websockets()
            yield from self._amqp()
        except Exception:
            log.failure("Collecting real-time metrics failed; they are left out")

    def _bus(self) -> Iterator[Metric]:
        if self.bus is None:
            return
        stats = self.bus.stats()
        yield CounterMetricFamily("siprec_events_published", "Events published on the bus.",
                                  value=stats["published"])
        dropped = CounterMetricFamily("siprec_event_subscriber_dropped",
                                      "Events a slow bus subscriber lost.", labels=["subscriber"])
        failed = CounterMetricFamily("siprec_event_subscriber_failures",
                                     "Bus subscriber calls that raised.", labels=["subscriber"])
        for sub in stats["subscribers"]:
            dropped.add_metric([sub["name"]], sub["dropped"])
            failed.add_metric([sub["name"]], sub["failed"])
        yield dropped
        yield failed

    def _websockets(self) -> Iterator[Metric]:
        if not self.websocket_factories:
            return
        clients = GaugeMetricFamily("siprec_websocket_clients", "Connected WebSocket clients.",
                                    labels=["channel"])
        sent = CounterMetricFamily("siprec_websocket_events_sent",
                                   "Events handed to WebSocket clients.", labels=["channel"])
        slow = CounterMetricFamily("siprec_websocket_slow_consumers_closed",
                                   "WebSocket clients closed for reading too slowly (4008).",
                                   labels=["channel"])
        for factory in self.websocket_factories:
            stats = factory.stats()
            clients.add_metric([stats["channel"]], stats["clients"])
            sent.add_metric([stats["channel"]], stats["events_out"])
            slow.add_metric([stats["channel"]], stats["slow_consumers_closed"])
        yield clients
        yield sent
        yield slow

    def _amqp(self) -> Iterator[Metric]:
        if self.amqp is None:
            return
        connected = GaugeMetricFamily("siprec_amqp_connected", "1 while the broker link is up.",
                                      labels=["endpoint"])
        buffered = GaugeMetricFamily("siprec_amqp_buffered_events",
                                     "Events waiting for a broker (buffer and unconfirmed).",
                                     labels=["endpoint"])
        counters = {
            "confirmed": CounterMetricFamily("siprec_amqp_events_confirmed",
                                             "Events the broker confirmed.", labels=["endpoint"]),
            "dropped": CounterMetricFamily("siprec_amqp_events_dropped",
                                           "Events dropped because the buffer was full.",
                                           labels=["endpoint"]),
            "rejected": CounterMetricFamily("siprec_amqp_events_rejected",
                                            "Events the broker refused repeatedly.",
                                            labels=["endpoint"]),
            "disconnects": CounterMetricFamily("siprec_amqp_disconnects",
                                               "Broker connections lost.", labels=["endpoint"]),
        }
        for position, stats in enumerate(self.amqp.stats()["endpoints"], 1):
            label = [str(position)]
            connected.add_metric(label, 1 if stats["connected"] else 0)
            buffered.add_metric(label, stats["buffered"] + stats["in_flight"])
            for key, family in counters.items():
                family.add_metric(label, stats[key])
        yield connected
        yield buffered
        yield from counters.values()
