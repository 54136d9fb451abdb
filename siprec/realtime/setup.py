"""Build every real-time part from the settings, for the service tree to wire in.

``build_realtime(config, reactor, auth)`` returns the EventBus (give it to the
recording manager), the WebSocket resources (give them to make_site), the
services to parent (WebSocket shutdown, AMQP publisher when configured) and
the Prometheus collector. Invalid settings raise siprec.config.ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from twisted.application import service

from siprec.realtime.amqp import AmqpPublisher, amqp_publisher_from_config
from siprec.realtime.bus import EventBus
from siprec.realtime.metrics import RealtimeCollector
from siprec.realtime.websocket import EventStreamResource, WebSocketService, websocket_resources
from siprec.security.auth import Authenticator

__all__ = ["Realtime", "build_realtime"]


@dataclass
class Realtime:
    bus: EventBus
    resources: Dict[str, EventStreamResource]   # make_site(api, mounts=resources)
    websocket_service: WebSocketService          # closes clients (1001) on shutdown
    amqp: Optional[AmqpPublisher]                # None without AMQP_URL / AMQP_ENDPOINTS
    collector: RealtimeCollector                 # metrics.registry.register(collector)

    @property
    def services(self) -> List[service.Service]:
        return [self.websocket_service] + ([self.amqp] if self.amqp is not None else [])


def build_realtime(config: Any, reactor: Any, auth: Optional[Authenticator]) -> Realtime:
    bus = EventBus(reactor)
    resources = websocket_resources(bus, reactor, auth, buffer_messages=config.ws_client_buffer,
                                    max_clients=config.ws_max_clients)
    amqp = amqp_publisher_from_config(config, bus, reactor)
    collector = RealtimeCollector(bus, [r.factory for r in resources.values()], amqp)
    return Realtime(bus=bus, resources=resources, websocket_service=WebSocketService(resources),
                    amqp=amqp, collector=collector)
