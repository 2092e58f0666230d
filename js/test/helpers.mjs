// Test doubles and waiting helpers for the client's unit tests.

import Snorky from "../src/index.js";

/**
 * A class of fake sockets with its own list of instances. Tests play the
 * server: `open()`, `receive()`, `answer()`, `serverClose()`.
 */
export function fakeSocketClass() {
  class FakeSocket {
    constructor(url) {
      this.url = url;
      /** Decoded envelopes the client sent. */
      this.sent = [];
      this.closedWith = null;
      FakeSocket.instances.push(this);
    }

    send(raw) {
      this.sent.push(JSON.parse(raw));
    }

    close(code) {
      this.closedWith = code ?? 1000;
    }

    open() {
      this.onopen();
    }

    receive(service, message) {
      this.onmessage({ data: JSON.stringify({ service, message }) });
    }

    /** Answer the call the client sent with `callId`. */
    answer(envelope, data) {
      this.receive(envelope.service, { type: "response", callId: envelope.message.callId, data });
    }

    fail(envelope, message, code) {
      this.receive(envelope.service, { type: "error", callId: envelope.message.callId, message, code });
    }

    serverClose(code = 1006, reason = "") {
      this.onclose({ code, reason });
    }

    /** The calls sent so far of `command` (optionally to `service`). */
    calls(command, service) {
      return this.sent.filter(
        (e) => e.message?.command === command && (service === undefined || e.service === service),
      );
    }
  }
  FakeSocket.instances = [];
  FakeSocket.last = () => FakeSocket.instances[FakeSocket.instances.length - 1];
  return FakeSocket;
}

/** Let pending promise callbacks and zero-delay timers run. */
export function settle() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Resolve with the arguments of the next dispatch of `signal`. */
export function next(signal) {
  return new Promise((resolve) => signal.addOnce((...args) => resolve(args)));
}

/**
 * A client on fake sockets that reconnects at once: `{snorky, Socket}`.
 * @param {Record<string, any>} services
 * @param {Record<string, any>} options
 */
export function fakeClient(services = {}, options = {}) {
  const Socket = fakeSocketClass();
  const snorky = new Snorky(Socket, "ws://server/ws", services, { backoff: { base: 1, max: 1 }, ...options });
  clients.push(snorky);
  return { snorky, Socket };
}

const clients = [];

/** Have `closeClients` disconnect a client a test made itself; returns it. */
export function track(snorky) {
  clients.push(snorky);
  return snorky;
}

/** Disconnect every client `fakeClient` made (for `afterEach`), so that no timer outlives its test. */
export function closeClients() {
  for (const snorky of clients.splice(0)) {
    snorky.disconnect();
  }
}

/** Mark a promise as handled: for calls whose result a test does not need. */
export function quietly(promise) {
  promise.catch(() => {});
  return promise;
}

/** Open the client's current socket and let the session start. */
export async function openSocket(Socket) {
  Socket.last().open();
  await settle();
  return Socket.last();
}

/** Drop the connection and wait until the client opened a new socket. */
export async function reconnect(snorky, Socket, code = 1006) {
  const count = Socket.instances.length;
  Socket.last().serverClose(code);
  while (Socket.instances.length === count) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return Socket.last();
}

/** An unsigned JWT with these claims (the client reads claims, never signatures). */
export function fakeToken(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}.signature`;
}
