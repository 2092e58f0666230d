// Running a real `snorky serve` for the integration and browser tests, calling
// its backend port, signing tokens, and a TCP proxy that can cut connections.
//
// The Python interpreter comes from SNORKY_PYTHON (tests/test_js_client.py sets
// it to its own), else `python3`.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import net from "node:net";
import readline from "node:readline";

export const PYTHON = process.env.SNORKY_PYTHON || "python3";
export const API_KEY = "js-tests-api-key";

/** Seconds to wait for a server to start or stop. */
const WAIT = 20000;

/**
 * Start `snorky serve --config CONFIG` on `port` (0: a free one) with the
 * backend open. Resolves to `{port, backendPort, origin, stop(), kill()}` once
 * it printed its first line.
 */
export async function startSnorky(config, { port = 0, env = {} } = {}) {
  const child = spawn(
    PYTHON,
    ["-m", "snorky", "serve", "--config", config, "--port", String(port), "--backend-port", "0"],
    { env: { ...process.env, SNORKY_API_KEY: API_KEY, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const firstLine = new Promise((resolve) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.once("line", resolve);
    lines.once("close", () => resolve(null));
  });
  let timer;
  const line = await Promise.race([
    firstLine,
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), WAIT);
    }),
  ]);
  clearTimeout(timer);
  const match = line && /serving on http:\/\/([\d.]+):(\d+)(?:, backend on port (\d+))?/.exec(line);
  if (!match) {
    child.kill("SIGKILL");
    throw new Error(`snorky serve did not start (first line: ${line}):\n${stderr}`);
  }
  const server = {
    port: Number(match[2]),
    backendPort: match[3] ? Number(match[3]) : null,
    origin: `http://127.0.0.1:${match[2]}`,
    process: child,
    stderr: () => stderr,
    /** SIGTERM: the server drains (every client is sent away with 1012) and exits. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
      }
      const timeout = setTimeout(() => child.kill("SIGKILL"), WAIT);
      await exited;
      clearTimeout(timeout);
    },
    /** SIGKILL: the server vanishes without closing anything. */
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
  return server;
}

/** Call `command` of a backend service; resolves to the answer's data. */
export async function backend(server, service, command, params = {}) {
  const response = await fetch(`http://127.0.0.1:${server.backendPort}/backend`, {
    method: "POST",
    headers: { "X-Backend-Key": API_KEY, "Content-Type": "application/json" },
    body: JSON.stringify({ service, message: { command, params, callId: 1 } }),
  });
  const body = await response.json();
  const message = body.message ?? body;
  if (message.type !== "response") {
    throw new Error(`backend ${service}.${command} failed: ${JSON.stringify(body)}`);
  }
  return message.data;
}

/** An HS256 JWT for `sub`, as snorky.backend.sign_token makes them. */
export function signToken(sub, secret, { ttl = 3600, info, now = Date.now() / 1000 } = {}) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const claims = { sub, iat: Math.floor(now), exp: Math.floor(now + ttl) };
  if (info !== undefined) {
    claims.info = info;
  }
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  const signature = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/**
 * A TCP proxy to `targetPort` on a free port: `cut()` drops every connection
 * (a network blip), `refuse` turns new connections away, `blackhole` stops
 * forwarding (a connection that hangs).
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  const proxy = {
    refuse: false,
    blackhole: false,
    port: 0,
    cut() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    close() {
      proxy.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
  const server = net.createServer((inbound) => {
    if (proxy.refuse) {
      inbound.destroy();
      return;
    }
    const outbound = net.connect(targetPort, "127.0.0.1");
    const pair = [inbound, outbound];
    pairs.add(pair);
    const forward = (from, to) => {
      from.on("data", (data) => {
        if (!proxy.blackhole) {
          to.write(data);
        }
      });
      from.on("close", () => {
        to.destroy();
        pairs.delete(pair);
      });
      from.on("error", () => {});
    };
    forward(inbound, outbound);
    forward(outbound, inbound);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.port = server.address().port;
  return proxy;
}

/** Resolve with the arguments of the first dispatch of `signal` for which `test` holds. */
export function when(signal, test = () => true, timeout = 10000, what = "a signal") {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      binding.detach();
      reject(new Error(`timed out waiting for ${what}`));
    }, timeout);
    const binding = signal.add((...args) => {
      if (test(...args)) {
        clearTimeout(timer);
        binding.detach();
        resolve(args);
      }
    });
  });
}

/** Wait until `predicate()` holds, checking after each tick (at most `timeout` ms). */
export async function until(predicate, what, timeout = 10000) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting until ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
