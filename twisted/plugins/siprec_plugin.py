"""twistd plugin: ``twistd -n siprec``.  The work lives in siprec.tap."""

from twisted.application.service import ServiceMaker

siprec = ServiceMaker(
    "siprec",
    "siprec.tap",
    "SIPREC recording server (RFC 7866): SIP, RTP recording, REST API.",
    "siprec",
)
