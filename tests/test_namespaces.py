"""Namespaces, pure: configuration, and who may subscribe and publish where."""

import unittest

from snorky.errors import ConfigError
from snorky.namespaces import Namespace, Namespaces, channel_users, grants_channel, namespace_of
from tests.utils import RecordingClient


def client(identity=None, channels=None):
    peer = RecordingClient(identity)
    if channels is not None:
        peer.claims = {"sub": identity, "channels": channels}
    return peer


class NamingTests(unittest.TestCase):
    def test_namespace_of(self):
        """What comes before the first colon names the namespace; no colon, or no string: the default."""
        cases = {"chat:lobby": "chat", "chat:a:b": "chat", "news": "", ":x": "", 42: "", ("a:b",): ""}
        for channel, expected in cases.items():
            with self.subTest(channel=channel):
                self.assertEqual(namespace_of(channel), expected)

    def test_channel_users(self):
        """A "#" suffix lists the identities a channel admits."""
        self.assertEqual(channel_users("chat:dm#alice,bob"), {"alice", "bob"})
        self.assertEqual(channel_users("inbox#carol"), {"carol"})
        self.assertIsNone(channel_users("news"))
        self.assertEqual(channel_users("nobody#"), frozenset())

    def test_grants(self):
        """Grants are exact names or prefix* patterns."""
        self.assertTrue(grants_channel(["news"], "news"))
        self.assertFalse(grants_channel(["news"], "news2"))
        self.assertTrue(grants_channel(["team:42:*"], "team:42:general"))
        self.assertFalse(grants_channel(["team:42:*"], "team:43:general"))
        self.assertFalse(grants_channel(["*"], 7))


class DecisionTests(unittest.TestCase):
    def setUp(self):
        self.spaces = Namespaces(
            Namespace(),
            {
                "open": Namespace("open", allow_publish="anyone"),
                "members": Namespace("members", allow_subscribe="authenticated", allow_publish="subscribers"),
                "private": Namespace("private", allow_subscribe="granted", allow_publish="granted"),
                "signed": Namespace("signed", allow_anonymous=False),
            },
        )

    def test_defaults_are_safe(self):
        """By default anyone subscribes and no client publishes."""
        self.assertIsNone(self.spaces.refuse_subscribe(client(), "news"))
        self.assertEqual(self.spaces.refuse_publish(client("alice"), "news", True), "clients may not publish here")

    def test_unknown_namespace_is_refused(self):
        """A channel in a namespace nobody configured is refused, naming it."""
        self.assertEqual(self.spaces.refuse_subscribe(client("alice"), "secret:x"), "no namespace 'secret'")

    def test_authenticated(self):
        """authenticated admits identities only."""
        self.assertEqual(self.spaces.refuse_subscribe(client(), "members:a"), "needs an identity")
        self.assertIsNone(self.spaces.refuse_subscribe(client("bob"), "members:a"))

    def test_granted_by_token_claim(self):
        """granted follows the token's channels claim, patterns included."""
        self.assertEqual(
            self.spaces.refuse_subscribe(client("bob", ["private:a"]), "private:b"),
            "the token does not grant this channel",
        )
        self.assertIsNone(self.spaces.refuse_subscribe(client("bob", ["private:*"]), "private:b"))
        self.assertIsNone(self.spaces.refuse_publish(client("bob", ["private:b"]), "private:b", False))

    def test_subscription_token(self):
        """A valid subscription token admits the client; an invalid one refuses it, whatever else holds."""
        self.assertIsNone(self.spaces.refuse_subscribe(client("bob"), "private:b", lambda: True))
        self.assertEqual(
            self.spaces.refuse_subscribe(client("bob", ["private:*"]), "private:b", lambda: False),
            "invalid subscription token",
        )

    def test_user_limited_channel(self):
        """A channel#ids admits only those identities, even where anyone may subscribe."""
        self.assertIsNone(self.spaces.refuse_subscribe(client("alice"), "open:dm#alice,bob"))
        self.assertEqual(
            self.spaces.refuse_subscribe(client("carol"), "open:dm#alice,bob"), "the channel is limited to other users"
        )
        self.assertEqual(self.spaces.refuse_subscribe(client(), "dm#alice"), "the channel is limited to other users")

    def test_publish_rules(self):
        """subscribers publish only when subscribed; anyone means anyone."""
        self.assertEqual(self.spaces.refuse_publish(client("bob"), "members:a", False), "only subscribers may publish")
        self.assertIsNone(self.spaces.refuse_publish(client("bob"), "members:a", True))
        self.assertIsNone(self.spaces.refuse_publish(client(), "open:a", False))

    def test_anonymous_not_allowed(self):
        """allow_anonymous = false refuses connections without identity, even for anyone."""
        self.assertEqual(
            self.spaces.refuse_subscribe(client(), "signed:x"), "anonymous connections are not allowed here"
        )
        self.assertIsNone(self.spaces.refuse_subscribe(client("dan"), "signed:x"))


class ConfigTests(unittest.TestCase):
    def test_from_config(self):
        """The table's plain keys set the default namespace; its sub-tables name the others."""
        spaces = Namespaces.from_config(
            {"allow_publish": "authenticated", "chat": {"allow_presence": True, "history_size": 20}}
        )
        self.assertEqual(spaces.default.allow_publish, "authenticated")
        self.assertEqual((spaces.named["chat"].allow_presence, spaces.named["chat"].history_size), (True, 20))
        self.assertEqual(spaces.named["chat"].allow_publish, "nobody")

    def test_errors_name_section_and_key(self):
        """Unknown keys, wrong types and values are errors naming the section and key."""
        cases = [
            ({"allow_publsh": "anyone"}, "[namespaces]: unknown key 'allow_publsh'; did you mean 'allow_publish'?"),
            ({"chat": {"join_leave": "yes"}}, "[namespaces.chat] join_leave: must be true or false"),
            ({"chat": {"allow_subscribe": "everyone"}}, "[namespaces.chat]: allow_subscribe must be one of nobody,"),
            ({"force_recovery": True}, "[namespaces]: force_recovery needs history_size"),
        ]
        for table, message in cases:
            with self.subTest(table=table), self.assertRaises(ConfigError) as caught:
                Namespaces.from_config(table)
            self.assertIn(message, str(caught.exception))
