"""Tests for siprec.security.auth: JWT checks, API keys, credentials, config, the CLI."""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from siprec.config import ConfigError, load_config
from siprec.security.auth import (
    ANONYMOUS, ApiKeyStore, AuthConfigError, AuthError, Authenticator, Credentials,
    JwtVerifier, Permission, Role, authenticator_from_config, generate_api_key, hash_api_key,
    main, roles_from_claims,
)
from tests.security import tokens
from tests.security.tokens import AUDIENCE, ISSUER, NOW, SECRET, claims, hs256, rs256


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwtTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.verifier = JwtVerifier(self.clock, secret=SECRET, public_key=tokens.public_pem(),
                                    issuer=ISSUER, audience=AUDIENCE, leeway=30)

    def refused(self, token: str, code: str = "invalid_token") -> AuthError:
        err = self.assertRaises(AuthError, self.verifier.verify, token)
        self.assertEqual((err.status, err.code), (401, code), err.message)
        return err

    def test_hs256_and_rs256(self):
        for token in (hs256(claims("operator")), rs256(claims("operator"))):
            principal = self.verifier.verify(token)
            self.assertEqual((principal.subject, principal.roles, principal.method),
                             ("user-operator", frozenset({Role.OPERATOR}), "jwt"))
            self.assertEqual(principal.expires_at, NOW + 3600 + 30)

    def test_expiry_with_leeway(self):
        token = hs256(claims(ttl=10))
        self.clock.advance(39)
        self.verifier.verify(token)
        self.clock.advance(2)
        self.refused(token, "token_expired")

    def test_not_before(self):
        token = hs256(claims(nbf=NOW + 100))
        self.refused(token)
        self.clock.advance(71)
        self.verifier.verify(token)

    def test_bad_claims(self):
        self.refused(hs256(claims(iss="https://evil.example/")))
        self.refused(hs256(claims(aud="someone-else")))
        self.refused(hs256(claims(iss=None)))
        self.refused(hs256(claims(exp=None)))
        self.refused(hs256(claims(exp="tomorrow")))
        self.refused(hs256(claims(nbf="now")))

    def test_bad_signatures(self):
        self.refused(hs256(claims(), tokens.OTHER_SECRET))
        self.refused(rs256(claims(), tokens.rsa_key(3072)))
        token = hs256(claims())
        head, body, sig = token.split(".")
        forged = b64(json.dumps(claims("admin")).encode())
        self.refused(f"{head}.{forged}.{sig}")

    def test_algorithm_confusion_and_none(self):
        """alg none, and HS256 keyed with the RSA public key, are refused."""
        none = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(claims("admin")).encode()) + "."
        self.refused(none)
        head = b64(b'{"alg":"HS256","typ":"JWT"}')
        body = b64(json.dumps(claims("admin")).encode())
        import hmac, hashlib
        sig = hmac.new(tokens.public_pem(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        verifier = JwtVerifier(self.clock, public_key=tokens.public_pem())  # RS256 only
        err = self.assertRaises(AuthError, verifier.verify, f"{head}.{body}.{b64(sig)}")
        self.assertEqual(err.code, "invalid_token")
        import jwt
        self.refused(jwt.encode(claims(), SECRET, algorithm="HS512"))

    def test_only_configured_algorithms(self):
        rs_only = JwtVerifier(self.clock, public_key=tokens.public_pem())
        self.assertRaises(AuthError, rs_only.verify, hs256(claims()))
        hs_only = JwtVerifier(self.clock, secret=SECRET)
        self.assertRaises(AuthError, hs_only.verify, rs256(claims()))
        self.assertEqual(self.verifier.algorithms, ("HS256", "RS256"))

    def test_issuer_audience_optional(self):
        plain = JwtVerifier(self.clock, secret=SECRET)
        plain.verify(hs256(claims(iss=None, aud="anything")))

    def test_roles(self):
        self.assertEqual(roles_from_claims({"role": "ADMIN"}), {Role.ADMIN})
        self.assertEqual(roles_from_claims({"roles": ["viewer", "x", 3, "operator"]}),
                         {Role.VIEWER, Role.OPERATOR})
        self.assertEqual(roles_from_claims({"role": ["admin"], "roles": "admin"}), frozenset())
        principal = self.verifier.verify(hs256(claims(None, roles=["viewer"])))
        self.assertEqual(principal.roles, {Role.VIEWER})

    def test_config_errors(self):
        self.assertRaises(AuthConfigError, JwtVerifier, self.clock)
        err = self.assertRaises(AuthConfigError, JwtVerifier, self.clock, secret=b"short")
        self.assertEqual(err.setting, "JWT_SECRET")
        for pem in (b"garbage", tokens.public_pem(tokens.rsa_key(1024)),
                    ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                        serialization.Encoding.PEM,
                        serialization.PublicFormat.SubjectPublicKeyInfo)):
            err = self.assertRaises(AuthConfigError, JwtVerifier, self.clock, public_key=pem)
            self.assertEqual(err.setting, "JWT_PUBLIC_KEY_FILE")

    def test_certificate_as_key(self):
        key = tokens.rsa_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.test")])
        import datetime
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(1)
                .not_valid_before(datetime.datetime(2020, 1, 1))
                .not_valid_after(datetime.datetime(2040, 1, 1)).sign(key, hashes.SHA256()))
        verifier = JwtVerifier(self.clock, public_key=cert.public_bytes(serialization.Encoding.PEM))
        verifier.verify(rs256(claims()))

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=200) | st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.text(max_size=40),
                                              st.text(max_size=40), st.text(max_size=40)))
    def test_garbage_is_auth_error(self, token):
        self.assertRaises(AuthError, self.verifier.verify, token)


class ApiKeyTests(SynchronousTestCase):
    def test_lookup(self):
        store = tokens.api_key_store()
        principal = store.lookup(tokens.API_KEYS["operator"])
        self.assertEqual((principal.subject, principal.roles, principal.method),
                         ("operator-client", frozenset({Role.OPERATOR}), "api_key"))
        self.assertIsNone(store.lookup("sk_siprec_wrong"))
        self.assertIsNone(store.lookup(hash_api_key(tokens.API_KEYS["admin"])))

    def test_generated_keys(self):
        key = generate_api_key()
        self.assertTrue(key.startswith("sk_siprec_"))
        self.assertGreaterEqual(len(key), 50)
        self.assertNotEqual(key, generate_api_key())
        self.assertRegex(hash_api_key(key), r"^sha256:[0-9a-f]{64}$")

    def test_file_format(self):
        digest = hash_api_key("k1")
        store = ApiKeyStore.from_text(f"# comment\n\n  ci operator {digest}  \n"
                                      f"dash viewer SHA256:{hash_api_key('k2')[7:].upper()}\n")
        self.assertEqual(len(store), 2)
        self.assertEqual(store.lookup("k2").subject, "dash")

    def test_file_errors_name_line(self):
        digest = hash_api_key("k1")
        cases = {
            "a b": "expected",
            f"ci root {digest}": "unknown role",
            "ci viewer plaintext-key": "never in clear",
            f"ci viewer md5:{digest[7:]}": "never in clear",
            f"bad/name viewer {digest}": "bad key name",
            f"ci viewer {digest}\nci admin {hash_api_key('x')}": "used twice",
            f"a viewer {digest}\nb admin {digest}": "listed twice",
        }
        for text, needle in cases.items():
            err = self.assertRaises(AuthConfigError, ApiKeyStore.from_text, "# h\n" + text, "keys")
            self.assertIn(needle, str(err))
            self.assertIn("keys:", str(err))
            self.assertEqual(err.setting, "API_KEYS_FILE")

    def test_from_file(self):
        handle, path = tempfile.mkstemp()
        self.addCleanup(os.unlink, path)
        os.write(handle, b"\xff\xfe")
        os.close(handle)
        self.assertRaises(AuthConfigError, ApiKeyStore.from_file, path)
        self.assertRaises(AuthConfigError, ApiKeyStore.from_file, path + ".missing")


class AuthenticatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.auth = Authenticator(enabled=True,
                                  jwt_verifier=JwtVerifier(self.clock, secret=SECRET),
                                  api_keys=tokens.api_key_store())

    def request(self, headers=None, args=None) -> DummyRequest:
        request = DummyRequest([b"api"])
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name, [value])
        request.args = args or {}
        return request

    def check(self, permission=Permission.READ, allow_query=False, **kwargs):
        return self.auth.check(self.request(**kwargs), permission, allow_query)

    def test_disabled_is_anonymous_admin(self):
        auth = Authenticator(enabled=False)
        self.assertIs(auth.check(self.request(), Permission.ADMIN), ANONYMOUS)
        self.assertTrue(ANONYMOUS.can(Permission.CONTROL))

    def test_needs_a_method_when_enabled(self):
        self.assertRaises(AuthConfigError, Authenticator, enabled=True)

    def test_bearer_jwt_and_keys(self):
        viewer = self.check(headers={b"Authorization": f"Bearer {hs256(claims())}".encode()})
        self.assertEqual(viewer.method, "jwt")
        for header in (b"Authorization", b"X-API-Key"):
            value = tokens.API_KEYS["admin"].encode()
            if header == b"Authorization":
                value = b"Bearer " + value
            self.assertEqual(self.check(Permission.ADMIN, headers={header: value}).method,
                             "api_key")
        self.assertEqual(self.check(headers={b"Authorization": b"ApiKey " +
                                             tokens.API_KEYS["viewer"].encode()}).method,
                         "api_key")

    def test_401_and_403(self):
        err = self.assertRaises(AuthError, self.check)
        self.assertEqual((err.status, err.code, err.challenge),
                         (401, "unauthorized", b'Bearer realm="siprec"'))
        err = self.assertRaises(AuthError, self.check, headers={b"Authorization": b"Basic dTpw"})
        self.assertEqual(err.status, 401)
        err = self.assertRaises(AuthError, self.check,
                                headers={b"X-API-Key": b"sk_siprec_unknown"})
        self.assertEqual((err.status, err.code), (401, "invalid_token"))
        self.assertIn(b"invalid_token", err.challenge)
        err = self.assertRaises(AuthError, self.check, Permission.CONTROL,
                                headers={b"X-API-Key": tokens.API_KEYS["viewer"].encode()})
        self.assertEqual((err.status, err.code, err.challenge), (403, "forbidden", None))
        err = self.assertRaises(AuthError, self.check, headers={
            b"Authorization": f"Bearer {hs256(claims(role='guest'))}".encode()})
        self.assertEqual(err.status, 403)

    def test_query_token_only_when_allowed(self):
        args = {b"token": [hs256(claims()).encode()]}
        self.assertRaises(AuthError, self.check, args=args)
        self.assertEqual(self.check(allow_query=True, args=args).method, "jwt")
        err = self.assertRaises(AuthError, self.check, allow_query=True,
                                args={b"token": [b"a", b"b"]})
        self.assertEqual(err.status, 401)

    def test_hostile_headers(self):
        for value in (b"Bearer ", b"Bearer " + b"x" * 9000, b"Bearer \xff\xfe",
                      b"Bearer a b", b"Bearer a\x00b", b"Bearer a.b.c", b"Bearer ...",
                      b"\x00", b"Bearer " + b"." * 2):
            err = self.assertRaises(AuthError, self.check, headers={b"Authorization": value})
            self.assertEqual(err.status, 401, value[:20])

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_any_header_is_auth_error(self, value):
        try:
            self.check(headers={b"Authorization": b"Bearer " + value})
        except AuthError:
            pass
        try:
            self.check(headers={b"X-API-Key": value})
        except AuthError:
            pass

    def test_credentials_from_request(self):
        creds = Credentials.from_request(self.request(headers={b"X-API-Key": b"k"}))
        self.assertEqual((creds.bearer, creds.api_key, creds.present), (None, "k", True))
        self.assertFalse(Credentials.from_request(self.request()).present)


class ConfigTests(SynchronousTestCase):
    def write(self, data: bytes) -> str:
        handle, path = tempfile.mkstemp()
        os.write(handle, data)
        os.close(handle)
        self.addCleanup(os.unlink, path)
        return path

    def test_off_by_default(self):
        auth = authenticator_from_config(load_config({}, env_file=None), Clock())
        self.assertFalse(auth.enabled)

    def test_everything_configured(self):
        keys = self.write(f"ops operator {hash_api_key('key-1')}\n".encode())
        pem = self.write(tokens.public_pem())
        config = load_config({"AUTH_ENABLED": "true", "JWT_SECRET": SECRET.decode(),
                              "JWT_PUBLIC_KEY_FILE": pem, "JWT_ISSUER": ISSUER,
                              "JWT_AUDIENCE": AUDIENCE, "API_KEYS_FILE": keys,
                              "AUTH_PUBLIC_METRICS": "true"}, env_file=None)
        clock = Clock()
        clock.advance(NOW)
        auth = authenticator_from_config(config, clock)
        self.assertEqual((auth.enabled, auth.public_health, auth.public_metrics),
                         (True, True, True))
        self.assertEqual(auth.jwt.algorithms, ("HS256", "RS256"))
        self.assertEqual(auth.api_keys.lookup("key-1").subject, "ops")
        auth.jwt.verify(rs256(claims()))

    def test_one_line_errors(self):
        cases = [({"AUTH_ENABLED": "true"}, "AUTH_ENABLED"),
                 ({"JWT_SECRET": "tiny-secret"}, "JWT_SECRET"),
                 ({"JWT_PUBLIC_KEY_FILE": "/nonexistent/key.pem"}, "JWT_PUBLIC_KEY_FILE"),
                 ({"JWT_PUBLIC_KEY_FILE": self.write(b"not pem")}, "JWT_PUBLIC_KEY_FILE"),
                 ({"API_KEYS_FILE": self.write(b"x viewer nothash\n")}, "API_KEYS_FILE")]
        for env, name in cases:
            err = self.assertRaises(ConfigError, authenticator_from_config,
                                    load_config(env, env_file=None), Clock())
            self.assertEqual(err.name, name)
            self.assertTrue(str(err).startswith(name + ":"), str(err))
            self.assertNotIn("\n", str(err))
            self.assertNotIn("tiny-secret", str(err))


class CliTests(SynchronousTestCase):
    def test_new_key_line_parses(self):
        out = io.StringIO()
        self.assertEqual(main(["new-key", "ci-bot", "operator"], out=out), 0)
        lines = out.getvalue().splitlines()
        key = lines[0].rsplit(" ", 1)[1]
        line = lines[1].split(": ", 1)[1]
        store = ApiKeyStore.from_text(line)
        self.assertEqual(store.lookup(key).subject, "ci-bot")
        self.assertNotIn(key, line)

    def test_check(self):
        handle, path = tempfile.mkstemp()
        os.write(handle, f"a admin {hash_api_key('z')}\n".encode())
        os.close(handle)
        self.addCleanup(os.unlink, path)
        out = io.StringIO()
        self.assertEqual(main(["check", path], out=out), 0)
        self.assertIn("1 key(s) OK", out.getvalue())
