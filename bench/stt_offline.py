"""Offline STT engine: real-time factor on one core and word error rate.

    python bench/stt_offline.py [--rate 8000] [--threads 1] [--beam 5]

Speaks tests/stt/speech.SENTENCES with espeak-ng, passes them through G.711
µ-law at 8 kHz (as a PCMU call would), feeds them to the offline engine as
one leg and prints: audio seconds, wall seconds, real-time factor (wall /
audio, one decode thread), WER, and each final next to its reference.
Run on purpose; not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402

from siprec.stt.base import LegSpec  # noqa: E402
from siprec.stt.offline import OfflineEngine, OfflineSettings  # noqa: E402
from siprec.stt.wer import word_error_rate  # noqa: E402
from tests.stt.speech import SENTENCES, conversation  # noqa: E402


class Finals:
    def __init__(self) -> None:
        self.finals = []

    def hypothesis(self, hyp) -> None:
        if hyp.is_final:
            self.finals.append(hyp)

    def failed(self, error) -> None:
        raise SystemExit(f"engine failed: {error}")

    def overloaded(self, reason) -> None:
        raise SystemExit(f"overloaded: {reason}")


@defer.inlineCallbacks
def run(reactor, args) -> defer.Deferred:
    pool = ThreadPool(1, args.threads, name="bench-stt")
    pool.start()
    try:
        engine = OfflineEngine(reactor, pool, OfflineSettings(
            cpu_threads=1, beam_size=args.beam, partial_interval=None, max_lag=None,
            model_dir=args.model_dir))
        began = time.perf_counter()
        yield engine.start()
        load = time.perf_counter() - began
        audio, _ = conversation(SENTENCES, rate=args.rate, ulaw=args.rate == 8000)
        listener = Finals()
        stream = engine.open_stream(LegSpec("bench", "leg", args.rate, live=False), listener)
        began = time.perf_counter()
        frame = args.rate // 50
        for position in range(0, len(audio), frame):
            stream.feed(audio[position:position + frame], position)
        yield stream.finish()
        wall = time.perf_counter() - began
        seconds = len(audio) / args.rate
        speech = engine.stats()["audio_seconds"]
        wer = word_error_rate(SENTENCES, [h.text for h in listener.finals])
        print(f"model load            {load:.2f} s")
        print(f"audio                 {seconds:.1f} s ({speech:.1f} s in utterances) at {args.rate} Hz")
        print(f"wall                  {wall:.2f} s with {args.threads} decode thread(s), 1 CPU thread each")
        print(f"real-time factor      {wall / seconds:.3f} (per audio second), "
              f"{wall / speech:.3f} (per speech second)")
        print(f"word error rate       {wer:.3f} over {len(SENTENCES)} sentences")
        for hyp in listener.finals:
            print(f"  [{hyp.start:6.2f}-{hyp.end:6.2f}] {hyp.text}")
    finally:
        pool.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--model-dir", default="")
    task.react(run, [parser.parse_args()])


if __name__ == "__main__":
    main()
