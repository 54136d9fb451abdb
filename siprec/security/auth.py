"""Who may call the API: JWTs (HS256, RS256) and API keys, mapped to roles.

Roles and what they may do:

- ``viewer``: read (sessions, status, events on the WebSockets, metrics);
- ``operator``: a viewer who may also control calls (pause, resume, terminate);
- ``admin``: everything.

A JWT carries its role in a ``role`` claim (a string) or a ``roles`` claim (a
list); ``exp`` is required, ``nbf`` honoured, ``iss``/``aud`` checked when
configured. Time comes from the injected clock, with a leeway for skew. An API
key is a random token given to one client; the server keeps only its SHA-256
(API_KEYS_FILE, one ``name role sha256:HEX`` line per key). Keys are random
and long, so a fast hash is enough: nothing is gained by a slow one.

Failures are :class:`AuthError` with the HTTP status to answer: 401 when
there are no usable credentials, 403 when they are fine but the role is not
enough. Hostile input (garbage tokens, odd headers) yields AuthError, never
another exception.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import hmac
import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from twisted.internet.interfaces import IReactorTime

__all__ = [
    "Role", "Permission", "Principal", "AuthError", "AuthConfigError", "JwtVerifier",
    "ApiKey", "ApiKeyStore", "Authenticator", "Credentials", "ANONYMOUS",
    "authenticator_from_config", "generate_api_key", "hash_api_key", "main",
]

MAX_TOKEN = 8192            # bytes of a bearer token or API key we will look at
MIN_HS256_SECRET = 32       # bytes; RFC 7518 3.2: a key at least as long as the hash
MIN_RSA_BITS = 2048
KEY_PREFIX = "sk_siprec_"   # generated API keys start with this (easy to spot in a leak)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")


class Role(str, enum.Enum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Permission(str, enum.Enum):
    READ = "read"          # sessions, status, events, metrics
    CONTROL = "control"    # pause, resume, terminate
    ADMIN = "admin"        # reserved for administration (every permission)


ROLE_PERMISSIONS: Mapping[Role, FrozenSet[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.CONTROL}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``expires_at`` (seconds) bounds long-lived uses (WebSockets)."""

    subject: str
    roles: FrozenSet[Role]
    method: str  # "jwt", "api_key" or "anonymous"
    expires_at: Optional[float] = None

    def can(self, permission: Permission) -> bool:
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles)


ANONYMOUS = Principal("anonymous", frozenset({Role.ADMIN}), "anonymous")


class AuthError(Exception):
    """Refused: ``status`` 401 or 403, a stable ``code`` and a fixed human ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def challenge(self) -> Optional[bytes]:
        """The WWW-Authenticate value of a 401 (RFC 6750 section 3)."""
        if self.status != 401:
            return None
        if self.code == "unauthorized":
            return b'Bearer realm="siprec"'
        return b'Bearer realm="siprec", error="invalid_token"'


def _unauthorized(message: str = "credentials required") -> AuthError:
    return AuthError(401, "unauthorized", message)


def _invalid(message: str) -> AuthError:
    return AuthError(401, "invalid_token", message)


def _forbidden(permission: Permission) -> AuthError:
    return AuthError(403, "forbidden", f"this requires the '{permission.value}' permission")


class AuthConfigError(ValueError):
    """Auth settings that cannot work; ``setting`` names the variable to fix."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


def roles_from_claims(claims: Mapping[str, Any]) -> FrozenSet[Role]:
    """Known roles in a ``role`` string and/or ``roles`` list; others are ignored."""
    names: list = []
    role = claims.get("role")
    if isinstance(role, str):
        names.append(role)
    roles = claims.get("roles")
    if isinstance(roles, list):
        names.extend(r for r in roles[:32] if isinstance(r, str))
    known = {r.value: r for r in Role}
    return frozenset(known[n.lower()] for n in names if n.lower() in known)


# -- JWT ---------------------------------------------------------------------------------

class JwtVerifier:
    """Checks JWTs: the algorithm picks the key (HS256: secret, RS256: public key), never the token."""

    def __init__(self, clock: IReactorTime, *, secret: Optional[bytes] = None,
                 public_key: Optional[bytes] = None, issuer: str = "", audience: str = "",
                 leeway: float = 30.0) -> None:
        if not secret and not public_key:
            raise AuthConfigError("JWT_SECRET", "a JWT verifier needs a secret or a public key")
        if secret is not None and secret and len(secret) < MIN_HS256_SECRET:
            raise AuthConfigError("JWT_SECRET", f"is shorter than {MIN_HS256_SECRET} bytes")
        self.clock = clock
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._keys: Dict[str, Any] = {}
        if secret:
            self._keys["HS256"] = secret
        if public_key:
            self._keys["RS256"] = load_rsa_public_key(public_key)

    @property
    def algorithms(self) -> Tuple[str, ...]:
        return tuple(sorted(self._keys))

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except Exception:
            raise _invalid("malformed token") from None
        alg = header.get("alg") if isinstance(header, dict) else None
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None:
            raise _invalid("token algorithm not accepted")
        options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                   "verify_aud": bool(self.audience), "verify_iss": bool(self.issuer),
                   "require": ["exp"]}
        try:
            claims = jwt.decode(token, key, algorithms=[alg], options=options,
                                audience=self.audience or None, issuer=self.issuer or None)
        except jwt.InvalidSignatureError:
            raise _invalid("bad token signature") from None
        except jwt.InvalidAudienceError:
            raise _invalid("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise _invalid("token is from another issuer") from None
        except jwt.MissingRequiredClaimError as err:
            raise _invalid(f"token has no '{err.claim}' claim") from None
        except Exception:
            raise _invalid("malformed token") from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        now = self.clock.seconds()
        exp = claims.get("exp")
        if not _number(exp):
            raise _invalid("token 'exp' is not a number")
        if now > exp + self.leeway:
            raise AuthError(401, "token_expired", "token has expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _number(nbf):
                raise _invalid("token 'nbf' is not a number")
            if now < nbf - self.leeway:
                raise _invalid("token is not valid yet")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            subject = "unknown"
        return Principal(subject[:128], roles_from_claims(claims), "jwt",
                         expires_at=float(exp) + self.leeway)


def load_rsa_public_key(pem: bytes) -> RSAPublicKey:
    """An RSA public key from a PEM public key or certificate (at least 2048 bits)."""
    try:
        if b"BEGIN CERTIFICATE" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = load_pem_public_key(pem)
    except Exception:
        raise AuthConfigError("JWT_PUBLIC_KEY_FILE",
                              "is not a PEM public key or certificate") from None
    if not isinstance(key, RSAPublicKey):
        raise AuthConfigError("JWT_PUBLIC_KEY_FILE", "is not an RSA key (RS256 needs RSA)")
    if key.key_size < MIN_RSA_BITS:
        raise AuthConfigError("JWT_PUBLIC_KEY_FILE",
                              f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} needed")
    return key


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- API keys ----------------------------------------------------------------------------

def generate_api_key() -> str:
    """A new random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """What API_KEYS_FILE stores for `key`: ``sha256:`` and the hex digest."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    role: Role
    digest: str  # hex SHA-256 of the key


@dataclass(slots=True)
class ApiKeyStore:
    """API keys by hash. Parse with from_text/from_file; errors name file and line."""

    keys: Dict[str, ApiKey] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, source: str = "API_KEYS_FILE") -> "ApiKeyStore":
        store = cls()
        names = set()
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}:{number}"
            parts = line.split()
            if len(parts) != 3:
                raise AuthConfigError("API_KEYS_FILE",
                                      f"{where}: expected 'name role sha256:HEX'")
            name, role_name, stored = parts
            if not _NAME.fullmatch(name):
                raise AuthConfigError("API_KEYS_FILE", f"{where}: bad key name {name[:40]!r}")
            try:
                role = Role(role_name.lower())
            except ValueError:
                raise AuthConfigError("API_KEYS_FILE", f"{where}: unknown role "
                                      f"{role_name[:40]!r} (admin, operator or viewer)") from None
            scheme, _, digest = stored.partition(":")
            digest = digest.lower()
            if scheme.lower() != "sha256" or not _HEX64.fullmatch(digest):
                raise AuthConfigError("API_KEYS_FILE", f"{where}: the key must be stored as "
                                      "sha256:<64 hex digits>, never in clear")
            if name in names:
                raise AuthConfigError("API_KEYS_FILE", f"{where}: key name {name!r} used twice")
            if digest in store.keys:
                raise AuthConfigError("API_KEYS_FILE", f"{where}: the same key is listed twice")
            names.add(name)
            store.keys[digest] = ApiKey(name, role, digest)
        return store

    @classmethod
    def from_file(cls, path: str) -> "ApiKeyStore":
        try:
            with open(path, "rb") as handle:
                raw = handle.read(4 * 1024 * 1024 + 1)
        except OSError as err:
            raise AuthConfigError("API_KEYS_FILE",
                                  f"{path!r} cannot be read ({err.strerror or err})") from None
        if len(raw) > 4 * 1024 * 1024:
            raise AuthConfigError("API_KEYS_FILE", f"{path!r} is over 4 MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthConfigError("API_KEYS_FILE", f"{path!r} is not UTF-8 text") from None
        return cls.from_text(text, source=os.path.basename(path))

    def lookup(self, key: str) -> Optional[Principal]:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        found = self.keys.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest):
            return None
        return Principal(found.name, frozenset({found.role}), "api_key")

    def __len__(self) -> int:
        return len(self.keys)


# -- requests ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented: a bearer token (JWT or API key) or an X-API-Key value."""

    bearer: Optional[str] = None
    api_key: Optional[str] = None

    @classmethod
    def from_request(cls, request: Any, allow_query: bool = False) -> "Credentials":
        """From `Authorization: Bearer`, `X-API-Key`, and (WebSockets only) `?token=`."""
        bearer = api_key = None
        authorization = request.getHeader(b"Authorization")
        if authorization is not None:
            bearer = _bearer(authorization)
        header_key = request.getHeader(b"X-API-Key")
        if header_key is not None:
            api_key = _token_text(header_key, "X-API-Key")
        if allow_query and bearer is None and api_key is None:
            values = (getattr(request, "args", None) or {}).get(b"token")
            if values:
                if len(values) > 1:
                    raise _invalid("token given more than once")
                bearer = _token_text(values[0], "token")
        return cls(bearer, api_key)

    @property
    def present(self) -> bool:
        return self.bearer is not None or self.api_key is not None


def _bearer(value: bytes) -> str:
    scheme, _, rest = value.strip().partition(b" ")
    if scheme.lower() not in (b"bearer", b"apikey"):
        raise _unauthorized("use 'Authorization: Bearer <token>' or 'X-API-Key: <key>'")
    return _token_text(rest.strip(), "Authorization")


def _token_text(raw: bytes, where: str) -> str:
    if not raw:
        raise _invalid(f"empty credentials in {where}")
    if len(raw) > MAX_TOKEN:
        raise _invalid(f"credentials in {where} are over {MAX_TOKEN} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _invalid(f"credentials in {where} are not ASCII") from None
    if not text.isprintable() or " " in text:
        raise _invalid(f"credentials in {where} are malformed")
    return text


class Authenticator:
    """The one decision point: credentials in, a Principal (or AuthError) out.

    With ``enabled`` False every request is ANONYMOUS (an admin): auth is off
    by default, as in the reference server, for closed management networks.
    """

    def __init__(self, *, enabled: bool, jwt_verifier: Optional[JwtVerifier] = None,
                 api_keys: Optional[ApiKeyStore] = None, public_health: bool = True,
                 public_metrics: bool = False) -> None:
        if enabled and jwt_verifier is None and not api_keys:
            raise AuthConfigError("AUTH_ENABLED", "needs JWT_SECRET, JWT_PUBLIC_KEY_FILE or "
                                  "API_KEYS_FILE with at least one key")
        self.enabled = enabled
        self.jwt = jwt_verifier
        self.api_keys = api_keys or ApiKeyStore()
        self.public_health = public_health
        self.public_metrics = public_metrics

    def authenticate(self, credentials: Credentials) -> Principal:
        """Who is calling; AuthError(401) when that cannot be established."""
        if not self.enabled:
            return ANONYMOUS
        if credentials.api_key is not None:
            return self._by_key(credentials.api_key)
        if credentials.bearer is None:
            raise _unauthorized()
        token = credentials.bearer
        if token.count(".") == 2:
            if self.jwt is None:
                raise _invalid("JWTs are not accepted here")
            return self.jwt.verify(token)
        return self._by_key(token)

    def _by_key(self, key: str) -> Principal:
        principal = self.api_keys.lookup(key) if self.api_keys else None
        if principal is None:
            raise _invalid("unknown API key")
        return principal

    def authorize(self, principal: Principal, permission: Permission) -> None:
        """AuthError(403) unless `principal` holds `permission`."""
        if not principal.can(permission):
            raise _forbidden(permission)

    def check(self, request: Any, permission: Permission, allow_query: bool = False) -> Principal:
        """Authenticate a twisted.web request and authorize `permission` in one call."""
        if not self.enabled:
            return ANONYMOUS
        principal = self.authenticate(Credentials.from_request(request, allow_query))
        self.authorize(principal, permission)
        return principal


DISABLED = Authenticator(enabled=False)


def authenticator_from_config(config: Any, clock: IReactorTime) -> Authenticator:
    """Build the Authenticator from settings; raises siprec.config.ConfigError (one line)."""
    from siprec.config import ConfigError

    try:
        verifier = None
        secret = config.jwt_secret.encode("utf-8") if config.jwt_secret else None
        public_key = None
        if config.jwt_public_key_file:
            public_key = _read_small("JWT_PUBLIC_KEY_FILE", config.jwt_public_key_file)
        if secret or public_key:
            verifier = JwtVerifier(clock, secret=secret, public_key=public_key,
                                   issuer=config.jwt_issuer, audience=config.jwt_audience,
                                   leeway=config.jwt_leeway)
        keys = ApiKeyStore.from_file(config.api_keys_file) if config.api_keys_file else None
        return Authenticator(enabled=config.auth_enabled, jwt_verifier=verifier, api_keys=keys,
                             public_health=config.auth_public_health,
                             public_metrics=config.auth_public_metrics)
    except AuthConfigError as err:
        raise ConfigError(str(err), err.setting) from None


def _read_small(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(1024 * 1024)
    except OSError as err:
        raise AuthConfigError(setting, f"{path!r} cannot be read ({err.strerror or err})") from None


# -- command line: make and hash keys -------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None, out: Any = None) -> int:
    """``python -m siprec.security.auth new-key NAME ROLE`` / ``hash-key`` / ``check FILE``."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m siprec.security.auth",
                                     description="Make API keys for API_KEYS_FILE.")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new-key", help="print a new key and its API_KEYS_FILE line")
    new.add_argument("name")
    new.add_argument("role", choices=[r.value for r in Role])
    commands.add_parser("hash-key", help="read a key on standard input, print its stored form")
    check = commands.add_parser("check", help="validate an API_KEYS_FILE")
    check.add_argument("file")
    args = parser.parse_args(argv)
    if args.command == "new-key":
        if not _NAME.fullmatch(args.name):
            parser.error("name: 1-64 of A-Z a-z 0-9 _ . @ : -")
        key = generate_api_key()
        out.write(f"key (give it to the client; it is not stored): {key}\n")
        out.write(f"line for API_KEYS_FILE: {args.name} {args.role} {hash_api_key(key)}\n")
        return 0
    if args.command == "hash-key":
        key = sys.stdin.readline().strip()
        if not key:
            parser.error("no key on standard input")
        out.write(hash_api_key(key) + "\n")
        return 0
    try:
        store = ApiKeyStore.from_file(args.file)
    except AuthConfigError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    out.write(f"{len(store)} key(s) OK\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
