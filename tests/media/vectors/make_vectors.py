"""Regenerate the reference vectors for codecs that FFmpeg can only decode.

Run by hand on a Debian machine with the encoder libraries installed:

    apt-get install libbcg729-0 libgsm1 libvo-amrwbenc0
    python -m tests.media.vectors.make_vectors

Each vector is the encoding, by an independent encoder (bcg729, libgsm,
VisualOn AMR-WB), of a signal the tests regenerate with
``tests.media.signals``; the tests decode it with our decoders and compare
with that signal. Not part of the test run.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from tests.media.signals import VECTORS, chunks, voiced, with_silence, write_frames

SECONDS = 1.0


def _lib(name: str, soname: str) -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library(name) or soname)


def g729() -> None:
    lib = _lib("bcg729", "libbcg729.so.0")
    lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
    lib.initBcg729EncoderChannel.argtypes = [ctypes.c_uint8]
    lib.bcg729Encoder.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    # speech without VAD
    for name, vad, signal in (
        ("g729.bin", 0, voiced(8000, SECONDS)),
        ("g729_vad.bin", 1, with_silence(voiced(8000, SECONDS / 2), 8000, SECONDS / 2)[0]),
    ):
        ctx = lib.initBcg729EncoderChannel(vad)
        frames = []
        for block in chunks(signal, 80):
            pcm = np.ascontiguousarray(block, dtype=np.int16)
            out = (ctypes.c_uint8 * 10)()
            length = ctypes.c_uint8(0)
            lib.bcg729Encoder(ctypes.c_void_p(ctx), pcm.ctypes.data, out, ctypes.byref(length))
            frames.append(bytes(out)[: length.value])
        lib.closeBcg729EncoderChannel(ctypes.c_void_p(ctx))
        write_frames(VECTORS / name, frames)


def gsm() -> None:
    lib = _lib("gsm", "libgsm.so.1")
    lib.gsm_create.restype = ctypes.c_void_p
    lib.gsm_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.gsm_destroy.argtypes = [ctypes.c_void_p]
    ctx = lib.gsm_create()
    frames = []
    for block in chunks(voiced(8000, SECONDS), 160):
        pcm = np.ascontiguousarray(block, dtype=np.int16)
        out = (ctypes.c_uint8 * 33)()
        lib.gsm_encode(ctx, pcm.ctypes.data, out)
        frames.append(bytes(out))
    lib.gsm_destroy(ctx)
    write_frames(VECTORS / "gsm.bin", frames)


def amr_wb() -> None:
    lib = _lib("vo-amrwbenc", "libvo-amrwbenc.so.0")
    lib.E_IF_init.restype = ctypes.c_void_p
    lib.E_IF_encode.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.E_IF_exit.argtypes = [ctypes.c_void_p]
    ctx = lib.E_IF_init()
    frames = []
    mode = 8  # 23.85 kbit/s
    for block in chunks(voiced(16000, SECONDS, top=7000), 320):
        pcm = np.ascontiguousarray(block, dtype=np.int16)
        out = (ctypes.c_uint8 * 64)()
        size = lib.E_IF_encode(ctx, mode, pcm.ctypes.data, out, 0)
        frames.append(bytes(out)[:size])
    lib.E_IF_exit(ctx)
    write_frames(VECTORS / "amrwb.bin", frames)


if __name__ == "__main__":
    g729()
    gsm()
    amr_wb()
    for path in sorted(VECTORS.glob("*.bin")):
        print(path.name, path.stat().st_size)
