import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import Snorky from "../src/index.js";
import { closeClients, fakeClient, openSocket, reconnect, settle } from "./helpers.mjs";

afterEach(closeClients);

describe("Messaging", () => {
  it("registers, sends, and dispatches messageReceived", async () => {
    const { snorky, Socket } = fakeClient({ messaging: Snorky.Messaging });
    const messaging = snorky.services.messaging;
    const socket = await openSocket(Socket);
    const registered = messaging.registerParticipant({ name: "alice" });
    socket.answer(socket.sent[0], null);
    await registered;
    messaging.send({ sender: "alice", dest: "bob", body: "Hello" });
    assert.deepEqual(socket.sent[1].message.params, { sender: "alice", dest: "bob", body: "Hello" });
    socket.answer(socket.sent[1], null);
    const received = [];
    messaging.messageReceived.add((m) => received.push(m));
    socket.receive("messaging", { type: "message", sender: "bob", dest: "alice", body: "Hi, Alice" });
    assert.deepEqual(received, [{ type: "message", sender: "bob", dest: "alice", body: "Hi, Alice" }]);
  });

  it("registers its names again after a reconnection, and tells when one was taken", async () => {
    const { snorky, Socket } = fakeClient({ messaging: Snorky.Messaging });
    const messaging = snorky.services.messaging;
    let socket = await openSocket(Socket);
    for (const name of ["alice", "support"]) {
      const done = messaging.registerParticipant({ name });
      socket.answer(socket.sent.at(-1), null);
      await done;
    }
    const restores = [];
    messaging.restored.add((r) => restores.push(r));
    socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    const calls = socket.calls("registerParticipant");
    assert.deepEqual(
      calls.map((c) => c.message.params.name),
      ["alice", "support"],
    );
    socket.answer(calls[0], null);
    socket.fail(calls[1], "Name already registered", "name_taken");
    await settle();
    assert.deepEqual(restores[0], { name: "alice" });
    assert.equal(restores[1].error.code, "name_taken");
    assert.deepEqual([...messaging.names.values()], ["alice"]);
  });
});
