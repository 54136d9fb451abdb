"""Prometheus series for transcription, read from the router's status at scrape time.

Register ``SttCollector(status)`` with the server's CollectorRegistry, where
``status`` returns ``TranscriptionService.status()`` (or ``SttRouter.status()``).
Labels are bounded: provider names come from the fixed vendor list.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["BREAKER_STATES", "SttCollector"]

BREAKER_STATES = ("closed", "half-open", "open")
PREFIX = "siprec_stt"


class SttCollector:
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def describe(self) -> list[Metric]:
        return []  # collected lazily; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        state = GaugeMetricFamily(f"{PREFIX}_breaker_state",
                                  "1 for the current circuit breaker state of each provider.",
                                  labels=["provider", "state"])
        legs = GaugeMetricFamily(f"{PREFIX}_provider_legs_active",
                                 "Legs a provider is transcribing now.", labels=["provider"])
        failures = CounterMetricFamily(f"{PREFIX}_provider_failures",
                                       "Provider failures (connect, auth, mid-stream).",
                                       labels=["provider"])
        results = CounterMetricFamily(f"{PREFIX}_results", "Transcript results delivered.",
                                      labels=["provider", "kind"])
        for name, entry in sorted(status.get("providers", {}).items()):
            current = entry["breaker"]["state"]
            for value in BREAKER_STATES:
                state.add_metric([name, value], 1.0 if value == current else 0.0)
            legs.add_metric([name], entry["legs_active"])
            failures.add_metric([name], entry["failures_total"])
            results.add_metric([name, "final"], entry["results_final"])
            results.add_metric([name, "partial"], entry["results_partial"])
        yield from (state, legs, failures, results)
        yield GaugeMetricFamily(f"{PREFIX}_legs_active", "Legs being transcribed.",
                                value=status.get("legs_active", 0))
        for key, help_text in (
            ("failovers_total", "Mid-call switches to another provider."),
            ("legs_disabled_total", "Legs whose transcription was disabled (no provider left)."),
            ("legs_deferred_total", "Legs moved to the post-call queue."),
            ("overloads_total", "Times live transcription could not keep up."),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{key[:-6]}", help_text,
                                      value=status.get(key, 0))
        queue = status.get("queue")
        if queue:
            jobs = GaugeMetricFamily(f"{PREFIX}_queue_jobs", "Post-call jobs by state.",
                                     labels=["state"])
            for job_state in ("pending", "running", "done", "failed"):
                jobs.add_metric([job_state], queue.get(f"jobs_{job_state}", 0))
            yield jobs
        engine = status.get("providers", {}).get("offline", {}).get("engine")
        if engine and engine.get("real_time_factor") is not None:
            yield GaugeMetricFamily(f"{PREFIX}_offline_real_time_factor",
                                    "Offline engine decode time per second of speech.",
                                    value=engine["real_time_factor"])
