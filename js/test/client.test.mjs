import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import Snorky from "../src/index.js";
import {
  closeClients,
  fakeClient,
  fakeSocketClass,
  fakeToken,
  next,
  openSocket,
  quietly,
  track,
  reconnect,
  settle,
} from "./helpers.mjs";

afterEach(closeClients);

describe("Connecting (Snorky 0.1's constructor)", () => {
  it("creates a socket for the URL at once and is connecting", () => {
    const Socket = fakeSocketClass();
    const snorky = track(new Snorky(Socket, "ws://server/ws", { pubsub: Snorky.PubSub }));
    assert.equal(Socket.instances.length, 1);
    assert.equal(Socket.last().url, "ws://server/ws");
    assert.ok(snorky._socket instanceof Socket);
    assert.equal(snorky.isConnecting, true);
    assert.equal(snorky.isConnected, false);
    assert.equal(snorky.state, "connecting");
    assert.ok(snorky.services.pubsub instanceof Snorky.PubSub);
    assert.equal(snorky.services.pubsub.name, "pubsub");
    assert.equal(snorky.services.pubsub.snorky, snorky);
  });

  it("is connected when the socket opens, and dispatches connected", async () => {
    const { snorky, Socket } = fakeClient();
    const connected = next(snorky.connected);
    Socket.last().open();
    assert.deepEqual(await connected, [{ reconnected: false }]);
    assert.equal(snorky.isConnected, true);
    assert.equal(snorky.isConnecting, false);
    assert.equal(snorky.state, "connected");
  });

  it("accepts one options object", () => {
    const Socket = fakeSocketClass();
    const snorky = track(new Snorky({ url: "ws://server/ws", socket: Socket, services: { chat: Snorky.Chat }, rpcTimeout: 5 }));
    assert.equal(Socket.last().url, "ws://server/ws");
    assert.ok(snorky.services.chat instanceof Snorky.Chat);
    assert.equal(snorky.options.rpcTimeout, 5);
  });

  it("waits for connect() with autoConnect false", () => {
    const { snorky, Socket } = fakeClient({}, { autoConnect: false });
    assert.equal(Socket.instances.length, 0);
    assert.equal(snorky.state, "disconnected");
    snorky.connect();
    assert.equal(Socket.instances.length, 1);
  });

  it("resolves a relative URL against the page, with ws: or wss:", () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, "location");
    Object.defineProperty(globalThis, "location", { value: { href: "https://example.com/app/page" }, configurable: true });
    try {
      const Socket = fakeSocketClass();
      track(new Snorky(Socket, "/ws", {}));
      assert.equal(Socket.last().url, "wss://example.com/ws");
      const SockJS = fakeSocketClass();
      Object.defineProperty(SockJS, "name", { value: "SockJS" });
      track(new Snorky(SockJS, "/sockjs", {}));
      assert.equal(SockJS.last().url, "https://example.com/sockjs");
    } finally {
      if (saved) {
        Object.defineProperty(globalThis, "location", saved);
      } else {
        delete globalThis.location;
      }
    }
  });

  it("uses createSocket when given", () => {
    const Socket = fakeSocketClass();
    const urls = [];
    track(new Snorky(Socket, "ws://server/ws", {}, { createSocket: (url) => (urls.push(url), new Socket(url)) }));
    assert.deepEqual(urls, ["ws://server/ws"]);
  });
});

describe("Messages and calls", () => {
  it("queues messages until the socket opens, then sends envelopes", async () => {
    const { snorky, Socket } = fakeClient({ pubsub: Snorky.PubSub });
    quietly(snorky.services.pubsub.publish({ channel: "news", message: "hi" }));
    assert.equal(Socket.last().sent.length, 0);
    const socket = await openSocket(Socket);
    assert.equal(socket.sent.length, 1);
    const { service, message } = socket.sent[0];
    assert.equal(service, "pubsub");
    assert.equal(message.command, "publish");
    assert.deepEqual(message.params, { channel: "news", message: "hi" });
    assert.equal(typeof message.callId, "number");
  });

  it("resolves a call with the answer's data", async () => {
    const { snorky, Socket } = fakeClient();
    const socket = await openSocket(Socket);
    const answer = snorky.call("echo", "say", { text: "hi" });
    socket.answer(socket.sent[0], { said: "hi" });
    assert.deepEqual(await answer, { said: "hi" });
  });

  it("sends empty params for a call without them", async () => {
    const { snorky, Socket } = fakeClient({ messaging: Snorky.Messaging });
    const socket = await openSocket(Socket);
    quietly(snorky.services.messaging.listParticipants());
    assert.deepEqual(socket.sent[0].message.params, {});
  });

  it("rejects an error answer with the server's message and code", async () => {
    const { snorky, Socket } = fakeClient({ pubsub: Snorky.PubSub });
    const socket = await openSocket(Socket);
    const call = snorky.services.pubsub.unsubscribe({ channel: "c" });
    socket.fail(socket.sent[0], "Not subscribed", "not_subscribed");
    await assert.rejects(call, (error) => {
      assert.ok(error instanceof Snorky.SnorkyError);
      assert.ok(error instanceof Error);
      assert.equal(error.message, "Not subscribed");
      assert.equal(error.code, "not_subscribed");
      assert.equal(error.service, "pubsub");
      assert.equal(error.command, "unsubscribe");
      return true;
    });
  });

  it("takes an error sent with service null for its call", async () => {
    const { snorky, Socket } = fakeClient();
    const socket = await openSocket(Socket);
    const call = snorky.call("ghost", "boo");
    socket.receive(null, { type: "error", callId: socket.sent[0].message.callId, message: "Invalid message", code: "invalid_message" });
    await assert.rejects(call, { code: "invalid_message" });
  });

  it("ignores frames that are not JSON and answers nobody waits for", async () => {
    const { snorky, Socket } = fakeClient();
    const socket = await openSocket(Socket);
    socket.onmessage({ data: "}{" });
    socket.receive("pubsub", { type: "response", callId: 999, data: null });
    assert.equal(snorky.state, "connected");
  });

  it("rejects a call without an answer after its timeout", async () => {
    const { snorky, Socket } = fakeClient({}, { rpcTimeout: 5 });
    const socket = await openSocket(Socket);
    const call = snorky.call("slow", "work");
    await assert.rejects(call, (error) => {
      assert.equal(error.code, "timeout");
      assert.match(error.message, /no answer to slow\.work within 5 ms/);
      return true;
    });
    socket.answer(socket.sent[0], "too late"); // ignored
  });

  it("takes a timeout per call", async () => {
    const { snorky, Socket } = fakeClient({}, { rpcTimeout: 60000 });
    await openSocket(Socket);
    await assert.rejects(snorky.call("slow", "work", {}, { timeout: 3 }), { code: "timeout" });
  });

  it("dispatches every message of a service to packetReceived and notifications to notificationReceived", async () => {
    const { snorky, Socket } = fakeClient({ chat: Snorky.Chat });
    const socket = await openSocket(Socket);
    const packets = [];
    const notifications = [];
    snorky.services.chat.packetReceived.add((m) => packets.push(m));
    snorky.services.chat.notificationReceived.add((m) => notifications.push(m));
    socket.receive("chat", { type: "read", channel: "c", timestamp: "t" });
    assert.equal(packets.length, 1);
    assert.deepEqual(notifications, [{ type: "read", channel: "c", timestamp: "t" }]);
  });

  it("adds RPC methods, refusing to replace one", () => {
    class Calculator extends Snorky.RPCService {}
    Calculator.addRPCMethods(["sum"]);
    assert.equal(typeof Calculator.prototype.sum, "function");
    assert.throws(() => Calculator.addRPCMethods(["sum"]), /already has a method named "sum"/);
    assert.throws(() => Calculator.addRPCMethods(["sendMessage"]), /sendMessage/);
  });

  it("sends what a plain Service sends", async () => {
    const { snorky, Socket } = fakeClient({ raw: Snorky.Service });
    const socket = await openSocket(Socket);
    snorky.services.raw.sendMessage({ do: "something" });
    assert.deepEqual(socket.sent[0], { service: "raw", message: { do: "something" } });
  });
});

describe("Losing the connection", () => {
  it("rejects calls waiting for an answer, and sends queued ones on the next connection", async () => {
    const { snorky, Socket } = fakeClient();
    const first = await openSocket(Socket);
    const sent = snorky.call("svc", "first");
    first.serverClose(1006);
    await assert.rejects(sent, { code: "disconnected" });
    const queued = snorky.call("svc", "second");
    while (Socket.instances.length === 1) {
      await settle();
    }
    const second = await openSocket(Socket);
    assert.deepEqual(
      second.sent.map((e) => e.message.command),
      ["second"],
    );
    second.answer(second.sent[0], 2);
    assert.equal(await queued, 2);
  });

  it("goes through reconnecting to connected, and says it reconnected", async () => {
    const { snorky, Socket } = fakeClient();
    await openSocket(Socket);
    const states = [];
    snorky.stateChanged.add((state) => states.push(state));
    const disconnected = next(snorky.disconnected);
    const socket = await reconnect(snorky, Socket, 1001);
    assert.deepEqual(await disconnected, [{ code: 1001, reason: "", willReconnect: true }]);
    const connected = next(snorky.connected);
    const restored = next(snorky.restored);
    socket.open();
    assert.deepEqual(await connected, [{ reconnected: true }]);
    assert.deepEqual(await restored, [{ failures: [] }]);
    assert.deepEqual(states, ["reconnecting", "connected"]);
  });

  it("waits with exponential backoff and full jitter between attempts", async () => {
    const { snorky, Socket } = fakeClient({}, { backoff: { base: 4, max: 10 } });
    snorky._random = () => 0.5;
    await openSocket(Socket);
    const delays = [];
    snorky.reconnecting.add(({ delay }) => delays.push(delay));
    for (let i = 0; i < 4; i++) {
      await reconnect(snorky, Socket);
    }
    assert.deepEqual(delays, [2, 4, 5, 5]);
    Socket.last().open();
    await reconnect(snorky, Socket);
    assert.equal(delays.at(-1), 2); // An open connection starts the count again.
  });

  it("does not reconnect after disconnect(), and rejects every call", async () => {
    const { snorky, Socket } = fakeClient();
    const socket = await openSocket(Socket);
    const sent = snorky.call("svc", "a");
    const disconnected = next(snorky.disconnected);
    snorky.disconnect();
    assert.equal(socket.closedWith, 1000);
    await assert.rejects(sent, { code: "closed" });
    assert.deepEqual(await disconnected, [{ code: 1000, reason: "disconnect()", willReconnect: false }]);
    assert.equal(snorky.state, "disconnected");
    assert.equal(snorky.isConnected, false);
    assert.equal(snorky.isConnecting, false);
    await settle();
    assert.equal(Socket.instances.length, 1);
  });

  for (const code of [4004, 4003]) {
    it(`does not reconnect after close code ${code}`, async () => {
      const { snorky, Socket } = fakeClient();
      await openSocket(Socket);
      Socket.last().serverClose(code);
      await settle();
      assert.equal(Socket.instances.length, 1);
      assert.equal(snorky.state, "disconnected");
    });
  }

  it("reconnects at once after 1012 (a draining node), without growing the backoff", async () => {
    const { snorky, Socket } = fakeClient({}, { backoff: { base: 4, max: 10 } });
    snorky._random = () => 0.5;
    await openSocket(Socket);
    const delays = [];
    snorky.reconnecting.add(({ delay, attempt }) => delays.push([delay, attempt]));
    await reconnect(snorky, Socket); // 1006: a failure, counted
    await reconnect(snorky, Socket, 1012); // a drain: half of base, and not counted
    await reconnect(snorky, Socket, 1012);
    await reconnect(snorky, Socket); // the count goes on from where failures left it
    assert.deepEqual(delays, [
      [2, 1],
      [2, 1],
      [2, 1],
      [4, 2],
    ]);
  });

  for (const code of [1001, 1006, 1009, 1011, 1012, 4008]) {
    it(`reconnects after close code ${code}`, async () => {
      const { snorky, Socket } = fakeClient();
      await openSocket(Socket);
      await reconnect(snorky, Socket, code);
      assert.equal(Socket.instances.length, 2);
    });
  }

  it("gives up on a socket that does not open within connectTimeout, and tries again", async () => {
    const { snorky, Socket } = fakeClient({}, { connectTimeout: 5 });
    const [{ attempt }] = await next(snorky.reconnecting);
    assert.equal(attempt, 1);
    assert.equal(Socket.instances[0].closedWith, 1000);
    while (Socket.instances.length < 2) {
      await settle();
    }
    assert.equal(Socket.instances[0].onclose, null); // A late close of the old socket goes nowhere.
  });

  it("does not reconnect with reconnect: false", async () => {
    const { snorky, Socket } = fakeClient({}, { reconnect: false });
    await openSocket(Socket);
    Socket.last().serverClose(1006);
    await settle();
    assert.equal(snorky.state, "disconnected");
    assert.equal(Socket.instances.length, 1);
  });

  it("tries at once on connect() while waiting to reconnect", async () => {
    const { snorky, Socket } = fakeClient({}, { backoff: { base: 60000, max: 60000 } });
    snorky._random = () => 0.99;
    await openSocket(Socket);
    Socket.last().serverClose(1006);
    assert.equal(snorky.state, "reconnecting");
    snorky.connect();
    assert.equal(Socket.instances.length, 2);
    snorky.disconnect();
  });

  it("holds the app's calls until the services restored their state", async () => {
    const { snorky, Socket } = fakeClient({ chat: Snorky.Chat });
    const chat = snorky.services.chat;
    let socket = await openSocket(Socket);
    const joined = chat.join({ channel: "lobby" });
    socket.answer(socket.sent[0], { members: ["alice"], presence: [{ identity: "alice", info: null }] });
    await joined;
    socket = await reconnect(snorky, Socket);
    quietly(chat.send({ channel: "lobby", body: "back" }));
    socket.open();
    await settle();
    assert.deepEqual(
      socket.sent.map((e) => e.message.command),
      ["join"],
    );
    socket.answer(socket.sent[0], { members: ["alice"], presence: [{ identity: "alice", info: null }] });
    await settle();
    assert.deepEqual(
      socket.sent.map((e) => e.message.command),
      ["join", "send"],
    );
  });
});

describe("Tokens", () => {
  it("puts the token in the URL", () => {
    const Socket = fakeSocketClass();
    track(new Snorky(Socket, "ws://server/ws?x=1", {}, { token: "a b" }));
    assert.equal(Socket.last().url, "ws://server/ws?x=1&token=a%20b");
  });

  it("knows its identity from the token", async () => {
    const token = fakeToken({ sub: "alice", info: { name: "Alice" }, exp: Date.now() / 1000 + 3600 });
    const { snorky, Socket } = fakeClient({}, { token });
    await openSocket(Socket);
    assert.equal(snorky.identity, "alice");
    assert.deepEqual(snorky.userInfo, { name: "Alice" });
  });

  it("asks getToken for a token before connecting without one", async () => {
    const token = fakeToken({ sub: "bob", exp: Date.now() / 1000 + 3600 });
    const { Socket } = fakeClient({}, { getToken: async () => token });
    assert.equal(Socket.instances.length, 0);
    await settle();
    assert.equal(Socket.last().url, `ws://server/ws?token=${token}`);
  });

  it("gets a fresh token after the server refuses one (4001, 4002)", async () => {
    const tokens = ["first", "second", "third"];
    const { snorky, Socket } = fakeClient({}, { getToken: () => tokens.shift() });
    await settle();
    assert.match(Socket.last().url, /token=first$/);
    const errors = [];
    snorky.error.add((error) => errors.push(error.code));
    await openSocket(Socket);
    await reconnect(snorky, Socket, 4001);
    assert.match(Socket.last().url, /token=second$/);
    await openSocket(Socket);
    await reconnect(snorky, Socket, 4002);
    assert.match(Socket.last().url, /token=third$/);
    assert.deepEqual(errors, ["invalid_token", "token_expired"]);
  });

  it("gives up after a refused token when it cannot get another", async () => {
    const { snorky, Socket } = fakeClient({}, { token: "bad" });
    const errors = [];
    snorky.error.add((error) => errors.push(error.code));
    await openSocket(Socket);
    const disconnected = next(snorky.disconnected);
    Socket.last().serverClose(4001, "invalid token");
    assert.deepEqual(await disconnected, [{ code: 4001, reason: "invalid token", willReconnect: false }]);
    assert.equal(snorky.state, "disconnected");
    assert.deepEqual(errors, ["invalid_token"]);
  });

  it("retries with backoff when getToken fails", async () => {
    let calls = 0;
    const { snorky, Socket } = fakeClient(
      {},
      {
        getToken: async () => {
          calls++;
          if (calls === 1) {
            throw new Error("offline");
          }
          return "ok";
        },
      },
    );
    const [error] = await next(snorky.error);
    assert.equal(error.code, "token_unavailable");
    while (Socket.instances.length === 0) {
      await settle();
    }
    assert.match(Socket.last().url, /token=ok$/);
  });

  it("authenticates with a message first when tokenTransport is message", async () => {
    const token = fakeToken({ sub: "carol", exp: Date.now() / 1000 + 3600 });
    const { snorky, Socket } = fakeClient({}, { token, tokenTransport: "message" });
    assert.equal(Socket.last().url, "ws://server/ws");
    quietly(snorky.call("svc", "later"));
    const socket = await openSocket(Socket);
    assert.deepEqual(socket.sent[0].service, "auth");
    assert.deepEqual(socket.sent[0].message.command, "authenticate");
    assert.deepEqual(socket.sent[0].message.params, { token });
    assert.equal(socket.sent.length, 1);
    socket.answer(socket.sent[0], { identity: "carol", info: null, expiresAt: 2000000000 });
    await settle();
    assert.equal(snorky.identity, "carol");
    assert.deepEqual(
      socket.sent.map((e) => e.message.command),
      ["authenticate", "later"],
    );
  });

  it("authenticate() sends the token and keeps it for the next connections", async () => {
    const { snorky, Socket } = fakeClient();
    const socket = await openSocket(Socket);
    const answer = snorky.authenticate("tok");
    assert.deepEqual(socket.sent[0].message, { command: "authenticate", params: { token: "tok" }, callId: socket.sent[0].message.callId });
    socket.answer(socket.sent[0], { identity: "dave", info: { name: "Dave" }, expiresAt: 1 });
    assert.equal((await answer).identity, "dave");
    assert.equal(snorky.identity, "dave");
    await reconnect(snorky, Socket);
    assert.match(Socket.last().url, /token=tok$/);
  });

  it("refreshes the token with getToken before it expires", async () => {
    const now = Date.now() / 1000;
    const first = fakeToken({ sub: "erin", iat: now - 100, exp: now + 2 });
    const second = fakeToken({ sub: "erin", iat: now, exp: now + 3600 });
    const { snorky, Socket } = fakeClient({}, { token: first, getToken: async () => second });
    const socket = await openSocket(Socket);
    while (socket.calls("refresh", "auth").length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const [refresh] = socket.calls("refresh", "auth");
    assert.deepEqual(refresh.message.params, { token: second });
    socket.answer(refresh, { identity: "erin", info: null, expiresAt: now + 3600 });
    await settle();
    assert.equal(snorky.token, second);
    snorky.disconnect();
  });
});
