"""TranscriptionService from the configuration; router settings; Prometheus series."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.logger import capturedLogs, formatEvent
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from siprec.config import ConfigError, load_config
from siprec.stt.metrics import SttCollector
from siprec.stt.service import TranscriptionService, router_settings


def config(tmp: str, **values):
    environ = {"RECORDING_DIR": tmp, **values}
    return load_config(environ=environ, env_file=None)


class SettingsTests(SynchronousTestCase):
    def test_router_settings_from_config(self) -> None:
        settings = router_settings(config(self.mktemp(), STT_LANGUAGE_ROUTES="es=google|azure",
                                          STT_BREAKER_FAILURES="7", STT_BREAKER_RESET="2m",
                                          STT_FAILOVER="false", STT_LANGUAGE="en-GB"))
        self.assertEqual(settings.language_routes["es"], ("google", "azure"))
        self.assertEqual((settings.breaker.failure_threshold, settings.breaker.reset_timeout),
                         (7, 120.0))
        self.assertFalse(settings.failover)
        self.assertEqual((settings.default_vendor, settings.default_language), ("offline", "en-GB"))

    def test_bad_routes_are_one_line_naming_the_setting(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            router_settings(config(self.mktemp(), STT_LANGUAGE_ROUTES="es=klingon"))
        self.assertEqual(raised.exception.name, "STT_LANGUAGE_ROUTES")
        self.assertTrue(str(raised.exception).startswith("STT_LANGUAGE_ROUTES: 'klingon'"))
        self.assertNotIn("\n", str(raised.exception))


class ServiceTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_defaults_build_offline_and_queue_then_start_and_stop(self) -> None:
        pool = ThreadPool(1, 2)
        pool.start()
        self.addCleanup(pool.stop)
        tmp = self.mktemp()
        os.makedirs(tmp)
        results = []
        with capturedLogs() as events:
            service = TranscriptionService(
                config(tmp, DEEPGRAM_API_KEY="dg", STT_SUPPORTED_VENDORS="deepgram,openai"),
                reactor, pool, results.append)
        self.assertEqual(sorted(service.router.providers), ["deepgram", "offline"])
        self.assertTrue(any("openai is selected but unusable: OPENAI_API_KEY is required"
                            in formatEvent(e) for e in events))
        yield service.startService()
        self.assertTrue(service.engine.ready)
        self.assertTrue(service.ready())
        self.assertTrue(os.path.exists(os.path.join(tmp, "stt-queue.sqlite3")))
        status = service.status()
        self.assertEqual(status["providers"]["offline"]["breaker"]["state"], "closed")
        self.assertEqual(status["queue"]["jobs_pending"], 0)
        self.assertEqual(service.router.chain_for("en-US"), ["offline", "deepgram"])

        registry = CollectorRegistry()
        registry.register(SttCollector(service.status))
        text = generate_latest(registry).decode()
        self.assertIn('siprec_stt_breaker_state{provider="deepgram",state="closed"} 1.0', text)
        self.assertIn('siprec_stt_breaker_state{provider="deepgram",state="open"} 0.0', text)
        self.assertIn('siprec_stt_queue_jobs{state="pending"} 0.0', text)
        self.assertIn("siprec_stt_failovers_total 0.0", text)

        leg = service.router.open_leg("c", "caller")
        yield service.stopService()
        self.assertEqual(leg.state, "closed")
        self.assertFalse(service.ready())

    @inlineCallbacks
    def test_queue_can_be_disabled(self) -> None:
        pool = ThreadPool(1, 1)
        pool.start()
        self.addCleanup(pool.stop)
        tmp = self.mktemp()
        os.makedirs(tmp)
        service = TranscriptionService(config(tmp, STT_QUEUE_ENABLED="false",
                                              OFFLINE_STT_MODEL_DIR="/nonexistent"),
                                       reactor, pool, lambda r: None)
        self.assertIsNone(service.queue)
        with capturedLogs():
            yield service.startService()
        self.assertFalse(service.engine.ready)
        self.assertIsNone(service.status()["queue"])
        leg = service.router.open_leg("c", "l")
        self.assertEqual(leg.state, "disabled")  # the only provider cannot load
        yield service.stopService()
