import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import Snorky from "../src/index.js";
import { closeClients, fakeClient, openSocket, reconnect, settle } from "./helpers.mjs";

afterEach(closeClients);

const message = (channel, text, offset, epoch = "e1") => ({ type: "message", channel, message: text, offset, epoch });

/** A connected client subscribed to `channel`, whose answer was `answer`. */
async function subscribed(channel, answer) {
  const { snorky, Socket } = fakeClient({ pubsub: Snorky.PubSub });
  const pubsub = snorky.services.pubsub;
  const socket = await openSocket(Socket);
  const received = [];
  const restores = [];
  pubsub.messagePublished.add((m) => received.push(m.message));
  pubsub.restored.add((r) => restores.push(r));
  const done = pubsub.subscribe({ channel });
  socket.answer(socket.sent[0], answer);
  assert.deepEqual(await done, answer);
  return { snorky, Socket, pubsub, socket, received, restores };
}

describe("PubSub", () => {
  it("subscribes and dispatches messagePublished (Snorky 0.1)", async () => {
    const { socket, received } = await subscribed("news", null);
    // position: true asks for the stream position of a channel with history (a 0.1 server never had one).
    assert.deepEqual(socket.sent[0].message.params, { position: true, channel: "news" });
    socket.receive("pubsub", { type: "message", channel: "news", message: "hello" });
    assert.deepEqual(received, ["hello"]);
  });

  it("publishes", async () => {
    const { pubsub, socket } = await subscribed("news", null);
    const done = pubsub.publish({ channel: "news", message: { title: "Hi" } });
    const [, call] = socket.sent;
    assert.equal(call.message.command, "publish");
    assert.deepEqual(call.message.params, { channel: "news", message: { title: "Hi" } });
    socket.answer(call, null);
    assert.equal(await done, null);
  });

  it("drops a message whose offset is not above the last one seen", async () => {
    const { socket, received } = await subscribed("news", { offset: 3, epoch: "e1" });
    socket.receive("pubsub", message("news", "old", 3));
    socket.receive("pubsub", message("news", "four", 4));
    socket.receive("pubsub", message("news", "four again", 4));
    socket.receive("pubsub", message("news", "five", 5));
    assert.deepEqual(received, ["four", "five"]);
  });

  it("resubscribes after a reconnection with the last position and delivers what was missed", async () => {
    const { snorky, Socket, socket: first, received, restores } = await subscribed("news", { offset: 3, epoch: "e1" });
    first.receive("pubsub", message("news", "four", 4));
    const socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    const [call] = socket.sent;
    assert.deepEqual(call.message.params, { channel: "news", position: true, recover: { offset: 4, epoch: "e1" } });
    // A live message overtakes the answer: it waits for the missed ones.
    socket.receive("pubsub", message("news", "seven", 7));
    socket.answer(call, {
      offset: 6,
      epoch: "e1",
      recovered: true,
      publications: [message("news", "five", 5), message("news", "six", 6)],
    });
    await settle();
    socket.receive("pubsub", message("news", "seven", 7)); // The same one through another path.
    assert.deepEqual(received, ["four", "five", "six", "seven"]);
    assert.deepEqual(restores, [{ channel: "news", recovered: true, history: true, missed: 2 }]);
  });

  it("says when the gap could not be filled, and follows the new stream", async () => {
    const { snorky, Socket, received, restores } = await subscribed("news", { offset: 3, epoch: "e1" });
    const socket = await reconnect(snorky, Socket, 1001);
    socket.open();
    await settle();
    socket.answer(socket.sent[0], { offset: 1, epoch: "e2", recovered: false, publications: [] });
    await settle();
    socket.receive("pubsub", message("news", "fresh", 2, "e2"));
    assert.deepEqual(received, ["fresh"]);
    assert.deepEqual(restores, [{ channel: "news", recovered: false, history: true, missed: 0 }]);
  });

  it("resubscribes to a channel without history, which cannot say the gap was filled", async () => {
    const { snorky, Socket, restores } = await subscribed({ room: 5 }, null);
    const socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    assert.deepEqual(socket.sent[0].message.params, { channel: { room: 5 }, position: true });
    socket.answer(socket.sent[0], null);
    await settle();
    assert.deepEqual(restores, [{ channel: { room: 5 }, recovered: false, history: false, missed: 0 }]);
  });

  it("forgets a channel it unsubscribed from", async () => {
    const { snorky, Socket, pubsub, socket: first } = await subscribed("news", null);
    const done = pubsub.unsubscribe({ channel: "news" });
    first.answer(first.sent[1], null);
    await done;
    assert.deepEqual(pubsub.channels(), []);
    const socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    assert.equal(socket.sent.length, 0);
  });

  it("dispatches gap when the server says messages of a subscribed channel were lost", async () => {
    const { pubsub, socket, received } = await subscribed("news", { offset: 3, epoch: "e1" });
    const gaps = [];
    pubsub.gap.add((g) => gaps.push(g));
    socket.receive("pubsub", { type: "gap", channel: "news", missed: 4 });
    socket.receive("pubsub", { type: "gap", channel: "sports", missed: 1 }); // not followed: ignored
    socket.receive("pubsub", message("news", "eight", 8));
    assert.deepEqual(gaps, [{ type: "gap", channel: "news", missed: 4 }]);
    assert.deepEqual(received, ["eight"]); // the subscription goes on
    assert.deepEqual(pubsub.channels(), ["news"]);
  });

  it("drops a subscription the server refuses on restore, and says why", async () => {
    const { snorky, Socket, pubsub, restores } = await subscribed("news", null);
    const errors = [];
    snorky.error.add((e) => errors.push(e.code));
    const socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    socket.fail(socket.sent[0], "Not authorized", "forbidden");
    await settle();
    assert.equal(restores[0].error.code, "forbidden");
    assert.deepEqual(pubsub.channels(), []);
    assert.deepEqual(errors, ["forbidden"]);
  });
});
