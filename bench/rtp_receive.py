"""RTP receive throughput: a counting DatagramProtocol vs the real MediaStream path.

    python bench/rtp_receive.py                      # 1 stream and 1,000 streams, 10 s each
    python bench/rtp_receive.py --streams 1000 --seconds 20 --rate 50000
    python bench/rtp_receive.py --profile prof.out   # cProfile the MediaStream run

A separate sender process offers G.711 RTP (20 ms, 160-octet payloads) on
127.0.0.1 at ``--rate`` packets per second spread over the streams, in
20 ms bursts like real calls. This process receives with either

* ``count``: a DatagramProtocol that only counts (the floor Twisted sets), or
* ``media``: MediaService streams that parse, reorder, decode, measure and
  write WAVs exactly as in production (200 ms batches),

and reports packets received, loss, and packets per CPU-second of this
process (user + system time while the load runs, flushes included).
Everything is bounded: the sender stops after ``--seconds`` and the
receiver shortly after. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PTIME = 0.02
PAYLOAD = 160
BASE_PORT = 42000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- sender (child process) -----------------------------------------------------


def run_sender(ports: List[int], rate: int, seconds: float) -> None:
    """Send ``rate`` packets/s round-robin over ``ports`` in 20 ms bursts; print the count."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    per_tick = max(1, int(rate * PTIME))
    payload = bytes([0xD5]) * PAYLOAD
    header = struct.Struct("!BBHII")
    seqs = [0] * len(ports)
    sent = 0
    start = time.monotonic()
    tick = 0
    cursor = 0
    while True:
        due = start + tick * PTIME
        now = time.monotonic()
        if now - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        for _ in range(per_tick):
            i = cursor
            cursor = (cursor + 1) % len(ports)
            seq = seqs[i]
            seqs[i] = seq + 1
            packet = header.pack(0x80, 8, seq & 0xFFFF, (seq * PAYLOAD) & 0xFFFFFFFF, 0x10000 + i) + payload
            try:
                sock.sendto(packet, ("127.0.0.1", ports[i]))
                sent += 1
            except OSError:
                pass
        tick += 1
    sys.stdout.write(f"{sent}\n")
    sys.stdout.flush()


# -- receiver -------------------------------------------------------------------


def run_receiver(mode: str, streams: int, rate: int, seconds: float, profile: str | None) -> dict:
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    from siprec.media.service import MediaService
    from siprec.media.spec import PayloadFormat, StreamSpec

    tmp = tempfile.mkdtemp(prefix="siprec-bench-")
    received = []
    protocols = []

    class Counter(DatagramProtocol):
        packets = 0

        def datagramReceived(self, data, addr):
            self.packets += 1

    def grow_buffer(port) -> None:
        try:
            port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        except OSError:
            pass

    ports: List[int] = []
    service = None
    if mode == "count":
        for i in range(streams):
            proto = Counter()
            port = reactor.listenUDP(BASE_PORT + 2 * i, proto, interface="127.0.0.1")
            grow_buffer(port)
            protocols.append(proto)
            ports.append(BASE_PORT + 2 * i)
    else:
        service = MediaService(reactor, BASE_PORT, BASE_PORT + 2 * streams + 1, bind_ip="127.0.0.1")
        service.startService()
        pcma = PayloadFormat(8, "PCMA", 8000)
        for i in range(streams):
            spec = StreamSpec(
                call_id=f"bench{i // 2}", label=str(i % 2), index=i % 2, formats=(pcma,),
                wav_path=os.path.join(tmp, f"bench{i}.wav"),
            )
            stream = service.bind_stream(spec, None, reactor.seconds())
            grow_buffer(stream.transport)
            protocols.append(stream)
            ports.append(stream.port)

    sender = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--sender", "--rate", str(rate), "--seconds", str(seconds),
         "--ports", ",".join(map(str, ports))],
        stdout=subprocess.PIPE,
    )
    profiler = cProfile.Profile() if profile else None
    marks = {}

    def begin() -> None:
        marks["cpu0"] = cpu_seconds()
        marks["wall0"] = time.monotonic()
        if profiler:
            profiler.enable()

    def finish() -> None:
        if profiler:
            profiler.disable()
        marks["cpu1"] = cpu_seconds()
        marks["wall1"] = time.monotonic()
        reactor.stop()

    reactor.callWhenRunning(begin)
    reactor.callLater(seconds + 1.0, finish)  # the sender's run plus a drain
    reactor.run(installSignalHandlers=False)
    out, _ = sender.communicate(timeout=30)
    sent = int(out.strip() or 0)
    if mode == "count":
        got = sum(p.packets for p in protocols)
    else:
        got = sum(p.packets for p in protocols)
        marks["fast"] = sum(p.fast_packets for p in protocols)
        marks["overflow"] = sum(p.overflow_dropped for p in protocols)
        close0 = cpu_seconds()
        for stream in protocols:
            stream.close()
        marks["close_cpu"] = cpu_seconds() - close0
    if profiler:
        profiler.dump_stats(profile)
    shutil.rmtree(tmp, ignore_errors=True)
    cpu = marks["cpu1"] - marks["cpu0"]
    return {
        "mode": mode,
        "streams": streams,
        "offered_pps": rate,
        "sent": sent,
        "received": got,
        "loss_percent": 100.0 * (sent - got) / sent if sent else 0.0,
        "cpu_seconds": cpu,
        "wall_seconds": marks["wall1"] - marks["wall0"],
        "packets_per_cpu_second": got / cpu if cpu else 0.0,
        "close_cpu_seconds": marks.get("close_cpu", 0.0),
        "fast_path_packets": marks.get("fast", 0),
        "overflow_dropped": marks.get("overflow", 0),
    }


def one_run(mode: str, streams: int, rate: int, seconds: float, profile: str | None = None) -> dict:
    """Each run in a fresh interpreter, so reactors and caches do not carry over."""
    args = [sys.executable, os.path.abspath(__file__), "--one", mode, "--streams", str(streams),
            "--rate", str(rate), "--seconds", str(seconds)]
    if profile:
        args += ["--profile", profile]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode:
        raise SystemExit(out.stderr)
    return eval(out.stdout.strip().splitlines()[-1])  # our own repr of a dict of numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="*", default=[1, 1000])
    parser.add_argument("--rate", type=int, default=50000, help="offered packets per second in total")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", help="cProfile output file for the media run")
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        run_sender([int(p) for p in args.ports.split(",")], args.rate, args.seconds)
        return
    if args.one:
        result = run_receiver(args.one, args.streams[0], args.rate, args.seconds, args.profile)
        print(repr(result))
        return
    print(f"offered load {args.rate} packets/s for {args.seconds:.0f} s on 127.0.0.1 (G.711, 20 ms)")
    print(f"{'streams':>8} {'receiver':>8} {'sent':>9} {'received':>9} {'loss %':>7} {'CPU s':>7} {'pkts/CPU-s':>11} {'ratio':>6}")
    for streams in args.streams:
        base = one_run("count", streams, args.rate, args.seconds)
        media = one_run("media", streams, args.rate, args.seconds, args.profile)
        for r in (base, media):
            ratio = r["packets_per_cpu_second"] / base["packets_per_cpu_second"] if base["packets_per_cpu_second"] else 0
            print(
                f"{r['streams']:>8} {r['mode']:>8} {r['sent']:>9} {r['received']:>9} {r['loss_percent']:>7.2f} "
                f"{r['cpu_seconds']:>7.2f} {r['packets_per_cpu_second']:>11.0f} {ratio:>6.2f}"
            )
    if args.profile:
        print(f"profile of the last media run: {args.profile} (python -m pstats {args.profile})")


if __name__ == "__main__":
    main()
