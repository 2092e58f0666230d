// The demos in headless Chromium, driven by playwright-core: each demo runs
// under a real `snorky serve`, two pages (two people) act and see each other's
// actions, the server restarts mid-session and the pages recover without a
// reload, and each demo gets a screenshot.
//
// Run by tests/test_js_client.py. Needs `npm ci --prefix js` and Debian's
// chromium (SNORKY_CHROMIUM, default /usr/bin/chromium); never downloads a
// browser. Screenshots go to SNORKY_SCREENSHOTS (default: a temporary folder;
// the docs keep theirs in docs/_static/screenshots/).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import { API_KEY, PYTHON, startSnorky } from "../support/server.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const EXAMPLES = path.join(ROOT, "examples");
const CHROMIUM = process.env.SNORKY_CHROMIUM || "/usr/bin/chromium";
const VIEWPORT = { width: 1000, height: 700 };
const run = promisify(execFile);

let browser;
let scratch;
let screenshots;

before(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), "snorky-browser-"));
  screenshots = process.env.SNORKY_SCREENSHOTS || path.join(scratch, "screenshots");
  await mkdir(screenshots, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives each launch a fresh temporary profile (--user-data-dir).
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await rm(scratch, { recursive: true, force: true });
});

/** A demo's server and the pages of the people using it; `close()` ends everything. */
async function demo(name, env = {}) {
  const config = path.join(EXAMPLES, name, "snorky.toml");
  const state = { config, env, server: await startSnorky(config, { env }), contexts: [], errors: [] };
  state.origin = () => state.server.origin;
  state.page = async () => {
    const context = await browser.newContext({ viewport: VIEWPORT });
    state.contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on("pageerror", (error) => state.errors.push(`${name}: ${error.message}`));
    await page.goto(state.origin() + "/");
    await page.waitForSelector('body[data-state="connected"]');
    // Set once per load: still there after the restart means the page was not reloaded.
    await page.evaluate(() => {
      window.loadedOnce = true;
    });
    return page;
  };
  /** Stop the server (clients are sent away with 1012), and start it again on the same port. */
  state.restart = async (pages) => {
    const port = state.server.port;
    await state.server.stop();
    await Promise.all(pages.map((page) => page.waitForSelector('body:not([data-state="connected"])')));
    state.server = await startSnorky(config, { port, env });
    await Promise.all(pages.map((page) => page.waitForSelector('body[data-state="connected"]')));
    for (const page of pages) {
      assert.equal(await page.evaluate(() => window.loadedOnce), true, "the page was reloaded");
    }
  };
  state.close = async () => {
    for (const context of state.contexts) {
      await context.close();
    }
    await state.server.stop();
    assert.deepEqual(state.errors, []);
  };
  return state;
}

async function signIn(page, name) {
  await page.fill("#name", name);
  await page.click('#signin button[type="submit"]');
}

async function screenshot(page, name) {
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), animations: "disabled" });
}

const text = (page, selector, content) => page.locator(selector, { hasText: content }).first().waitFor();

describe("Demos in Chromium", () => {
  it("chat: rooms, members, messages, unread badges, read receipts, and a server restart", async () => {
    const chat = await demo("demo_chat");
    try {
      const alice = await chat.page();
      const bob = await chat.page();
      await signIn(alice, "alice");
      await alice.waitForSelector('#members [data-identity="alice"]');
      await signIn(bob, "bob");
      await alice.waitForSelector('#members [data-identity="bob"]');
      await bob.waitForSelector('#members [data-identity="alice"]');

      await alice.fill("#text", "Hello Bob, this is Alice.");
      await alice.press("#text", "Enter");
      await text(bob, "#messages .message", "Hello Bob, this is Alice.");
      // Bob's page had the room on screen: Alice sees he read it.
      await text(alice, "#receipt", "Seen by bob");
      await bob.fill("#text", "Hi Alice! Everything is live here.");
      await bob.press("#text", "Enter");
      await text(alice, "#messages .message", "Everything is live here.");
      await text(bob, "#receipt", "Seen by alice");
      await alice.fill("#text", "Great. Shall we move to #random?");
      await alice.press("#text", "Enter");
      await text(alice, "#receipt", "Seen by bob");

      // A message in another room: a badge until Alice opens that room.
      await bob.click('.room[data-room="random"]');
      await bob.fill("#text", "Anyone around in #random?");
      await bob.press("#text", "Enter");
      await text(alice, '.room[data-room="random"] .badge', "1");
      await screenshot(alice, "chat");
      await alice.click('.room[data-room="random"]');
      await text(alice, "#messages .message", "Anyone around in #random?");
      await alice.waitForSelector('.room[data-room="random"] .badge:empty', { state: "attached" });
      await text(bob, "#receipt", "Seen by alice");

      await chat.restart([alice, bob]);
      await alice.waitForSelector('body[data-restored="1"]');
      await bob.waitForSelector('body[data-restored="1"]');
      await alice.waitForSelector('#members [data-identity="bob"]');
      await bob.waitForSelector('#members [data-identity="alice"]');
      // What the pages showed before the restart is still there, and they talk again.
      await text(alice, "#messages .message", "Anyone around in #random?");
      await bob.fill("#text", "Back after the restart.");
      await bob.press("#text", "Enter");
      await text(alice, "#messages .message", "Back after the restart.");
    } finally {
      await chat.close();
    }
  });

  it("cursors: each page sees the other's caret and text, also after a restart", async () => {
    const cursors = await demo("demo_cursors");
    try {
      const alice = await cursors.page();
      const bob = await cursors.page();
      await signIn(alice, "alice");
      await signIn(bob, "bob");
      await alice.waitForSelector("#editor:not([hidden])");
      await bob.waitForSelector("#editor:not([hidden])");

      await alice.click("#text");
      await alice.press("#text", "Control+End");
      await alice.keyboard.type("\n\nAlice was here.");
      await bob.waitForFunction(() => document.querySelector("#text").value.endsWith("Alice was here."));
      const end = await alice.evaluate(() => document.querySelector("#text").selectionEnd);
      await bob.waitForSelector(`.remote-cursor[data-owner="alice"][data-position="${end}"]`);

      await bob.click("#text");
      await bob.press("#text", "Control+Home");
      await alice.waitForSelector('.remote-cursor[data-owner="bob"][data-position="0"]');
      await bob.keyboard.type("Bob: ");
      await alice.waitForFunction(() => document.querySelector("#text").value.startsWith("Bob: "));
      await alice.waitForSelector('.remote-cursor[data-owner="bob"][data-position="5"]');
      await screenshot(alice, "cursors");

      await cursors.restart([alice, bob]);
      await alice.waitForSelector('body[data-restored="1"]');
      // Each page created its caret again, where it was.
      await bob.waitForSelector('.remote-cursor[data-owner="alice"]');
      await alice.waitForSelector('.remote-cursor[data-owner="bob"][data-position="5"]');
      await alice.keyboard.type(" And again.");
      await bob.waitForFunction(() => document.querySelector("#text").value.includes("And again."));
    } finally {
      await cursors.close();
    }
  });

  it("progress: a job started in one page fills its bar in both", async () => {
    const progress = await demo("demo_progress");
    try {
      const first = await progress.page();
      const second = await progress.page();
      await first.fill("#job-name", "Import contacts");
      await first.fill("#steps", "8");
      await first.click('#start button[type="submit"]');
      await second.waitForSelector('.job[data-status="completed"][data-percent="100"]');
      await first.waitForSelector('.job[data-status="completed"][data-percent="100"]');

      await second.fill("#job-name", "Export invoices");
      await second.fill("#steps", "40");
      await second.click('#start button[type="submit"]');
      await first.waitForFunction(() => {
        const job = document.querySelector('.job[data-status="running"]');
        return job !== null && Number(job.dataset.percent) >= 30;
      });
      await screenshot(first, "progress");
      const job = await first.locator(".job .name").allTextContents();
      assert.deepEqual(job, ["Export invoices", "Import contacts"]);
    } finally {
      await progress.close();
    }
  });

  it("live list: changes from a page and from publisher.py reach every page, also after a restart", async () => {
    const database = path.join(scratch, "live-list.sqlite3");
    const live = await demo("demo_live_list", { DEMO_LIST_DB: database });
    const publish = (...args) =>
      run(
        PYTHON,
        [path.join(EXAMPLES, "demo_live_list", "publisher.py"), "--url", `http://127.0.0.1:${live.server.backendPort}/backend`, ...args],
        { env: { ...process.env, SNORKY_API_KEY: API_KEY, DEMO_LIST_DB: database } },
      );
    try {
      const first = await live.page();
      const second = await live.page();
      await first.fill("#text", "Buy milk");
      await first.press("#text", "Enter");
      await text(second, ".item .text", "Buy milk");
      await second.locator(".item", { hasText: "Buy milk" }).locator(".tick").check();
      await first.waitForSelector('.item.done:has-text("Buy milk")');

      await publish("--add", "Bread", "--add", "Olive oil");
      await text(first, ".item .text", "Olive oil");
      await text(second, ".item .text", "Olive oil");
      await second.locator(".item", { hasText: "Bread" }).locator(".remove").click();
      await first.waitForSelector('.item:has-text("Bread")', { state: "detached" });
      await publish("--add", "Coffee", "--add", "Lemons");
      await text(first, ".item .text", "Lemons");
      await screenshot(first, "live_list");

      await live.restart([first, second]);
      await first.waitForSelector('body[data-restored="1"]');
      await second.waitForSelector('body[data-restored="1"]');
      await publish("--add", "Tomatoes");
      await text(first, ".item .text", "Tomatoes");
      await text(second, ".item .text", "Tomatoes");
      const items = await second.locator(".item .text").allTextContents();
      assert.deepEqual(items, ["Buy milk", "Olive oil", "Coffee", "Lemons", "Tomatoes"]);
    } finally {
      await live.close();
    }
  });
});
