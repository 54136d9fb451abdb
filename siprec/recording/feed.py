"""The analysis copy of a call's audio: live transcription and talk analysis.

Each leg's decoded audio reaches a :class:`LegFeed` as media events; what
it does with them (speech-to-text, VAD talk figures) never touches the
recording, and its end is waited for by nobody who writes recordings:
:class:`CallTranscript` keeps the results and says whether transcription
is still ``pending`` after the call's files are final.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

log = Logger()

__all__ = ["LegFeed", "CallFeeds", "CallTranscript", "TranscriptStatus", "MAX_SEGMENTS"]

#: A hostile or very long call must not grow the transcript without bound.
MAX_SEGMENTS = 100_000


class TranscriptStatus:
    """Where a call's transcript stands (strings: they go into the record as they are)."""

    OFF = "off"  # STT disabled, or no leg could be transcribed
    LIVE = "live"  # the call is up and being transcribed
    PENDING = "pending"  # files final; the engines are finishing the last utterances
    QUEUED = "queued"  # some legs were spooled for transcription after the call
    COMPLETE = "complete"
    FAILED = "failed"  # at least one leg could not be transcribed


# gate() -> (drop everything, drop transcription): operator and SRC pauses.
Gate = Callable[[], "tuple[bool, bool]"]


class LegFeed:
    """One leg's analysis path: a transcriber (``feed``/``close``/``status``)
    and/or an analyzer (``feed``/``flush``/``stats``), either may be None."""

    def __init__(self, label: str, transcriber: Any, analyzer: Any, gate: Gate) -> None:
        self.label = label
        self.transcriber = transcriber
        self.analyzer = analyzer
        self.gate = gate
        self.segments: List[Any] = []  # speech segments the analyzer's VAD found
        self.errors = 0
        self._closing: Optional[Deferred] = None

    def feed(self, pcm: np.ndarray, sample_rate: int, offset: int) -> None:
        drop_all, drop_stt = self.gate()
        if drop_all:
            return
        if pcm.ndim > 1:  # a stereo leg is analysed and transcribed as its mono mix
            pcm = pcm.astype(np.int32).mean(axis=1).astype(np.int16)
        try:
            if self.analyzer is not None:
                self.segments.extend(self.analyzer.feed(pcm, sample_rate, offset).segments)
            if self.transcriber is not None and not drop_stt:
                self.transcriber.feed(pcm, sample_rate, offset)
        except Exception:
            self.errors += 1
            if self.errors == 1:
                log.failure("Analysis of leg {label} failed; recording continues", label=self.label)

    def close(self) -> Deferred:
        """The leg is over: flush the analyzer now, let the transcriber finish.

        Fires with the leg's transcription outcome (a TranscriptStatus
        value, None without a transcriber); never fails.
        """
        if self._closing is not None:
            return self._closing
        if self.analyzer is not None:
            try:
                self.segments.extend(self.analyzer.flush().segments)
            except Exception:
                log.failure("Audio analysis of {label} failed at the end", label=self.label)
        transcriber = self.transcriber
        if transcriber is None:
            self._closing = succeed(None)
            return self._closing
        state = _state_of(transcriber)
        outcome = {"disabled": TranscriptStatus.FAILED,
                   "deferred": TranscriptStatus.QUEUED}.get(state, TranscriptStatus.COMPLETE)
        d = maybeDeferred(transcriber.close)

        def failed(failure):
            log.failure("Closing transcription of {label} failed", failure, label=self.label)
            return TranscriptStatus.FAILED

        d.addCallbacks(lambda _: outcome, failed)
        self._closing = d
        return d

    def status(self) -> dict:
        if self.transcriber is None:
            return {"state": "off"}
        try:
            return dict(self.transcriber.status())
        except Exception:
            return {"state": "unknown"}

    def talk_figures(self) -> Optional[dict]:
        if self.analyzer is None:
            return None
        stats = self.analyzer.stats()
        return {
            "talk_seconds": round(stats.talk_seconds, 3),
            "silence_ratio": round(stats.silence_ratio, 4),
            "noise_level_dbfs": None if stats.noise_level_dbfs is None
            else round(stats.noise_level_dbfs, 1),
            "speech_segments": stats.segments,
        }


def _state_of(transcriber: Any) -> str:
    try:
        return str(transcriber.status().get("state"))
    except Exception:
        return "unknown"


class CallTranscript:
    """Final results in arrival order, the open partial of each leg, and the status."""

    def __init__(self) -> None:
        self.segments: List[dict] = []
        self.partials: Dict[str, dict] = {}
        self.status = TranscriptStatus.OFF
        self.outcomes: Dict[str, str] = {}  # leg -> TranscriptStatus once closed

    def add(self, result: Any) -> dict:
        """Keep one STT result; returns it as a dict (with its segment id)."""
        data = result.as_dict()
        data["segment_id"] = result.segment_id
        if result.is_final:
            self.partials.pop(result.leg, None)
            if len(self.segments) < MAX_SEGMENTS:
                self.segments.append(data)
        else:
            self.partials[result.leg] = data
        return data

    def finished(self, outcomes: Dict[str, Optional[str]]) -> str:
        """Every leg closed: the call's status from the legs' outcomes."""
        self.outcomes = {leg: o for leg, o in outcomes.items() if o is not None}
        values = set(self.outcomes.values())
        if not values:
            self.status = TranscriptStatus.OFF
        elif TranscriptStatus.FAILED in values:
            self.status = TranscriptStatus.FAILED
        elif TranscriptStatus.QUEUED in values:
            self.status = TranscriptStatus.QUEUED
        else:
            self.status = TranscriptStatus.COMPLETE
        return self.status

    def ordered(self) -> List[dict]:
        return sorted(self.segments, key=lambda d: (d.get("start") or 0.0, d.get("leg") or ""))


class CallFeeds:
    """Every leg's feed of one call: started with the leg, closed with it, and
    waited for (by nobody who writes recordings) when the call is over.

    ``transcription`` is a TranscriptionService (None: STT off);
    ``participant_for(label)`` names who speaks on a leg, for the engine.
    """

    def __init__(self, call_id: str, transcription: Any, audio_analysis: bool,
                 participant_for: Callable[[str], Optional[dict]]) -> None:
        self.call_id = call_id
        self.transcription = transcription
        self.audio_analysis = audio_analysis
        self.participant_for = participant_for
        self._closing: List[tuple] = []  # (leg, its feed's close())
        self._closed: List[LegFeed] = []  # for the talk figures

    @property
    def wanted(self) -> bool:
        """Whether streams should deliver decoded audio at all."""
        return self.transcription is not None or self.audio_analysis

    def start(self, label: str, sample_rate: int, gate: Gate) -> Optional[LegFeed]:
        """A feed for a leg that starts (or comes back); None when nothing wants audio."""
        if not self.wanted:
            return None
        transcriber = analyzer = None
        if self.transcription is not None:
            try:
                transcriber = self.transcription.router.open_leg(
                    self.call_id, label, participant=self.participant_for(label),
                    language=None, sample_rate=sample_rate)
            except Exception:
                log.failure("Call {call_id}: could not start transcription of {label}; "
                            "recording continues", call_id=self.call_id, label=label)
        if self.audio_analysis:
            from siprec.media.dsp.pipeline import LegConfig, LegProcessor
            analyzer = LegProcessor(LegConfig(), name=label)
        if transcriber is None and analyzer is None:
            return None
        return LegFeed(label, transcriber, analyzer, gate)

    def close(self, feed: Optional[LegFeed]) -> None:
        """The leg's media is closed; its feed finishes on its own time."""
        if feed is None:
            return
        self._closing.append((feed.label, feed.close()))
        self._closed.append(feed)

    def finished(self) -> Deferred:
        """Fires, never failing, with each closed leg's outcome once all are out
        ({} when nothing was transcribed)."""
        closing = list(self._closing)
        labels = [label for label, _ in closing]
        d = DeferredList([d for _, d in closing], consumeErrors=True)

        def outcomes(results) -> Dict[str, Optional[str]]:
            out: Dict[str, Optional[str]] = {}
            for label, (ok, value) in zip(labels, results):
                if out.get(label) != TranscriptStatus.FAILED:  # a leg failed once stays failed
                    out[label] = value if ok else TranscriptStatus.FAILED
            return out

        return d.addCallback(outcomes)

    def analysis_view(self, open_feeds: List[LegFeed]) -> Optional[dict]:
        """Talk figures per leg and the overtalk of the first two legs (VAD on the
        noise-reduced analysis copy; AUDIO_ANALYSIS_ENABLED)."""
        feeds = [f for f in self._closed + open_feeds if f.analyzer is not None]
        if not feeds:
            return None
        out: dict = {"legs": {feed.label: feed.talk_figures() for feed in feeds}}
        if len(feeds) >= 2:
            from siprec.media.dsp.vad import overlap_samples
            a, b = feeds[0].segments, feeds[1].segments
            if a and b and a[0].sample_rate == b[0].sample_rate:
                out["overtalk_seconds"] = round(overlap_samples(a, b) / a[0].sample_rate, 3)
        return out
