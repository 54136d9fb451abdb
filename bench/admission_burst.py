"""Admission under a burst: do OPTIONS stay answered while INVITEs pour in?

    python bench/admission_burst.py                    # 200 INVITEs in 1 s, STT on
    python bench/admission_burst.py --calls 400 --stt false
    python bench/admission_burst.py --profile out.prof # cProfile the server

A real server (``twistd -n siprec``) runs in a child process on 127.0.0.1.
This process plays a load balancer and an SRC at once: it sends an OPTIONS
keep-alive every 10 ms from one socket and, from another, ``--calls``
SIPREC INVITEs (two PCMU streams, RFC 7865 metadata) spread evenly over
``--over`` seconds, ACKs every 200, waits ``--hold`` seconds and sends BYE
for every call. It prints the OPTIONS round-trip times before, during and
after the burst, the INVITE→200 times, and the server's CPU time.

The baseline is the same server answering OPTIONS while idle, measured in
the same run: compare the ratios, not the milliseconds (shared machine).
Everything is bounded by ``--calls`` and the timeouts; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from typing import Dict, List, Optional, Tuple

HOST = "127.0.0.1"
BOUNDARY = "bench-boundary"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values: List[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(name: str, values_ms: List[float]) -> str:
    if not values_ms:
        return f"{name:<28} no samples"
    return (f"{name:<28} n={len(values_ms):<5} p50={percentile(values_ms, 50):7.1f} ms  "
            f"p99={percentile(values_ms, 99):7.1f} ms  max={max(values_ms):7.1f} ms")


# -- messages -----------------------------------------------------------------------


def options(port: int, local: int, n: int) -> bytes:
    return (f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK-opt-{n}\r\n"
            f"From: <sip:lb@{HOST}>;tag=lb\r\nTo: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: options-{n}@bench\r\nCSeq: {n + 1} OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def invite(port: int, local: int, call_id: str, rtp_base: int) -> bytes:
    sdp = (f"v=0\r\no=src 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
           f"m=audio {rtp_base} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
           "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
           "a=label:caller\r\na=sendonly\r\n"
           f"m=audio {rtp_base + 2} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
           "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
           "a=label:callee\r\na=sendonly\r\n")
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\r\n'
           '<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
           "<datamode>complete</datamode>"
           '<session session_id="s1"></session>'
           '<participant participant_id="p1"><nameID aor="sip:alice@example.com"/></participant>'
           '<participant participant_id="p2"><nameID aor="sip:bob@example.com"/></participant>'
           '<stream stream_id="st1" session_id="s1"><label>caller</label></stream>'
           '<stream stream_id="st2" session_id="s1"><label>callee</label></stream>'
           '<participantstreamassoc participant_id="p1"><send>st1</send></participantstreamassoc>'
           '<participantstreamassoc participant_id="p2"><send>st2</send></participantstreamassoc>'
           "</recording>\r\n")
    body = (f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n"
            f"--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
            f"Content-Disposition: recording-session\r\n\r\n{xml}\r\n--{BOUNDARY}--\r\n").encode()
    head = (f"INVITE sip:srs@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK-{call_id}\r\n"
            f"From: <sip:src@{HOST}>;tag=src-{call_id}\r\nTo: <sip:srs@{HOST}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:src@{HOST}:{local}>;+sip.src\r\nRequire: siprec\r\n"
            f"Content-Type: multipart/mixed;boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def in_dialog(method: str, port: int, local: int, call_id: str, to_tag: str, cseq: int) -> bytes:
    return (f"{method} sip:srs@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK-{method}-{call_id}\r\n"
            f"From: <sip:src@{HOST}>;tag=src-{call_id}\r\nTo: <sip:srs@{HOST}>;tag={to_tag}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method if method != 'ACK' else 'ACK'}\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


_STATUS = re.compile(rb"^SIP/2\.0 (\d{3})")
_CALL_ID = re.compile(rb"(?im)^(?:Call-ID|i)\s*:\s*(\S+)")
_TO_TAG = re.compile(rb"(?im)^(?:To|t)\s*:.*;tag=([^;\s>]+)")
_CSEQ = re.compile(rb"(?im)^CSeq\s*:\s*\d+\s+(\w+)")


# -- the server ---------------------------------------------------------------------


def start_server(args, workdir: str) -> Tuple[subprocess.Popen, int, int]:
    sip_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    rtp_min = 30000
    env = dict(os.environ, SIP_HOST=HOST, PORTS=str(sip_port), HTTP_HOST=HOST,
               HTTP_PORT=str(http_port), RECORDING_DIR=os.path.join(workdir, "rec"),
               RTP_PORT_MIN=str(rtp_min), RTP_PORT_MAX=str(rtp_min + 8 * args.calls + 100),
               EXTERNAL_IP=HOST, STT_ENABLED=args.stt, LOG_LEVEL="warn",
               MAX_CONCURRENT_CALLS="0")
    cmd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
           "--pidfile", os.path.join(workdir, "twistd.pid")]
    if args.profile:
        cmd += ["--profile", args.profile, "--profiler", "cprofile", "--savestats"]
    cmd += ["siprec"]
    log = open(os.path.join(workdir, "server.log"), "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{http_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, sip_port, http_port
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not become ready; see {workdir}/server.log")


def server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the load -----------------------------------------------------------------------


def run(args) -> None:
    workdir = tempfile.mkdtemp(prefix="siprec-burst-")
    proc, sip_port, _ = start_server(args, workdir)
    try:
        measure(args, proc, sip_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")


def measure(args, proc, sip_port: int) -> None:
    opt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    opt.bind((HOST, 0))
    calls = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    calls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    calls.bind((HOST, 0))
    opt_local, call_local = opt.getsockname()[1], calls.getsockname()[1]
    target = (HOST, sip_port)

    sent_opt: Dict[int, float] = {}
    rtt: List[Tuple[float, float]] = []  # (sent at, rtt ms)
    invites: Dict[str, float] = {}
    answered: Dict[str, float] = {}
    tags: Dict[str, str] = {}
    refused: Dict[str, int] = {}
    byes_ok = 0
    bye_status: Dict[int, int] = {}
    n_opt = 0
    start = time.monotonic()
    idle_end = start + args.idle
    burst_end = idle_end + args.over
    stop_at = burst_end + args.hold
    next_opt = start
    planned = [idle_end + i * args.over / args.calls for i in range(args.calls)]
    cpu_before = server_cpu(proc.pid)
    next_call = 0
    byes_sent = False
    bye_deadline = None
    while True:
        now = time.monotonic()
        if now >= next_opt and now < stop_at:
            sent_opt[n_opt] = now
            opt.sendto(options(sip_port, opt_local, n_opt), target)
            n_opt += 1
            next_opt += 0.01
        while next_call < len(planned) and planned[next_call] <= now:
            call_id = f"{uuid.uuid4().hex[:12]}@bench"
            invites[call_id] = time.monotonic()
            calls.sendto(invite(sip_port, call_local, call_id, 20000 + 4 * next_call), target)
            next_call += 1
        if now >= stop_at and not byes_sent:
            byes_sent = True
            for call_id, tag in tags.items():
                calls.sendto(in_dialog("BYE", sip_port, call_local, call_id, tag, 2), target)
            bye_deadline = now + 10
        if byes_sent and (byes_ok >= len(tags) or now >= bye_deadline):
            break
        ready, _, _ = select.select([opt, calls], [], [], 0.002)
        for sock in ready:
            data = sock.recv(65535)
            got = time.monotonic()
            status = _STATUS.match(data)
            call_id_m = _CALL_ID.search(data)
            if not status or not call_id_m:
                continue
            code = int(status.group(1))
            call_id = call_id_m.group(1).decode()
            method = (_CSEQ.search(data) or [None, b""])[1]
            if sock is opt:
                n = int(call_id.split("-")[1].split("@")[0])
                if n in sent_opt and code >= 200:
                    rtt.append((sent_opt[n], (got - sent_opt.pop(n)) * 1000))
            elif method == b"INVITE" and code >= 200:
                if code == 200 and call_id not in answered:
                    answered[call_id] = got
                    tag = _TO_TAG.search(data).group(1).decode()
                    tags[call_id] = tag
                    sock.sendto(in_dialog("ACK", sip_port, call_local, call_id, tag, 1), target)
                elif code >= 300:
                    refused[call_id] = code
            elif method == b"BYE" and code >= 200:
                bye_status[code] = bye_status.get(code, 0) + 1
                byes_ok += code == 200
    cpu = server_cpu(proc.pid) - cpu_before

    idle = [ms for at, ms in rtt if at < idle_end]
    during = [ms for at, ms in rtt if idle_end <= at < burst_end + 0.5]
    after = [ms for at, ms in rtt if at >= burst_end + 0.5]
    setup = [(answered[c] - invites[c]) * 1000 for c in answered]
    lost_opt = len(sent_opt)
    print(f"{args.calls} INVITEs over {args.over:g} s, STT_ENABLED={args.stt}; "
          f"OPTIONS every 10 ms; server CPU {cpu:.2f} s")
    print(summary("OPTIONS idle (baseline)", idle))
    print(summary("OPTIONS during burst", during))
    print(summary("OPTIONS after burst", after))
    print(summary("INVITE -> 200", setup))
    print(f"answered {len(answered)}/{args.calls}, refused {len(refused)} "
          f"{sorted(set(refused.values()))}, OPTIONS unanswered {lost_opt}, BYE answers {bye_status}")
    if idle and during:
        print(f"OPTIONS p99 during / idle: {percentile(during, 99) / max(percentile(idle, 99), 0.01):.1f}x; "
              f"max during burst {max(during):.0f} ms (target: under 200 ms)")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--over", type=float, default=1.0, help="seconds the INVITEs are spread over")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds of OPTIONS before the burst")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds calls stay up after the burst")
    parser.add_argument("--stt", default="true", choices=["true", "false"])
    parser.add_argument("--profile", help="write the server's cProfile stats here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
