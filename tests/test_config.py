"""Tests for siprec.config: types, errors, precedence, dotenv files, docs sync."""

from __future__ import annotations

import copy
import io
import os
import pickle
import re
import subprocess
import sys
from dataclasses import FrozenInstanceError
from unittest import mock

from hypothesis import given, settings as hypothesis_settings, strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from siprec import __version__
from siprec import config as config_module
from siprec.config import (
    SECTIONS,
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    ConfigError,
    HostPort,
    Source,
    ensure_recording_dir,
    format_seconds,
    load_config,
    render_env_example,
    render_markdown,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GO_README = "/work/shared/reference/siprec-go-README.md"

# Every variable the Go server's README names, with the default its tables
# give (None: the README shows "-" or names it only in prose).
GO_README_VARIABLES = {
    "SIP_HOST": "0.0.0.0",
    "PORTS": "5060",
    "HTTP_PORT": "8080",
    "RECORDING_DIR": "./recordings",
    "BEHIND_NAT": "false",
    "EXTERNAL_IP": "auto",
    "STUN_SERVER": "stun.l.google.com:19302",
    "RTP_PORT_MIN": "10000",
    "RTP_PORT_MAX": "20000",
    "RTP_TIMEOUT": "30s",
    "RTP_BIND_IP": "",
    "ENABLE_SRTP": "false",
    "DEFAULT_SPEECH_VENDOR": "google",
    "STT_SUPPORTED_VENDORS": "google,deepgram",
    "GOOGLE_APPLICATION_CREDENTIALS": None,
    "DEEPGRAM_API_KEY": None,
    "AZURE_SPEECH_KEY": None,
    "AWS_ACCESS_KEY_ID": None,
    "ENABLE_TLS": "false",
    "TLS_CERT_FILE": None,
    "TLS_KEY_FILE": None,
    "ENABLE_RECORDING_ENCRYPTION": "false",
    "ENCRYPTION_ALGORITHM": "aes-256-gcm",
    "PII_DETECTION_ENABLED": "false",
    "PII_ENABLED_TYPES": "ssn,credit_card,phone,email",
    "PCI_COMPLIANCE_MODE": "false",
    "STORAGE_ENABLED": "false",
    "S3_ENABLED": "false",
    "S3_BUCKET": None,
    "GCS_ENABLED": "false",
    "GCS_BUCKET": None,
    "AZURE_STORAGE_ENABLED": "false",
    "AZURE_STORAGE_ACCOUNT": None,
    "AMQP_URL": None,
    "AMQP_QUEUE_NAME": None,
    "ENABLE_REALTIME_AMQP": "false",
    "PUBLISH_PARTIAL_TRANSCRIPTS": "true",
    "PUBLISH_FINAL_TRANSCRIPTS": "true",
    "PUBLISH_SENTIMENT_UPDATES": "true",
    "PUBLISH_KEYWORD_DETECTIONS": "true",
    "DATABASE_ENABLED": "false",
    "MYSQL_HOST": "localhost",
    "MYSQL_PORT": "3306",
    "MYSQL_DATABASE": "siprec",
    "MYSQL_USER": None,
    "MYSQL_PASSWORD": None,
    "ANALYTICS_ENABLED": "false",
    "ELASTICSEARCH_ADDRESSES": None,
    "ELASTICSEARCH_INDEX": "siprec-analytics",
    "RECORDING_COMBINE_LEGS": "true",
}

# Defaults that differ from the Go server on purpose (docs/configuration.md).
DELIBERATE_DIFFERENCES = {"DEFAULT_SPEECH_VENDOR": "offline"}


def load(env: dict[str, str] | None = None, **kwargs) -> Config:
    """Load from ``env`` only, ignoring any .env in the working directory."""
    kwargs.setdefault("env_file", None)
    return load_config(environ=env or {}, **kwargs)


class Helpers:
    """Assertions shared by the test cases."""

    def error(self, env: dict[str, str], **kwargs) -> ConfigError:
        err = self.assertRaises(ConfigError, load, env, **kwargs)
        self.assertOneLine(str(err))
        return err

    def assertError(self, env: dict[str, str], message: str, **kwargs) -> None:
        self.assertEqual(str(self.error(env, **kwargs)), message)

    def assertOneLine(self, text: str) -> None:
        self.assertNotIn("\n", text)
        self.assertNotIn("\r", text)
        self.assertTrue(text)

    def write(self, text: str | bytes, name: str = "settings.env") -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        if isinstance(text, str):
            text = text.encode("utf-8")
        with open(path, "wb") as handle:
            handle.write(text)
        return path


class TableTests(Helpers, SynchronousTestCase):
    """The declarative table itself is consistent."""

    def test_names_unique_and_upper_snake(self) -> None:
        """Every name is an upper-case identifier and appears once."""
        names = [setting.name for setting in SETTINGS]
        self.assertEqual(len(names), len(set(names)))
        for name in names:
            self.assertRegex(name, r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
        self.assertEqual(set(SETTINGS_BY_NAME), set(names))

    def test_sections(self) -> None:
        """Each setting names a known section and no section is empty."""
        used = {setting.section for setting in SETTINGS}
        self.assertEqual(used, set(SECTIONS))

    def test_docs_are_one_line(self) -> None:
        """Docs are single sentences the generators can put in one cell/line."""
        for setting in SETTINGS:
            self.assertOneLine(setting.doc)
            self.assertEqual(setting.doc, setting.doc.strip())
            self.assertTrue(setting.doc.endswith("."), setting.name)

    def test_attributes_do_not_shadow_config_methods(self) -> None:
        """No setting's attribute name collides with a Config method."""
        for setting in SETTINGS:
            self.assertFalse(hasattr(Config, setting.attr), setting.name)

    def test_implemented_scope(self) -> None:
        """Only the features built in this version are marked implemented."""
        implemented_sections = {"SIP", "SIP over TLS", "Network and NAT", "RTP",
                                "Recording", "HTTP", "Logging", "Operations", "Messaging",
                                "Speech-to-text"}
        for setting in SETTINGS:
            if setting.section not in implemented_sections:
                self.assertFalse(setting.implemented, setting.name)
        self.assertTrue(SETTINGS_BY_NAME["ENABLE_SRTP"].implemented)
        self.assertTrue(SETTINGS_BY_NAME["RTP_TIMEOUT"].implemented)

    def test_secrets_are_flagged(self) -> None:
        """Keys and passwords are marked secret; ordinary settings are not."""
        for name in ("DEEPGRAM_API_KEY", "AZURE_SPEECH_KEY", "AWS_SECRET_ACCESS_KEY",
                     "S3_SECRET_KEY", "AZURE_STORAGE_KEY", "MYSQL_PASSWORD",
                     "ELASTICSEARCH_PASSWORD", "AMQP_URL"):
            self.assertTrue(SETTINGS_BY_NAME[name].secret, name)
        self.assertFalse(SETTINGS_BY_NAME["HTTP_PORT"].secret)


class GoContractTests(SynchronousTestCase):
    """The Go server's variables and defaults carry over."""

    def test_every_go_variable_is_in_the_table(self) -> None:
        """Each variable named by the Go README is a setting."""
        missing = sorted(set(GO_README_VARIABLES) - set(SETTINGS_BY_NAME))
        self.assertEqual(missing, [])

    def test_go_defaults(self) -> None:
        """Defaults match the Go README except the documented differences."""
        for name, go_default in GO_README_VARIABLES.items():
            ours = SETTINGS_BY_NAME[name].default
            expected = DELIBERATE_DIFFERENCES.get(name, go_default or "")
            self.assertEqual(ours, expected, name)

    def test_deliberate_differences_are_documented(self) -> None:
        """docs/configuration.md explains both differences from the Go server."""
        text = render_markdown()
        section = text.split("## Differences from the Go server")[1].split("\n## ")[0]
        self.assertIn("`DEFAULT_SPEECH_VENDOR` defaults to `offline`", section)
        self.assertIn("`EXTERNAL_IP=auto` falls back", section)

    def test_go_readme_itself(self) -> None:
        """Every upper-case variable in the Go README (tables and prose) is known."""
        if not os.path.exists(GO_README):
            raise SkipTest(f"{GO_README} not available")
        with open(GO_README, encoding="utf-8") as handle:
            text = handle.read()
        names = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", text))
        names |= set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, re.MULTILINE))
        self.assertEqual(sorted(names - set(SETTINGS_BY_NAME)), [])
        self.assertEqual(names, set(GO_README_VARIABLES))
        for name, default in re.findall(
            r"^\| `([A-Z][A-Z0-9_]*)` \| [^|]* \| `([^`]*)` \|$", text, re.MULTILINE
        ):
            self.assertEqual(GO_README_VARIABLES[name], default, name)

    def test_additions(self) -> None:
        """Settings added in the Go style have the agreed defaults."""
        config = load()
        self.assertEqual(config.tls_port, 5061)
        self.assertEqual(config.http_host, "0.0.0.0")
        self.assertEqual(config.log_level, "info")
        self.assertEqual(config.log_format, "text")
        self.assertIs(config.siprec_require_metadata, False)
        self.assertEqual(config.sip_max_message_size, 65536)
        self.assertEqual(config.sip_user_agent, f"siprec/{__version__}")
        self.assertEqual(config.session_expires, 1800.0)
        self.assertEqual(config.min_se, 90.0)
        self.assertEqual(config.sip_transaction_t1, 0.5)
        self.assertEqual(config.wav_header_interval, 5.0)
        self.assertEqual(config.shutdown_timeout, 30.0)
        self.assertEqual(config.max_concurrent_calls, 0)
        for name in ("S3_REGION", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_ENDPOINT",
                     "S3_PREFIX", "GCS_PROJECT_ID", "GCS_CREDENTIALS_FILE",
                     "AZURE_STORAGE_KEY", "AZURE_STORAGE_CONTAINER",
                     "ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD",
                     "ELASTICSEARCH_TIMEOUT"):
            self.assertIn(name, SETTINGS_BY_NAME)

    def test_default_values_typed(self) -> None:
        """With nothing set, values are typed Go defaults."""
        config = load()
        self.assertEqual(config.sip_host, "0.0.0.0")
        self.assertEqual(config.ports, (5060,))
        self.assertEqual(config.http_port, 8080)
        self.assertEqual(config.recording_dir, "./recordings")
        self.assertIs(config.behind_nat, False)
        self.assertEqual(config.external_ip, "auto")
        self.assertEqual(config.stun_server, HostPort("stun.l.google.com", 19302))
        self.assertEqual((config.rtp_port_min, config.rtp_port_max), (10000, 20000))
        self.assertEqual(config.rtp_timeout, 30.0)
        self.assertEqual(config.rtp_bind_ip, "")
        self.assertEqual(config.default_speech_vendor, "offline")
        self.assertEqual(config.stt_supported_vendors, ("google", "deepgram"))
        self.assertEqual(config.pii_enabled_types, ("ssn", "credit_card", "phone", "email"))
        self.assertEqual(config.elasticsearch_addresses, ())
        self.assertIs(config.recording_combine_legs, True)
        self.assertEqual(config.warnings, ())
        self.assertEqual(config.unimplemented_enabled(), ())


class TypeTests(Helpers, SynchronousTestCase):
    """Each value type parses what it should and names what it rejects."""

    def assertParses(self, name: str, text: str, expected: object) -> None:
        self.assertEqual(load({name: text})[name], expected, f"{name}={text!r}")

    def test_boolean(self) -> None:
        """true/false, 1/0, yes/no, on/off in any case."""
        for text in ("true", "TRUE", "True", "1", "yes", "Yes", "on", "ON", "t"):
            self.assertParses("BEHIND_NAT", text, True)
        for text in ("false", "FALSE", "0", "no", "NO", "off", "Off", "f"):
            self.assertParses("BEHIND_NAT", text, False)
        self.assertError({"BEHIND_NAT": "maybe"},
                         "BEHIND_NAT: 'maybe' is not a boolean (use true or false)")
        self.assertError({"ENABLE_TLS": "2"},
                         "ENABLE_TLS: '2' is not a boolean (use true or false)")

    def test_integer(self) -> None:
        """Decimal integers within bounds; no floats, underscores or non-ASCII digits."""
        self.assertParses("MAX_CONCURRENT_CALLS", "0", 0)
        self.assertParses("MAX_CONCURRENT_CALLS", "250", 250)
        self.assertParses("MAX_CONCURRENT_CALLS", " 12 ", 12)
        self.assertError({"MAX_CONCURRENT_CALLS": "-1"},
                         "MAX_CONCURRENT_CALLS: -1 is below the minimum 0")
        for text in ("abc", "1.5", "5_000", "\u0665", "1e3", "0x10"):
            self.assertError({"MAX_CONCURRENT_CALLS": text},
                             f"MAX_CONCURRENT_CALLS: {text!r} is not an integer")
        self.assertError({"SIP_MAX_MESSAGE_SIZE": "100"},
                         "SIP_MAX_MESSAGE_SIZE: 100 is below the minimum 1024")
        self.assertError({"SIP_MAX_MESSAGE_SIZE": "99999999999"},
                         "SIP_MAX_MESSAGE_SIZE: 99999999999 is above the maximum 16777216")
        huge = "9" * 5000
        message = str(self.error({"MAX_CONCURRENT_CALLS": huge}))
        self.assertTrue(message.startswith("MAX_CONCURRENT_CALLS: '999"))
        self.assertTrue(message.endswith("...' is not an integer"))
        self.assertLess(len(message), 150)

    def test_port(self) -> None:
        """1-65535 only."""
        self.assertParses("HTTP_PORT", "1", 1)
        self.assertParses("HTTP_PORT", "65535", 65535)
        self.assertParses("HTTP_PORT", " 8081 ", 8081)
        self.assertError({"HTTP_PORT": "abc"}, "HTTP_PORT: 'abc' is not a port number")
        self.assertError({"HTTP_PORT": "0"}, "HTTP_PORT: 0 is out of range 1-65535")
        self.assertError({"HTTP_PORT": "65536"}, "HTTP_PORT: 65536 is out of range 1-65535")
        self.assertError({"HTTP_PORT": "-80"}, "HTTP_PORT: '-80' is not a port number")
        self.assertError({"MYSQL_PORT": "33o6"}, "MYSQL_PORT: '33o6' is not a port number")

    def test_port_list(self) -> None:
        """Comma-separated ports; blanks between commas are skipped."""
        self.assertParses("PORTS", "5060", (5060,))
        self.assertParses("PORTS", "5060,5070", (5060, 5070))
        self.assertParses("PORTS", " 5060 , 5070 ,", (5060, 5070))
        self.assertParses("PORTS", "5060,,5070", (5060, 5070))
        self.assertError({"PORTS": "5060,abc"}, "PORTS: 'abc' is not a port number")
        self.assertError({"PORTS": "5060,70000"}, "PORTS: 70000 is out of range 1-65535")
        self.assertError({"PORTS": "5060,5060"}, "PORTS: 5060 is listed twice")
        self.assertError({"PORTS": "5060;5070"}, "PORTS: '5060;5070' is not a port number")
        self.assertError({"PORTS": ", ,"}, "PORTS: ', ,' lists nothing")

    def test_duration(self) -> None:
        """Go durations and plain seconds become float seconds."""
        cases = {
            "30s": 30.0, "1m30s": 90.0, "500ms": 0.5, "2h": 7200.0, "45": 45.0,
            "1.5": 1.5, "1.5s": 1.5, "1h2m3s": 3723.0, "250000us": 0.25,
            "90000000000ns": 90.0, ".5m": 30.0, " 60s ": 60.0,
        }
        for text, seconds in cases.items():
            self.assertParses("RTP_TIMEOUT", text, seconds)
        self.assertParses("SHUTDOWN_TIMEOUT", "0", 0.0)
        for text in ("30 sec", "1m30", "abc", "s", "1e3", "30S", "1.2.3s", "inf", "nan"):
            self.assertError(
                {"RTP_TIMEOUT": text},
                f"RTP_TIMEOUT: {text!r} is not a duration (use e.g. 500ms, 30s, 1m30s, 2h)",
            )
        self.assertError({"RTP_TIMEOUT": "-5s"}, "RTP_TIMEOUT: '-5s' is negative")
        self.assertError({"RTP_TIMEOUT": "0s"}, "RTP_TIMEOUT: 0s must be greater than zero")
        self.assertError({"RTP_TIMEOUT": "0"}, "RTP_TIMEOUT: 0s must be greater than zero")
        self.assertError({"RTP_TIMEOUT": "9" * 400}, f"RTP_TIMEOUT: {'9' * 60 + '...'!r} is too long")
        self.assertError({"RTP_TIMEOUT": "100000h"}, "RTP_TIMEOUT: '100000h' is too long")
        self.assertError({"SESSION_EXPIRES": "1800.5s"},
                         "SESSION_EXPIRES: 1800.5s is not a whole number of seconds")
        self.assertParses("SESSION_EXPIRES", "30m", 1800.0)

    def test_format_seconds(self) -> None:
        """Durations are shown the way users write them."""
        self.assertEqual(format_seconds(0.5), "500ms")
        self.assertEqual(format_seconds(30.0), "30s")
        self.assertEqual(format_seconds(1.5), "1.5s")
        self.assertEqual(format_seconds(0), "0s")

    def test_ip_address(self) -> None:
        """IPv4 or IPv6, normalised; host names and brackets are rejected."""
        self.assertParses("SIP_HOST", "127.0.0.1", "127.0.0.1")
        self.assertParses("SIP_HOST", "::", "::")
        self.assertParses("HTTP_HOST", "2001:DB8:0:0::1", "2001:db8::1")
        for text in ("localhost", "256.1.1.1", "[::1]", "10.0.0"):
            self.assertError({"SIP_HOST": text}, f"SIP_HOST: {text!r} is not an IP address")

    def test_ip_address_or_empty(self) -> None:
        """RTP_BIND_IP: empty means all interfaces."""
        self.assertParses("RTP_BIND_IP", "", "")
        self.assertParses("RTP_BIND_IP", "192.0.2.10", "192.0.2.10")
        self.assertError({"RTP_BIND_IP": "eth0"}, "RTP_BIND_IP: 'eth0' is not an IP address")

    def test_external_ip(self) -> None:
        """EXTERNAL_IP is an address or auto (any case)."""
        self.assertParses("EXTERNAL_IP", "auto", "auto")
        self.assertParses("EXTERNAL_IP", "AUTO", "auto")
        self.assertParses("EXTERNAL_IP", "203.0.113.7", "203.0.113.7")
        self.assertError({"EXTERNAL_IP": "my.host"},
                         "EXTERNAL_IP: 'my.host' is neither an IP address nor 'auto'")

    def test_host_port(self) -> None:
        """STUN_SERVER: host[:port], IPv6 in brackets, port defaults to 3478."""
        cases = {
            "stun.example.com:3479": HostPort("stun.example.com", 3479),
            "stun.example.com": HostPort("stun.example.com", 3478),
            "192.0.2.1:19302": HostPort("192.0.2.1", 19302),
            "[2001:db8::1]:19302": HostPort("2001:db8::1", 19302),
            "[2001:db8::1]": HostPort("2001:db8::1", 3478),
        }
        for text, expected in cases.items():
            self.assertParses("STUN_SERVER", text, expected)
        self.assertEqual(str(HostPort("2001:db8::1", 5)), "[2001:db8::1]:5")
        self.assertEqual(str(HostPort("a.b", 5)), "a.b:5")
        self.assertError({"STUN_SERVER": "::1"},
                         "STUN_SERVER: '::1' is not host:port (write IPv6 hosts in brackets)")
        for text in ("host:abc", "host:0", "host:", "[::1]:"):
            self.assertError({"STUN_SERVER": text},
                             f"STUN_SERVER: {text!r} has no valid port (1-65535) after ':'")
        for text in ("[::1", "[nothost]:1", "[::1]x"):
            self.assertError({"STUN_SERVER": text},
                             f"STUN_SERVER: {text!r} is not [IPv6 address]:port")
        for text in ("bad host:1", ":3478", "-x-:1"):
            self.assertError({"STUN_SERVER": text}, f"STUN_SERVER: {text!r} is not host:port")

    def test_host(self) -> None:
        """MYSQL_HOST: a host name or address."""
        self.assertParses("MYSQL_HOST", "db.internal", "db.internal")
        self.assertParses("MYSQL_HOST", "my_mysql", "my_mysql")
        self.assertParses("MYSQL_HOST", "::1", "::1")
        self.assertError({"MYSQL_HOST": "db host"},
                         "MYSQL_HOST: 'db host' is not a host name or IP address")

    def test_choice(self) -> None:
        """Enums are case-insensitive and stored lower case."""
        self.assertParses("LOG_LEVEL", "DEBUG", "debug")
        self.assertParses("LOG_LEVEL", "warn", "warn")
        self.assertParses("LOG_LEVEL", "Warning", "warn")
        self.assertParses("LOG_FORMAT", "JSON", "json")
        self.assertParses("DEFAULT_SPEECH_VENDOR", "Deepgram", "deepgram")
        self.assertError({"LOG_LEVEL": "verbose"},
                         "LOG_LEVEL: 'verbose' is not one of debug, info, warn, error")
        self.assertError({"LOG_FORMAT": "xml"}, "LOG_FORMAT: 'xml' is not one of text, json")
        self.assertError({"ENCRYPTION_ALGORITHM": "des"},
                         "ENCRYPTION_ALGORITHM: 'des' is not one of aes-256-gcm, chacha20-poly1305")

    def test_choice_list(self) -> None:
        """Comma lists of known words."""
        self.assertParses("PII_ENABLED_TYPES", "SSN, email", ("ssn", "email"))
        self.assertParses("STT_SUPPORTED_VENDORS", "deepgram", ("deepgram",))
        self.assertError({"PII_ENABLED_TYPES": "ssn,passport"},
                         "PII_ENABLED_TYPES: 'passport' is not one of ssn, credit_card, phone, email")
        self.assertError({"PII_ENABLED_TYPES": "ssn,SSN"}, "PII_ENABLED_TYPES: 'ssn' is listed twice")

    def test_urls(self) -> None:
        """URL settings check the scheme and host."""
        self.assertParses("AMQP_URL", "amqps://u:p@mq.example:5671/vh", "amqps://u:p@mq.example:5671/vh")
        self.assertParses("S3_ENDPOINT", "http://127.0.0.1:9000", "http://127.0.0.1:9000")
        self.assertParses("ELASTICSEARCH_ADDRESSES", "http://a:9200, https://b:9200",
                          ("http://a:9200", "https://b:9200"))
        self.assertError({"S3_ENDPOINT": "ftp://x"},
                         "S3_ENDPOINT: 'ftp://x' is not an http:// or https:// URL")
        self.assertError({"S3_ENDPOINT": "http://x:99999"},
                         "S3_ENDPOINT: 'http://x:99999' is not an http:// or https:// URL")
        self.assertError({"ELASTICSEARCH_ADDRESSES": "http://a:9200,es:9200"},
                         "ELASTICSEARCH_ADDRESSES: 'es:9200' is not an http:// or https:// URL")
        self.assertError({"ELASTICSEARCH_ADDRESSES": "http://a,http://a"},
                         "ELASTICSEARCH_ADDRESSES: 'http://a' is listed twice")

    def test_text(self) -> None:
        """Free text is kept but control characters are refused."""
        self.assertParses("SIP_USER_AGENT", "Acme SRS/2.0", "Acme SRS/2.0")
        self.assertParses("MYSQL_DATABASE", "calls", "calls")
        self.assertError({"SIP_USER_AGENT": "a\r\nX-Injected: 1"},
                         "SIP_USER_AGENT: 'a\\r\\nX-Injected: 1' contains a control character")

    def test_paths(self) -> None:
        """Paths are kept as given; existence is only checked where it matters."""
        self.assertParses("RECORDING_DIR", "/var/lib/siprec", "/var/lib/siprec")
        self.assertParses("GOOGLE_APPLICATION_CREDENTIALS", "/nope.json", "/nope.json")
        self.assertParses("TLS_CERT_FILE", "/nope.pem", "/nope.pem")

    def test_secret_values_never_in_messages(self) -> None:
        """A rejected secret is not echoed back."""
        err = self.error({"AMQP_URL": "http://user:hunter2@mq"})
        self.assertEqual(str(err), "AMQP_URL: the value is not an amqp:// or amqps:// URL")
        err = self.error({"MYSQL_PASSWORD": "hun\nter2"})
        self.assertEqual(str(err), "MYSQL_PASSWORD: the value contains a control character")

    @hypothesis_settings(max_examples=400, deadline=None)
    @given(st.sampled_from(SETTINGS), st.text(max_size=80))
    def test_garbage_gives_config_error(self, setting, text) -> None:
        """Any text for any setting loads or raises one ConfigError line naming it."""
        try:
            config = load({setting.name: text})
        except ConfigError as err:
            message = str(err)
            self.assertOneLine(message)
            self.assertTrue(
                any(line.startswith(f"{setting.name}: ") for line in err.problems)
                or setting.name in ("ENABLE_TLS", "PORTS", "HTTP_HOST", "SIP_HOST",
                                    "HTTP_PORT", "RTP_PORT_MIN", "RTP_PORT_MAX",
                                    "MIN_SE", "SESSION_EXPIRES"),
                message,
            )
            if setting.secret:
                for line in err.problems:
                    if line.startswith(f"{setting.name}: "):
                        self.assertTrue(line.startswith(f"{setting.name}: the value "), line)
        else:
            self.assertIsInstance(config, Config)

    def test_empty_means_default(self) -> None:
        """An empty or blank value counts as not set."""
        config = load({"HTTP_PORT": "", "PORTS": "   ", "STT_SUPPORTED_VENDORS": ""})
        self.assertEqual(config.http_port, 8080)
        self.assertEqual(config.ports, (5060,))
        self.assertEqual(config.stt_supported_vendors, ("google", "deepgram"))
        self.assertIs(config.source("HTTP_PORT"), Source.DEFAULT)


class CrossFieldTests(Helpers, SynchronousTestCase):
    """Checks that involve several settings."""

    def tls_files(self) -> tuple[str, str]:
        cert = self.write("cert", "cert.pem")
        key = self.write("key", "key.pem")
        return cert, key

    def test_rtp_range_order(self) -> None:
        """RTP_PORT_MIN must not exceed RTP_PORT_MAX."""
        self.assertError({"RTP_PORT_MIN": "20000", "RTP_PORT_MAX": "10000"},
                         "RTP_PORT_MIN: 20000 is greater than RTP_PORT_MAX (10000)")

    def test_rtp_range_needs_even_pair(self) -> None:
        """The range must hold an even RTP port and the RTCP port above it."""
        config = load({"RTP_PORT_MIN": "10000", "RTP_PORT_MAX": "10001"})
        self.assertEqual((config.rtp_port_min, config.rtp_port_max), (10000, 10001))
        load({"RTP_PORT_MIN": "10001", "RTP_PORT_MAX": "10003"})
        for low, high in (("10000", "10000"), ("10001", "10002"), ("65535", "65535")):
            self.assertError(
                {"RTP_PORT_MIN": low, "RTP_PORT_MAX": high},
                f"RTP_PORT_MIN: range {low}-{high} holds no even RTP port with its RTCP port (+1)",
            )

    def test_session_timer_bounds(self) -> None:
        """SESSION_EXPIRES >= MIN_SE >= 90."""
        self.assertError({"MIN_SE": "60"}, "MIN_SE: 60s is below 90s, the RFC 4028 minimum")
        self.assertError({"SESSION_EXPIRES": "60s"},
                         "SESSION_EXPIRES: 60s is less than MIN_SE (90s)")
        self.assertError({"SESSION_EXPIRES": "300", "MIN_SE": "10m"},
                         "SESSION_EXPIRES: 300s is less than MIN_SE (600s)")
        config = load({"SESSION_EXPIRES": "90", "MIN_SE": "90"})
        self.assertEqual((config.session_expires, config.min_se), (90.0, 90.0))

    def test_tls_requires_files(self) -> None:
        """ENABLE_TLS needs a certificate and key that exist."""
        self.assertError({"ENABLE_TLS": "true"}, "TLS_CERT_FILE: required when ENABLE_TLS=true")
        err = self.error({"ENABLE_TLS": "true"})
        self.assertEqual(err.problems, ("TLS_CERT_FILE: required when ENABLE_TLS=true",
                                        "TLS_KEY_FILE: required when ENABLE_TLS=true"))
        self.assertEqual(err.name, "TLS_CERT_FILE")
        cert, key = self.tls_files()
        missing = os.path.join(os.path.dirname(cert), "missing.pem")
        self.assertError({"ENABLE_TLS": "1", "TLS_CERT_FILE": cert, "TLS_KEY_FILE": missing},
                         f"TLS_KEY_FILE: {missing!r} does not exist")
        directory = os.path.dirname(cert)
        self.assertError({"ENABLE_TLS": "1", "TLS_CERT_FILE": directory, "TLS_KEY_FILE": key},
                         f"TLS_CERT_FILE: {directory!r} is not a file")
        config = load({"ENABLE_TLS": "1", "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key})
        self.assertIs(config.enable_tls, True)
        self.assertEqual(config.tls_cert_file, cert)

    def test_tls_files_ignored_when_tls_off(self) -> None:
        """Missing TLS files do not matter while TLS is off."""
        config = load({"TLS_CERT_FILE": "/nowhere/cert.pem"})
        self.assertIs(config.enable_tls, False)

    def test_tls_port_not_in_ports(self) -> None:
        """With TLS on, TLS_PORT needs its own port."""
        cert, key = self.tls_files()
        env = {"ENABLE_TLS": "on", "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key,
               "PORTS": "5060,5061"}
        self.assertError(env, "TLS_PORT: 5061 is also in PORTS (5060,5061)")
        load({"PORTS": "5060,5061"})  # TLS off: no conflict
        env.update(PORTS="5060", TLS_PORT="8080")
        self.assertError(env, "TLS_PORT: 8080 is also HTTP_PORT")

    def test_http_port_not_a_sip_port(self) -> None:
        """HTTP and SIP cannot share a TCP port on overlapping addresses."""
        self.assertError({"HTTP_PORT": "5060"}, "HTTP_PORT: 5060 is also a SIP port in PORTS (5060)")
        self.assertError({"HTTP_PORT": "5060", "HTTP_HOST": "127.0.0.1"},
                         "HTTP_PORT: 5060 is also a SIP port in PORTS (5060)")
        config = load({"HTTP_PORT": "5060", "HTTP_HOST": "127.0.0.1", "SIP_HOST": "127.0.0.2"})
        self.assertEqual(config.http_port, 5060)
        load({"HTTP_PORT": "5060", "HTTP_HOST": "::1", "SIP_HOST": "0.0.0.0"})
        self.assertError({"HTTP_PORT": "5060", "HTTP_HOST": "::", "SIP_HOST": "127.0.0.1"},
                         "HTTP_PORT: 5060 is also a SIP port in PORTS (5060)")

    def test_all_problems_collected(self) -> None:
        """Every bad value is reported in problems; str() is the first."""
        err = self.error({"HTTP_PORT": "x", "LOG_LEVEL": "loud", "RTP_TIMEOUT": "soon"})
        self.assertEqual(str(err), "RTP_TIMEOUT: 'soon' is not a duration (use e.g. 500ms, 30s, 1m30s, 2h)")
        self.assertEqual(len(err.problems), 3)
        self.assertIn("HTTP_PORT: 'x' is not a port number", err.problems)
        self.assertIn("LOG_LEVEL: 'loud' is not one of debug, info, warn, error", err.problems)
        self.assertEqual(err.name, "RTP_TIMEOUT")

    def test_vendor_warning(self) -> None:
        """A default vendor outside the supported list is a warning, not an error."""
        config = load({"DEFAULT_SPEECH_VENDOR": "azure"})
        self.assertEqual(config.warnings, (
            "DEFAULT_SPEECH_VENDOR: 'azure' is not in STT_SUPPORTED_VENDORS (google,deepgram)",))
        self.assertEqual(load({"DEFAULT_SPEECH_VENDOR": "google"}).warnings, ())


class PrecedenceTests(Helpers, SynchronousTestCase):
    """defaults < .env < --config FILE < environment."""

    def test_order(self) -> None:
        """Each level overrides the ones below it, and source() says which won."""
        dotenv = self.write("HTTP_PORT=8001\nLOG_LEVEL=debug\nRTP_TIMEOUT=40s\n", ".env")
        config_file = self.write("LOG_LEVEL=warn\nRTP_TIMEOUT=50s\n")
        config = load_config({"RTP_TIMEOUT": "60s"}, env_file=dotenv, config_file=config_file)
        self.assertEqual(config.http_port, 8001)
        self.assertEqual(config.log_level, "warn")
        self.assertEqual(config.rtp_timeout, 60.0)
        self.assertEqual(config.sip_host, "0.0.0.0")
        self.assertIs(config.source("HTTP_PORT"), Source.DOTENV)
        self.assertIs(config.source("log_level"), Source.CONFIG_FILE)
        self.assertIs(config.source("RTP_TIMEOUT"), Source.ENVIRONMENT)
        self.assertIs(config.source("SIP_HOST"), Source.DEFAULT)
        self.assertEqual(config.origin("HTTP_PORT"), f"{dotenv}:1")
        self.assertEqual(config.origin("LOG_LEVEL"), f"{config_file}:1")
        self.assertEqual(config.origin("RTP_TIMEOUT"), "environment")
        self.assertEqual(config.origin("SIP_HOST"), "default")
        self.assertEqual(config.files, (dotenv, config_file))
        self.assertEqual(str(Source.DOTENV), ".env")

    def test_empty_value_falls_through(self) -> None:
        """An empty value at a higher level leaves the lower one in force."""
        config_file = self.write("HTTP_PORT=8002\n")
        config = load_config({"HTTP_PORT": ""}, env_file=None, config_file=config_file)
        self.assertEqual(config.http_port, 8002)
        self.assertIs(config.source("HTTP_PORT"), Source.CONFIG_FILE)

    def test_dotenv_in_working_directory(self) -> None:
        """By default .env is read from the working directory if present."""
        directory = os.path.dirname(self.write("HTTP_PORT=8003\n", ".env"))
        old = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, old)
        self.assertEqual(load_config({}).http_port, 8003)
        self.assertEqual(load_config({}).files, (".env",))
        self.assertEqual(load_config({}, env_file=None).http_port, 8080)

    def test_missing_dotenv_is_fine(self) -> None:
        """A missing .env is silently skipped."""
        missing = os.path.join(self.mktemp(), ".env")
        config = load_config({}, env_file=missing)
        self.assertEqual(config.files, ())
        self.assertEqual(config.http_port, 8080)

    def test_missing_config_file_is_an_error(self) -> None:
        """--config naming a missing file stops startup."""
        missing = os.path.join(self.mktemp(), "siprec.env")
        self.assertError({}, f"{missing}: config file not found", config_file=missing)

    def test_config_file_is_a_directory(self) -> None:
        """A directory given as config file is reported, not a traceback."""
        directory = self.mktemp()
        os.makedirs(directory)
        message = str(self.error({}, config_file=directory))
        self.assertTrue(message.startswith(f"{directory}: cannot read ("), message)

    def test_environment_unknown_names_ignored(self) -> None:
        """The process environment holds many unrelated variables: no warnings."""
        config = load({"PATH": "/bin", "HTTP_PROT": "1"})
        self.assertEqual(config.warnings, ())

    def test_errors_from_files_name_the_variable(self) -> None:
        """A bad value read from a file gives the same one-line message."""
        config_file = self.write("HTTP_PORT=abc\n")
        self.assertError({}, "HTTP_PORT: 'abc' is not a port number", config_file=config_file)


class DotenvTests(Helpers, SynchronousTestCase):
    """The dotenv dialect of .env and --config files."""

    def load_file(self, text: str | bytes) -> Config:
        return load({}, config_file=self.write(text))

    def test_syntax(self) -> None:
        """export, comments, quotes, blank lines, spaces around '='."""
        config = self.load_file(
            "# a comment\n"
            "\n"
            "export HTTP_PORT=8004\n"
            "  LOG_LEVEL = debug   # trailing comment\n"
            "SIP_USER_AGENT='Acme # not a comment'\n"
            'MYSQL_DATABASE="calls \\"x\\""\n'
            "AZURE_STORAGE_CONTAINER=rec#ordings\n"
            "MYSQL_USER=\n"
            "S3_PREFIX=${HOME}/x\n"
        )
        self.assertEqual(config.http_port, 8004)
        self.assertEqual(config.log_level, "debug")
        self.assertEqual(config.sip_user_agent, "Acme # not a comment")
        self.assertEqual(config.mysql_database, 'calls "x"')
        self.assertEqual(config.azure_storage_container, "rec#ordings")
        self.assertEqual(config.mysql_user, "")
        self.assertIs(config.source("MYSQL_USER"), Source.DEFAULT)
        self.assertEqual(config.s3_prefix, "${HOME}/x")
        self.assertEqual(config.warnings, ())

    def test_crlf_and_bom(self) -> None:
        """Windows line endings and a UTF-8 byte order mark are accepted."""
        config = self.load_file("\ufeffHTTP_PORT=8005\r\nLOG_FORMAT=json\r\n".encode("utf-8"))
        self.assertEqual((config.http_port, config.log_format), (8005, "json"))

    def test_no_trailing_newline(self) -> None:
        """The last line needs no newline."""
        self.assertEqual(self.load_file("HTTP_PORT=8006").http_port, 8006)

    def test_empty_file(self) -> None:
        """An empty file changes nothing."""
        self.assertEqual(self.load_file(""), load())

    def test_multiline_value_is_rejected_by_type(self) -> None:
        """A quoted value spanning lines reaches the type check, which refuses it."""
        path = self.write('SIP_USER_AGENT="a\nb"\nHTTP_PORT=8007\n')
        self.assertError({}, "SIP_USER_AGENT: 'a\\nb' contains a control character",
                         config_file=path)

    def test_malformed_lines(self) -> None:
        """A malformed line names the file and line number."""
        cases = [
            ("HTTP_PORT=8008\nthis is not a setting\n",
             "{path}:2: cannot parse 'this is not a setting', expected KEY=VALUE"),
            ("# ok\nLOG_LEVEL='unterminated\nHTTP_PORT=1\n",
             "{path}:2: cannot parse \"LOG_LEVEL='unterminated\", expected KEY=VALUE"),
            ("=5\n", "{path}:1: cannot parse '=5', expected KEY=VALUE"),
            ("HTTP_PORT\n", "{path}:1: 'HTTP_PORT' has no '=', expected KEY=VALUE"),
            ("\n\nexport HTTP_PORT\n", "{path}:3: 'export HTTP_PORT' has no '=', expected KEY=VALUE"),
            ("'MY-KEY'=1\n", "{path}:1: 'MY-KEY' is not a variable name"),
        ]
        for text, template in cases:
            path = self.write(text)
            self.assertError({}, template.format(path=path), config_file=path)

    def test_malformed_dotenv_in_working_directory(self) -> None:
        """The optional .env gets the same treatment when present."""
        path = self.write("what\n", ".env")
        self.assertError({}, f"{path}:1: 'what' has no '=', expected KEY=VALUE", env_file=path)

    def test_not_utf8(self) -> None:
        """Binary garbage is one clear error."""
        path = self.write(b"HTTP_PORT=\xff\xfe\x00\n")
        self.assertError({}, f"{path}: not UTF-8 text", config_file=path)

    def test_unknown_keys_warn_with_suggestion(self) -> None:
        """Typos in a file are warnings naming the closest known setting."""
        path = self.write("HTTP_PROT=9000\nhttp_port=9001\nSOMETHING_ELSE=1\nRTP_TIMOUT=5s\n")
        config = load({}, config_file=path)
        self.assertEqual(config.http_port, 8080)
        self.assertEqual(config.warnings, (
            f"{path}:1: unknown setting HTTP_PROT (did you mean HTTP_PORT?)",
            f"{path}:2: unknown setting http_port (did you mean HTTP_PORT?)",
            f"{path}:3: unknown setting SOMETHING_ELSE",
            f"{path}:4: unknown setting RTP_TIMOUT (did you mean RTP_TIMEOUT?)",
        ))

    def test_repeated_key_warns_and_last_wins(self) -> None:
        """A key set twice in one file: the later line wins, with a warning."""
        path = self.write("HTTP_PORT=9002\n#\nHTTP_PORT=9003\n")
        config = load({}, config_file=path)
        self.assertEqual(config.http_port, 9003)
        self.assertEqual(config.origin("HTTP_PORT"), f"{path}:3")
        self.assertEqual(config.warnings, (
            f"{path}:3: HTTP_PORT is set again (first on line 1); the later value wins",))

    def test_line_numbers_count_blank_lines(self) -> None:
        """Origins and errors point at the right line after blank and comment lines."""
        path = self.write("\n\n# c\n  \r\nHTTP_PORT=9004\n\n\n   LOG_LEVEL=debug\n")
        config = load({}, config_file=path)
        self.assertEqual(config.origin("HTTP_PORT"), f"{path}:5")
        self.assertEqual(config.origin("LOG_LEVEL"), f"{path}:8")
        path = self.write("HTTP_PORT=1\n\n\n  oops here\n")
        self.assertError({}, f"{path}:4: cannot parse 'oops here', expected KEY=VALUE",
                         config_file=path)

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(st.text(max_size=200))
    def test_garbage_file(self, text) -> None:
        """Any file content loads or raises ConfigError, never another exception."""
        path = self.write(text)
        try:
            load({}, config_file=path)
        except ConfigError as err:
            self.assertOneLine(str(err))


class ConfigObjectTests(Helpers, SynchronousTestCase):
    """The Config value."""

    def test_frozen(self) -> None:
        """Settings cannot be changed or added after loading."""
        config = load()
        self.assertRaises(FrozenInstanceError, setattr, config, "http_port", 1)
        self.assertRaises(FrozenInstanceError, setattr, config, "new", 1)
        self.assertRaises(FrozenInstanceError, delattr, config, "warnings")
        self.assertEqual(config.http_port, 8080)

    def test_attribute_access(self) -> None:
        """Lower-case attributes and upper-case items; nothing else."""
        config = load({"HTTP_PORT": "8100"})
        self.assertEqual(config.http_port, 8100)
        self.assertEqual(config["HTTP_PORT"], 8100)
        self.assertRaises(AttributeError, getattr, config, "HTTP_PORT")
        self.assertRaises(AttributeError, getattr, config, "no_such_setting")
        self.assertRaises(AttributeError, getattr, config, "_secret")
        self.assertRaises(KeyError, config.__getitem__, "http_port")
        self.assertEqual(config.as_dict()["HTTP_PORT"], 8100)
        self.assertEqual(set(config.as_dict()), set(SETTINGS_BY_NAME))

    def test_equality_and_changed(self) -> None:
        """Configs compare by value; changed() names the differences."""
        first = load({"HTTP_PORT": "8100"})
        second = load({"HTTP_PORT": "8100"})
        third = load({"HTTP_PORT": "8101", "LOG_LEVEL": "debug"})
        self.assertEqual(first, second)
        self.assertEqual(hash(first), hash(second))
        self.assertNotEqual(first, third)
        self.assertEqual(first.changed(third), ("HTTP_PORT", "LOG_LEVEL"))
        self.assertEqual(first.changed(second), ())

    def test_replace(self) -> None:
        """replace() swaps typed values (e.g. port 0 in tests) and marks them."""
        config = load()
        changed = config.replace(http_port=0, ports=(0,))
        self.assertEqual((changed.http_port, changed.ports), (0, (0,)))
        self.assertIs(changed.source("HTTP_PORT"), Source.OVERRIDE)
        self.assertEqual(config.http_port, 8080)
        self.assertRaises(TypeError, config.replace, HTTP_PORT=1)
        self.assertRaises(TypeError, config.replace, nope=1)

    def test_pickle_and_copy(self) -> None:
        """A Config crosses process boundaries as plain data, sources included."""
        config = load({"HTTP_PORT": "8100", "MYSQL_PASSWORD": "pw"})
        for clone in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config), copy.copy(config)):
            self.assertEqual(clone, config)
            self.assertEqual(clone.mysql_password, "pw")
            self.assertIs(clone.source("HTTP_PORT"), Source.ENVIRONMENT)
            self.assertEqual(clone.warnings, config.warnings)

    def test_constructor_requires_every_setting(self) -> None:
        """A Config is never half-built."""
        self.assertRaises(ValueError, Config, {"HTTP_PORT": 1})

    def test_secrets_masked(self) -> None:
        """display(), summary() and repr() never show a secret."""
        config = load({"MYSQL_PASSWORD": "hunter2", "HTTP_PORT": "8100",
                       "AMQP_URL": "amqp://u:hunter3@mq/"})
        self.assertEqual(config.mysql_password, "hunter2")
        self.assertEqual(config.display("MYSQL_PASSWORD"), "********")
        self.assertEqual(config.display("http_port"), "8100")
        summary = "\n".join(config.summary()) + repr(config)
        self.assertNotIn("hunter", summary)
        self.assertIn("MYSQL_PASSWORD=******** (environment)", config.summary())
        self.assertIn("HTTP_PORT=8100 (environment)", config.summary())
        self.assertEqual(load().display("MYSQL_PASSWORD"), "")

    def test_display_formats(self) -> None:
        """display() writes values back the way a user would type them."""
        config = load({"PORTS": "5060, 5070", "RTP_TIMEOUT": "1m30s", "BEHIND_NAT": "yes"})
        self.assertEqual(config.display("PORTS"), "5060,5070")
        self.assertEqual(config.display("RTP_TIMEOUT"), "90s")
        self.assertEqual(config.display("SIP_TRANSACTION_T1"), "500ms")
        self.assertEqual(config.display("BEHIND_NAT"), "true")
        self.assertEqual(config.display("STUN_SERVER"), "stun.l.google.com:19302")

    def test_display_round_trips(self) -> None:
        """Every default, displayed and parsed again, gives the same value."""
        config = load()
        again = load({s.name: config.display(s.name) for s in SETTINGS if not s.secret})
        self.assertEqual(config, again)


class UnimplementedTests(SynchronousTestCase):
    """unimplemented_enabled() lists what a user turned on that is not built."""

    def test_nothing_by_default(self) -> None:
        """Defaults turn nothing on, even defaults that are true."""
        self.assertEqual(load().unimplemented_enabled(), ())

    def test_turned_on(self) -> None:
        """Enabling flags and setting values of unbuilt features are listed in table order."""
        config = load({"S3_ENABLED": "true", "DEEPGRAM_API_KEY": "k",
                       "ENABLE_SRTP": "1", "DEFAULT_SPEECH_VENDOR": "google",
                       "MYSQL_HOST": "db"})
        self.assertEqual(config.unimplemented_enabled(), ("S3_ENABLED", "MYSQL_HOST"))

    def test_not_turned_on(self) -> None:
        """Turning off, restating a default, or implemented settings are not listed."""
        config = load({"PUBLISH_FINAL_TRANSCRIPTS": "false",
                       "PUBLISH_PARTIAL_TRANSCRIPTS": "true",
                       "DEFAULT_SPEECH_VENDOR": "offline",
                       "ENABLE_RECORDING_ENCRYPTION": "false",
                       "BEHIND_NAT": "true", "LOG_LEVEL": "debug"})
        self.assertEqual(config.unimplemented_enabled(), ())


class RecordingDirTests(SynchronousTestCase):
    """ensure_recording_dir() at startup."""

    def config_for(self, path: str) -> Config:
        return load({"RECORDING_DIR": path})

    def test_creates_missing_directory(self) -> None:
        """Missing directories (and parents) are created; the absolute path is returned."""
        path = os.path.join(self.mktemp(), "a", "b")
        result = ensure_recording_dir(self.config_for(path))
        self.assertEqual(result, os.path.abspath(path))
        self.assertTrue(os.path.isdir(path))
        self.assertEqual(os.listdir(path), [])
        self.assertEqual(ensure_recording_dir(self.config_for(path)), result)

    def test_relative_path(self) -> None:
        """The default ./recordings resolves against the working directory."""
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        old = os.getcwd()
        os.chdir(base)
        self.addCleanup(os.chdir, old)
        self.assertEqual(ensure_recording_dir(load()), os.path.join(base, "recordings"))

    def test_file_in_the_way(self) -> None:
        """A file where the directory should be is one clear error."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w"):
            pass
        err = self.assertRaises(ConfigError, ensure_recording_dir, self.config_for(path))
        self.assertEqual(str(err), f"RECORDING_DIR: {path!r} is not a directory")
        self.assertEqual(err.name, "RECORDING_DIR")
        below = os.path.join(path, "sub")
        err = self.assertRaises(ConfigError, ensure_recording_dir, self.config_for(below))
        self.assertTrue(str(err).startswith(f"RECORDING_DIR: {below!r} cannot be created ("))

    def test_not_writable(self) -> None:
        """A directory we cannot write to stops startup."""
        if os.geteuid() != 0:
            path = os.path.abspath(self.mktemp())
            os.makedirs(path)
            os.chmod(path, 0o555)
            self.addCleanup(os.chmod, path, 0o755)
        elif os.path.isdir("/proc"):
            path = "/proc"  # root can write almost anywhere, but not here
        else:
            raise SkipTest("no unwritable directory available")
        err = self.assertRaises(ConfigError, ensure_recording_dir, self.config_for(path))
        self.assertTrue(str(err).startswith(f"RECORDING_DIR: {path!r} is not writable ("), str(err))


class GeneratedFilesTests(SynchronousTestCase):
    """docs/configuration.md and .env.example are exactly what the generator prints."""

    def read(self, name: str) -> str:
        with open(os.path.join(REPO, name), encoding="utf-8", newline="") as handle:
            return handle.read()

    def test_markdown_in_sync(self) -> None:
        """docs/configuration.md == python -m siprec.config --markdown."""
        self.assertEqual(self.read("docs/configuration.md"), render_markdown())

    def test_env_example_in_sync(self) -> None:
        """.env.example == python -m siprec.config --env-example."""
        self.assertEqual(self.read(".env.example"), render_env_example())

    def test_command_line(self) -> None:
        """The module runs as a script and prints the same text."""
        for flag, name in (("--markdown", "docs/configuration.md"),
                           ("--env-example", ".env.example")):
            result = subprocess.run(
                [sys.executable, "-m", "siprec.config", flag], cwd=REPO,
                capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": REPO},
            )
            self.assertEqual(result.stdout, self.read(name))

    def test_markdown_lists_everything(self) -> None:
        """Every setting has a row with its type, default and status."""
        text = render_markdown()
        for setting in SETTINGS:
            row = next(line for line in text.splitlines() if line.startswith(f"| `{setting.name}` |"))
            self.assertIn(setting.kind.describe(), row)
            self.assertIn("| yes |" if setting.implemented else "| not yet |", row)
        for section in SECTIONS:
            self.assertIn(f"\n## {section}\n", text)
        self.assertIn("`siprec/<version>`", text)
        self.assertNotIn(__version__ + "`", text)

    def test_env_example_loads_to_defaults(self) -> None:
        """Uncommenting every line of .env.example changes nothing and warns nothing."""
        lines = [line[2:] for line in render_env_example().splitlines()
                 if re.match(r"^# [A-Z][A-Z0-9_]*=", line)]
        self.assertEqual([line.split("=")[0] for line in lines], [s.name for s in SETTINGS])
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "example.env")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        config = load({}, config_file=path)
        self.assertEqual(config, load())
        self.assertEqual(config.warnings, ())
        self.assertEqual(config.unimplemented_enabled(), ())


class MainTests(SynchronousTestCase):
    """python -m siprec.config --check."""

    def run_main(self, argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.object(sys, "stdout", out), mock.patch.object(sys, "stderr", err), \
                mock.patch.dict(os.environ, env, clear=True):
            code = config_module.main(argv)
        return code, out.getvalue(), err.getvalue()

    def test_check_ok(self) -> None:
        """--check prints non-default values with their origin, and warnings."""
        code, out, err = self.run_main(["--check", "--env-file", "/nonexistent/.env"],
                                       {"HTTP_PORT": "8200", "S3_ENABLED": "yes"})
        self.assertEqual(code, 0)
        self.assertEqual(out, "HTTP_PORT=8200 (environment)\nS3_ENABLED=true (environment)\n")
        self.assertEqual(err, "warning: S3_ENABLED is set but not implemented in this version\n")

    def test_check_error(self) -> None:
        """--check exits 1 with one error line per problem."""
        code, out, err = self.run_main(["--check", "--env-file", "/nonexistent/.env"],
                                       {"HTTP_PORT": "x", "PORTS": "y"})
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(err, "error: PORTS: 'y' is not a port number\n"
                              "error: HTTP_PORT: 'x' is not a port number\n")
