// The client against a real `snorky serve`, from Node: every built-in service,
// tokens, SockJS, timeouts, and recovery after network blips and restarts.
//
// Run by tests/test_js_client.py (node --test js/test/integration/); needs
// `npm ci --prefix js` (sockjs-client) and a Python with snorky installed
// (SNORKY_PYTHON).

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import SockJS from "sockjs-client";
import Snorky from "../../src/index.js";
import { backend, signToken, startProxy, startSnorky, until, when } from "../support/server.mjs";

const SECRET = "integration-tests-secret-for-hs256-tokens";

const CONFIG = `
log_level = "warning"

[frontend]
drain_window = 0.5

[auth]
secret = "${SECRET}"

[services.pubsub]
class = "pubsub"
history = [{channel = "news*", size = 100, ttl = 300}]

[services.chat]
class = "chat"
history_size = 10

[services.messaging]
class = "messaging"

[services.cursors]
class = "cursors"

[services.datasync]
class = "datasync"
dealers = ["integration_dealers.Items"]

[services.progress]
class = "progress"

# The clients of these tests publish, which a configuration file must allow.
[namespaces]
allow_publish = "anyone"

[backend_services.pubsub]
class = "pubsub_backend"
frontend = "pubsub"

[backend_services.datasync]
class = "datasync_backend"
frontend = "datasync"

[backend_services.progress]
class = "progress_backend"
frontend = "progress"
`;

const DEALERS = `from snorky.services.datasync.dealers import BroadcastDealer


class Items(BroadcastDealer):
    name = "items"
    model = "Item"
`;

const SERVICES = {
  pubsub: Snorky.PubSub,
  chat: Snorky.Chat,
  messaging: Snorky.Messaging,
  cursors: Snorky.Cursors,
  datasync: Snorky.DataSync,
  progress: Snorky.Progress,
};

let folder;
let config;
let server;
const clients = [];

before(async () => {
  folder = await mkdtemp(path.join(tmpdir(), "snorky-js-integration-"));
  config = path.join(folder, "snorky.toml");
  await writeFile(config, CONFIG);
  await writeFile(path.join(folder, "integration_dealers.py"), DEALERS);
  server = await startSnorky(config);
});

after(async () => {
  await server?.stop();
  await rm(folder, { recursive: true, force: true });
});

afterEach(() => {
  for (const snorky of clients.splice(0)) {
    snorky.disconnect();
  }
});

/** A client of the test server (or of `port`) that reconnects quickly. */
function client({ port = server.port, identity, ...options } = {}) {
  const token = identity ? signToken(identity, SECRET, { info: { name: identity.toUpperCase() } }) : undefined;
  const snorky = new Snorky(WebSocket, `ws://127.0.0.1:${port}/ws`, SERVICES, {
    backoff: { base: 50, max: 200 },
    connectTimeout: 2000,
    token,
    ...options,
  });
  clients.push(snorky);
  return snorky;
}

async function connected(snorky) {
  if (!snorky.isConnected) {
    await when(snorky.connected, () => true, 10000, "connected");
  }
  return snorky;
}

describe("PubSub", () => {
  it("delivers a message published by one client to another", async () => {
    const alice = await connected(client());
    const bob = await connected(client());
    assert.equal(await bob.services.pubsub.subscribe({ channel: "chat-room" }), null);
    const received = when(bob.services.pubsub.messagePublished);
    await alice.services.pubsub.publish({ channel: "chat-room", message: { text: "hi" } });
    const [message] = await received;
    assert.deepEqual(message, { type: "message", channel: "chat-room", message: { text: "hi" } });
  });

  it("rejects with the server's error code", async () => {
    const alice = await connected(client());
    await assert.rejects(alice.services.pubsub.unsubscribe({ channel: "never" }), {
      code: "not_subscribed",
      message: "Not subscribed",
    });
    await assert.rejects(alice.call("nope", "nothing"), { code: "unknown_service" });
  });

  it("forgets a subscription the server ended, and does not take it back after a reconnection", async () => {
    const proxy = await startProxy(server.port);
    try {
      const page = await connected(client({ port: proxy.port, identity: "ursula" }));
      const pubsub = page.services.pubsub;
      await pubsub.subscribe({ channel: "ended" });
      await pubsub.subscribe({ channel: "kept" });
      const told = when(pubsub.unsubscribed);
      const reply = await backend(server, "control", "unsubscribe", {
        identity: "ursula",
        service: "pubsub",
        channel: "ended",
      });
      assert.deepEqual(reply, { unsubscribed: 1 });
      assert.deepEqual((await told)[0], { type: "unsubscribed", channel: "ended" });
      assert.deepEqual(pubsub.channels(), ["kept"]);

      const lost = when(page.disconnected);
      proxy.cut();
      await lost;
      const restored = when(pubsub.restored);
      assert.equal((await restored)[0].channel, "kept");
      const received = [];
      pubsub.messagePublished.add((m) => received.push(m.channel));
      await backend(server, "pubsub", "publish", { channel: "ended", message: 1 });
      await backend(server, "pubsub", "publish", { channel: "kept", message: 2 });
      await until(() => received.length === 1, "the kept channel's message arrived");
      assert.deepEqual(received, ["kept"]);
    } finally {
      await proxy.close();
    }
  });

  it("recovers the messages missed during a network blip", async () => {
    const proxy = await startProxy(server.port);
    try {
      const reader = await connected(client({ port: proxy.port }));
      const pubsub = reader.services.pubsub;
      const position = await pubsub.subscribe({ channel: "news-blip" });
      assert.equal(typeof position.offset, "number");
      const received = [];
      pubsub.messagePublished.add((m) => received.push(m.message));
      await backend(server, "pubsub", "publish", { channel: "news-blip", message: "before" });
      await until(() => received.length === 1, "the first message arrived");

      proxy.refuse = true;
      const lost = when(reader.disconnected);
      proxy.cut();
      assert.equal((await lost)[0].willReconnect, true);
      await backend(server, "pubsub", "publish", { channel: "news-blip", message: "during 1" });
      await backend(server, "pubsub", "publish", { channel: "news-blip", message: "during 2" });
      const restored = when(pubsub.restored);
      proxy.refuse = false;
      const [info] = await restored;
      assert.deepEqual(info, { channel: "news-blip", recovered: true, history: true, missed: 2 });
      await backend(server, "pubsub", "publish", { channel: "news-blip", message: "after" });
      await until(() => received.length === 4, "the live message arrived");
      assert.deepEqual(received, ["before", "during 1", "during 2", "after"]);
    } finally {
      await proxy.close();
    }
  });
});

describe("Chat, Messaging, Cursors, DataSync, Progress", () => {
  it("chats with tokens: members, presence, messages, read receipts", async () => {
    const alice = await connected(client({ identity: "alice" }));
    const aliceTab = await connected(client({ identity: "alice" }));
    const bob = await connected(client({ identity: "bob" }));
    assert.equal(alice.identity, "alice");
    await alice.services.chat.join({ channel: "lobby" });
    await aliceTab.services.chat.join({ channel: "lobby" });
    const arrived = when(alice.services.chat.presenceReceived);
    const answer = await bob.services.chat.join({ channel: "lobby" });
    assert.deepEqual(answer.members, ["alice", "bob"]);
    assert.deepEqual((await arrived)[0].info, { name: "BOB" });
    assert.deepEqual(
      alice.services.chat.getMembers("lobby").map((m) => m.identity),
      ["alice", "bob"],
    );
    const message = when(alice.services.chat.messageReceived);
    await bob.services.chat.send({ channel: "lobby", body: "hello" });
    assert.equal((await message)[0].from, "bob");
    const receipt = when(aliceTab.services.chat.readReceived);
    await alice.services.chat.read({ channel: "lobby" });
    assert.equal((await receipt)[0].channel, "lobby");
  });

  it("sends one-to-one messages", async () => {
    const alice = await connected(client());
    const bob = await connected(client());
    await alice.services.messaging.registerParticipant({ name: "alice-m" });
    await bob.services.messaging.registerParticipant({ name: "bob-m" });
    assert.ok((await alice.services.messaging.listParticipants()).includes("bob-m"));
    const received = when(bob.services.messaging.messageReceived);
    await alice.services.messaging.send({ sender: "alice-m", dest: "bob-m", body: "psst" });
    assert.deepEqual((await received)[0], { type: "message", sender: "alice-m", dest: "bob-m", body: "psst" });
  });

  it("shares cursors, and recreates its own after a network blip", async () => {
    const proxy = await startProxy(server.port);
    try {
      const alice = await connected(client({ identity: "alice", port: proxy.port }));
      const bob = await connected(client({ identity: "bob" }));
      const aliceDoc = await alice.services.cursors.join({ document: "doc-1" });
      const bobDoc = await bob.services.cursors.join({ document: "doc-1" });
      const added = when(bobDoc.cursorAdded);
      const [caret, created] = aliceDoc.createCursor({ position: 3, status: "typing" });
      await created;
      const [seen] = await added;
      assert.equal(seen.owner, "alice");
      assert.equal(seen.publicHandle, caret.publicHandle);
      const moved = when(bobDoc.cursorUpdated);
      await caret.update({ position: 4 });
      assert.equal((await moved)[0].position, 4);

      const gone = when(bobDoc.cursorRemoved);
      const back = when(bobDoc.cursorAdded);
      const restored = when(alice.services.cursors.restored);
      proxy.cut();
      await gone;
      const [again] = await back;
      assert.equal(again.position, 4);
      assert.equal(again.owner, "alice");
      await restored;
      assert.equal(again.publicHandle, caret.publicHandle);
      assert.equal(bobDoc.foreignCursors().length, 1);
    } finally {
      await proxy.close();
    }
  });

  it("follows a DataSync subscription, acquired again with a fresh token after a blip", async () => {
    const proxy = await startProxy(server.port);
    try {
      const page = await connected(client({ port: proxy.port }));
      const datasync = page.services.datasync;
      let tokens = 0;
      const getToken = () => {
        tokens++;
        return backend(server, "datasync", "authorizeSubscription", { items: [{ dealer: "items", query: null }] });
      };
      const rows = [];
      const processor = new Snorky.DataSync.CollectionDeltaProcessor({ Item: new Snorky.DataSync.ArrayCollection(rows) });
      datasync.deltaReceived.add((delta) => processor.processDelta(delta));
      await datasync.subscribe({ getToken });
      const insert = (id) => ({ type: "insert", model: "Item", data: { id, text: `item ${id}` } });
      await backend(server, "datasync", "publishDeltas", { deltas: [insert(1)] });
      await until(() => rows.length === 1, "the first row arrived");

      const restored = when(datasync.restored);
      proxy.cut();
      assert.deepEqual(Object.keys((await restored)[0]), ["subscription"]);
      assert.equal(tokens, 2);
      await backend(server, "datasync", "publishDeltas", {
        deltas: [insert(2), { type: "update", model: "Item", oldData: insert(1).data, newData: { id: 1, text: "one" } }],
      });
      await until(() => rows.length === 2 && rows[0].text === "one", "the later deltas arrived");
    } finally {
      await proxy.close();
    }
  });

  it("follows a task's progress", async () => {
    const page = await connected(client());
    const progress = page.services.progress;
    const task = await backend(server, "progress", "createTask", { name: "Export", max: 4 });
    const state = await progress.subscribe({ task });
    assert.equal(state.name, "Export");
    const done = when(progress.taskChanged, (s) => s.status === "completed");
    await backend(server, "progress", "update", { task, value: 2, label: "half" });
    await backend(server, "progress", "complete", { task, label: "done" });
    const [final] = await done;
    assert.equal(final.value, 4);
    assert.equal(final.label, "done");
    assert.equal(final.name, "Export");
  });
});

describe("Connection", () => {
  it("rejects a call with no answer after its timeout", async () => {
    const proxy = await startProxy(server.port);
    try {
      const page = await connected(client({ port: proxy.port, rpcTimeout: 200 }));
      proxy.blackhole = true;
      await assert.rejects(page.services.pubsub.publish({ channel: "x", message: 1 }), {
        code: "timeout",
        command: "publish",
      });
    } finally {
      await proxy.close();
    }
  });

  it("stays disconnected when the server disconnects it on purpose (4004)", async () => {
    const page = await connected(client({ identity: "mallory" }));
    const closed = when(page.disconnected);
    await backend(server, "control", "disconnect", { identity: "mallory" });
    assert.deepEqual((await closed)[0], { code: 4004, reason: "disconnected by the server", willReconnect: false });
    assert.equal(page.state, "disconnected");
  });

  it("gets a new token when the server refuses one, with getToken", async () => {
    const tokens = [signToken("trudy", SECRET + "-forged"), signToken("trudy", SECRET)];
    const page = client({ getToken: () => tokens.shift() });
    const errors = [];
    page.error.add((error) => errors.push(error.code));
    await when(page.connected, () => page.identity === "trudy" && tokens.length === 0, 10000, "a good token");
    await page.services.chat.join({ channel: "tokens" });
    assert.deepEqual(errors, ["invalid_token"]);
  });

  it("authenticates with a message and refreshes the token before it expires", async () => {
    const page = client({
      tokenTransport: "message",
      token: signToken("walter", SECRET, { ttl: 2 }),
      getToken: () => signToken("walter", SECRET, { ttl: 3600 }),
    });
    const [first] = await when(page.authenticated);
    assert.equal(first.identity, "walter");
    const [refreshed] = await when(page.authenticated, (a) => a.expiresAt > Date.now() / 1000 + 60);
    assert.equal(refreshed.identity, "walter");
    // Past the first token's expiry the connection is still the first one.
    await until(() => readExpiry(first) < Date.now() / 1000, "the first token expired", 5000);
    await page.services.chat.join({ channel: "refreshed" });
    assert.equal(page.state, "connected");
  });

  it("restores everything after the server restarts on the same port", async () => {
    const restartable = await startSnorky(config);
    try {
      const page = await connected(client({ identity: "alice", port: restartable.port }));
      const other = await connected(client({ identity: "bob", port: restartable.port }));
      await page.services.chat.join({ channel: "restart" });
      await page.services.pubsub.subscribe({ channel: "news-restart" });
      const states = [];
      page.stateChanged.add((state) => states.push(state));
      const pubsubRestored = when(page.services.pubsub.restored);
      const chatRestored = when(page.services.chat.restored);
      const closed = when(page.disconnected);
      await restartable.stop();
      assert.equal((await closed)[0].code, 1012); // sent away by the drain: reconnect now
      const again = await startSnorky(config, { port: restartable.port });
      try {
        const [pubsub] = await pubsubRestored;
        assert.deepEqual(pubsub, { channel: "news-restart", recovered: false, history: true, missed: 0 });
        assert.deepEqual((await chatRestored)[0].answer.members.includes("alice"), true);
        assert.equal(states[0], "reconnecting");
        assert.equal(states.at(-1), "connected");
        await connected(other);
        await other.services.chat.join({ channel: "restart" });
        const message = when(page.services.chat.messageReceived);
        await other.services.chat.send({ channel: "restart", body: "welcome back" });
        assert.equal((await message)[0].body, "welcome back");
      } finally {
        await again.stop();
      }
    } finally {
      await restartable.stop();
    }
  });
});

describe("SockJS", () => {
  for (const transport of ["websocket", "xhr-streaming"]) {
    it(`works over SockJS (${transport}) with a token in the URL`, async () => {
      const page = new Snorky(SockJS, `http://127.0.0.1:${server.port}/sockjs`, SERVICES, {
        token: signToken("sockjs-user", SECRET),
        createSocket: (url) => new SockJS(url, null, { transports: [transport] }),
      });
      clients.push(page);
      await connected(page);
      const answer = await page.services.chat.join({ channel: `sockjs-${transport}` });
      assert.deepEqual(answer.members, ["sockjs-user"]);
      const received = when(page.services.pubsub.messagePublished);
      await page.services.pubsub.subscribe({ channel: "sockjs" });
      await page.services.pubsub.publish({ channel: "sockjs", message: transport });
      assert.equal((await received)[0].message, transport);
    });
  }
});

describe("Limits", () => {
  let limited;

  before(async () => {
    const limitsConfig = path.join(folder, "limits.toml");
    await writeFile(
      limitsConfig,
      `log_level = "error"\n[auth]\nsecret = "${SECRET}"\n[limits]\nconnections_per_identity = 1\n` +
        "commands_per_second = 0.001\ncommands_burst = 3\ncommands_close_after = 1\n",
    );
    limited = await startSnorky(limitsConfig);
  });

  after(async () => {
    await limited?.stop();
  });

  it("stays disconnected when its identity has too many connections (4005)", async () => {
    await connected(client({ identity: "zoe", port: limited.port }));
    const second = client({ identity: "zoe", port: limited.port });
    const [closed] = await when(second.disconnected);
    assert.deepEqual(closed, { code: 4005, reason: "too many connections", willReconnect: false });
    assert.equal(second.state, "disconnected");
  });

  it("is refused too_many_requests past the burst, and reconnects with backoff when closed (4029)", async () => {
    const page = await connected(client({ port: limited.port }));
    const pubsub = page.services.pubsub;
    for (const channel of ["a", "b", "c"]) {
      await pubsub.subscribe({ channel });
    }
    await assert.rejects(pubsub.subscribe({ channel: "d" }), { code: "too_many_requests" });
    const closed = when(page.disconnected);
    const reconnecting = when(page.reconnecting);
    await assert.rejects(pubsub.subscribe({ channel: "e" }), { code: "disconnected" });
    assert.deepEqual((await closed)[0], { code: 4029, reason: "too many requests", willReconnect: true });
    assert.equal((await reconnecting)[0].code, 4029);
    // A new connection has a new allowance: the three subscriptions are restored with it.
    const restored = [];
    pubsub.restored.add((item) => restored.push(item.channel));
    await connected(page);
    await until(() => restored.length === 3, "three subscriptions restored");
    assert.deepEqual(restored.sort(), ["a", "b", "c"]);
  });
});

function readExpiry(answer) {
  return answer.expiresAt;
}
