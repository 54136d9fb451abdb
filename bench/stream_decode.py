"""MediaStream decode path: CPU per second of audio, by what the SRC sends.

    python bench/stream_decode.py [--streams 50] [--seconds 10] [--repeat 3]

Feeds MediaStreams in this process (no sockets: a Clock and a stand-in
transport) with 20 ms packets, flushed every 200 ms as the MediaService
does, WAVs written to a temporary directory. Cases:

- ``PCMU on PCMU``: the common case, the vectorised G.711 path;
- ``PCMA on PCMU``: an unoffered static type on a G.711 leg (same rate:
  the vectorised path too);
- ``PCMU on Opus``: G.711 on a 48 kHz Opus leg (resampled per packet);
- ``G722 on PCMU``: 16 kHz audio on an 8 kHz leg (decoded by FFmpeg,
  resampled per packet).

Prints CPU microseconds per second of audio per stream (best of
--repeat), the share of one core a stream costs, and the ratio to the
first case. Run on purpose; not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import av  # noqa: E402
import numpy as np  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from siprec.media.codecs.g711 import encode_alaw, encode_ulaw  # noqa: E402
from siprec.media.rtp import RtpPacket, serialize  # noqa: E402
from siprec.media.spec import PayloadFormat, StreamSpec  # noqa: E402
from siprec.media.stream import MediaStream  # noqa: E402

PCMU = PayloadFormat(0, "PCMU", 8000)
OPUS = PayloadFormat(111, "OPUS", 48000, 2)
SRC = ("127.0.0.1", 40000)


class Transport:
    """The little of a UDP port a MediaStream touches."""

    def __init__(self, protocol: MediaStream, port: int) -> None:
        self.protocol = protocol
        self.host = IPv4Address("UDP", "127.0.0.1", port)
        protocol.makeConnection(self)

    def getHost(self) -> IPv4Address:
        return self.host

    def stopListening(self) -> None:
        self.protocol.doStop()


class Listener:
    def stream_first_packet(self, stream: MediaStream) -> None:
        pass


def voice(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    return np.round(6000 * x / np.max(np.abs(x))).astype(np.int16)


def g722_payloads(seconds: float) -> List[bytes]:
    enc = av.CodecContext.create("g722", "w")
    enc.sample_rate, enc.layout, enc.format = 16000, "mono", "s16"
    enc.open()
    pcm = voice(16000, seconds)
    out: List[bytes] = []
    for start in range(0, len(pcm) - 319, 320):
        frame = av.AudioFrame.from_ndarray(pcm[start : start + 320].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, start
        out.extend(bytes(p) for p in enc.encode(frame))
    return out


def packets(kind: str, seconds: float) -> Tuple[Tuple[PayloadFormat, ...], List[bytes]]:
    pcm = voice(8000, seconds)
    frames = [pcm[i : i + 160] for i in range(0, len(pcm) - 159, 160)]
    if kind == "PCMU on PCMU":
        formats, pt, payloads = (PCMU,), 0, [encode_ulaw(f) for f in frames]
    elif kind == "PCMA on PCMU":
        formats, pt, payloads = (PCMU,), 8, [encode_alaw(f) for f in frames]
    elif kind == "PCMU on Opus":
        formats, pt, payloads = (OPUS,), 0, [encode_ulaw(f) for f in frames]
    else:
        formats, pt, payloads = (PCMU,), 9, g722_payloads(seconds)
    data = [serialize(RtpPacket(pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x1234, p))
            for seq, p in enumerate(payloads)]
    return formats, data


def run(kind: str, streams: int, seconds: float, directory: str) -> float:
    """CPU seconds per second of audio per stream."""
    formats, data = packets(kind, seconds)
    clock = Clock()
    clock.advance(1000.0)
    opened = []
    for i in range(streams):
        spec = StreamSpec(call_id=f"c{i}", label="1", index=0, formats=formats,
                          wav_path=os.path.join(directory, f"c{i}.wav"))
        stream = MediaStream(spec, clock, Listener(), clock.seconds(), scheduled=False)
        Transport(stream, 30000 + 2 * i)
        opened.append(stream)
    start = time.process_time()
    for batch in range(0, len(data), 10):
        for stream in opened:
            for packet in data[batch : batch + 10]:
                stream.datagramReceived(packet, SRC)
        clock.advance(0.2)
        for stream in opened:
            stream.tick()
    for stream in opened:
        stream.close()
    cpu = time.process_time() - start
    return cpu / (streams * len(data) * 0.02)


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(list(argv) or None)
    kinds = ("PCMU on PCMU", "PCMA on PCMU", "PCMU on Opus", "G722 on PCMU")
    best = {kind: float("inf") for kind in kinds}
    directory = tempfile.mkdtemp(prefix="stream-decode-")
    try:
        for _ in range(args.repeat):  # the cases take turns, so load elsewhere falls on all alike
            for kind in kinds:
                best[kind] = min(best[kind], run(kind, args.streams, args.seconds, directory))
    finally:
        shutil.rmtree(directory)
    base = best[kinds[0]]
    print(f"{args.streams} streams x {args.seconds:g} s, best of {args.repeat}\n")
    print(f"{'case':>14} {'us CPU / s audio':>17} {'% of a core':>12} {'vs PCMU on PCMU':>16}")
    for kind in kinds:
        print(f"{kind:>14} {best[kind] * 1e6:17.0f} {best[kind] * 100:12.3f} {best[kind] / base:16.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
