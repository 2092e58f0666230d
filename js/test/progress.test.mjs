import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import Snorky from "../src/index.js";
import { closeClients, fakeClient, openSocket, reconnect, settle } from "./helpers.mjs";

afterEach(closeClients);

const init = { type: "init", task: "t1", name: "Import", min: 0, max: 10, value: 0, label: null, indeterminate: false, status: "running", error: null };

describe("Progress", () => {
  it("follows a task: init, updates, done, each with the whole state", async () => {
    const { snorky, Socket } = fakeClient({ progress: Snorky.Progress });
    const progress = snorky.services.progress;
    const socket = await openSocket(Socket);
    const states = [];
    progress.taskChanged.add((state, notification) => states.push([notification.type, state.value, state.status]));
    const done = progress.subscribe({ task: "t1" });
    socket.receive("progress", init);
    socket.answer(socket.sent[0], { ...init, type: "init" });
    await done;
    socket.receive("progress", { type: "update", task: "t1", value: 4, label: "Reading" });
    socket.receive("progress", { type: "done", task: "t1", status: "completed", label: "Done", error: null });
    assert.deepEqual(states, [
      ["init", 0, "running"],
      ["update", 4, "running"],
      ["done", 10, "completed"],
    ]);
    assert.equal(progress.getTask("t1").name, "Import");
    assert.equal(progress.getTask("t1").label, "Done");
    assert.equal(progress.getTask("nope"), null);
  });

  it("follows its tasks again after a reconnection", async () => {
    const { snorky, Socket } = fakeClient({ progress: Snorky.Progress });
    const progress = snorky.services.progress;
    let socket = await openSocket(Socket);
    const done = progress.subscribe({ task: "t1" });
    socket.answer(socket.sent[0], null);
    await done;
    const restores = [];
    progress.restored.add((r) => restores.push(r));
    socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    assert.deepEqual(socket.sent[0].message.params, { task: "t1" });
    socket.receive("progress", init);
    socket.answer(socket.sent[0], init);
    await settle();
    assert.deepEqual(restores, [{ task: "t1", state: init }]);
    assert.equal(progress.getTask("t1").max, 10);
  });

  it("does not follow a task it unsubscribed from", async () => {
    const { snorky, Socket } = fakeClient({ progress: Snorky.Progress });
    const progress = snorky.services.progress;
    let socket = await openSocket(Socket);
    const done = progress.subscribe({ task: "t1" });
    socket.answer(socket.sent[0], null);
    await done;
    progress.unsubscribe({ task: "t1" });
    socket.answer(socket.sent[1], null);
    socket = await reconnect(snorky, Socket);
    socket.open();
    await settle();
    assert.equal(socket.sent.length, 0);
  });
});
