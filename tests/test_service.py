"""Address selection for Contact and SDP, and the service tree's shape."""

from __future__ import annotations

import socket

from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from siprec.config import load_config
from siprec.service import SIP_UDP_RECEIVE_BUFFER, advertised_address, local_address


def config(**env):
    return load_config(environ={k.upper(): v for k, v in env.items()}, env_file=None)


class AdvertisedAddressTests(SynchronousTestCase):
    def test_explicit_external_ip_wins(self):
        """EXTERNAL_IP set to an address is used as is."""
        self.assertEqual(advertised_address(config(external_ip="203.0.113.5"))[0], "203.0.113.5")

    def test_rtp_bind_ip_then_sip_host(self):
        """Without EXTERNAL_IP and NAT, a concrete RTP_BIND_IP, then SIP_HOST, is advertised."""
        self.assertEqual(advertised_address(config(rtp_bind_ip="127.0.0.2", sip_host="127.0.0.3"))[0],
                         "127.0.0.2")
        self.assertEqual(advertised_address(config(sip_host="127.0.0.3"))[0], "127.0.0.3")

    def test_wildcards_fall_back_to_interface(self):
        """0.0.0.0 everywhere: the outward interface address."""
        address, why = advertised_address(config())
        self.assertEqual((address, why), (local_address(), "local interface"))

    def test_auto_behind_nat_unreachable_stun_falls_back(self):
        """EXTERNAL_IP=auto behind NAT with a silent STUN server: local interface, with a reason."""
        import socket
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        try:
            address, why = advertised_address(config(
                behind_nat="true", stun_server=f"127.0.0.1:{silent.getsockname()[1]}"))
        finally:
            silent.close()
        self.assertEqual(address, local_address())
        self.assertIn("STUN unreachable", why)
        self.flushLoggedErrors()


class UdpListenerTests(TestCase):
    def test_sip_udp_socket_has_room_for_a_burst(self):
        """The SIP UDP socket asks for SIP_UDP_RECEIVE_BUFFER; it gets what the kernel
        allows (Linux doubles the request and caps it at twice net.core.rmem_max)."""
        from tests.e2e.harness import start_server
        service = start_server(self)
        [listener] = service.udp.values()
        granted = listener.port.getHandle().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        try:
            with open("/proc/sys/net/core/rmem_max") as f:
                cap = 2 * int(f.read())
        except OSError:
            raise SkipTest("no /proc/sys/net/core/rmem_max on this system")
        self.assertGreaterEqual(granted, min(cap, SIP_UDP_RECEIVE_BUFFER))
