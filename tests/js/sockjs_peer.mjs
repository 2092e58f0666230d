// A SockJS peer driven by Snorky's Python tests, using the real sockjs-client.
//
//   node sockjs_peer.mjs URL TRANSPORT [ORIGIN]
//
// stdout, one JSON value per line:
//   {"event":"open"}                        the session opened
//   {"event":"message","data":...}          a message arrived (data: the decoded JSON,
//                                           or the raw text if it is not JSON)
//   {"event":"close","code":N,"reason":S}   the session closed; the program then exits
// stdin: each line is sent as one SockJS message, as it is (it need not be JSON);
// end of input closes the session.
//
// ORIGIN, if given, is sent as the Origin header of every request the client
// makes: sockjs-client has an option for it only on WebSocket, so for the other
// transports it is added to node:http requests, which they all go through.

import http from "node:http";
import readline from "node:readline";
import SockJS from "sockjs-client";

const [url, transport, origin] = process.argv.slice(2);
if (!url || !transport) {
  console.error("usage: node sockjs_peer.mjs URL TRANSPORT [ORIGIN]");
  process.exit(2);
}

const transportOptions = {};
if (origin) {
  transportOptions.websocket = { headers: { Origin: origin } };
  const request = http.request;
  http.request = (options, callback) =>
    request({ ...options, headers: { ...options.headers, Origin: origin } }, callback);
}

const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const sock = new SockJS(url, null, { transports: [transport], transportOptions });

sock.onopen = () => print({ event: "open" });
sock.onmessage = (e) => {
  let data;
  try {
    data = JSON.parse(e.data);
  } catch {
    data = e.data;
  }
  print({ event: "message", data });
};
sock.onclose = (e) => {
  // Exit once the line is written, whatever timers sockjs-client left behind.
  process.stdout.write(JSON.stringify({ event: "close", code: e.code, reason: e.reason }) + "\n", () =>
    process.exit(0),
  );
};

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => sock.send(line));
lines.on("close", () => sock.close());
