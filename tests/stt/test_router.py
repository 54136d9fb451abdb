"""Router: planning, results, failover with replay, breakers, overload, Go failure semantics."""

from __future__ import annotations

import numpy as np
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from siprec.stt.audio import AudioError
from siprec.stt.base import SttAuthError, SttOverloaded
from siprec.stt.breaker import BreakerSettings
from siprec.stt.router import EXITED_EARLY, RouterSettings, SttRouter, parse_language_routes
from tests.stt.fakes import FakeProvider

VENDORS = ("offline", "google", "deepgram", "azure", "amazon", "openai",
           "speechmatics", "elevenlabs", "whisper")
RATE = 8000


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    n = int(seconds * rate)
    return (3000 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate)).astype(np.int16)


class RouterTestCase(SynchronousTestCase):
    def make(self, names=("deepgram", "google", "offline"), **settings) -> SttRouter:
        self.clock = Clock()
        self.results = []
        self.deferred_legs = []
        self.fakes = {name: FakeProvider(name) for name in names}
        deferrer = settings.pop("deferrer", None)
        defaults = dict(default_vendor=names[0], supported=tuple(n for n in names if n != "offline"),
                        breaker=BreakerSettings(2, 30.0, 1))
        defaults.update(settings)
        return SttRouter(self.fakes, self.results.append, self.clock, RouterSettings(**defaults),
                         deferrer=deferrer)

    def feed(self, leg, seconds: float, start: float, rate: int = RATE) -> None:
        """Feed ``seconds`` of audio in 20 ms packets starting at ``start`` s."""
        audio = tone(seconds, rate)
        step = rate // 50
        first = int(round(start * rate))
        for position in range(0, len(audio), step):
            leg.feed(audio[position:position + step], rate, first + position)


class PlanningTests(RouterTestCase):
    def test_chain_order(self) -> None:
        """Language routes (exact, then primary tag), default, supported, offline last."""
        router = self.make(("deepgram", "google", "azure", "offline"),
                           language_routes={"es": ("google",), "de-at": ("azure",)},
                           supported=("azure", "deepgram"))
        self.assertEqual(router.chain_for("es-MX"), ["google", "deepgram", "azure", "offline"])
        self.assertEqual(router.chain_for("de-AT"), ["azure", "deepgram", "offline"])
        self.assertEqual(router.chain_for(None), ["deepgram", "azure", "offline"])

    def test_no_failover_means_one_provider(self) -> None:
        router = self.make(failover=False)
        self.assertEqual(router.chain_for("en-US"), ["deepgram"])

    def test_unsupported_language_and_unconfigured_vendors_are_skipped(self) -> None:
        router = self.make(("deepgram", "offline"), supported=("google", "deepgram"))
        router.providers["offline"].languages = ("en",)
        self.assertEqual(router.chain_for("fr-FR"), ["deepgram"])

    def test_parse_language_routes(self) -> None:
        self.assertEqual(parse_language_routes(" es=google, de_AT=azure|deepgram ,", VENDORS),
                         {"es": ("google",), "de-at": ("azure", "deepgram")})
        for bad, problem in (("es", "not language=vendor"), ("es=", "names no vendor"),
                             ("es=foo", "'foo' is not one of"), ("1=google", "not language"),
                             ("es=google,ES=azure", "listed twice")):
            with self.assertRaises(ValueError) as raised:
                parse_language_routes(bad, VENDORS)
            self.assertIn(problem, str(raised.exception))


class ResultTests(RouterTestCase):
    def test_results_carry_call_identity(self) -> None:
        """Hypotheses become TranscriptResults with call, leg, participant and provider."""
        router = self.make()
        leg = router.open_leg("call-1", "caller", {"name": "Alice", "aor": "sip:a@x"}, "en-GB", RATE)
        self.feed(leg, 1.0, 0.0)
        stream = self.fakes["deepgram"].last
        stream.partial("hel", 0.1, 0.5)
        stream.final("hello", 0.1, 0.9)
        self.assertEqual([r.is_final for r in self.results], [False, True])
        result = self.results[-1]
        self.assertEqual((result.call_id, result.leg, result.provider, result.language),
                         ("call-1", "caller", "deepgram", "en-US"))
        self.assertEqual(result.participant["name"], "Alice")
        self.assertEqual(result.as_dict()["participant"], {"name": "Alice", "aor": "sip:a@x"})
        self.assertEqual(stream.leg.language, "en-GB")
        leg.close()
        self.assertEqual(router.status()["providers"]["deepgram"]["results_final"], 1)

    def test_sink_errors_are_contained(self) -> None:
        router = self.make()
        router._sink = lambda result: 1 / 0
        leg = router.open_leg("c", "l")
        self.feed(leg, 0.1, 0)
        self.fakes["deepgram"].last.final("x", 0, 0.1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(router.status()["sink_errors_total"], 1)

    def test_hostile_audio_is_refused(self) -> None:
        router = self.make()
        leg = router.open_leg("c", "l")
        self.assertRaises(AudioError, leg.feed, np.zeros(10, dtype=np.float32), RATE, 0)
        self.assertRaises(AudioError, leg.feed, np.zeros((2, 10), dtype=np.int16), RATE, 0)
        self.assertRaises(AudioError, leg.feed, np.zeros(10, dtype=np.int16), RATE, -1)
        self.assertRaises(AudioError, leg.feed, np.zeros(10, dtype=np.int16), 0, 0)
        self.assertRaises(AudioError, leg.feed, [1, 2, 3], RATE, 0)
        self.assertRaises(AudioError, router.open_leg, "c", "l", sample_rate=0)
        self.assertRaises(AudioError, router.open_leg, "c", "l", sample_rate=-8000)


class FailoverTests(RouterTestCase):
    def test_failover_replays_audio_since_last_final(self) -> None:
        """The next provider gets exactly the audio after the last final, then live audio."""
        router = self.make()
        leg = router.open_leg("call-1", "caller", sample_rate=RATE)
        self.feed(leg, 3.0, 10.0)
        first = self.fakes["deepgram"].last
        first.final("one", 10.0, 11.25)
        with capturedLogs() as events:
            first.fail("socket closed")
        second = self.fakes["google"].last
        self.assertTrue(first.aborted)
        self.assertEqual(second.first_offset, int(11.25 * RATE))
        self.assertEqual(second.samples, int(1.75 * RATE))
        self.feed(leg, 1.0, 13.0)
        self.assertEqual(second.samples, int(2.75 * RATE))
        second.final("two", 11.3, 13.9)
        self.assertEqual([(r.text, r.provider) for r in self.results],
                         [("one", "deepgram"), ("two", "google")])
        text = [formatEvent(e) for e in events]
        self.assertTrue(any("deepgram failed for call call-1 leg caller: socket closed" in t
                            for t in text), text)
        self.assertTrue(any("failover" in t and "google" in t for t in text), text)
        status = router.status()
        self.assertEqual(status["failovers_total"], 1)
        self.assertEqual(status["providers"]["deepgram"]["failures_total"], 1)
        self.assertEqual(leg.status()["tried"], ["deepgram", "google"])

    def test_stale_callbacks_of_a_dropped_stream_are_ignored(self) -> None:
        router = self.make()
        leg = router.open_leg("c", "l")
        self.feed(leg, 1.0, 0)
        first = self.fakes["deepgram"].last
        first.fail()
        first.final("late", 0, 1)
        first.fail()
        self.assertEqual(self.results, [])
        self.assertEqual(router.status()["failovers_total"], 1)

    def test_exhausted_chain_logs_the_go_line_and_drops_audio(self) -> None:
        """No provider left: the Go server's line, audio dropped, close still fires."""
        router = self.make(("deepgram", "offline"))
        leg = router.open_leg("call-9", "callee")
        self.feed(leg, 0.5, 0)
        with capturedLogs() as events:
            self.fakes["deepgram"].last.fail("401")
            self.fakes["offline"].last.fail("model gone")
        lines = [formatEvent(e) for e in events if EXITED_EARLY in e.get("log_format", "")]
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith(EXITED_EARLY))
        self.assertIn("call-9", lines[0])
        self.assertEqual(leg.state, "disabled")
        self.feed(leg, 0.5, 0.5)
        self.assertEqual(leg.samples_dropped, 4000)
        closed = leg.close()
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(router.status()["legs_disabled_total"], 1)
        self.assertEqual(router.legs, set())

    def test_failover_off_disables_on_first_failure(self) -> None:
        router = self.make(failover=False)
        leg = router.open_leg("c", "l")
        with capturedLogs() as events:
            self.fakes["deepgram"].last.fail()
        self.assertEqual(leg.state, "disabled")
        self.assertEqual(self.fakes["google"].streams, [])
        self.assertTrue(any(EXITED_EARLY in formatEvent(e) for e in events))

    def test_open_errors_try_the_next_provider(self) -> None:
        """An auth error at open counts against the breaker and moves on."""
        router = self.make()
        self.fakes["deepgram"].open_error = SttAuthError("deepgram", "401 Unauthorized")
        leg = router.open_leg("c", "l")
        self.assertEqual(leg.provider, "google")
        self.assertEqual(router.breakers["deepgram"].snapshot()["failures_total"], 1)

    def test_feed_exception_is_a_provider_failure(self) -> None:
        router = self.make()
        leg = router.open_leg("c", "l")
        self.fakes["deepgram"].feed_raises = True
        self.feed(leg, 0.1, 0)
        self.assertEqual(leg.provider, "google")
        self.assertEqual(self.fakes["google"].last.samples, 800)

    def test_failure_while_closing_fails_over_and_finishes(self) -> None:
        """A provider dying after close() still ends in a finished transcript."""
        router = self.make()
        for fake in self.fakes.values():
            fake.hold_finish = True
        leg = router.open_leg("c", "l")
        self.feed(leg, 2.0, 0)
        closed = leg.close()
        self.assertNoResult(closed)
        self.fakes["deepgram"].last.fail()
        second = self.fakes["google"].last
        self.assertEqual(second.samples, 16000)
        self.assertIsNotNone(second.finishing)
        second.final("all", 0, 2)
        second.finishing.callback(None)
        self.successResultOf(closed)
        self.assertEqual(self.results[-1].provider, "google")

    def test_close_timeout_fails_over(self) -> None:
        router = self.make(close_timeout=5.0)
        self.fakes["deepgram"].hold_finish = True
        leg = router.open_leg("c", "l")
        self.feed(leg, 1.0, 0)
        closed = leg.close()
        self.clock.advance(5)
        self.successResultOf(closed)
        self.assertEqual(leg.status()["tried"], ["deepgram", "google"])

    def test_replay_limit(self) -> None:
        router = self.make(replay_limit=1.0)
        leg = router.open_leg("c", "l")
        with capturedLogs() as events:
            self.feed(leg, 3.0, 0)
        self.assertEqual(router.status()["replay_truncated_total"], 1)
        self.assertTrue(any("STT_REPLAY_LIMIT" in formatEvent(e) for e in events))
        self.fakes["deepgram"].last.fail()
        self.assertLessEqual(self.fakes["google"].last.samples, RATE)


class BreakerRoutingTests(RouterTestCase):
    def test_open_breaker_is_skipped_until_half_open(self) -> None:
        router = self.make()
        for _ in range(2):
            leg = router.open_leg("c", "l")
            self.fakes["deepgram"].last.fail()
        self.assertEqual(router.status()["providers"]["deepgram"]["breaker"]["state"], "open")
        leg = router.open_leg("c", "l3")
        self.assertEqual(leg.provider, "google")
        self.clock.advance(30)
        trial = router.open_leg("c", "l4")
        self.assertEqual(trial.provider, "deepgram")
        other = router.open_leg("c", "l5")  # only one trial at a time
        self.assertEqual(other.provider, "google")
        self.feed(trial, 0.2, 0)
        self.fakes["deepgram"].last.final("ok", 0, 0.2)
        self.assertEqual(router.breakers["deepgram"].snapshot()["state"], "closed")
        self.assertTrue(router.healthy())

    def test_clean_finish_counts_as_success(self) -> None:
        router = self.make()
        router.open_leg("c", "a")
        self.fakes["deepgram"].last.fail()
        leg = router.open_leg("c", "b")
        self.successResultOf(leg.close())
        self.assertEqual(router.breakers["deepgram"].snapshot()["consecutive_failures"], 0)


class OverloadTests(RouterTestCase):
    def test_overload_spools_replay_and_later_audio(self) -> None:
        spooled = []

        class Spool:
            closed = False

            def write(self, pcm, offset):
                spooled.append((len(pcm), offset))

            def close(self):
                from twisted.internet.defer import succeed
                Spool.closed = True
                return succeed(None)

        def deferrer(leg, reason):
            self.deferred_legs.append((leg.call_id, reason))
            return Spool()

        router = self.make(("offline",), deferrer=deferrer)
        leg = router.open_leg("c", "l")
        self.feed(leg, 1.0, 0)
        with capturedLogs() as events:
            self.fakes["offline"].last.listener.overloaded("12s waiting")
        self.assertEqual(leg.state, "deferred")
        self.assertEqual(self.deferred_legs, [("c", "12s waiting")])
        self.assertEqual(sum(n for n, _ in spooled), RATE)
        self.feed(leg, 1.0, 1.0)
        self.assertEqual(sum(n for n, _ in spooled), 2 * RATE)
        self.assertEqual(spooled[0][1], 0)
        self.assertTrue(any("queued for post-call" in formatEvent(e) for e in events))
        self.successResultOf(leg.close())
        self.assertTrue(Spool.closed)
        status = router.status()
        self.assertEqual((status["overloads_total"], status["legs_deferred_total"]), (1, 1))
        self.assertEqual(router.breakers["offline"].snapshot()["failures_total"], 0)

    def test_admission_overload_without_queue_disables(self) -> None:
        router = self.make(("offline",))
        self.fakes["offline"].open_error = SttOverloaded("offline", "2 legs live")
        with capturedLogs() as events:
            leg = router.open_leg("c", "l")
        self.assertEqual(leg.state, "disabled")
        self.assertTrue(any("no post-call queue" in formatEvent(e) for e in events))


class RateTests(RouterTestCase):
    def test_odd_rates_are_resampled_with_offsets_kept(self) -> None:
        """22.05 kHz audio reaches providers at 16 kHz with call-timeline offsets."""
        router = self.make()
        leg = router.open_leg("c", "l", sample_rate=22050)
        self.feed(leg, 1.0, 2.0, rate=22050)
        self.feed(leg, 1.0, 5.0, rate=22050)  # a gap
        leg.close()
        stream = self.fakes["deepgram"].last
        self.assertEqual(stream.leg.sample_rate, 16000)
        offsets = [offset for _, offset in stream.fed]
        self.assertEqual(offsets[0], 32000)
        self.assertIn(80000, offsets)
        self.assertAlmostEqual(stream.samples, 32000, delta=2)
        for (pcm, offset), (_, following) in zip(stream.fed, stream.fed[1:]):
            if following != 80000:
                self.assertEqual(offset + len(pcm), following)

    def test_vad_rates_pass_through(self) -> None:
        router = self.make()
        leg = router.open_leg("c", "l", sample_rate=48000)
        self.feed(leg, 0.1, 0, rate=48000)
        self.assertEqual(self.fakes["deepgram"].last.leg.sample_rate, 48000)
        self.assertEqual(self.fakes["deepgram"].last.samples, 4800)
