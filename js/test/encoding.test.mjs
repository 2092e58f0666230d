import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffDelay, readTokenClaims, stableStringify } from "../src/encoding.js";
import { fakeToken } from "./helpers.mjs";

describe("stableStringify", () => {
  it("gives equal values the same text whatever the key order", () => {
    assert.equal(stableStringify({ b: 1, a: [1, { d: 2, c: 3 }] }), stableStringify({ a: [1, { c: 3, d: 2 }], b: 1 }));
    assert.equal(stableStringify({ b: 1, a: 2 }), '{"a":2,"b":1}');
  });

  it("writes strings, numbers and null as JSON does", () => {
    assert.equal(stableStringify("room"), '"room"');
    assert.equal(stableStringify(5), "5");
    assert.equal(stableStringify(null), "null");
  });
});

describe("readTokenClaims", () => {
  it("reads a JWT's claims without checking it", () => {
    const claims = { sub: "alice", exp: 2000000000, info: { name: "Ålice" } };
    assert.deepEqual(readTokenClaims(fakeToken(claims)), claims);
  });

  it("answers null for anything else", () => {
    assert.equal(readTokenClaims("not a token"), null);
    assert.equal(readTokenClaims("a.b.c"), null);
    assert.equal(readTokenClaims(null), null);
  });
});

describe("backoffDelay", () => {
  const options = { base: 500, max: 30000 };

  it("draws each delay between 0 and base * 2 ** attempt (full jitter)", () => {
    assert.equal(backoffDelay(0, options, () => 0), 0);
    assert.equal(backoffDelay(0, options, () => 0.5), 250);
    assert.equal(backoffDelay(3, options, () => 0.5), 2000);
    assert.ok(backoffDelay(2, options, () => 0.9999) < 2000);
  });

  it("never exceeds max", () => {
    assert.equal(backoffDelay(10, options, () => 0.5), 15000);
    assert.equal(backoffDelay(1000, options, () => 0.5), 15000);
  });

  it("spreads delays out with the default random source", () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(4, options)));
    assert.ok(delays.size > 10);
    for (const delay of delays) {
      assert.ok(delay >= 0 && delay < 8000);
    }
  });
});
