"""Recording never waits: how long after BYE are a call's files final, with STT on?

    python bench/finalise.py                 # 20 calls, speech ending at the same moment
    python bench/finalise.py --calls 40 --stt false

A real server (``twistd -n siprec``, the embedded offline speech engine
unless ``--stt false``) runs in a child process on 127.0.0.1. This process
places ``--calls`` two-leg SIPREC calls with our test SRC, sends each leg
espeak-ng speech as PCMU in real time — every call's speech ends at the
same moment, so the engine has a backlog of last utterances — then sends
every BYE at once and watches the recording directory.

It prints, per call, the time from its BYE to the combined ``<Call-ID>.wav``
and the final ``<Call-ID>.json`` (``state`` "ended"), and to
``<Call-ID>.transcript.json`` (transcription finished). The contract: the
files are final within 1 s of BYE whatever transcription is doing; the
transcript comes when it comes. Only 127.0.0.1 is used; everything stops
after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.admission_burst import percentile, start_server  # noqa: E402

SPEECH = ("Thank you for calling, how can I help you today?",
          "Please call me back tomorrow morning about the invoice.")


def speech(text: str) -> np.ndarray:
    from tests.stt.speech import speak
    return speak(text)


def leg_signal(text: str, seconds: float) -> np.ndarray:
    """``seconds`` of audio whose speech ends exactly at its end."""
    spoken = speech(text)
    total = int(seconds * 8000)
    if len(spoken) >= total:
        return spoken[-total:]
    return np.concatenate([np.zeros(total - len(spoken), dtype=np.int16), spoken])


def final_record(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return json.load(f).get("state") == "ended"
    except (OSError, ValueError):
        return False


def run(args) -> None:
    from twisted.internet import defer, reactor, task

    from siprec.testing.src import SrcClient, StreamOffer

    workdir = tempfile.mkdtemp(prefix="siprec-finalise-")
    server_args = argparse.Namespace(calls=args.calls, stt=args.stt, profile=None)
    proc, sip_port, _ = start_server(server_args, workdir)
    recordings = os.path.join(workdir, "rec")
    signals = {"caller": leg_signal(SPEECH[1], args.seconds),
               "agent": leg_signal(SPEECH[0], args.seconds)}
    results: Dict[str, Dict[str, Optional[float]]] = {}

    @defer.inlineCallbacks
    def scenario():
        client = SrcClient(reactor, ("127.0.0.1", sip_port))
        yield client.start()
        calls = []
        for _ in range(args.calls):
            call = yield client.invite([StreamOffer("caller", 0), StreamOffer("agent", 0)])
            if call.final.status != 200:
                raise SystemExit(f"INVITE answered {call.final.status}")
            calls.append(call)
        yield defer.gatherResults([client.send_audio(call, signals) for call in calls])
        bye_at = time.monotonic()
        byes = [client.bye(call) for call in calls]
        for call in calls:
            results[call.call_id] = {"files": None, "transcript": None}
        deadline = bye_at + args.timeout

        def watch():
            now = time.monotonic()
            for call_id, seen in results.items():
                base = os.path.join(recordings, call_id)
                if seen["files"] is None and os.path.exists(base + ".wav") and \
                        final_record(base + ".json"):
                    seen["files"] = now - bye_at
                if seen["transcript"] is None and os.path.exists(base + ".transcript.json"):
                    seen["transcript"] = now - bye_at
            done = all(s["files"] is not None and (s["transcript"] is not None or args.stt == "false")
                       for s in results.values())
            if done or now > deadline:
                poll.stop()

        poll = task.LoopingCall(watch)
        yield poll.start(0.01, now=True)
        yield defer.DeferredList(byes, consumeErrors=True)
        yield client.stop()

    def finish(outcome):
        reactor.stop()
        return outcome

    reactor.callWhenRunning(lambda: scenario().addBoth(finish))
    try:
        reactor.run()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except Exception:
            proc.kill()
    report(args, results)
    shutil.rmtree(workdir, ignore_errors=True)


def report(args, results) -> None:
    files = [s["files"] for s in results.values() if s["files"] is not None]
    transcripts = [s["transcript"] for s in results.values() if s["transcript"] is not None]
    missing = len(results) - len(files)
    print(f"{len(results)} calls, {args.seconds:g} s of speech per leg ending together, "
          f"STT_ENABLED={args.stt}")
    if files:
        print(f"BYE -> combined WAV + final record:  p50 {percentile(files, 50) * 1000:6.0f} ms  "
              f"max {max(files) * 1000:6.0f} ms  (contract: under 1000 ms)  missing {missing}")
    if transcripts:
        print(f"BYE -> transcript.json:              p50 {percentile(transcripts, 50) * 1000:6.0f} ms  "
              f"max {max(transcripts) * 1000:6.0f} ms  "
              f"({len(transcripts)}/{len(results)} within {args.timeout:g} s)")
    late = [s for s in files if s > 1.0]
    print("every recording final within 1 s of BYE: " + ("yes" if not late and not missing
                                                          else f"NO ({len(late)} late, {missing} missing)"))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per leg")
    parser.add_argument("--stt", default="true", choices=["true", "false"])
    parser.add_argument("--timeout", type=float, default=60.0)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
