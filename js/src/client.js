/**
 * The connection to a Snorky server: one socket, the services that use it,
 * RPC calls, reconnection and tokens.
 *
 * @module
 */

import { backoffDelay, hasOwn, readTokenClaims } from "./encoding.js";
import { CloseCodes, CloseReconnect, SnorkyError } from "./errors.js";
import { Signal, rethrowLater } from "./signal.js";

/** Connection states, in `snorky.state` and the `stateChanged` signal. */
export const States = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
  DISCONNECTED: "disconnected",
});

const DEFAULTS = Object.freeze({
  debug: false,
  autoConnect: true,
  reconnect: true,
  backoff: { base: 500, max: 30000 },
  rpcTimeout: 10000,
  connectTimeout: 10000,
  token: null,
  getToken: null,
  tokenTransport: "url",
  authService: "auth",
  refreshMargin: 60000,
  createSocket: null,
  sockjs: null,
});

/** How a close code asks the client to go on ("backoff" when the server did not say). */
function reconnectAfter(code) {
  return CloseReconnect[code] ?? "backoff";
}

/**
 * A Snorky client.
 *
 * As in Snorky 0.1: `new Snorky(WebSocket, "wss://example.com/ws", {pubsub: Snorky.PubSub}, {debug: true})`.
 * Or with one object: `new Snorky({url, socket: WebSocket, services: {...}, ...options})`.
 * Each entry of `services` creates a connector, reachable as `snorky.services[name]`.
 */
export class Snorky {
  /**
   * @param {any} socketClass a WebSocket-like class (`WebSocket`, `SockJS`), or the options object
   * @param {string} [address] the server's URL; relative URLs are resolved against the page
   * @param {Record<string, any>} [services] service name -> connector class
   * @param {Record<string, any>} [options]
   */
  constructor(socketClass, address, services, options) {
    if (socketClass !== null && typeof socketClass === "object" && address === undefined) {
      const { url, socket, services: classes, ...rest } = socketClass;
      socketClass = socket ?? globalThis.WebSocket;
      address = url;
      services = classes;
      options = rest;
    }
    if (typeof address !== "string") {
      throw new TypeError("Snorky: the server URL must be a string");
    }
    const given = options ?? {};
    this.options = { ...DEFAULTS, ...given, backoff: { ...DEFAULTS.backoff, ...(given.backoff ?? {}) } };
    this.address = address;
    this.socketClass = socketClass;
    this.debug = Boolean(this.options.debug);

    /** `connecting`, `connected`, `reconnecting` or `disconnected`. */
    this.state = States.DISCONNECTED;
    /** Whether the socket is open (Snorky 0.1's name). */
    this.isConnected = false;
    /** Whether a socket is being opened (Snorky 0.1's name). */
    this.isConnecting = false;
    /** The identity the server knows this connection by (from the token), or `null`. */
    this.identity = null;
    /** The token's public `info` claim, or `null`. */
    this.userInfo = null;
    /** The current token, or `null`. */
    this.token = this.options.token ?? null;

    /** The socket opened (args: `{reconnected}`). Snorky 0.1's signal. */
    this.connected = new Signal();
    /** The socket closed (args: `{code, reason, willReconnect}`). Snorky 0.1's signal. */
    this.disconnected = new Signal();
    /** The state changed (args: `state, previousState`). */
    this.stateChanged = new Signal();
    /** A reconnection is scheduled (args: `{attempt, delay, code}`). */
    this.reconnecting = new Signal();
    /** After a reconnection, every service restored its state (args: `{failures}`). */
    this.restored = new Signal();
    /** The server accepted a token (args: `{identity, info, expiresAt}`). */
    this.authenticated = new Signal();
    /** Something went wrong outside any call: a token could not be had, a restore failed (args: `error`). */
    this.error = new Signal();

    this._socket = null;
    this._generation = 0;
    this._ready = false;
    this._everConnected = false;
    this._closedByUser = false;
    this._tokenRefused = false;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._connectTimer = null;
    this._random = Math.random;
    /** @type {Map<number, any>} callId -> pending call */
    this._pending = new Map();
    /** @type {{raw: string, call: any}[]} messages waiting for the connection */
    this._queue = [];
    this._nextCallId = 1;

    /** Service name -> connector. */
    this.services = {};
    for (const [name, ServiceClass] of Object.entries(services ?? {})) {
      this.services[name] = new ServiceClass(name, this);
    }

    this._onOnline = () => {
      if (this.state === States.RECONNECTING && this._reconnectTimer !== null) {
        this.connect();
      }
    };
    if (typeof globalThis.addEventListener === "function" && typeof globalThis.document !== "undefined") {
      globalThis.addEventListener("online", this._onOnline);
    }

    if (this.options.autoConnect) {
      this.connect();
    }
  }

  // Connection -----------------------------------------------------------------

  /**
   * Open the connection. While the client waits to reconnect, try now.
   * Does nothing if it is open or opening.
   */
  connect() {
    this._closedByUser = false;
    if (this._reconnectTimer !== null) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
    } else if (this._socket !== null || this.isConnecting) {
      return;
    }
    this._open();
  }

  /**
   * Close the connection and do not reconnect. Calls waiting for an answer are
   * rejected (code `closed`). The services keep what they follow: `connect()`
   * restores it.
   */
  disconnect() {
    this._closedByUser = true;
    this._generation++;
    this._clearTimers();
    const socket = this._socket;
    const wasOpen = this.isConnected || this.isConnecting || this.state === States.RECONNECTING;
    this._socket = null;
    this.isConnected = false;
    this.isConnecting = false;
    this._ready = false;
    if (socket !== null) {
      abandon(socket, CloseCodes.NORMAL);
    }
    this._rejectAll(true, "closed", "Snorky: the client was closed");
    this._forEachService((service) => service._connectionLost());
    if (wasOpen) {
      this.disconnected.dispatch({ code: CloseCodes.NORMAL, reason: "disconnect()", willReconnect: false });
    }
    this._setState(States.DISCONNECTED);
  }

  _open() {
    const generation = ++this._generation;
    this.isConnecting = true;
    this._setState(this._everConnected ? States.RECONNECTING : States.CONNECTING);
    let token;
    try {
      token = this.options.tokenTransport === "url" ? this._tokenForConnection() : null;
    } catch (error) {
      this._tokenFailed(generation, error);
      return;
    }
    if (token !== null && typeof token === "object" && typeof token.then === "function") {
      token.then(
        (value) => {
          if (generation === this._generation) {
            this._createSocket(generation, value);
          }
        },
        (error) => this._tokenFailed(generation, error),
      );
    } else {
      this._createSocket(generation, token);
    }
  }

  _tokenFailed(generation, error) {
    if (generation !== this._generation) {
      return;
    }
    this._emitError(new SnorkyError(`Snorky: getToken failed: ${error?.message ?? error}`, "token_unavailable"));
    this._onSocketClose(generation, { code: CloseCodes.ABNORMAL, reason: "no token" });
  }

  /** The token to connect with: the current one, or a fresh one from `getToken`. */
  _tokenForConnection() {
    const getToken = this.options.getToken;
    if (typeof getToken === "function" && (this.token === null || this._tokenRefused || tokenExpired(this.token))) {
      return Promise.resolve(getToken()).then((token) => {
        this.token = token ?? null;
        this._tokenRefused = false;
        return this.token;
      });
    }
    return this.token;
  }

  _createSocket(generation, token) {
    const url = this._socketUrl(token);
    this._log("= connecting to", this.address);
    let socket;
    try {
      socket =
        typeof this.options.createSocket === "function"
          ? this.options.createSocket(url)
          : new this.socketClass(url);
    } catch (error) {
      this._emitError(error);
      this._onSocketClose(generation, { code: CloseCodes.ABNORMAL, reason: String(error?.message ?? error) });
      return;
    }
    this._socket = socket;
    socket.onopen = () => this._onSocketOpen(generation);
    socket.onmessage = (event) => this._onSocketMessage(generation, event);
    socket.onclose = (event) => this._onSocketClose(generation, event ?? {});
    socket.onerror = () => {
      // A close event follows; it is the one that counts.
    };
    if (this.options.connectTimeout > 0) {
      this._connectTimer = setTimeout(() => {
        this._connectTimer = null;
        if (generation === this._generation && !this.isConnected) {
          this._log("! no answer from the server within", this.options.connectTimeout, "ms");
          this._onSocketClose(generation, { code: CloseCodes.ABNORMAL, reason: "connect timeout" });
        }
      }, this.options.connectTimeout);
    }
  }

  _socketUrl(token) {
    let url = this.address;
    const hasScheme = /^[a-z][a-z0-9+.-]*:/i.test(url);
    if (!hasScheme && typeof globalThis.location !== "undefined" && globalThis.location?.href) {
      const resolved = new URL(url, globalThis.location.href);
      if (!this._isSockJS()) {
        resolved.protocol = resolved.protocol === "https:" ? "wss:" : "ws:";
      }
      url = resolved.toString();
    }
    if (token) {
      url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    }
    return url;
  }

  _isSockJS() {
    if (this.options.sockjs !== null) {
      return Boolean(this.options.sockjs);
    }
    return this.socketClass?.name === "SockJS";
  }

  _onSocketOpen(generation) {
    if (generation !== this._generation) {
      return;
    }
    if (this._connectTimer !== null) {
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
    }
    const reconnected = this._everConnected;
    this._everConnected = true;
    this._attempt = 0;
    this.isConnected = true;
    this.isConnecting = false;
    if (this.options.tokenTransport === "url" && this.token) {
      this._learnIdentity(readTokenClaims(this.token));
    }
    this._log("= connected", reconnected ? "(again)" : "");
    this._setState(States.CONNECTED);
    this.connected.dispatch({ reconnected });
    this._startSession(generation, reconnected);
  }

  async _startSession(generation, reconnected) {
    if (this.options.tokenTransport === "message" && (this.token || this.options.getToken)) {
      try {
        const token = await this._tokenForConnection();
        if (generation !== this._generation) {
          return;
        }
        if (token) {
          await this._authenticate(token, "authenticate", true);
        }
      } catch (error) {
        if (generation !== this._generation) {
          return;
        }
        this._emitError(error);
      }
    } else {
      this._scheduleRefresh();
    }
    if (generation !== this._generation) {
      return;
    }
    const services = Object.values(this.services);
    const results = await Promise.allSettled(services.map((service) => service._restore(reconnected)));
    if (generation !== this._generation) {
      return;
    }
    const failures = [];
    results.forEach((result, index) => {
      if (result.status === "rejected") {
        failures.push({ service: services[index].name, error: result.reason });
        this._emitError(result.reason);
      }
    });
    this._ready = true;
    this._flush();
    if (reconnected) {
      this.restored.dispatch({ failures });
    }
    for (const service of services) {
      Promise.resolve()
        .then(() => service._resume(reconnected))
        .catch((error) => this._emitError(error));
    }
  }

  _onSocketMessage(generation, event) {
    if (generation !== this._generation) {
      return;
    }
    let envelope;
    try {
      envelope = JSON.parse(event.data);
    } catch {
      this._log("! not JSON:", event.data);
      return;
    }
    if (envelope === null || typeof envelope !== "object") {
      return;
    }
    const { service, message } = envelope;
    this._log("<", service, message);
    if (message !== null && typeof message === "object" && (message.type === "response" || message.type === "error")) {
      const call = this._pending.get(message.callId);
      if (call !== undefined && (service === call.service || service === null)) {
        this._settle(call, message);
      }
    }
    const target = typeof service === "string" && hasOwn(this.services, service) ? this.services[service] : null;
    if (target !== null) {
      target.packetReceived.dispatch(message);
    }
  }

  _onSocketClose(generation, event) {
    if (generation !== this._generation) {
      return;
    }
    const code = typeof event.code === "number" ? event.code : CloseCodes.ABNORMAL;
    const reason = event.reason ?? "";
    const wasOpen = this.isConnected;
    if (this._socket !== null) {
      abandon(this._socket);
    }
    this._socket = null;
    this.isConnected = false;
    this.isConnecting = false;
    this._ready = false;
    this._clearTimers();
    this._rejectAll(false, "disconnected", `Snorky: connection lost (code ${code})`);
    this._forEachService((service) => service._connectionLost());
    const next = reconnectAfter(code);
    if (next === "new token") {
      this._tokenRefused = true;
      this._emitError(new SnorkyError(`Snorky: the server refused the token (${reason || code})`, tokenCode(code)));
    }
    const willReconnect =
      !this._closedByUser &&
      this.options.reconnect !== false &&
      next !== "no" &&
      !(next === "new token" && typeof this.options.getToken !== "function");
    this._log("= closed", code, reason, willReconnect ? "(will reconnect)" : "");
    if (wasOpen || !willReconnect) {
      this.disconnected.dispatch({ code, reason, willReconnect });
    }
    if (willReconnect) {
      this._scheduleReconnect(code);
    } else {
      this._rejectAll(true, "closed", `Snorky: disconnected (code ${code})`);
      this._setState(States.DISCONNECTED);
    }
  }

  _scheduleReconnect(code) {
    let delay;
    if (reconnectAfter(code) === "now") {
      // The node is draining and spreads its closes over time: go at once, elsewhere,
      // and do not count it as a failure (the backoff stays where it was).
      delay = Math.floor(this._random() * this.options.backoff.base);
    } else {
      delay = backoffDelay(this._attempt, this.options.backoff, this._random);
      this._attempt++;
    }
    this._setState(States.RECONNECTING);
    this.reconnecting.dispatch({ attempt: this._attempt, delay, code });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  _setState(state) {
    if (state !== this.state) {
      const previous = this.state;
      this.state = state;
      this.stateChanged.dispatch(state, previous);
    }
  }

  _clearTimers() {
    if (this._connectTimer !== null) {
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
    }
    if (this._reconnectTimer !== null) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
    }
    if (this._refreshTimer !== null) {
      clearTimeout(this._refreshTimer);
      this._refreshTimer = null;
    }
  }

  // Messages and calls --------------------------------------------------------------

  /**
   * Send a message to a service (Snorky 0.1's low-level call). Queued while
   * the connection is not ready.
   * @param {string} serviceName
   * @param {any} message
   */
  _sendServiceMessage(serviceName, message) {
    this._send(JSON.stringify({ service: serviceName, message }), null, false);
  }

  /**
   * Call `command` of `service` with `params`; resolves to the answer's data.
   * Calls made before the connection is ready wait for it (their timeout runs).
   *
   * @param {string} service
   * @param {string} command
   * @param {Record<string, any>} [params]
   * @param {{timeout?: number}} [options] `timeout` in ms (0: none; default: the client's `rpcTimeout`)
   * @returns {Promise<any>}
   */
  call(service, command, params = {}, options = {}) {
    return this._call(service, command, params, options, false);
  }

  _call(service, command, params, options, internal) {
    return new Promise((resolve, reject) => {
      const callId = this._nextCallId++;
      const timeout = options.timeout ?? this.options.rpcTimeout;
      const call = { callId, service, command, resolve, reject, timer: null, sentOn: null };
      if (timeout > 0) {
        call.timer = setTimeout(() => {
          this._forget(call);
          reject(
            new SnorkyError(`Snorky: no answer to ${service}.${command} within ${timeout} ms`, "timeout", {
              service,
              command,
            }),
          );
        }, timeout);
      }
      this._pending.set(callId, call);
      this._send(JSON.stringify({ service, message: { command, params: params ?? {}, callId } }), call, internal);
    });
  }

  _send(raw, call, internal) {
    if (this._socket !== null && this.isConnected && (this._ready || internal)) {
      this._log(">", raw);
      if (call !== null) {
        call.sentOn = this._generation;
      }
      this._socket.send(raw);
    } else {
      this._queue.push({ raw, call });
    }
  }

  _flush() {
    const queue = this._queue;
    this._queue = [];
    for (const { raw, call } of queue) {
      this._send(raw, call, false);
    }
  }

  _settle(call, message) {
    this._forget(call);
    if (message.type === "response") {
      call.resolve(message.data);
    } else {
      const code = typeof message.code === "string" ? message.code : "rpc_error";
      call.reject(
        new SnorkyError(String(message.message ?? code), code, {
          service: call.service,
          command: call.command,
          data: message,
        }),
      );
    }
  }

  _forget(call) {
    if (call.timer !== null) {
      clearTimeout(call.timer);
    }
    this._pending.delete(call.callId);
    const queued = this._queue.findIndex((entry) => entry.call === call);
    if (queued >= 0) {
      this._queue.splice(queued, 1);
    }
  }

  /**
   * Reject the calls sent on the lost connection; with `everything`, the queued ones too.
   */
  _rejectAll(everything, code, text) {
    for (const call of [...this._pending.values()]) {
      if (everything || call.sentOn !== null) {
        this._forget(call);
        call.reject(new SnorkyError(text, code, { service: call.service, command: call.command }));
      }
    }
    if (everything) {
      this._queue = [];
    }
  }

  // Tokens ----------------------------------------------------------------------

  /**
   * Authenticate this connection with `token` (the `auth` service's
   * `authenticate` command), and keep it for the next connections.
   * @param {string} token
   * @returns {Promise<{identity: any, info: any, expiresAt: number}>}
   */
  authenticate(token) {
    this.token = token;
    this._tokenRefused = false;
    return this._authenticate(token, "authenticate", false);
  }

  async _authenticate(token, command, internal) {
    const answer = await this._call(this.options.authService, command, { token }, {}, internal);
    this.token = token;
    this._learnIdentity({ sub: answer.identity, info: answer.info, exp: answer.expiresAt });
    this._scheduleRefresh();
    return answer;
  }

  _learnIdentity(claims) {
    if (claims === null) {
      return;
    }
    this.identity = claims.sub ?? null;
    this.userInfo = claims.info ?? null;
    this.authenticated.dispatch({ identity: this.identity, info: this.userInfo, expiresAt: claims.exp ?? null });
  }

  /** Before the token expires, get a new one from `getToken` and send it with `refresh`. */
  _scheduleRefresh() {
    if (this._refreshTimer !== null) {
      clearTimeout(this._refreshTimer);
      this._refreshTimer = null;
    }
    const claims = readTokenClaims(this.token);
    if (typeof this.options.getToken !== "function" || !claims || typeof claims.exp !== "number") {
      return;
    }
    const lifetime = typeof claims.iat === "number" ? (claims.exp - claims.iat) * 1000 : Infinity;
    const margin = Math.min(this.options.refreshMargin, lifetime / 5);
    const delay = Math.max(0, claims.exp * 1000 - margin - Date.now());
    const generation = this._generation;
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      this._refresh(generation);
    }, Math.min(delay, 2 ** 31 - 1));
  }

  async _refresh(generation) {
    try {
      const token = await this.options.getToken();
      if (generation === this._generation && this.isConnected) {
        await this._authenticate(token, "refresh", true);
      }
    } catch (error) {
      this._emitError(error);
    }
  }

  // Helpers ---------------------------------------------------------------------

  _forEachService(fn) {
    for (const service of Object.values(this.services)) {
      try {
        fn(service);
      } catch (error) {
        rethrowLater(error);
      }
    }
  }

  _emitError(error) {
    this._log("!", error);
    this.error.dispatch(error);
  }

  /** Log to the console when the `debug` option is on. */
  logDebug(...args) {
    this._log(...args);
  }

  _log(...args) {
    if (this.debug && typeof console === "object") {
      console.debug("snorky", ...args);
    }
  }
}

/**
 * Stop listening to a socket the client is done with, and close it (with
 * `code`, or 1000) if it is still open or opening.
 */
function abandon(socket, code = CloseCodes.NORMAL) {
  socket.onopen = socket.onmessage = socket.onclose = null;
  socket.onerror = () => {};
  try {
    socket.close(code);
  } catch {
    // Closed already, or not closable yet: either way it is gone.
  }
}

/** Whether a JWT has expired (or does within a second). */
function tokenExpired(token) {
  const claims = readTokenClaims(token);
  return claims !== null && typeof claims.exp === "number" && claims.exp * 1000 <= Date.now() + 1000;
}

function tokenCode(closeCode) {
  return closeCode === CloseCodes.TOKEN_EXPIRED ? "token_expired" : "invalid_token";
}
