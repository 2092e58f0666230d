// The build's output works as shipped: the classic script defines window.Snorky,
// the ES module exports the same API, and the type declarations type-check.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import vm from "node:vm";

const run = promisify(execFile);
const js = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const API = ["PubSub", "Chat", "Messaging", "Cursors", "DataSync", "Progress", "Signal", "SnorkyError", "RPCService"];

describe("The build", () => {
  let outdir;
  let sizes;

  before(async () => {
    outdir = await mkdtemp(path.join(tmpdir(), "snorky-build-"));
    const { stdout } = await run(process.execPath, [path.join(js, "build.mjs"), "--outdir", outdir]);
    sizes = JSON.parse(stdout.trim().split("\n").at(-1)).sizes;
  });

  after(() => rm(outdir, { recursive: true, force: true }));

  it("makes a classic script that defines the global Snorky", async () => {
    const code = await readFile(path.join(outdir, "snorky.js"), "utf8");
    const sandbox = { setTimeout, clearTimeout, console };
    sandbox.window = sandbox;
    vm.createContext(sandbox);
    vm.runInContext(code, sandbox);
    const Snorky = sandbox.Snorky;
    assert.equal(typeof Snorky, "function");
    for (const name of API) {
      assert.equal(typeof Snorky[name], "function", name);
    }
    assert.equal(typeof Snorky.DataSync.CollectionDeltaProcessor, "function");
    assert.equal(typeof Snorky.DataSync.ArrayCollection, "function");
    assert.equal(typeof Snorky.Cursors.Document, "function");
    const python = await readFile(path.join(js, "..", "snorky", "version.py"), "utf8");
    assert.equal(Snorky.version, /__version__ = "([^"]+)"/.exec(python)[1]);
  });

  it("makes an ES module with a default export and named exports", async () => {
    const module = await import(pathToFileURL(path.join(outdir, "snorky.mjs")).href);
    assert.equal(typeof module.default, "function");
    for (const name of API) {
      assert.equal(module[name], module.default[name], name);
    }
    assert.equal(typeof module.CollectionDeltaProcessor, "function");
  });

  it("measures the minified and gzipped sizes", () => {
    for (const name of ["snorky.mjs", "snorky.js"]) {
      assert.ok(sizes[name].gzipped > 1000 && sizes[name].gzipped < sizes[name].minified, name);
    }
  });

  it("ships type declarations that type-check an app using them", async () => {
    const tsc = path.join(js, "node_modules", "typescript", "bin", "tsc");
    const usage = path.join(js, "test", "types", "usage.ts");
    const options = ["--noEmit", "--strict", "--target", "es2020", "--module", "es2020"];
    const args = [...options, "--moduleResolution", "bundler", "--lib", "es2020,dom", usage];
    try {
      await run(process.execPath, [tsc, ...args]);
    } catch (error) {
      assert.fail(`tsc found errors:\n${error.stdout}${error.stderr}`);
    }
    const shipped = await readFile(path.join(outdir, "snorky.d.ts"), "utf8");
    assert.ok(shipped.includes(await readFile(path.join(js, "src", "snorky.d.ts"), "utf8")));
  });
});
