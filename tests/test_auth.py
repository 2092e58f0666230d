"""Tokens and the auth service, pure: signing, verifying, identity, refresh, expiry."""

import base64
import hashlib
import hmac
import json
import time
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from snorky import ServiceRegistry
from snorky.auth import AuthError, TokenVerifier, granted, sign_token
from snorky.services.auth import AuthService
from tests.utils import ClosableClient, FakeTimeoutFactory, RecordingClient, call, call_error, expect_log

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def now() -> float:
    """The current time, whole seconds (tokens carry whole seconds). Taken per test, never at import."""
    return float(int(time.time()))


def pem_pair(private_key):
    private = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class VerifierTests(unittest.TestCase):
    def setUp(self):
        self.verifier = TokenVerifier(SECRET)

    def test_valid_token(self):
        """A token signed with the secret yields its claims."""
        token = sign_token("alice", SECRET, info={"name": "Alice"}, channels=["lobby"])
        claims = self.verifier.verify(token)
        self.assertEqual((claims["sub"], claims["info"], claims["channels"]), ("alice", {"name": "Alice"}, ["lobby"]))

    def test_expired(self):
        """A token past its exp is token_expired."""
        token = sign_token("alice", SECRET, ttl=10, now=now() - 100)
        with self.assertRaises(AuthError) as caught:
            self.verifier.verify(token)
        self.assertEqual((caught.exception.code, caught.exception.message), ("token_expired", "Token expired"))

    def test_forged(self):
        """A token signed with another secret is invalid_token."""
        token = sign_token("alice", SECRET + "-other")
        with self.assertRaises(AuthError) as caught:
            self.verifier.verify(token)
        self.assertEqual(caught.exception.code, "invalid_token")

    def test_malformed(self):
        """Garbage, non-strings and empty tokens are invalid_token."""
        for token in ["not.a.token", "", None, 42, ["x"], "a" * 5000]:
            with self.subTest(token=token), self.assertRaises(AuthError) as caught:
                self.verifier.verify(token)
            self.assertEqual(caught.exception.code, "invalid_token")

    def test_missing_claims(self):
        """Tokens without sub or exp are invalid_token."""
        import jwt

        for claims in [{"exp": now() + 3600}, {"sub": "alice"}]:
            token = jwt.encode(claims, SECRET, algorithm="HS256")
            with self.subTest(claims=claims), self.assertRaises(AuthError):
                self.verifier.verify(token)

    def test_none_algorithm_refused(self):
        """An unsigned token (alg none) is refused."""
        import jwt

        token = jwt.encode({"sub": "alice", "exp": 9999999999}, None, algorithm="none")
        with self.assertRaises(AuthError):
            self.verifier.verify(token)

    def test_bad_channels_claim(self):
        """A channels claim that is not a list of strings is invalid_token."""
        import jwt

        token = jwt.encode({"sub": "a", "exp": 9999999999, "channels": "lobby"}, SECRET, algorithm="HS256")
        with self.assertRaises(AuthError):
            self.verifier.verify(token)

    def test_rs256_and_es256(self):
        """RS256 and ES256 tokens verify with the public key, and only with it."""
        for algorithm, key in [
            ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ]:
            with self.subTest(algorithm=algorithm):
                private, public = pem_pair(key)
                token = sign_token("bob", algorithm=algorithm, private_key=private)
                self.assertEqual(TokenVerifier(public_key=public).verify(token)["sub"], "bob")
                with self.assertRaises(AuthError):
                    self.verifier.verify(token)

    def test_hs256_token_refused_by_a_public_key_verifier(self):
        """A public-key verifier does not accept HS256 tokens (no algorithm confusion)."""
        _, public = pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))

        def part(data):
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

        signed = part({"alg": "HS256", "typ": "JWT"}) + b"." + part({"sub": "mallory", "exp": int(now() + 60)})
        mac = base64.urlsafe_b64encode(hmac.new(public, signed, hashlib.sha256).digest()).rstrip(b"=")
        token = (signed + b"." + mac).decode()
        with self.assertRaises(AuthError):
            TokenVerifier(public_key=public).verify(token)

    def test_verifier_needs_a_key(self):
        """A verifier without a secret or key cannot be made."""
        with self.assertRaises(ValueError):
            TokenVerifier()

    def test_granted(self):
        """granted() reads the token's channel grants."""
        client = RecordingClient("a")
        self.assertFalse(granted(client, "lobby"))
        client.claims = {"channels": ["lobby"]}
        self.assertTrue(granted(client, "lobby"))
        self.assertFalse(granted(client, "staff"))


class AuthServiceTests(unittest.TestCase):
    def setUp(self):
        self.timers = FakeTimeoutFactory()
        self.start = self.clock = now()
        self.auth = AuthService("auth", secret=SECRET, timeout_factory=self.timers, clock=lambda: self.clock)
        self.registry = ServiceRegistry([self.auth])
        self.client = ClosableClient()

    def token(self, sub="alice", ttl=60, **kwargs):
        return sign_token(sub, SECRET, ttl=ttl, now=self.start, **kwargs)

    def test_authenticate_sets_identity(self):
        """authenticate sets identity, info and claims, and replies with them."""
        reply = call(self.auth, self.client, "authenticate", token=self.token(info={"name": "Alice"}))
        self.assertEqual(reply, {"identity": "alice", "info": {"name": "Alice"}, "expiresAt": int(self.start + 60)})
        self.assertEqual((self.client.identity, self.client.info), ("alice", {"name": "Alice"}))

    def test_bad_token_answers_its_code(self):
        """A forged token answers Invalid token and leaves the client anonymous."""
        with expect_log(self, "Invalid token", "INFO"):
            self.assertEqual(
                call_error(self.auth, self.client, "authenticate", token="forged"), ("Invalid token", "invalid_token")
            )
        self.assertIsNone(self.client.identity)

    def test_expired_token_answers_token_expired(self):
        """An expired token answers Token expired."""
        token = sign_token("alice", SECRET, ttl=1, now=now() - 10)
        with expect_log(self, "Token expired", "INFO"):
            self.assertEqual(call_error(self.auth, self.client, "authenticate", token=token)[1], "token_expired")

    def test_expiry_closes_with_4002(self):
        """A token that expires without a refresh closes the connection with 4002."""
        call(self.auth, self.client, "authenticate", token=self.token(ttl=30))
        self.assertEqual([t.delay for t in self.timers.pending], [30])
        with expect_log(self, "expired", "INFO"):
            self.timers.fire_all()
        self.assertEqual(self.client.closed_with, 4002)

    def test_refresh_replaces_the_expiry(self):
        """refresh with a newer token reschedules the expiry and keeps the connection."""
        call(self.auth, self.client, "authenticate", token=self.token(ttl=30))
        self.clock += 20
        self.assertEqual(call(self.auth, self.client, "refresh", token=self.token(ttl=80))["identity"], "alice")
        self.assertEqual([t.delay for t in self.timers.pending], [60])

    def test_identity_cannot_change(self):
        """A token for another identity is refused on an authenticated connection."""
        call(self.auth, self.client, "authenticate", token=self.token("alice"))
        with expect_log(self, "another identity", "INFO"):
            self.assertEqual(
                call_error(self.auth, self.client, "refresh", token=self.token("mallory"))[1], "invalid_token"
            )
        self.assertEqual(self.client.identity, "alice")

    def test_disconnect_cancels_the_timer(self):
        """A client that leaves holds no expiry timer."""
        call(self.auth, self.client, "authenticate", token=self.token())
        self.registry.client_disconnected(self.client)
        self.assertEqual((self.timers.pending, self.auth.expiry_timers), ([], {}))

    def test_registry_authenticate_at_connect(self):
        """registry.authenticate verifies a connect-time token through the auth service."""
        self.registry.authenticate(self.client, self.token("carol"))
        self.assertEqual(self.client.identity, "carol")

    def test_registry_without_auth_refuses_tokens(self):
        """A registry with no auth service refuses every token."""
        with self.assertRaises(AuthError):
            ServiceRegistry().authenticate(self.client, self.token())

    def test_refuse_token_answers_and_closes(self):
        """A refused connect-time token is answered with its code and closed with 4001."""
        with expect_log(self, "refused token"):
            self.registry.refuse_token(self.client, AuthError("Invalid token", "invalid_token"))
        self.assertEqual(self.client.sent[0]["message"]["code"], "invalid_token")
        self.assertEqual(self.client.closed_with, 4001)


class WeakSecretTests(unittest.TestCase):
    def test_short_secret_is_said_once_in_snorky_words(self):
        """A short HS256 secret verifies tokens; the verifier logs one warning and PyJWT's is silenced."""
        from snorky.auth import TokenVerifier, sign_token

        with self.assertLogs("snorky.auth", "WARNING") as logs:
            verifier = TokenVerifier("short")
        self.assertEqual(len(logs.records), 1)
        self.assertIn("the HS256 secret is 5 bytes long; use at least 32", logs.records[0].getMessage())
        self.assertEqual(verifier.verify(sign_token("ann", "short"))["sub"], "ann")  # warnings are errors here

    def test_long_secret_says_nothing(self):
        """A secret of 32 bytes or more is not questioned."""
        from snorky.auth import weak_secret

        self.assertIsNone(weak_secret("x" * 32))
        self.assertIsNotNone(weak_secret("x" * 47, "HS384"))
