"""Test credentials: JWTs signed with test keys, and API keys with their stored lines."""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from siprec.security.auth import ApiKeyStore, hash_api_key

SECRET = b"test-secret-that-is-long-enough-for-hs256!!"
OTHER_SECRET = b"another-secret-that-is-long-enough-for-hs256"
ISSUER = "https://idp.example.test/"
AUDIENCE = "siprec-api"
NOW = 1_700_000_000.0

API_KEYS = {
    "viewer": "sk_siprec_viewer-key-0123456789abcdefghijklmnopqrstuv",
    "operator": "sk_siprec_operator-key-0123456789abcdefghijklmnopqrs",
    "admin": "sk_siprec_admin-key-0123456789abcdefghijklmnopqrstuvw",
}


@functools.lru_cache(maxsize=None)
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_pem(key: Optional[rsa.RSAPrivateKey] = None) -> bytes:
    key = key or rsa_key()
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(role: Optional[str] = "viewer", *, now: float = NOW, ttl: float = 3600,
           **extra: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"sub": f"user-{role}", "iss": ISSUER, "aud": AUDIENCE,
                           "iat": int(now), "exp": int(now + ttl)}
    if role is not None:
        out["role"] = role
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def hs256(payload: Dict[str, Any], secret: bytes = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def rs256(payload: Dict[str, Any], key: Optional[rsa.RSAPrivateKey] = None) -> str:
    return jwt.encode(payload, key or rsa_key(), algorithm="RS256")


def api_key_store() -> ApiKeyStore:
    lines = [f"{role}-client {role} {hash_api_key(key)}" for role, key in API_KEYS.items()]
    return ApiKeyStore.from_text("\n".join(lines))
