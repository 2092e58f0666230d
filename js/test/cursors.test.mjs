import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import Snorky from "../src/index.js";
import { closeClients, fakeClient, openSocket, reconnect, settle } from "./helpers.mjs";

afterEach(closeClients);

const { Cursor, ForeignCursor, OwnCursor, Document } = Snorky.Cursors;
const foreign = (publicHandle, position, owner = "bob") => ({ publicHandle, document: "Sheet1", position, status: "read", owner });

async function joined() {
  const { snorky, Socket } = fakeClient({ cursors: Snorky.Cursors });
  const cursors = snorky.services.cursors;
  const socket = await openSocket(Socket);
  const done = cursors.join({ document: "Sheet1" });
  socket.answer(socket.sent[0], { cursors: [foreign(1, 12)] });
  const document = await done;
  return { snorky, Socket, cursors, socket, document };
}

describe("Cursors (Snorky 0.1's API)", () => {
  it("joins a document holding the cursors already there", async () => {
    const { cursors, socket, document } = await joined();
    assert.deepEqual(socket.sent[0].message.params, { document: "Sheet1" });
    assert.ok(document instanceof Document);
    assert.equal(document.service, cursors);
    assert.equal(document.name, "Sheet1");
    const [cursor] = document.cursors;
    assert.ok(cursor instanceof Cursor && cursor instanceof ForeignCursor);
    assert.equal(cursor.position, 12);
    assert.equal(cursor.owner, "bob");
    assert.equal(cursor.document, document);
    assert.equal(cursor.isMine, false);
  });

  it("creates a cursor at once, and learns its public handle from the answer", async () => {
    const { cursors, socket, document } = await joined();
    const [cursor, promise] = document.createCursor({ position: 23, status: "read" });
    assert.ok(cursor instanceof OwnCursor);
    assert.equal(cursor.isMine, true);
    assert.equal(cursor.removed, false);
    assert.equal(cursor.publicHandle, undefined);
    assert.equal(cursor.pendingPromiseCount, 1);
    assert.equal(cursor.isSynchronized(), false);
    assert.equal(cursors.ownCursors[cursor.privateHandle], cursor);
    assert.equal(document.cursors[1], cursor);
    assert.deepEqual(socket.sent[1].message.params, {
      privateHandle: cursor.privateHandle,
      document: "Sheet1",
      position: 23,
      status: "read",
    });
    socket.answer(socket.sent[1], 50);
    assert.equal(await promise, undefined);
    assert.equal(cursor.publicHandle, 50);
    assert.equal(cursor.isSynchronized(), true);
  });

  it("updates a cursor at once, and makes no call when nothing changes", async () => {
    const { socket, document } = await joined();
    const [cursor] = document.createCursor({ position: 23, status: "read" });
    socket.answer(socket.sent[1], 50);
    await settle();
    const promise = cursor.update({ position: 24 });
    assert.equal(cursor.position, 24);
    assert.equal(cursor.status, "read");
    assert.equal(cursor.pendingPromiseCount, 1);
    assert.deepEqual(socket.sent[2].message.params, { privateHandle: cursor.privateHandle, newData: { position: 24 } });
    socket.answer(socket.sent[2], null);
    await promise;
    assert.equal(cursor.pendingPromiseCount, 0);
    await cursor.update({ position: 24, status: "read" });
    await cursor.update({});
    assert.equal(socket.sent.length, 3);
    assert.throws(() => cursor.update({ owner: "me" }), /no "owner" to update/);
  });

  it("removes a cursor at once", async () => {
    const { cursors, socket, document } = await joined();
    const [cursor] = document.createCursor({ position: 23, status: "read" });
    socket.answer(socket.sent[1], 50);
    const promise = cursor.remove();
    assert.equal(cursor.removed, true);
    assert.equal(cursors.ownCursors[cursor.privateHandle], undefined);
    assert.equal(document.cursors.length, 1);
    assert.deepEqual(socket.sent[2].message.params, { privateHandle: cursor.privateHandle });
    socket.answer(socket.sent[2], null);
    await promise;
    assert.equal(cursor.pendingPromiseCount, 0);
  });

  it("follows the others' cursors", async () => {
    const { socket, document } = await joined();
    const seen = [];
    document.cursorAdded.add((c) => seen.push(["added", c.publicHandle, c.position]));
    document.cursorUpdated.add((c) => seen.push(["updated", c.publicHandle, c.position]));
    document.cursorRemoved.add((c) => seen.push(["removed", c.publicHandle]));
    socket.receive("cursors", { type: "cursorAdded", cursor: foreign(2, 5, "carol") });
    socket.receive("cursors", { type: "cursorUpdated", cursor: foreign(1, 13) });
    socket.receive("cursors", { type: "cursorRemoved", cursor: { publicHandle: 2, document: "Sheet1" } });
    socket.receive("cursors", { type: "cursorAdded", cursor: { ...foreign(3, 0), document: "Other" } });
    assert.deepEqual(seen, [
      ["added", 2, 5],
      ["updated", 1, 13],
      ["removed", 2],
    ]);
    assert.deepEqual(
      document.foreignCursors().map((c) => [c.publicHandle, c.position]),
      [[1, 13]],
    );
  });

  it("matches documents by value, whatever the key order", async () => {
    const { snorky, Socket } = fakeClient({ cursors: Snorky.Cursors });
    const socket = await openSocket(Socket);
    const done = snorky.services.cursors.join({ document: { sheet: 1, book: "a" } });
    socket.answer(socket.sent[0], { cursors: [] });
    const document = await done;
    const added = [];
    document.cursorAdded.add((c) => added.push(c.publicHandle));
    socket.receive("cursors", { type: "cursorAdded", cursor: { ...foreign(9, 0), document: { book: "a", sheet: 1 } } });
    assert.deepEqual(added, [9]);
  });

  it("after a reconnection, joins again, brings the others up to date and recreates its own cursors", async () => {
    const { snorky, Socket, cursors, socket: first, document } = await joined();
    const [mine] = document.createCursor({ position: 7, status: "typing" });
    first.answer(first.sent[1], 50);
    await settle();
    mine.update({ position: 8 });
    first.answer(first.sent[2], null);
    const seen = [];
    document.cursorRemoved.add((c) => seen.push(["removed", c.publicHandle]));
    document.cursorAdded.add((c) => seen.push(["added", c.publicHandle]));
    const restores = [];
    cursors.restored.add((r) => restores.push(r));
    const socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    assert.deepEqual(socket.sent[0].message.params, { document: "Sheet1" });
    socket.answer(socket.sent[0], { cursors: [foreign(4, 1, "dave")] });
    await settle();
    assert.deepEqual(socket.sent[1].message.params, {
      privateHandle: mine.privateHandle,
      document: "Sheet1",
      position: 8,
      status: "typing",
    });
    socket.answer(socket.sent[1], 77);
    await settle();
    assert.equal(mine.publicHandle, 77);
    assert.deepEqual(seen, [
      ["removed", 1],
      ["added", 4],
    ]);
    assert.deepEqual(restores, [{ document }]);
  });

  it("leaves a document, forgetting its own cursors there", async () => {
    const { cursors, socket, document } = await joined();
    const [mine] = document.createCursor({ position: 1 });
    socket.answer(socket.sent[1], 50);
    const done = document.leave();
    socket.answer(socket.sent[2], null);
    await done;
    assert.equal(mine.removed, true);
    assert.deepEqual(cursors.documents, {});
    assert.deepEqual(cursors.ownCursors, {});
  });
});
