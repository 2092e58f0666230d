import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Signal } from "../src/signal.js";

describe("Signal", () => {
  it("calls listeners in the order they were added, with the arguments", () => {
    const signal = new Signal();
    const seen = [];
    signal.add((a, b) => seen.push(["first", a, b]));
    signal.add((a, b) => seen.push(["second", a, b]));
    signal.dispatch(1, 2);
    assert.deepEqual(seen, [
      ["first", 1, 2],
      ["second", 1, 2],
    ]);
  });

  it("binds the context as this", () => {
    const signal = new Signal();
    const owner = { hits: 0 };
    signal.add(function () {
      this.hits++;
    }, owner);
    signal.dispatch();
    assert.equal(owner.hits, 1);
  });

  it("adds a listener once per context, and removes it", () => {
    const signal = new Signal();
    let hits = 0;
    const listener = () => hits++;
    signal.add(listener);
    signal.add(listener);
    assert.equal(signal.getNumListeners(), 1);
    assert.ok(signal.has(listener));
    signal.remove(listener);
    signal.dispatch();
    assert.equal(hits, 0);
    assert.ok(!signal.has(listener));
  });

  it("detaches through the binding", () => {
    const signal = new Signal();
    let hits = 0;
    const binding = signal.add(() => hits++);
    binding.detach();
    signal.dispatch();
    assert.equal(hits, 0);
  });

  it("calls an addOnce listener on the next dispatch only", () => {
    const signal = new Signal();
    let hits = 0;
    signal.addOnce(() => hits++);
    signal.dispatch();
    signal.dispatch();
    assert.equal(hits, 1);
  });

  it("removes every listener with removeAll", () => {
    const signal = new Signal();
    signal.add(() => {});
    signal.add(() => {});
    signal.removeAll();
    assert.equal(signal.getNumListeners(), 0);
  });

  it("keeps calling listeners after one throws, and reports the error", () => {
    const signal = new Signal();
    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (error) => reported.push(error);
    try {
      let hits = 0;
      signal.add(() => {
        throw new Error("boom");
      });
      signal.add(() => hits++);
      signal.dispatch();
      assert.equal(hits, 1);
      assert.equal(reported[0].message, "boom");
    } finally {
      globalThis.reportError = saved;
    }
  });

  it("refuses a listener that is not a function", () => {
    assert.throws(() => new Signal().add("nope"), TypeError);
  });
});
