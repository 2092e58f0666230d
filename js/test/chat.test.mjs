import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import Snorky from "../src/index.js";
import { closeClients, fakeClient, openSocket, reconnect, settle } from "./helpers.mjs";

afterEach(closeClients);

const answer = (...names) => ({
  members: names,
  presence: names.map((identity) => ({ identity, info: { name: identity.toUpperCase() } })),
});

async function joined() {
  const { snorky, Socket } = fakeClient({ chat: Snorky.Chat });
  const chat = snorky.services.chat;
  const socket = await openSocket(Socket);
  const done = chat.join({ channel: "lobby" });
  socket.answer(socket.sent[0], answer("alice", "bob"));
  await done;
  return { snorky, Socket, chat, socket };
}

describe("Chat", () => {
  it("joins and knows the members", async () => {
    const { chat } = await joined();
    assert.deepEqual(chat.getMembers("lobby"), [
      { identity: "alice", info: { name: "ALICE" } },
      { identity: "bob", info: { name: "BOB" } },
    ]);
  });

  it("dispatches messages, presence and read receipts (Snorky 0.1's signals)", async () => {
    const { chat, socket } = await joined();
    const seen = [];
    chat.messageReceived.add((m) => seen.push(["message", m.body]));
    chat.presenceReceived.add((m) => seen.push(["presence", m.from, m.status]));
    chat.readReceived.add((m) => seen.push(["read", m.channel]));
    socket.receive("chat", { type: "message", from: "bob", channel: "lobby", body: "hi", timestamp: "t" });
    socket.receive("chat", { type: "presence", from: "carol", channel: "lobby", status: "joined", timestamp: "t", info: null });
    socket.receive("chat", { type: "read", channel: "lobby", timestamp: "t" });
    assert.deepEqual(seen, [
      ["message", "hi"],
      ["presence", "carol", "joined"],
      ["read", "lobby"],
    ]);
  });

  it("dispatches gap for a joined channel whose messages were lost", async () => {
    const { chat, socket } = await joined();
    const gaps = [];
    chat.gap.add((g) => gaps.push(g));
    socket.receive("chat", { type: "gap", channel: "lobby", missed: 2 });
    socket.receive("chat", { type: "gap", channel: "elsewhere", missed: 1 }); // not joined: ignored
    assert.deepEqual(gaps, [{ type: "gap", channel: "lobby", missed: 2 }]);
    assert.deepEqual(chat.getMembers("lobby").length, 2);
  });

  it("keeps the member list up to date with presence", async () => {
    const { chat, socket } = await joined();
    const changes = [];
    chat.membersChanged.add((channel, members) => changes.push(members.map((m) => m.identity)));
    socket.receive("chat", { type: "presence", from: "carol", channel: "lobby", status: "joined", timestamp: "t", info: null });
    socket.receive("chat", { type: "presence", from: "alice", channel: "lobby", status: "left", timestamp: "t", info: null });
    assert.deepEqual(changes, [
      ["alice", "bob", "carol"],
      ["bob", "carol"],
    ]);
  });

  it("sends, reads and leaves", async () => {
    const { chat, socket } = await joined();
    chat.send({ channel: "lobby", body: "hello" });
    chat.read({ channel: "lobby" });
    chat.leave({ channel: "lobby" });
    assert.deepEqual(
      socket.sent.slice(1).map((e) => [e.message.command, e.message.params]),
      [
        ["send", { channel: "lobby", body: "hello" }],
        ["read", { channel: "lobby" }],
        ["leave", { channel: "lobby" }],
      ],
    );
    for (const call of socket.sent.slice(1)) {
      socket.answer(call, null);
    }
    assert.deepEqual(chat.getMembers("lobby"), []);
  });

  it("joins again after a reconnection, with the new member list", async () => {
    const { snorky, Socket, chat } = await joined();
    const restores = [];
    chat.restored.add((r) => restores.push(r));
    const socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    assert.deepEqual(socket.sent[0].message.params, { channel: "lobby" });
    socket.answer(socket.sent[0], answer("bob"));
    await settle();
    assert.deepEqual(
      chat.getMembers("lobby").map((m) => m.identity),
      ["bob"],
    );
    assert.deepEqual(restores, [{ channel: "lobby", answer: answer("bob") }]);
  });
});
