"""Tests for siprec.ops.metrics: series names, values and bounded labels."""

from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

from prometheus_client import REGISTRY
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

import siprec
from siprec.ops.metrics import (
    OTHER, BoundedLabel, LiveFigures, Metrics, method_label, status_label,
)

SampleKey = Tuple[str, FrozenSet[Tuple[str, str]]]


def scrape(metrics: Metrics) -> Tuple[Dict[str, object], Dict[SampleKey, float]]:
    """Families by name and sample values by (sample name, labels), from the text format."""
    body, content_type = metrics.render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    samples = {}
    for family in families.values():
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Dict[SampleKey, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


class LabelTests(SynchronousTestCase):
    def test_known_sip_methods_kept(self) -> None:
        """Known methods keep their own label, case-sensitively."""
        self.assertEqual(method_label("INVITE"), "INVITE")
        self.assertEqual(method_label("BYE"), "BYE")
        self.assertEqual(method_label("invite"), OTHER)

    def test_unknown_methods_are_other(self) -> None:
        for hostile in ("FOO", "", "INVITE\r\n", "X" * 10_000, None, 42, b"INVITE"):
            self.assertEqual(method_label(hostile), OTHER, repr(hostile)[:40])

    def test_status_codes_are_strings(self) -> None:
        self.assertEqual(status_label(200), "200")
        self.assertEqual(status_label(100), "100")
        self.assertEqual(status_label(699), "699")
        self.assertEqual(status_label("486"), "486")

    def test_out_of_range_status_is_other(self) -> None:
        for hostile in (99, 700, -1, 10**100, "abc", None, "", float("nan")):
            self.assertEqual(status_label(hostile), OTHER, repr(hostile))

    def test_bounded_label_normalises_and_rejects_bad_shapes(self) -> None:
        label = BoundedLabel()
        self.assertEqual(label("BYE"), "bye")
        self.assertEqual(label(" rtp_timeout "), "rtp_timeout")
        for hostile in ("two words", "", "x" * 41, "évite", "a-b", None, 3):
            self.assertEqual(label(hostile), OTHER, repr(hostile))

    def test_bounded_label_caps_distinct_values(self) -> None:
        """Past the limit, new values are "other" while known ones stay."""
        label = BoundedLabel(limit=3)
        self.assertEqual([label(v) for v in ("a", "b", "c", "d", "a")], ["a", "b", "c", OTHER, "a"])


class MetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = Metrics()

    def test_own_registry(self) -> None:
        """Two Metrics coexist and neither touches the global registry."""
        other = Metrics()
        self.metrics.call_started()
        self.assertIsNot(self.metrics.registry, other.registry)
        self.assertIsNot(self.metrics.registry, REGISTRY)
        self.assertIsNone(REGISTRY.get_sample_value("siprec_calls_started_total"))
        _, samples = scrape(other)
        self.assertEqual(value(samples, "siprec_calls_started_total"), 0)

    def test_render_is_prometheus_text(self) -> None:
        body, content_type = self.metrics.render()
        self.assertEqual(content_type, CONTENT_TYPE_LATEST)
        self.assertIsInstance(body, bytes)
        self.assertIn(b"\n# HELP siprec_calls_started", body)
        self.assertIn(b"\nsiprec_calls_started_total 0.0\n", body)

    def test_openmetrics_on_request(self) -> None:
        body, content_type = self.metrics.render("application/openmetrics-text; version=1.0.0")
        self.assertTrue(content_type.startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_names_prefixed_and_documented(self) -> None:
        families, _ = scrape(self.metrics)
        self.assertTrue(families)
        for name, family in families.items():
            self.assertTrue(name.startswith("siprec_"), name)
            self.assertTrue(family.documentation.strip(), name)

    def test_build_info(self) -> None:
        _, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_build_info", version=siprec.__version__), 1)

    def test_sip_requests_received(self) -> None:
        for method in ("INVITE", "INVITE", "BYE", "FOO", "invite"):
            self.metrics.sip_request(method)
        _, samples = scrape(self.metrics)
        name = "siprec_sip_requests_received_total"
        self.assertEqual(value(samples, name, method="INVITE"), 2)
        self.assertEqual(value(samples, name, method="BYE"), 1)
        self.assertEqual(value(samples, name, method="other"), 2)

    def test_sip_requests_sent(self) -> None:
        self.metrics.sip_request_sent("BYE")
        self.metrics.sip_request_sent("INVITE")
        self.metrics.sip_request_sent("BYE")
        _, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_sip_requests_sent_total", method="BYE"), 2)
        self.assertEqual(value(samples, "siprec_sip_requests_sent_total", method="INVITE"), 1)

    def test_sip_responses_by_method_and_status(self) -> None:
        self.metrics.sip_response("INVITE", 100)
        self.metrics.sip_response("INVITE", 200)
        self.metrics.sip_response("INVITE", 200)
        self.metrics.sip_response("OPTIONS", 200)
        self.metrics.sip_response("BOGUS", 1234)
        _, samples = scrape(self.metrics)
        name = "siprec_sip_responses_sent_total"
        self.assertEqual(value(samples, name, method="INVITE", status="100"), 1)
        self.assertEqual(value(samples, name, method="INVITE", status="200"), 2)
        self.assertEqual(value(samples, name, method="OPTIONS", status="200"), 1)
        self.assertEqual(value(samples, name, method="other", status="other"), 1)

    def test_calls(self) -> None:
        for _ in range(3):
            self.metrics.call_started()
        self.metrics.call_ended("bye")
        self.metrics.call_ended("BYE")
        self.metrics.call_ended("rtp_timeout")
        self.metrics.call_ended("<script>")
        _, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_calls_started_total"), 3)
        self.assertEqual(value(samples, "siprec_calls_ended_total", reason="bye"), 2)
        self.assertEqual(value(samples, "siprec_calls_ended_total", reason="rtp_timeout"), 1)
        self.assertEqual(value(samples, "siprec_calls_ended_total", reason="other"), 1)

    def test_end_reasons_bounded(self) -> None:
        """Many distinct reasons cannot grow the series without limit."""
        for i in range(200):
            self.metrics.call_ended(f"reason_{i}")
        families, _ = scrape(self.metrics)
        samples = [s for s in families["siprec_calls_ended"].samples if s.name.endswith("_total")]
        self.assertLessEqual(len(samples), 33)
        other = [s for s in samples if s.labels["reason"] == "other"]
        self.assertEqual(other[0].value, 200 - 32)

    def test_metadata_warnings(self) -> None:
        self.metrics.metadata_warning()
        self.metrics.metadata_warning()
        _, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_metadata_warnings_total"), 2)

    def test_http_requests(self) -> None:
        self.metrics.http_request("/status", "GET", 200, 0.003)
        self.metrics.http_request("/status", "GET", 200, 0.2)
        self.metrics.http_request("unmatched", "BREW", 405, -1.0)
        _, samples = scrape(self.metrics)
        name = "siprec_http_requests_total"
        self.assertEqual(value(samples, name, route="/status", method="GET", status="200"), 2)
        self.assertEqual(value(samples, name, route="unmatched", method="other", status="405"), 1)
        self.assertEqual(value(samples, "siprec_http_request_duration_seconds_count",
                               route="/status"), 2)
        self.assertAlmostEqual(value(samples, "siprec_http_request_duration_seconds_sum",
                                     route="/status"), 0.203)
        self.assertEqual(value(samples, "siprec_http_request_duration_seconds_sum",
                               route="unmatched"), 0)


class LiveFigureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = Metrics(process_metrics=False)

    def test_no_source_no_series(self) -> None:
        families, _ = scrape(self.metrics)
        self.assertNotIn("siprec_active_calls", families)
        self.assertNotIn("siprec_rtp_packets_received", families)

    def test_figures_read_at_scrape_time(self) -> None:
        state = {"calls": 2, "packets": 100}
        self.metrics.add_live_source(lambda: LiveFigures(
            active_calls=state["calls"], active_streams=4,
            rtp_packets_received=state["packets"], rtp_bytes_received=17_200,
            rtp_packets_dropped=3, rtp_packets_late=5, ports_in_use=8, ports_free=9_992))
        families, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_active_calls"), 2)
        self.assertEqual(value(samples, "siprec_active_streams"), 4)
        self.assertEqual(value(samples, "siprec_rtp_packets_received_total"), 100)
        self.assertEqual(value(samples, "siprec_rtp_bytes_received_total"), 17_200)
        self.assertEqual(value(samples, "siprec_rtp_packets_dropped_total"), 3)
        self.assertEqual(value(samples, "siprec_rtp_packets_late_total"), 5)
        self.assertEqual(value(samples, "siprec_rtp_ports_in_use"), 8)
        self.assertEqual(value(samples, "siprec_rtp_ports_free"), 9_992)
        self.assertEqual(families["siprec_active_calls"].type, "gauge")
        self.assertEqual(families["siprec_rtp_packets_received"].type, "counter")
        self.assertEqual(families["siprec_rtp_ports_free"].type, "gauge")

        state.update(calls=0, packets=250)
        _, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_active_calls"), 0)
        self.assertEqual(value(samples, "siprec_rtp_packets_received_total"), 250)

    def test_sources_add_up_and_none_is_left_out(self) -> None:
        """Each component reports what it knows; shared figures are summed."""
        self.metrics.add_live_source(lambda: LiveFigures(active_calls=3))
        self.metrics.add_live_source(lambda: LiveFigures(rtp_packets_received=10, ports_free=5))
        self.metrics.add_live_source(lambda: LiveFigures(rtp_packets_received=32))
        families, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_active_calls"), 3)
        self.assertEqual(value(samples, "siprec_rtp_packets_received_total"), 42)
        self.assertEqual(value(samples, "siprec_rtp_ports_free"), 5)
        self.assertNotIn("siprec_active_streams", families)
        self.assertNotIn("siprec_rtp_ports_in_use", families)

    def test_failing_source_logged_and_skipped(self) -> None:
        """A broken source costs its own figures, not the scrape."""
        self.metrics.add_live_source(lambda: 1 / 0)
        self.metrics.add_live_source(lambda: "not figures")
        self.metrics.add_live_source(lambda: LiveFigures(active_calls=1))
        self.metrics.call_started()
        _, samples = scrape(self.metrics)
        self.assertEqual(value(samples, "siprec_active_calls"), 1)
        self.assertEqual(value(samples, "siprec_calls_started_total"), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_remove_source(self) -> None:
        source = lambda: LiveFigures(active_calls=7)  # noqa: E731
        self.metrics.add_live_source(source)
        self.metrics.remove_live_source(source)
        self.metrics.remove_live_source(source)  # twice is harmless
        families, _ = scrape(self.metrics)
        self.assertNotIn("siprec_active_calls", families)
