"""makeService(): the Twisted service tree that ``twistd siprec`` starts.

::

    MultiService "siprec"
    ├── SIP listeners (UDP/TCP per PORTS, TLS on TLS_PORT)
    ├── MediaService (RTP ports)
    └── HTTP (Klein API, health, metrics)

Stopping the tree (SIGTERM, SIGINT, tests) drains first: new INVITEs get
503, every call is sent BYE and finalised, then listeners close.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Dict, Optional, Tuple

from twisted.application import internet, service
from twisted.internet import defer, endpoints, ssl
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

import siprec
from siprec.config import Config, ensure_recording_dir
from siprec.logs import install_log_filter
from siprec.realtime.setup import build_realtime
from siprec.recording.publisher import CallEventPublisher
from siprec.security.auth import authenticator_from_config
from siprec.http.app import SiprecApi, make_site
from siprec.media.service import MediaService
from siprec.ops.health import Health
from siprec.ops.metrics import LiveFigures, Metrics
from siprec.ops.services import OrderedMultiService, ThreadPoolService
from siprec.recording.manager import ManagerSettings, RecordingManager
from siprec.sip.transaction import Timers
from siprec.sip.transport import (
    UDP_MAX_DATAGRAM,
    OutboundStreamPeer,
    SipDatagramProtocol,
    SipStreamFactory,
    UdpPeer,
)
from siprec.sip.uas import SipCore, UasSettings

log = Logger()

__all__ = ["SiprecService", "makeService", "local_address"]


def local_address() -> str:
    """The address of the interface that routes outward (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1; connect() on UDP sends nothing
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


def advertised_address(config: Config) -> Tuple[str, str]:
    """(address, why) to put in Contact and SDP c= lines."""
    external = (config.external_ip or "").strip()
    if external and external.lower() != "auto":
        return external, "EXTERNAL_IP"
    if config.behind_nat:
        from siprec.ops.stun import discover_external_address
        found = discover_external_address(config.stun_server)
        if found:
            return found, f"STUN ({config.stun_server})"
        address = local_address()
        log.warn("EXTERNAL_IP=auto: STUN server {stun} did not answer; advertising the local "
                 "interface address {address}", stun=config.stun_server, address=address)
        return address, "local interface (STUN unreachable)"
    for name in ("rtp_bind_ip", "sip_host"):
        value = (getattr(config, name) or "").strip()
        if value and _is_ip(value) and not ipaddress.ip_address(value).is_unspecified:
            return value, name.upper()
    return local_address(), "local interface"


#: Room for a burst: 200 INVITEs or BYEs arriving at once must wait in the
#: kernel, not be dropped there, while the reactor works through them.
SIP_UDP_RECEIVE_BUFFER = 8 * 1024 * 1024


def _grow_receive_buffer(port) -> None:
    """Ask for SIP_UDP_RECEIVE_BUFFER (the kernel caps it at net.core.rmem_max)."""
    try:
        sock = port.getHandle()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SIP_UDP_RECEIVE_BUFFER)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except (OSError, AttributeError) as e:
        log.info("Could not enlarge the SIP UDP receive buffer: {error}", error=e)
        return
    if granted < SIP_UDP_RECEIVE_BUFFER:
        log.info("SIP UDP receive buffer is {granted} bytes (asked {wanted}; raise "
                 "net.core.rmem_max for more room in bursts)", granted=granted,
                 wanted=SIP_UDP_RECEIVE_BUFFER)


class _UdpListener(service.Service):
    """listenUDP with room for the largest datagram (metadata can be big)."""

    def __init__(self, reactor, port: int, interface: str, protocol_):
        self.reactor = reactor
        self.port_number = port
        self.interface = interface
        self.protocol = protocol_
        self.port = None

    def privilegedStartService(self):
        self.port = self.reactor.listenUDP(self.port_number, self.protocol,
                                           interface=self.interface,
                                           maxPacketSize=UDP_MAX_DATAGRAM)
        self.protocol.local = (self.interface, self.port.getHost().port)
        _grow_receive_buffer(self.port)
        service.Service.privilegedStartService(self)

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        service.Service.startService(self)

    def stopService(self):
        service.Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


class SiprecService(OrderedMultiService):
    """The whole server. Children start in the order added and stop in reverse,
    one after another (pools, real-time publishers, transcription, media, SIP,
    HTTP), after the drain has finalised every call."""

    def __init__(self, config: Config, reactor=None, install_logging: bool = False):
        super().__init__()
        self.install_logging = install_logging  # twistd's observers get LOG_LEVEL/LOG_FORMAT
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.setName("siprec")
        self.config = config
        self.reactor = reactor
        self.metrics = Metrics()
        self.health = Health(reactor, version=siprec.__version__,
                             active_calls=lambda: self.manager.active_count)
        self.threadpool = ThreadPool(minthreads=1, maxthreads=4, name="siprec-files")
        ThreadPoolService(self.threadpool).setServiceParent(self)
        # Found when the service starts (EXTERNAL_IP=auto asks a STUN server).
        self.address: Optional[str] = None
        self.address_source: Optional[str] = None
        self.auth = authenticator_from_config(config, reactor)
        self.realtime = build_realtime(config, reactor, self.auth)
        for part in self.realtime.services:
            part.setServiceParent(self)
        self.metrics.registry.register(self.realtime.collector)
        self.transcription = self._build_transcription()
        self.media = MediaService(
            reactor, config.rtp_port_min, config.rtp_port_max, config.rtp_bind_ip or "",
            header_interval=config.wav_header_interval,
            opus_sample_rate=int(config.opus_sample_rate),
            record_raw_rtp=config.record_raw_rtp)
        self.media.setServiceParent(self)
        self.manager = RecordingManager(
            reactor, self.media,
            ManagerSettings(
                recording_dir=config.recording_dir,
                media_address="0.0.0.0",  # set when the address is known
                combine_legs=config.recording_combine_legs,
                rtp_timeout=config.rtp_timeout,
                max_calls=config.max_concurrent_calls,
                accept_savp=config.enable_srtp,

                opus_sample_rate=int(config.opus_sample_rate),
                audio_analysis=config.audio_analysis_enabled,
            ),
            metrics=self.metrics,
            threadpool=self.threadpool,
            events=CallEventPublisher(self.realtime.bus, reactor),
            transcription=self.transcription,
        )
        from siprec.recording.multipart import split_siprec_body
        self.core = SipCore(
            reactor, self.manager,
            UasSettings(
                host="0.0.0.0",  # set when the address is known
                user_agent=config.sip_user_agent,
                require_metadata=config.siprec_require_metadata,
                session_expires=config.session_expires,
                min_se=config.min_se,
                timers=Timers(t1=config.sip_transaction_t1),
            ),
            metrics=self.metrics,
            peer_for_dialog=self.peer_for_dialog,
            read_body=split_siprec_body,
        )
        self.udp: Dict[int, _UdpListener] = {}
        self.stream_factories: Dict[str, SipStreamFactory] = {}
        self._build_sip_listeners()
        self._build_http()
        self.metrics.add_live_source(self._live_figures)
        self.health.add_check("sip", self._sip_check)

    # -- construction ---------------------------------------------------------
    def _build_sip_listeners(self) -> None:
        config = self.config
        host = config.sip_host
        tcp = SipStreamFactory(self.core, "TCP", config.sip_max_message_size)
        tcp.noisy = False
        self.stream_factories["TCP"] = tcp
        for port in config.ports:
            protocol_ = SipDatagramProtocol(self.core, (host, port))
            protocol_.noisy = False
            udp = _UdpListener(self.reactor, port, host, protocol_)
            udp.setName(f"sip-udp-{port}")
            udp.setServiceParent(self)
            self.udp[port] = udp
            listener = internet.TCPServer(port, tcp, interface=host, reactor=self.reactor)
            listener.setName(f"sip-tcp-{port}")
            listener.setServiceParent(self)
        if config.enable_tls:
            tls = SipStreamFactory(self.core, "TLS", config.sip_max_message_size)
            tls.noisy = False
            self.stream_factories["TLS"] = tls
            listener = internet.SSLServer(config.tls_port, tls, self.tls_options(),
                                          interface=host, reactor=self.reactor)
            listener.setName(f"sip-tls-{config.tls_port}")
            listener.setServiceParent(self)

    def tls_options(self):
        with open(self.config.tls_cert_file, "rb") as f:
            cert_pem = f.read()
        with open(self.config.tls_key_file, "rb") as f:
            key_pem = f.read()
        cert = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
        return cert.options()

    def _build_transcription(self):
        """Live transcription of every leg (STT_ENABLED): router, engines, post-call queue."""
        self.stt_pool = None
        if not self.config.stt_enabled:
            return None
        from siprec.stt.metrics import SttCollector
        from siprec.stt.service import TranscriptionService
        self.stt_pool = ThreadPool(minthreads=1, maxthreads=self.config.stt_threads,
                                   name="siprec-stt")
        ThreadPoolService(self.stt_pool).setServiceParent(self)
        transcription = TranscriptionService(self.config, self.reactor, self.stt_pool,
                                             self._transcript_result)
        transcription.setServiceParent(self)
        self.metrics.registry.register(SttCollector(transcription.status))
        self.health.add_check("stt", self._stt_check)
        return transcription

    def _transcript_result(self, result) -> None:
        """STT results, live or from the post-call queue, go to the call they belong to."""
        self.manager.transcript_result(result)

    def _stt_check(self):
        """Reported, never failing: a broken speech engine must not take recording offline."""
        status = self.transcription.status()
        open_breakers = [name for name, p in (status.get("providers") or {}).items()
                         if (p.get("breaker") or {}).get("state") == "open"]
        if not self.transcription.ready():
            return True, "transcription unavailable (recording unaffected)"
        if open_breakers:
            return True, f"degraded: breaker open for {', '.join(sorted(open_breakers))}"
        return True, "ok"

    def _build_http(self) -> None:
        self.api = SiprecApi(self.manager, self.metrics, self.health, self.reactor, auth=self.auth,
                             drain=self.start_drain)
        self.site = make_site(self.api, mounts=self.realtime.resources)
        self.site.noisy = False
        http = internet.TCPServer(self.config.http_port, self.site,
                                  interface=self.config.http_host, reactor=self.reactor)
        http.setName("http")
        http.setServiceParent(self)

    # -- running ----------------------------------------------------------------
    def _resolve_address(self) -> None:
        """The address our Contact and SDP advertise (may ask a STUN server)."""
        if self.address is not None:
            return
        self.address, self.address_source = advertised_address(self.config)
        self.manager.settings.media_address = self.address
        self.manager.settings.warning_agent = _warn_agent(self.address)
        self.core.settings.host = self.address

    def privilegedStartService(self):
        self._resolve_address()
        super().privilegedStartService()

    def startService(self):
        if self.install_logging:
            install_log_filter(self.config.log_level, self.config.log_format)
        self._resolve_address()
        ensure_recording_dir(self.config)
        super().startService()
        self.manager.start()
        log.info("siprec {version} ready: SIP on {host} ports {ports} (UDP/TCP){tls}, HTTP on "
                 "{http_host}:{http_port}, RTP {rtp_min}-{rtp_max}, advertising {address} ({why}), "
                 "recordings in {dir}",
                 version=siprec.__version__, host=self.config.sip_host,
                 ports=",".join(map(str, self.config.ports)),
                 tls=f", TLS {self.config.tls_port}" if self.config.enable_tls else "",
                 http_host=self.config.http_host, http_port=self.config.http_port,
                 rtp_min=self.config.rtp_port_min, rtp_max=self.config.rtp_port_max,
                 address=self.address, why=self.address_source,
                 dir=os.path.abspath(self.config.recording_dir))
        for name in self.config.unimplemented_enabled():
            log.warn("{name} is set but that feature is not implemented in this version; ignored",
                     name=name)

    def start_drain(self) -> None:
        """Take no more calls: OPTIONS and INVITEs get 503 with Retry-After, readiness
        fails, so load balancers and Kubernetes move on; calls already up go on."""
        if self.manager.draining:
            return
        log.info("Draining: new calls refused; {n} active call(s) go on",
                 n=self.manager.active_count)
        self.manager.draining = True
        self.core.stop_accepting()
        self.health.set_draining()

    @defer.inlineCallbacks
    def stopService(self):
        if not self.running:
            return
        log.info("Stopping: refusing new calls, finalising active ones")
        self.start_drain()
        drained = self.manager.drain()
        timeout = self.config.shutdown_timeout
        timer = self.reactor.callLater(timeout, drained.cancel) if timeout > 0 else None
        try:
            yield drained
        except defer.CancelledError:
            log.warn("Shutdown timeout ({t}s) reached with calls still finalising", t=timeout)
        finally:
            if timer is not None and timer.active():
                timer.cancel()
        self.manager.stop()
        # HTTP, SIP, media, transcription (its last utterances), the publishers
        # (so call.ended and the last transcripts still go out), then the pools.
        yield defer.maybeDeferred(super().stopService)
        self.core.close()

    # -- routing of requests we send -------------------------------------------
    def peer_for_dialog(self, dialog):
        peer = dialog.peer
        target = None
        uri = dialog.remote_target
        if uri is not None and uri.is_sip and _is_ip(uri.host):
            target = (uri.host, uri.port or (5061 if uri.scheme == "sips" else 5060))
        if peer.reliable:
            if getattr(peer, "connected", False):
                return peer
            target = target or peer.remote
            factory = self.stream_factories[peer.transport]
            if peer.transport == "TLS":
                endpoint = endpoints.SSL4ClientEndpoint(self.reactor, target[0], target[1],
                                                        ssl.CertificateOptions())
            else:
                endpoint = endpoints.TCP4ClientEndpoint(self.reactor, target[0], target[1])
            return OutboundStreamPeer(endpoint, factory, target)
        listener = self.udp.get(peer.local[1])
        port_transport = listener.port if listener is not None else peer.port
        return UdpPeer(port_transport, target or peer.remote, peer.local)

    # -- health and metrics ---------------------------------------------------
    def _sip_check(self):
        listening = all(l.port is not None for l in self.udp.values())
        return listening, "listening" if listening else "UDP listener down"

    def _live_figures(self) -> LiveFigures:
        totals = self.manager.stream_totals()
        return LiveFigures(
            active_calls=self.manager.active_count,
            active_streams=totals["active_streams"],
            rtp_packets_received=totals["packets"],
            rtp_bytes_received=totals["bytes"],
            rtp_packets_dropped=totals["dropped"],
            rtp_packets_late=totals["late"],
            ports_in_use=self.media.ports.in_use,
            ports_free=self.media.free_ports,
        )


def _warn_agent(address: str) -> str:
    return address if _is_ip(address) else "siprec"


def makeService(config: Config, reactor=None, install_logging: bool = False) -> SiprecService:
    return SiprecService(config, reactor, install_logging)
