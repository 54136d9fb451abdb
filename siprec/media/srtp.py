"""SRTP with SDES keys (RFC 3711, RFC 4568, RFC 7714) on top of pylibsrtp.

Three parts, none doing I/O:

* ``parse_crypto`` / ``CryptoAttribute``: the ``a=crypto`` line, with its
  inline keys (several allowed), lifetimes and MKIs, and session
  parameters;
* ``choose_crypto`` and ``answer_crypto``: pick the first offered line we
  can honour and build our answer line with a fresh key of our own;
* ``SrtpReceiver``: unprotects SRTP and SRTCP with the SRC's key.
  Packets that fail authentication or the replay check are counted and
  dropped (None), never raised: a burst of garbage must not end a
  recording.

MKIs are handled here rather than in libsrtp (pylibsrtp does not expose
them): the MKI field is cut out of each packet and selects the key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session


class CryptoError(ValueError):
    """An ``a=crypto`` line or SRTP key we cannot use."""


@dataclass(frozen=True, slots=True)
class Suite:
    """What one crypto suite needs from us and from libsrtp."""

    name: str
    key_length: int  # master key octets
    salt_length: int  # master salt octets
    rtp_tag: int  # octets of authentication tag on SRTP (AEAD: inside the ciphertext)
    profile: int  # pylibsrtp profile constant
    aead: bool = False

    @property
    def inline_length(self) -> int:
        return self.key_length + self.salt_length


SUITES: Dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
        Suite("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, Policy.SRTP_PROFILE_AES128_CM_SHA1_32),
        # RFC 7714 section 14.2: 96-bit salts, 16-octet tags inside the ciphertext.
        Suite("AEAD_AES_128_GCM", 16, 12, 0, Policy.SRTP_PROFILE_AEAD_AES_128_GCM, aead=True),
        Suite("AEAD_AES_256_GCM", 32, 12, 0, Policy.SRTP_PROFILE_AEAD_AES_256_GCM, aead=True),
    )
}
# Our preference when an offer has several lines we could take.
PREFERENCE = ("AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
SRTCP_INDEX_SIZE = 4
SRTCP_TAG = 10  # HMAC-SHA1-80 on SRTCP for both AES_CM suites (RFC 4568 6.2)
# Session parameters that change the packet format in ways libsrtp's
# profiles cannot express; a line carrying them is not chosen.
UNSUPPORTED_SESSION_PARAMS = ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP", "FEC_ORDER", "FEC_KEY")

_TAG = re.compile(r"^\d{1,9}$")


@dataclass(frozen=True, slots=True)
class KeyParams:
    """One ``inline:`` key: master key and salt, optional lifetime and MKI."""

    key: bytes  # master key || master salt
    lifetime: Optional[int] = None  # packets
    mki: Optional[int] = None
    mki_length: int = 0  # octets on the wire

    def inline(self) -> str:
        text = "inline:" + base64.b64encode(self.key).decode("ascii")
        if self.lifetime is not None:
            text += f"|2^{self.lifetime.bit_length() - 1}" if self.lifetime & (self.lifetime - 1) == 0 else f"|{self.lifetime}"
        if self.mki is not None:
            text += f"|{self.mki}:{self.mki_length}"
        return text


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto`` value (RFC 4568 section 9.1)."""

    tag: int
    suite: str
    keys: Tuple[KeyParams, ...]
    session_params: Tuple[str, ...] = field(default=())

    @property
    def supported(self) -> bool:
        """Whether we can use this line (known suite, no format-changing parameters)."""
        return self.suite in SUITES and not any(
            p.upper().split("=")[0] in UNSUPPORTED_SESSION_PARAMS for p in self.session_params
        )

    def value(self) -> str:
        """The attribute value, for ``a=crypto:<value>``."""
        parts = [str(self.tag), self.suite, ";".join(k.inline() for k in self.keys)]
        parts.extend(self.session_params)
        return " ".join(parts)


def _lifetime(text: str) -> int:
    if text.startswith("2^"):
        exponent = text[2:]
        if not exponent.isdigit() or int(exponent) > 64:
            raise CryptoError(f"bad key lifetime {text!r}")
        return 1 << int(exponent)
    if not text.isdigit():
        raise CryptoError(f"bad key lifetime {text!r}")
    return int(text)


def _key_params(text: str, suite: Optional[Suite]) -> KeyParams:
    method, _, info = text.partition(":")
    if method.lower() != "inline" or not info:
        raise CryptoError(f"key parameter {text[:40]!r} is not inline:<key>")
    fields = info.split("|")
    try:
        key = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError) as e:
        raise CryptoError(f"inline key is not base64: {e}") from e
    if suite is not None and len(key) != suite.inline_length:
        raise CryptoError(f"{suite.name} needs a {suite.inline_length}-octet key and salt, got {len(key)} octets")
    lifetime = mki = None
    mki_length = 0
    for extra in fields[1:]:
        if ":" in extra:
            value, _, length = extra.partition(":")
            if not value.isdigit() or not length.isdigit() or not 1 <= int(length) <= 128:
                raise CryptoError(f"bad MKI {extra!r}")
            mki, mki_length = int(value), int(length)
            if mki >= 1 << (8 * mki_length):
                raise CryptoError(f"MKI {mki} does not fit in {mki_length} octets")
        else:
            lifetime = _lifetime(extra)
    return KeyParams(key, lifetime, mki, mki_length)


def parse_crypto(value: str) -> CryptoAttribute:
    """Parse an ``a=crypto`` value (the text after ``a=crypto:``).

    Unknown suites parse (so an answer can skip them); key lengths are
    checked for the suites we know.
    """
    parts = value.strip().split()
    if len(parts) < 3:
        raise CryptoError(f"a=crypto needs a tag, a suite and key parameters, got {value[:60]!r}")
    tag_text, suite_name, key_text = parts[:3]
    if not _TAG.match(tag_text):
        raise CryptoError(f"a=crypto tag {tag_text!r} is not a 1-9 digit number")
    suite_name = suite_name.upper()
    suite = SUITES.get(suite_name)
    keys = tuple(_key_params(k, suite) for k in key_text.split(";") if k)
    if not keys:
        raise CryptoError("a=crypto has no key parameters")
    if len({k.mki for k in keys}) != len(keys) or (len(keys) > 1 and any(k.mki is None for k in keys)):
        raise CryptoError("several keys in one a=crypto line need distinct MKIs")
    if len({k.mki_length for k in keys}) > 1:
        raise CryptoError("keys of one a=crypto line must share one MKI length")
    return CryptoAttribute(int(tag_text), suite_name, keys, tuple(parts[3:]))


def choose_crypto(offered: Sequence[str]) -> Optional[CryptoAttribute]:
    """The offered line we answer: the best suite we support; None if none.

    Lines that fail to parse are skipped (another line may be fine).
    """
    usable = []
    for value in offered:
        try:
            attribute = parse_crypto(value)
        except CryptoError:
            continue
        if attribute.supported:
            usable.append(attribute)
    if not usable:
        return None
    return min(usable, key=lambda a: (PREFERENCE.index(a.suite), a.tag))


def answer_crypto(offer: CryptoAttribute, random: bytes | None = None) -> CryptoAttribute:
    """Our answer line: the offer's tag and suite with a fresh key (RFC 4568 section 7.1.2)."""
    suite = SUITES.get(offer.suite)
    if suite is None:
        raise CryptoError(f"suite {offer.suite} is not supported")
    key = random if random is not None else os.urandom(suite.inline_length)
    if len(key) != suite.inline_length:
        raise CryptoError(f"{suite.name} needs {suite.inline_length} random octets")
    return CryptoAttribute(offer.tag, offer.suite, (KeyParams(key),))


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """What a MediaStream needs to decrypt: plain data, crosses processes."""

    suite: str
    keys: Tuple[Tuple[Optional[int], bytes], ...]  # (MKI or None, key || salt)
    mki_length: int = 0

    @classmethod
    def from_crypto(cls, attribute: CryptoAttribute) -> "SrtpKeys":
        if not attribute.supported:
            raise CryptoError(f"a=crypto suite {attribute.suite} with {attribute.session_params} is not supported")
        return cls(
            attribute.suite,
            tuple((k.mki, k.key) for k in attribute.keys),
            attribute.keys[0].mki_length,
        )


class SrtpReceiver:
    """Unprotects one stream's SRTP and SRTCP with the sender's keys."""

    def __init__(self, keys: SrtpKeys) -> None:
        suite = SUITES.get(keys.suite)
        if suite is None:
            raise CryptoError(f"suite {keys.suite} is not supported")
        self.suite = suite
        self.mki_length = keys.mki_length
        self._sessions: Dict[Optional[int], Session] = {}
        for mki, key in keys.keys:
            if len(key) != suite.inline_length:
                raise CryptoError(f"{suite.name} needs a {suite.inline_length}-octet key and salt")
            try:
                policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=suite.profile)
                self._sessions[mki] = Session(policy)
            except LibSrtpError as e:
                raise CryptoError(f"libsrtp refused the {suite.name} key: {e}") from e
        self.rtp_packets = 0
        self.rtcp_packets = 0
        self.auth_failures = 0
        self.replays = 0
        self.unknown_mki = 0
        self.malformed = 0

    def _pick(self, packet: bytes, tag: int) -> Tuple[Optional[Session], bytes]:
        """Cut the MKI (just before the tag) out and find its session."""
        if not self.mki_length:
            return self._sessions.get(None), packet
        end = len(packet) - tag
        start = end - self.mki_length
        if start < 8:  # not even an RTCP header before the MKI
            self.malformed += 1
            return None, packet
        mki = int.from_bytes(packet[start:end], "big")
        session = self._sessions.get(mki)
        if session is None:
            self.unknown_mki += 1
        return session, packet[:start] + packet[end:]

    def unprotect(self, packet: bytes) -> Optional[bytes]:
        """Plain RTP, or None (counted) when the packet does not authenticate."""
        session, data = self._pick(packet, self.suite.rtp_tag)
        if session is None:
            return None
        try:
            plain = session.unprotect(data)
        except (LibSrtpError, ValueError) as e:
            self._count(e)
            return None
        self.rtp_packets += 1
        return plain

    def unprotect_rtcp(self, packet: bytes) -> Optional[bytes]:
        """Plain RTCP, or None (counted)."""
        tag = 0 if self.suite.aead else SRTCP_TAG
        session, data = self._pick(packet, tag)
        if session is None:
            return None
        try:
            plain = session.unprotect_rtcp(data)
        except (LibSrtpError, ValueError) as e:
            self._count(e)
            return None
        self.rtcp_packets += 1
        return plain

    def _count(self, error: Exception) -> None:
        text = str(error).lower()
        if "replay" in text:
            self.replays += 1
        elif "auth" in text:
            self.auth_failures += 1
        else:
            self.malformed += 1

    def stats(self) -> Dict[str, int]:
        return {
            "srtp_suite": self.suite.name,  # type: ignore[dict-item]
            "srtp_packets": self.rtp_packets,
            "srtcp_packets": self.rtcp_packets,
            "srtp_auth_failures": self.auth_failures,
            "srtp_replays": self.replays,
            "srtp_unknown_mki": self.unknown_mki,
            "srtp_malformed": self.malformed,
        }


def negotiate_sdes(offered: Sequence[str]) -> Optional[Tuple[SrtpKeys, str]]:
    """For an RTP/SAVP m-line: (keys to decrypt the SRC's media, our ``a=crypto`` value).

    None when no offered line is usable: answer that m-line with port 0.
    The value goes into the answer as ``("crypto", value)``.
    """
    chosen = choose_crypto(offered)
    if chosen is None:
        return None
    return SrtpKeys.from_crypto(chosen), answer_crypto(chosen).value()
