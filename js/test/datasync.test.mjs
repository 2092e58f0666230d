import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import Snorky from "../src/index.js";
import { closeClients, fakeClient, openSocket, reconnect, settle } from "./helpers.mjs";

afterEach(closeClients);

const { ArrayCollection, Collection, CollectionDeltaProcessor, SingleItemCollection } = Snorky.DataSync;

describe("ArrayCollection (Snorky 0.1's API)", () => {
  it("appends insertions, transformed", () => {
    const array = [];
    const collection = new ArrayCollection(array, { transformItem: (item) => ({ ...item, shown: true }) });
    assert.ok(collection instanceof Collection);
    collection.insert({ id: 1 });
    assert.deepEqual(array, [{ id: 1, shown: true }]);
  });

  it("walks, updates and removes through its iterator", () => {
    const array = ["red", "blue"];
    const iterator = new ArrayCollection(array).getIterator();
    assert.throws(() => iterator.update("x"), /no current item/);
    assert.throws(() => iterator.remove(), /no current item/);
    assert.equal(iterator.next(), "red");
    iterator.update("black");
    iterator.remove();
    assert.throws(() => iterator.remove(), /was removed/);
    assert.throws(() => iterator.update("x"), /was removed/);
    assert.equal(iterator.hasNext(), true);
    assert.equal(iterator.next(), "blue");
    assert.equal(iterator.hasNext(), false);
    assert.throws(() => iterator.next(), /no more items/);
    assert.deepEqual(array, ["blue"]);
  });
});

describe("SingleItemCollection", () => {
  it("reads, updates and removes its item through the handlers", () => {
    let value = "red";
    let removed = false;
    const collection = new SingleItemCollection(
      () => value,
      (item) => {
        value = item;
      },
      () => {
        removed = true;
      },
    );
    const iterator = collection.getIterator();
    assert.throws(() => iterator.update("x"), /no current item/);
    assert.equal(iterator.next(), "red");
    assert.equal(iterator.hasNext(), false);
    iterator.update("black");
    iterator.remove();
    assert.equal(value, "black");
    assert.equal(removed, true);
  });
});

describe("CollectionDeltaProcessor", () => {
  const players = () => [{ id: 1, name: "Alice", color: "red" }];

  it("applies insertions, updates and deletions by id", () => {
    const array = players();
    const processor = new CollectionDeltaProcessor({ Player: new ArrayCollection(array) });
    processor.processDelta({ type: "insert", model: "Player", data: { id: 2, name: "Ted", color: "black" } });
    processor.processDelta({
      type: "update",
      model: "Player",
      oldData: { id: 1, name: "Alice", color: "red" },
      newData: { id: 1, name: "Alice", color: "blue" },
    });
    processor.processDelta({ type: "delete", model: "Player", data: { id: 2, name: "Ted", color: "black" } });
    assert.deepEqual(array, [{ id: 1, name: "Alice", color: "blue" }]);
  });

  it("routes tagged deltas to their view", () => {
    const blue = [];
    const processor = new CollectionDeltaProcessor({ Player: { bluePlayers: new ArrayCollection(blue) } });
    processor.processDelta({ type: "insert", model: "Player", tag: "bluePlayers", data: { id: 2, color: "blue" } });
    assert.deepEqual(blue, [{ id: 2, color: "blue" }]);
  });

  it("updates instead of doubling an item inserted twice", () => {
    const array = players();
    const processor = new CollectionDeltaProcessor({ Player: new ArrayCollection(array) });
    processor.processDelta({ type: "insert", model: "Player", data: { id: 1, name: "Alice", color: "green" } });
    assert.deepEqual(array, [{ id: 1, name: "Alice", color: "green" }]);
  });

  it("compares items with itemsAreEqual", () => {
    const array = [{ key: "a", n: 1 }];
    const processor = new CollectionDeltaProcessor(
      { Row: new ArrayCollection(array) },
      { itemsAreEqual: (item, other) => item.key === other.key },
    );
    processor.processDelta({ type: "delete", model: "Row", data: { key: "a" } });
    assert.deepEqual(array, []);
  });

  it("ignores, with an error on the console, deltas it has no collection for", (t) => {
    const errors = t.mock.method(console, "error", () => {});
    const processor = new CollectionDeltaProcessor({ Player: { red: new ArrayCollection([]) } });
    processor.processDelta({ type: "insert", model: "Team", data: { id: 1 } });
    processor.processDelta({ type: "insert", model: "Player", tag: "blue", data: { id: 1 } });
    processor.processDelta({ type: "upsert", model: "Player", tag: "red", data: { id: 1 } });
    assert.equal(errors.mock.callCount(), 3);
  });
});

describe("DataSync", () => {
  it("has Snorky 0.1's commands and dispatches deltaReceived", async () => {
    const { snorky, Socket } = fakeClient({ datasync: Snorky.DataSync });
    const datasync = snorky.services.datasync;
    const socket = await openSocket(Socket);
    datasync.acquireSubscription({ token: "tok" });
    assert.deepEqual(socket.sent[0].message, { command: "acquireSubscription", params: { token: "tok" }, callId: socket.sent[0].message.callId });
    socket.answer(socket.sent[0], null);
    const deltas = [];
    datasync.deltaReceived.add((delta) => deltas.push(delta));
    socket.receive("datasync", { type: "delta", delta: { type: "insert", model: "Task", data: { id: 1 } } });
    assert.deepEqual(deltas, [{ type: "insert", model: "Task", data: { id: 1 } }]);
  });

  it("acquires a subscription with a fresh token from getToken after a reconnection", async () => {
    const { snorky, Socket } = fakeClient({ datasync: Snorky.DataSync });
    const datasync = snorky.services.datasync;
    let socket = await openSocket(Socket);
    const tokens = ["second"];
    const done = datasync.subscribe({ token: "first", getToken: async () => tokens.shift() });
    socket.answer(socket.sent[0], null);
    const subscription = await done;
    assert.equal(subscription.token, "first");
    assert.equal(subscription.active, true);
    const restores = [];
    datasync.restored.add((r) => restores.push(r));
    socket = await reconnect(snorky, Socket);
    assert.equal(subscription.active, false);
    socket.open();
    await settle();
    await settle();
    assert.deepEqual(socket.sent[0].message.params, { token: "second" });
    socket.answer(socket.sent[0], null);
    await settle();
    assert.equal(subscription.token, "second");
    assert.equal(subscription.active, true);
    assert.deepEqual(restores, [{ subscription }]);
  });

  it("gets its first token from getToken, and cancels", async () => {
    const { snorky, Socket } = fakeClient({ datasync: Snorky.DataSync });
    const datasync = snorky.services.datasync;
    const socket = await openSocket(Socket);
    const done = datasync.subscribe({ getToken: () => "only" });
    await settle();
    socket.answer(socket.sent[0], null);
    const subscription = await done;
    const cancelled = subscription.cancel();
    assert.deepEqual(socket.sent[1].message.params, { token: "only" });
    socket.answer(socket.sent[1], null);
    await cancelled;
    assert.equal(datasync.subscriptions.size, 0);
  });

  it("refuses a subscription without token nor getToken", async () => {
    const { snorky } = fakeClient({ datasync: Snorky.DataSync });
    await assert.rejects(snorky.services.datasync.subscribe({}), TypeError);
  });
});
