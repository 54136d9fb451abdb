"""siprec: a SIPREC recording server (RFC 7865 / RFC 7866) on Twisted."""

__version__ = "0.1.0"
