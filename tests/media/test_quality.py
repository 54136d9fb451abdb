"""Tests for siprec.media.quality: RFC 3550 counters and the G.107 E-model."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from siprec.media.quality import (
    DEFAULT_R,
    IMPAIRMENTS,
    ReceptionStats,
    StreamQuality,
    delay_impairment,
    effective_equipment_impairment,
    impairment_for,
    mos_from_r,
    r_factor,
)

RATE = 8000
STEP = 160  # 20 ms


def feed(stats, seqs, jitter_free: bool = True) -> None:
    for seq in seqs:
        stats.update(seq & 0xFFFF, seq * STEP, seq * 0.02)


class EModelTests(SynchronousTestCase):
    def test_default_r_gives_441(self) -> None:
        """G.107: all defaults give R = 93.2, MOS 4.41."""
        self.assertEqual(r_factor("PCMU"), DEFAULT_R)
        self.assertEqual(round(mos_from_r(93.2), 2), 4.41)

    def test_mos_curve_ends_and_points(self) -> None:
        """G.107 Annex B: MOS 1 at R <= 0, 4.5 at R >= 100, and known points in between."""
        self.assertEqual(mos_from_r(-5), 1.0)
        self.assertEqual(mos_from_r(0), 1.0)
        self.assertEqual(mos_from_r(100), 4.5)
        self.assertEqual(mos_from_r(120), 4.5)
        # R = 50: 1 + 1.75 + 50 * -10 * 50 * 7e-6 = 2.575
        self.assertAlmostEqual(mos_from_r(50), 2.575, places=6)
        # R = 80: 1 + 2.8 + 80 * 20 * 20 * 7e-6 = 4.024
        self.assertAlmostEqual(mos_from_r(80), 4.024, places=6)
        # MOS rises with R over the whole range
        values = [mos_from_r(r) for r in range(0, 101)]
        self.assertEqual(values, sorted(values))

    def test_codec_impairment(self) -> None:
        """G.729A has Ie 11 (G.113): R = 82.2 with no loss."""
        self.assertAlmostEqual(r_factor("G729"), 82.2)
        self.assertAlmostEqual(mos_from_r(82.2), 1 + 0.035 * 82.2 + 82.2 * 22.2 * 17.8 * 7e-6)
        self.assertAlmostEqual(r_factor("GSM"), 73.2)

    def test_ie_eff_worked_example(self) -> None:
        """G.711 with PLC (Bpl 25.1) at 2 % random loss: Ie-eff = 95 * 2 / 27.1 = 7.011."""
        self.assertAlmostEqual(effective_equipment_impairment(0, 25.1, 2.0), 7.01107, places=4)
        self.assertAlmostEqual(r_factor("PCMA", 2.0), 93.2 - 7.01107, places=4)

    def test_bursty_loss_hurts_more(self) -> None:
        """BurstR 2 at 5 % loss: Ie-eff = 95 * 5 / (2.5 + 25.1) = 17.21, above the random 15.78."""
        random = effective_equipment_impairment(0, 25.1, 5.0, 1.0)
        bursty = effective_equipment_impairment(0, 25.1, 5.0, 2.0)
        self.assertAlmostEqual(random, 95 * 5 / 30.1)
        self.assertAlmostEqual(bursty, 95 * 5 / 27.6)
        self.assertGreater(bursty, random)
        # BurstR below 1 is clamped to random
        self.assertEqual(effective_equipment_impairment(0, 25.1, 5.0, 0.5), random)

    def test_delay_impairment(self) -> None:
        """Idd is 0 up to 100 ms; at 200 ms X = 1 gives 25 * (2^(1/6) - 3 * (1 + 3^-6)^(1/6) + 2) = 3.04."""
        self.assertEqual(delay_impairment(100), 0.0)
        expected = 25 * (2 ** (1 / 6) - 3 * (1 + 3**-6) ** (1 / 6) + 2)
        self.assertAlmostEqual(delay_impairment(200), expected)
        self.assertAlmostEqual(delay_impairment(200), 3.044, places=3)
        self.assertGreater(delay_impairment(400), delay_impairment(300))
        self.assertAlmostEqual(r_factor("PCMU", delay_ms=200), 93.2 - expected)

    def test_impairment_names(self) -> None:
        self.assertIs(impairment_for("pcmu"), IMPAIRMENTS["PCMU"])
        self.assertIs(impairment_for("AAL2-G726-32"), IMPAIRMENTS["G726-32"])
        self.assertEqual(impairment_for("X-UNKNOWN").ie, 0.0)
        self.assertEqual(impairment_for(None).ie, 0.0)


class ReceptionTests(SynchronousTestCase):
    def test_clean_stream(self) -> None:
        stats = ReceptionStats(RATE)
        feed(stats, range(100))
        self.assertEqual((stats.expected, stats.received, stats.lost, stats.out_of_order, stats.duplicates), (100, 100, 0, 0, 0))
        self.assertAlmostEqual(stats.jitter, 0.0, places=6)

    def test_loss(self) -> None:
        """RFC 3550 A.3: expected from the extended highest minus the base; 3 gaps of 1, 2 and 5."""
        stats = ReceptionStats(RATE)
        seqs = [s for s in range(100) if s not in {10, 20, 21, 50, 51, 52, 53, 54}]
        feed(stats, seqs)
        self.assertEqual((stats.expected, stats.received, stats.lost, stats.loss_bursts), (100, 92, 8, 3))

    def test_wrap(self) -> None:
        """Across the 16-bit wrap the extended numbers keep counting."""
        stats = ReceptionStats(RATE)
        feed(stats, range(65500, 65600))
        self.assertEqual((stats.expected, stats.lost, stats.highest), (100, 0, 65599))

    def test_reorder_and_duplicates(self) -> None:
        """A swapped pair is one out-of-order packet, not loss; repeats are duplicates."""
        stats = ReceptionStats(RATE)
        feed(stats, [0, 1, 2, 4, 3, 5, 5, 3, 6])
        self.assertEqual((stats.expected, stats.received, stats.lost), (7, 7, 0))
        self.assertEqual((stats.out_of_order, stats.duplicates), (1, 2))

    def test_late_first_packet_extends_base(self) -> None:
        """A packet older than the first one received widens what was expected."""
        stats = ReceptionStats(RATE)
        feed(stats, [5, 6, 7, 4, 8])
        self.assertEqual((stats.expected, stats.lost, stats.out_of_order), (5, 0, 1))

    def test_restart(self) -> None:
        """RFC 3550 A.1: a far jump confirmed by its successor is a restart, earlier loss kept."""
        stats = ReceptionStats(RATE)
        feed(stats, [0, 1, 3])
        feed(stats, [40000])  # one stray: ignored
        self.assertEqual(stats.received, 3)
        feed(stats, [40000, 40001, 40002])  # 40000 again is still a stray; 40001 confirms
        self.assertEqual(stats.restarts, 1)
        self.assertEqual((stats.received, stats.lost, stats.expected), (5, 1, 6))

    def test_jitter_rfc3550_a8(self) -> None:
        """Packets alternating 0 and 10 ms late: |D| = 80 units each time, J -> J + (80 - J) / 16."""
        stats = ReceptionStats(RATE)
        expected = 0.0
        for seq in range(50):
            late = 0.01 if seq % 2 else 0.0
            stats.update(seq, seq * STEP, seq * 0.02 + late)
            if seq:
                expected += (80 - expected) / 16
        self.assertAlmostEqual(stats.jitter, expected, places=6)
        self.assertAlmostEqual(stats.max_jitter, expected, places=6)

    def test_timing_off_for_events(self) -> None:
        """Telephone-event packets count in the sequence space but not in jitter."""
        stats = ReceptionStats(RATE)
        for seq in range(10):
            stats.update(seq, 1000, seq * 0.02, timing=False)
        self.assertEqual((stats.received, stats.jitter), (10, 0.0))

    def test_burst_ratio(self) -> None:
        """10 % loss in one burst of 10 has BurstR = 10 * 0.9 = 9; scattered single losses give 1."""
        bursty = ReceptionStats(RATE)
        feed(bursty, [s for s in range(100) if not 40 <= s < 50])
        self.assertAlmostEqual(bursty.burst_ratio, 9.0)
        scattered = ReceptionStats(RATE)
        feed(scattered, [s for s in range(100) if s % 10 != 5])
        self.assertEqual(scattered.burst_ratio, 1.0)

    def test_bad_rate(self) -> None:
        self.assertRaises(ValueError, ReceptionStats, 0)


class StreamQualityTests(SynchronousTestCase):
    def test_report_with_ssrc_change(self) -> None:
        """Counts add up across sources; the report is plain data with MOS from the loss."""
        quality = StreamQuality(RATE, "PCMU")
        for seq in range(50):
            if seq != 25:
                quality.update(1, seq, seq * STEP, seq * 0.02)
        for seq in range(1000, 1050):
            quality.update(2, seq, seq * STEP, 1 + seq * 0.02)
        report = quality.report()
        self.assertEqual((report.ssrc, report.expected, report.received, report.lost), (2, 100, 99, 1))
        self.assertEqual(report.loss_percent, 1.0)
        expected_r = 93.2 - 95 * 1.0 / (1.0 + 25.1)
        self.assertEqual(report.r_factor, round(expected_r, 2))
        self.assertEqual(report.mos, round(mos_from_r(expected_r), 2))
        as_dict = report.as_dict()
        self.assertEqual(as_dict["codec"], "PCMU")
        self.assertEqual(set(as_dict), set(report.__slots__))

    def test_empty(self) -> None:
        report = StreamQuality(RATE, "PCMU").report()
        self.assertEqual((report.expected, report.lost, report.mos), (0, 0, 4.41))


class RunTests(SynchronousTestCase):
    def test_run_equals_packet_by_packet(self) -> None:
        """update_run gives the counters and jitter that update() gives, across both wraps."""
        import numpy as np

        rng = np.random.default_rng(8)
        arrivals = (np.arange(5000) * 0.02 + rng.uniform(0, 0.015, 5000)).tolist()
        seqs = [(s + 65000) & 0xFFFF for s in range(5000)]
        stamps = [(s * STEP + 0xFFFF0000) & 0xFFFFFFFF for s in range(5000)]
        one = ReceptionStats(RATE)
        for s, t, a in zip(seqs, stamps, arrivals):
            one.update(s, t, a)
        run = ReceptionStats(RATE)
        run.update(seqs[0], stamps[0], arrivals[0])
        self.assertFalse(run.update_run(seqs[2], stamps[2], STEP, arrivals[2:10]))  # not the next one
        self.assertTrue(run.update_run(seqs[1], stamps[1], STEP, arrivals[1:3000]))
        self.assertTrue(run.update_run(seqs[3000], stamps[3000], STEP, arrivals[3000:]))
        self.assertEqual((run.received, run.expected, run.lost), (one.received, one.expected, one.lost))
        self.assertAlmostEqual(run.jitter, one.jitter, places=6)
        self.assertAlmostEqual(run.max_jitter, one.max_jitter, places=6)
        self.assertGreater(run.jitter, 0)
        # duplicates are still recognised after a run
        run.update(seqs[-3], stamps[-3], 200.0)
        self.assertEqual(run.duplicates, 1)
