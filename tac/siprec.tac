"""twistd -ny tac/siprec.tac: the same service tree as ``twistd siprec``.

Settings come from the environment, .env and SIPREC_CONFIG (a settings
file), exactly as for the plugin.
"""

import os

from twisted.application import service

from siprec.config import ConfigError, ensure_recording_dir, load_config
from siprec.service import makeService

try:
    _config = load_config(config_file=os.environ.get("SIPREC_CONFIG") or None)
    ensure_recording_dir(_config)
except ConfigError as e:
    raise SystemExit(f"siprec: configuration error: {e}")

application = service.Application("siprec")
makeService(_config, install_logging=True).setServiceParent(application)
