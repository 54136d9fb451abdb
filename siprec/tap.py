"""``twistd siprec`` options and service construction (the plugin points here)."""

from __future__ import annotations

import os
import sys

from twisted.python import usage

from siprec.config import ConfigError, ensure_recording_dir, load_config

__all__ = ["Options", "makeService"]

# Command-line overrides, each mapped to its environment variable.
_OVERRIDES = [
    ("sip-host", None, "SIP_HOST", "Address to bind the SIP listeners to."),
    ("ports", "p", "PORTS", "Comma-separated SIP ports (UDP and TCP)."),
    ("http-host", None, "HTTP_HOST", "Address of the HTTP API."),
    ("http-port", None, "HTTP_PORT", "Port of the HTTP API."),
    ("recording-dir", "d", "RECORDING_DIR", "Where recordings are written."),
    ("rtp-port-min", None, "RTP_PORT_MIN", "Lowest RTP port."),
    ("rtp-port-max", None, "RTP_PORT_MAX", "Highest RTP port."),
    ("external-ip", None, "EXTERNAL_IP", "Address advertised in Contact and SDP."),
    ("log-level", None, "LOG_LEVEL", "debug, info, warn or error."),
]


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run the siprec SIPREC recording server. Settings come from environment "
                "variables (see docs/configuration.md), a .env file, --config FILE, and the "
                "options below, which win over all of them.")
    optParameters = [
        ["config", "c", None, "A settings file (KEY=VALUE lines, as .env)."],
        ["env-file", None, ".env", "The .env file to read if present."],
    ] + [[name, short, None, f"{doc} Overrides {var}."] for name, short, var, doc in _OVERRIDES]

    def postOptions(self) -> None:
        environ = dict(os.environ)
        for name, _short, var, _doc in _OVERRIDES:
            if self[name] is not None:
                environ[var] = self[name]
        env_file = self["env-file"]
        if self["config"] is not None and not os.path.isfile(self["config"]):
            raise SystemExit(f"siprec: --config: {self['config']} does not exist")
        try:
            config = load_config(environ=environ, env_file=env_file, config_file=self["config"])
            ensure_recording_dir(config)
        except ConfigError as e:
            # One line naming the variable, and a non-zero exit.
            raise SystemExit(f"siprec: configuration error: {e}")
        self.config = config


def makeService(options: Options):
    from siprec.service import makeService as build

    config = options.config
    for warning in getattr(config, "warnings", ()):
        print(f"siprec: warning: {warning}", file=sys.stderr)
    return build(config, install_logging=True)
