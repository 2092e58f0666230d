/* Snorky 0.2.0.dev0: the JavaScript client (classic script).
 * Built by js/build.mjs from js/src/; do not edit. License: MPL-2.0. */
(() => {
  // src/encoding.js
  function stableStringify(value) {
    if (Array.isArray(value)) {
      return "[" + value.map((item) => stableStringify(item === void 0 ? null : item)).join(",") + "]";
    }
    if (value !== null && typeof value === "object") {
      const keys = Object.keys(value).filter((key) => value[key] !== void 0).sort();
      return "{" + keys.map((key) => JSON.stringify(key) + ":" + stableStringify(value[key])).join(",") + "}";
    }
    return JSON.stringify(value);
  }
  function readTokenClaims(token) {
    if (typeof token !== "string") {
      return null;
    }
    const parts = token.split(".");
    if (parts.length !== 3) {
      return null;
    }
    try {
      let base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      base64 += "=".repeat((4 - base64.length % 4) % 4);
      const binary = atob(base64);
      const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims !== null && typeof claims === "object" ? claims : null;
    } catch {
      return null;
    }
  }
  function backoffDelay(attempt, { base, max }, random = Math.random) {
    const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
    return Math.floor(random() * ceiling);
  }
  function hasOwn(object, key) {
    return Object.prototype.hasOwnProperty.call(object, key);
  }

  // src/errors.js
  var SnorkyError = class extends Error {
    /**
     * @param {string} message
     * @param {string} code
     * @param {{service?: string | null, command?: string, data?: any}} [details]
     */
    constructor(message, code, details = {}) {
      super(message);
      this.name = "SnorkyError";
      this.code = code;
      this.service = details.service ?? null;
      this.command = details.command ?? null;
      this.data = details.data ?? null;
    }
  };
  var CloseCodes = Object.freeze({
    NORMAL: 1e3,
    GOING_AWAY: 1001,
    PROTOCOL_ERROR: 1002,
    ABNORMAL: 1006,
    INVALID_DATA: 1007,
    MESSAGE_TOO_BIG: 1009,
    INTERNAL_ERROR: 1011,
    SERVICE_RESTART: 1012,
    TRY_AGAIN_LATER: 1013,
    INVALID_TOKEN: 4001,
    TOKEN_EXPIRED: 4002,
    FORBIDDEN_ORIGIN: 4003,
    DISCONNECTED: 4004,
    TOO_MANY_CONNECTIONS: 4005,
    SLOW_CLIENT: 4008,
    TOO_MANY_REQUESTS: 4029
  });
  var CloseReconnect = Object.freeze({
    [CloseCodes.NORMAL]: "backoff",
    [CloseCodes.GOING_AWAY]: "backoff",
    [CloseCodes.PROTOCOL_ERROR]: "backoff",
    [CloseCodes.INVALID_DATA]: "backoff",
    [CloseCodes.MESSAGE_TOO_BIG]: "backoff",
    [CloseCodes.INTERNAL_ERROR]: "backoff",
    [CloseCodes.SERVICE_RESTART]: "now",
    [CloseCodes.TRY_AGAIN_LATER]: "backoff",
    [CloseCodes.INVALID_TOKEN]: "new token",
    [CloseCodes.TOKEN_EXPIRED]: "new token",
    [CloseCodes.FORBIDDEN_ORIGIN]: "no",
    [CloseCodes.DISCONNECTED]: "no",
    [CloseCodes.TOO_MANY_CONNECTIONS]: "no",
    [CloseCodes.SLOW_CLIENT]: "backoff",
    [CloseCodes.TOO_MANY_REQUESTS]: "backoff"
  });

  // src/signal.js
  var SignalBinding = class {
    /**
     * @param {Signal} signal
     * @param {Listener} listener
     * @param {any} context
     * @param {boolean} once
     */
    constructor(signal, listener, context, once) {
      this.signal = signal;
      this.listener = listener;
      this.context = context;
      this.once = once;
    }
    /** Remove this listener from its signal. */
    detach() {
      this.signal.remove(this.listener, this.context);
    }
  };
  var Signal = class {
    constructor() {
      this._bindings = [];
    }
    /**
     * Call `listener` (with `this` set to `context`) on every dispatch.
     * Adding the same listener and context twice adds it once.
     * @param {Listener} listener
     * @param {any} [context]
     * @returns {SignalBinding}
     */
    add(listener, context) {
      return this._register(listener, context, false);
    }
    /**
     * Call `listener` on the next dispatch only.
     * @param {Listener} listener
     * @param {any} [context]
     * @returns {SignalBinding}
     */
    addOnce(listener, context) {
      return this._register(listener, context, true);
    }
    /**
     * @param {Listener} listener
     * @param {any} context
     * @param {boolean} once
     */
    _register(listener, context, once) {
      if (typeof listener !== "function") {
        throw new TypeError("Signal listeners must be functions");
      }
      const found = this._find(listener, context);
      if (found >= 0) {
        return this._bindings[found];
      }
      const binding = new SignalBinding(this, listener, context, once);
      this._bindings.push(binding);
      return binding;
    }
    /**
     * @param {Listener} listener
     * @param {any} context
     */
    _find(listener, context) {
      return this._bindings.findIndex((b) => b.listener === listener && b.context === context);
    }
    /**
     * Stop calling `listener` (added with the same `context`).
     * @param {Listener} listener
     * @param {any} [context]
     */
    remove(listener, context) {
      const found = this._find(listener, context);
      if (found >= 0) {
        this._bindings.splice(found, 1);
      }
      return listener;
    }
    /** Remove every listener. */
    removeAll() {
      this._bindings = [];
    }
    /**
     * Whether `listener` (with `context`) is registered.
     * @param {Listener} listener
     * @param {any} [context]
     */
    has(listener, context) {
      return this._find(listener, context) >= 0;
    }
    /** How many listeners are registered. */
    getNumListeners() {
      return this._bindings.length;
    }
    /**
     * Call every listener with `args`.
     * @param {...any} args
     */
    dispatch(...args) {
      for (const binding of this._bindings.slice()) {
        if (binding.once) {
          this.remove(binding.listener, binding.context);
        }
        try {
          binding.listener.apply(binding.context, args);
        } catch (error) {
          rethrowLater(error);
        }
      }
    }
  };
  function rethrowLater(error) {
    if (typeof globalThis.reportError === "function") {
      globalThis.reportError(error);
      return;
    }
    setTimeout(() => {
      throw error;
    }, 0);
  }

  // src/client.js
  var States = Object.freeze({
    CONNECTING: "connecting",
    CONNECTED: "connected",
    RECONNECTING: "reconnecting",
    DISCONNECTED: "disconnected"
  });
  var DEFAULTS = Object.freeze({
    debug: false,
    autoConnect: true,
    reconnect: true,
    backoff: { base: 500, max: 3e4 },
    rpcTimeout: 1e4,
    connectTimeout: 1e4,
    token: null,
    getToken: null,
    tokenTransport: "url",
    authService: "auth",
    refreshMargin: 6e4,
    createSocket: null,
    sockjs: null
  });
  function reconnectAfter(code) {
    return CloseReconnect[code] ?? "backoff";
  }
  var Snorky = class {
    /**
     * @param {any} socketClass a WebSocket-like class (`WebSocket`, `SockJS`), or the options object
     * @param {string} [address] the server's URL; relative URLs are resolved against the page
     * @param {Record<string, any>} [services] service name -> connector class
     * @param {Record<string, any>} [options]
     */
    constructor(socketClass, address, services, options) {
      if (socketClass !== null && typeof socketClass === "object" && address === void 0) {
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
      this.options = { ...DEFAULTS, ...given, backoff: { ...DEFAULTS.backoff, ...given.backoff ?? {} } };
      this.address = address;
      this.socketClass = socketClass;
      this.debug = Boolean(this.options.debug);
      this.state = States.DISCONNECTED;
      this.isConnected = false;
      this.isConnecting = false;
      this.identity = null;
      this.userInfo = null;
      this.token = this.options.token ?? null;
      this.connected = new Signal();
      this.disconnected = new Signal();
      this.stateChanged = new Signal();
      this.reconnecting = new Signal();
      this.restored = new Signal();
      this.authenticated = new Signal();
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
      this._pending = /* @__PURE__ */ new Map();
      this._queue = [];
      this._nextCallId = 1;
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
          (error) => this._tokenFailed(generation, error)
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
        socket = typeof this.options.createSocket === "function" ? this.options.createSocket(url) : new this.socketClass(url);
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
        Promise.resolve().then(() => service._resume(reconnected)).catch((error) => this._emitError(error));
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
        if (call !== void 0 && (service === call.service || service === null)) {
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
      const willReconnect = !this._closedByUser && this.options.reconnect !== false && next !== "no" && !(next === "new token" && typeof this.options.getToken !== "function");
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
                command
              })
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
            data: message
          })
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
      const lifetime = typeof claims.iat === "number" ? (claims.exp - claims.iat) * 1e3 : Infinity;
      const margin = Math.min(this.options.refreshMargin, lifetime / 5);
      const delay = Math.max(0, claims.exp * 1e3 - margin - Date.now());
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
  };
  function abandon(socket, code = CloseCodes.NORMAL) {
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = () => {
    };
    try {
      socket.close(code);
    } catch {
    }
  }
  function tokenExpired(token) {
    const claims = readTokenClaims(token);
    return claims !== null && typeof claims.exp === "number" && claims.exp * 1e3 <= Date.now() + 1e3;
  }
  function tokenCode(closeCode) {
    return closeCode === CloseCodes.TOKEN_EXPIRED ? "token_expired" : "invalid_token";
  }

  // src/services/base.js
  var Service = class {
    /**
     * @param {string} name the service's name on the server
     * @param {import("../client.js").Snorky} snorky the client
     */
    constructor(name, snorky) {
      if (typeof name !== "string" || !snorky) {
        throw new TypeError("Snorky: a service needs a name and a client");
      }
      this.name = name;
      this.snorky = snorky;
      this.packetReceived = new Signal();
      this.init();
    }
    /** Called by the constructor; subclasses set up their state and signals here. */
    init() {
    }
    /**
     * Send a message to this service (queued until the connection is ready).
     * @param {any} message
     */
    sendMessage(message) {
      this.snorky._sendServiceMessage(this.name, message);
    }
    /**
     * Called once the connection is open, before queued calls go out; after a
     * reconnection, put back what this service followed. A rejection is
     * reported through the client's `error` signal.
     * @param {boolean} reconnected
     * @returns {Promise<void> | void}
     */
    _restore(reconnected) {
    }
    /**
     * Called once the connection is ready and queued calls went out: for
     * restores that need the app's own calls (a DataSync `getToken` that asks
     * the server). Failures are reported through the client's `error` signal.
     * @param {boolean} reconnected
     * @returns {Promise<void> | void}
     */
    _resume(reconnected) {
    }
    /** Called when the connection is lost or closed. */
    _connectionLost() {
    }
  };
  var RPCService = class extends Service {
    init() {
      this.notificationReceived = new Signal();
      this.packetReceived.add(this.onPacket, this);
    }
    /**
     * Call `command` with `params`.
     * @param {string} command
     * @param {Record<string, any>} [params]
     * @param {{timeout?: number}} [options]
     * @returns {Promise<any>} the answer's `data`; rejected with a `SnorkyError`
     */
    rpcCall(command, params = {}, options = {}) {
      return this.snorky.call(this.name, command, params, options);
    }
    /**
     * A call made while restoring: it goes out before the calls queued by the app.
     * @param {string} command
     * @param {Record<string, any>} params
     */
    _restoreCall(command, params) {
      return this.snorky._call(this.name, command, params, {}, true);
    }
    /** @param {any} message */
    onPacket(message) {
      if (message === null || typeof message !== "object" || typeof message.type !== "string") {
        return;
      }
      if (message.type !== "response" && message.type !== "error") {
        this.notificationReceived.dispatch(message);
      }
    }
    /**
     * Add a method per command, each calling `rpcCall(command, params)`.
     * Refuses to replace a method that exists.
     * @param {string[]} commands
     */
    static addRPCMethods(commands) {
      for (const command of commands) {
        if (command in this.prototype) {
          throw new Error(`Snorky: ${this.name} already has a method named "${command}"`);
        }
        Object.defineProperty(this.prototype, command, {
          value: function(params) {
            return this.rpcCall(command, params || {});
          },
          writable: true,
          configurable: true
        });
      }
    }
  };

  // src/services/chat.js
  var Chat = class extends RPCService {
    init() {
      super.init();
      this.messageReceived = new Signal();
      this.presenceReceived = new Signal();
      this.readReceived = new Signal();
      this.membersChanged = new Signal();
      this.restored = new Signal();
      this.channels = /* @__PURE__ */ new Map();
      this.unsubscribed = new Signal();
      this.gap = new Signal();
      this.notificationReceived.add(this._onNotification, this);
    }
    /**
     * Join `channel`; resolves to `{members, presence, history?}`.
     * @param {{channel: any}} params
     */
    async join(params) {
      const answer = await this.rpcCall("join", params);
      this._joined(params.channel, answer);
      return answer;
    }
    /**
     * Leave `channel`.
     * @param {{channel: any}} params
     */
    leave(params) {
      this.channels.delete(stableStringify(params.channel));
      return this.rpcCall("leave", params);
    }
    /**
     * Send `body` to everyone in `channel`, the sender included.
     * @param {{channel: any, body: any}} params
     */
    send(params) {
      return this.rpcCall("send", params);
    }
    /**
     * Tell this identity's other connections that `channel` was read.
     * @param {{channel: any}} params
     */
    read(params) {
      return this.rpcCall("read", params);
    }
    /**
     * The members of a joined channel, `{identity, info}` each, in joining order.
     * @param {any} channel
     */
    getMembers(channel) {
      const entry = this.channels.get(stableStringify(channel));
      return entry ? entry.members.map((member) => ({ ...member })) : [];
    }
    _joined(channel, answer) {
      const presence = Array.isArray(answer?.presence) ? answer.presence : (answer?.members ?? []).map((identity) => ({ identity, info: null }));
      const entry = { channel, members: presence.map((m) => ({ identity: m.identity, info: m.info ?? null })) };
      this.channels.set(stableStringify(channel), entry);
      this.membersChanged.dispatch(channel, this.getMembers(channel));
    }
    _onNotification(message) {
      if (message.type === "message") {
        this.messageReceived.dispatch(message);
      } else if (message.type === "presence") {
        const entry = this.channels.get(stableStringify(message.channel));
        if (entry !== void 0) {
          const key = stableStringify(message.from);
          const index = entry.members.findIndex((m) => stableStringify(m.identity) === key);
          if (message.status === "joined" && (index < 0 || message.from === null)) {
            entry.members.push({ identity: message.from, info: message.info ?? null });
          } else if (message.status === "left" && index >= 0) {
            entry.members.splice(index, 1);
          }
        }
        this.presenceReceived.dispatch(message);
        if (entry !== void 0) {
          this.membersChanged.dispatch(message.channel, this.getMembers(message.channel));
        }
      } else if (message.type === "read") {
        this.readReceived.dispatch(message);
      } else if (message.type === "unsubscribed") {
        this.channels.delete(stableStringify(message.channel));
        this.unsubscribed.dispatch(message);
      } else if (message.type === "gap" && this.channels.has(stableStringify(message.channel))) {
        this.gap.dispatch(message);
      }
    }
    async _restore(reconnected) {
      if (!reconnected) {
        return;
      }
      const failures = [];
      await Promise.all(
        [...this.channels.entries()].map(async ([key, entry]) => {
          try {
            const answer = await this._restoreCall("join", { channel: entry.channel });
            this._joined(entry.channel, answer);
            this.restored.dispatch({ channel: entry.channel, answer });
          } catch (error) {
            if (error.code === "disconnected") {
              return;
            }
            this.channels.delete(key);
            failures.push(error);
            this.restored.dispatch({ channel: entry.channel, answer: null, error });
          }
        })
      );
      if (failures.length > 0) {
        throw failures[0];
      }
    }
  };

  // src/services/collections.js
  var Collection = class {
    /** @param {any} item */
    insert(item) {
      throw new Error("Snorky: Collection.insert() is not implemented");
    }
    /** @returns {{hasNext(): boolean, next(): any, update(item: any): void, remove(): void}} */
    getIterator() {
      throw new Error("Snorky: Collection.getIterator() is not implemented");
    }
  };
  var ArrayIterator = class {
    /**
     * @param {any[]} array
     * @param {{transformItem: (item: any) => any}} options
     */
    constructor(array, options) {
      this.array = array;
      this.options = options;
      this.index = -1;
      this.deleted = false;
    }
    hasNext() {
      return this.index < this.array.length - 1;
    }
    next() {
      if (!this.hasNext()) {
        throw new Error("Snorky: the iterator has no more items");
      }
      this.deleted = false;
      this.index++;
      return this.array[this.index];
    }
    _checkCurrent() {
      if (this.deleted) {
        throw new Error("Snorky: the iterator's current item was removed (call next())");
      }
      if (this.index < 0) {
        throw new Error("Snorky: the iterator has no current item (call next() first)");
      }
    }
    /** @param {any} item the new value of the current item (transformed) */
    update(item) {
      this._checkCurrent();
      this.array[this.index] = this.options.transformItem(item);
    }
    /** Remove the current item. */
    remove() {
      this._checkCurrent();
      this.array.splice(this.index, 1);
      this.index--;
      this.deleted = true;
    }
  };
  var ArrayCollection = class extends Collection {
    /**
     * @param {any[]} array
     * @param {{transformItem?: (item: any) => any}} [options]
     */
    constructor(array, options = {}) {
      super();
      this.array = array;
      this.options = { transformItem: (item) => item, ...options };
    }
    insert(item) {
      this.array.push(this.options.transformItem(item));
    }
    getIterator() {
      return new ArrayIterator(this.array, this.options);
    }
  };
  var SingleItemIterator = class {
    /** @param {SingleItemCollection} collection */
    constructor(collection) {
      this.collection = collection;
      this.fetched = false;
    }
    hasNext() {
      return !this.fetched;
    }
    next() {
      if (this.fetched) {
        throw new Error("Snorky: the iterator has no more items");
      }
      this.fetched = true;
      return this.collection.readHandler();
    }
    update(item) {
      if (!this.fetched) {
        throw new Error("Snorky: the iterator has no current item (call next() first)");
      }
      this.collection.updateHandler(item);
    }
    remove() {
      if (!this.fetched) {
        throw new Error("Snorky: the iterator has no current item (call next() first)");
      }
      this.collection.removeHandler();
    }
  };
  var SingleItemCollection = class extends Collection {
    /**
     * @param {() => any} readHandler
     * @param {(item: any) => void} updateHandler
     * @param {() => void} [removeHandler]
     */
    constructor(readHandler, updateHandler, removeHandler = () => {
    }) {
      super();
      this.readHandler = readHandler;
      this.updateHandler = updateHandler;
      this.removeHandler = removeHandler;
    }
    insert(item) {
      console.error("Snorky: a SingleItemCollection cannot insert items");
    }
    getIterator() {
      return new SingleItemIterator(this);
    }
  };
  var CollectionDeltaProcessor = class {
    /**
     * @param {Record<string, Collection | Record<string, Collection>>} [collections]
     * @param {{itemsAreEqual?: (item: any, other: any, delta: any) => boolean}} [options]
     */
    constructor(collections = {}, options = {}) {
      this.collections = collections;
      if (options.itemsAreEqual) {
        this.itemsAreEqual = options.itemsAreEqual;
      }
    }
    /**
     * Whether `item` (in a collection) and `other` (in a delta) are the same
     * row; by default, whether their `id`s are equal.
     */
    itemsAreEqual(item, other, delta) {
      return item != null && other != null && item.id === other.id;
    }
    /** The collection a delta goes to, or `null` (with an error on the console). */
    collectionFor(delta) {
      const entry = hasOwn(this.collections, delta.model) ? this.collections[delta.model] : void 0;
      if (entry === void 0) {
        console.error(`Snorky: a delta for a model with no collection: ${delta.model}`);
        return null;
      }
      if (entry instanceof Collection) {
        return entry;
      }
      if (delta.tag === void 0 || !hasOwn(entry, delta.tag)) {
        console.error(`Snorky: a delta for ${delta.model} with an unknown tag: ${delta.tag}`);
        return null;
      }
      return entry[delta.tag];
    }
    /** Apply one delta (`insert`, `update` or `delete`). */
    processDelta(delta) {
      const collection = this.collectionFor(delta);
      if (collection === null) {
        return;
      }
      if (delta.type === "insert") {
        if (!this._apply(collection, delta.data, delta, (iterator) => iterator.update(delta.data))) {
          collection.insert(delta.data);
        }
      } else if (delta.type === "update") {
        this._apply(collection, delta.oldData, delta, (iterator) => iterator.update(delta.newData));
      } else if (delta.type === "delete") {
        this._apply(collection, delta.data, delta, (iterator) => iterator.remove());
      } else {
        console.error(`Snorky: a delta of unknown type: ${delta.type}`);
      }
    }
    /** Find the item equal to `row` and act on it; whether one was found. */
    _apply(collection, row, delta, action) {
      const iterator = collection.getIterator();
      while (iterator.hasNext()) {
        if (this.itemsAreEqual(iterator.next(), row, delta)) {
          action(iterator);
          return true;
        }
      }
      return false;
    }
  };

  // src/services/cursors.js
  var Cursor = class {
  };
  var ForeignCursor = class extends Cursor {
    /**
     * @param {Record<string, any>} data the cursor as the server sends it
     * @param {CursorDocument} document
     */
    constructor(data, document) {
      super();
      Object.assign(this, data);
      this.document = document;
    }
    get isMine() {
      return false;
    }
  };
  var OwnCursor = class extends Cursor {
    /**
     * @param {CursorDocument} document
     * @param {{privateHandle: any, position: any, status: any}} data
     */
    constructor(document, data) {
      super();
      this.document = document;
      this.privateHandle = data.privateHandle;
      this.position = data.position;
      this.status = data.status;
      this.publicHandle = void 0;
      this.removed = false;
      this.pendingPromiseCount = 0;
    }
    get isMine() {
      return true;
    }
    /**
     * Change `position` and/or `status`; no call is made if neither changes.
     * @param {{position?: any, status?: any}} newData
     * @returns {Promise<void>}
     */
    update(newData) {
      for (const key of Object.keys(newData)) {
        if (key !== "position" && key !== "status") {
          throw new Error(`Snorky: a cursor has no "${key}" to update (only position and status)`);
        }
      }
      const changed = Object.keys(newData).filter((key) => this[key] !== newData[key]);
      if (changed.length === 0 || this.removed) {
        return Promise.resolve();
      }
      Object.assign(this, newData);
      return this._track(
        this.document.service.rpcCall("updateCursor", { privateHandle: this.privateHandle, newData })
      ).then(() => void 0);
    }
    /**
     * Remove this cursor.
     * @returns {Promise<void>}
     */
    remove() {
      if (this.removed) {
        return Promise.resolve();
      }
      this.removed = true;
      this.document._forgetOwn(this);
      return this._track(this.document.service.rpcCall("removeCursor", { privateHandle: this.privateHandle })).then(
        () => void 0
      );
    }
    /** Whether every change was acknowledged by the server. */
    isSynchronized() {
      return this.pendingPromiseCount === 0;
    }
    /** @param {Promise<any>} promise */
    _track(promise) {
      this.pendingPromiseCount++;
      return promise.finally(() => {
        this.pendingPromiseCount--;
      });
    }
    _create(internal) {
      const service = this.document.service;
      const params = {
        privateHandle: this.privateHandle,
        document: this.document.name,
        position: this.position,
        status: this.status
      };
      const call = internal ? service._restoreCall("createCursor", params) : service.rpcCall("createCursor", params);
      return this._track(call).then((publicHandle) => {
        this.publicHandle = publicHandle;
      });
    }
  };
  var CursorDocument = class {
    /**
     * @param {Cursors} service
     * @param {any} name
     * @param {Record<string, any>[]} cursors
     */
    constructor(service, name, cursors) {
      this.service = service;
      this.name = name;
      this.cursors = (cursors ?? []).map((data) => new ForeignCursor(data, this));
      this.cursorAdded = new Signal();
      this.cursorUpdated = new Signal();
      this.cursorRemoved = new Signal();
    }
    /**
     * Create a cursor of this page. Returns `[cursor, promise]` as Snorky 0.1
     * did: the cursor at once, and a promise settled by the server's answer.
     * @param {{position?: any, status?: any}} params
     * @returns {[OwnCursor, Promise<void>]}
     */
    createCursor(params = {}) {
      const cursor = new OwnCursor(this, {
        privateHandle: this.service.getFreePrivateHandle(),
        position: params.position ?? null,
        status: params.status ?? null
      });
      this.service.ownCursors[cursor.privateHandle] = cursor;
      this.cursors.push(cursor);
      return [cursor, cursor._create(false)];
    }
    /** Leave the document (this page's cursors in it are removed). */
    leave() {
      return this.service.leave({ document: this.name });
    }
    /** The cursors of the others. */
    foreignCursors() {
      return this.cursors.filter((cursor) => !cursor.isMine);
    }
    /** The cursors of this page. */
    ownCursors() {
      return this.cursors.filter((cursor) => cursor.isMine);
    }
    _find(publicHandle) {
      return this.cursors.findIndex((cursor) => !cursor.isMine && cursor.publicHandle === publicHandle);
    }
    onCursorAdded(data) {
      const cursor = new ForeignCursor(data, this);
      this.cursors.push(cursor);
      this.cursorAdded.dispatch(cursor);
    }
    onCursorUpdated(data) {
      const index = this._find(data.publicHandle);
      if (index < 0) {
        this.onCursorAdded(data);
        return;
      }
      const cursor = this.cursors[index];
      Object.assign(cursor, data, { document: this });
      this.cursorUpdated.dispatch(cursor);
    }
    onCursorRemoved(data) {
      const index = this._find(data.publicHandle);
      if (index >= 0) {
        const [cursor] = this.cursors.splice(index, 1);
        this.cursorRemoved.dispatch(cursor);
      }
    }
    /** Bring the others' cursors in line with a fresh `join` answer. */
    _reconcile(list) {
      const fresh = new Map((list ?? []).map((data) => [data.publicHandle, data]));
      for (const cursor of this.foreignCursors()) {
        if (!fresh.has(cursor.publicHandle)) {
          this.onCursorRemoved(cursor);
        }
      }
      for (const data of fresh.values()) {
        this.onCursorUpdated(data);
      }
    }
    _forgetOwn(cursor) {
      delete this.service.ownCursors[cursor.privateHandle];
      const index = this.cursors.indexOf(cursor);
      if (index >= 0) {
        this.cursors.splice(index, 1);
      }
    }
  };
  var Cursors = class extends RPCService {
    init() {
      super.init();
      this.documents = {};
      this.ownCursors = {};
      this.restored = new Signal();
      this._nextHandle = 1;
      this.unsubscribed = new Signal();
      this.notificationReceived.add(this._onNotification, this);
    }
    /**
     * Join `document`; resolves to a `CursorDocument` holding the cursors already there.
     * @param {{document: any}} params
     * @returns {Promise<CursorDocument>}
     */
    async join(params) {
      const answer = await this.rpcCall("join", params);
      const document = new CursorDocument(this, params.document, answer?.cursors);
      this.documents[stableStringify(params.document)] = document;
      return document;
    }
    /**
     * Leave `document`, removing this page's cursors in it.
     * @param {{document: any}} params
     */
    leave(params) {
      this._forget(params.document);
      return this.rpcCall("leave", params);
    }
    /** Drop a document and this page's cursors in it. */
    _forget(name) {
      const key = stableStringify(name);
      const document = this.documents[key];
      if (document !== void 0) {
        for (const cursor of document.ownCursors()) {
          cursor.removed = true;
          document._forgetOwn(cursor);
        }
        delete this.documents[key];
      }
    }
    /** A private handle no cursor of this page has. */
    getFreePrivateHandle() {
      while (this._nextHandle in this.ownCursors) {
        this._nextHandle++;
      }
      return this._nextHandle++;
    }
    _onNotification(message) {
      if (message.type === "unsubscribed") {
        this._forget(message.document);
        this.unsubscribed.dispatch(message);
        return;
      }
      const data = message.cursor;
      if (data === null || typeof data !== "object") {
        return;
      }
      const document = this.documents[stableStringify(data.document)];
      if (document === void 0) {
        return;
      }
      if (message.type === "cursorAdded") {
        document.onCursorAdded(data);
      } else if (message.type === "cursorUpdated") {
        document.onCursorUpdated(data);
      } else if (message.type === "cursorRemoved") {
        document.onCursorRemoved(data);
      }
    }
    async _restore(reconnected) {
      if (!reconnected) {
        return;
      }
      const failures = [];
      await Promise.all(
        Object.entries(this.documents).map(async ([key, document]) => {
          let answer;
          try {
            answer = await this._restoreCall("join", { document: document.name });
          } catch (error) {
            if (error.code === "disconnected") {
              return;
            }
            if (this.documents[key] === document) {
              delete this.documents[key];
            }
            failures.push(error);
            this.restored.dispatch({ document, error });
            return;
          }
          document._reconcile(answer?.cursors);
          const results = await Promise.allSettled(document.ownCursors().map((cursor) => cursor._create(true)));
          const failed = results.find((r) => r.status === "rejected" && r.reason?.code !== "disconnected");
          if (failed !== void 0) {
            failures.push(failed.reason);
            this.restored.dispatch({ document, error: failed.reason });
          } else {
            this.restored.dispatch({ document });
          }
        })
      );
      if (failures.length > 0) {
        throw failures[0];
      }
    }
  };
  Cursors.Document = CursorDocument;
  Cursors.Cursor = Cursor;
  Cursors.ForeignCursor = ForeignCursor;
  Cursors.OwnCursor = OwnCursor;

  // src/services/datasync.js
  var DataSyncSubscription = class {
    /**
     * @param {DataSync} service
     * @param {(() => any) | null} getToken
     */
    constructor(service, getToken) {
      this.service = service;
      this.token = null;
      this.getToken = getToken;
      this.active = false;
    }
    /** Cancel it; it is not restored any more. */
    cancel() {
      this.service.subscriptions.delete(this);
      const wasActive = this.active;
      this.active = false;
      if (wasActive && this.token !== null) {
        return this.service.cancelSubscription({ token: this.token });
      }
      return Promise.resolve(null);
    }
    async _acquire(token, internal) {
      const params = { token };
      if (internal) {
        await this.service._restoreCall("acquireSubscription", params);
      } else {
        await this.service.rpcCall("acquireSubscription", params);
      }
      this.token = token;
      this.active = true;
    }
  };
  var DataSync = class extends RPCService {
    init() {
      super.init();
      this.deltaReceived = new Signal();
      this.restored = new Signal();
      this.subscriptions = /* @__PURE__ */ new Set();
      this.notificationReceived.add(this._onNotification, this);
    }
    /**
     * Acquire the subscription of `token` (not restored after a reconnection: see `subscribe`).
     * @param {{token: string}} params
     */
    acquireSubscription(params) {
      return this.rpcCall("acquireSubscription", params);
    }
    /**
     * Cancel the subscription of `token`.
     * @param {{token: string}} params
     */
    cancelSubscription(params) {
      return this.rpcCall("cancelSubscription", params);
    }
    /**
     * Acquire a subscription that survives reconnections. `token` is the first
     * token (from the page, say); without it `getToken()` is called. After a
     * reconnection `getToken()` is called again, and may return a promise.
     * @param {{token?: string, getToken?: () => string | Promise<string>}} params
     * @returns {Promise<DataSyncSubscription>}
     */
    async subscribe({ token, getToken } = {}) {
      if (token === void 0 && typeof getToken !== "function") {
        throw new TypeError("Snorky: datasync.subscribe() needs a token or getToken");
      }
      const subscription = new DataSyncSubscription(this, typeof getToken === "function" ? getToken : null);
      await subscription._acquire(token === void 0 ? await getToken() : token, false);
      this.subscriptions.add(subscription);
      return subscription;
    }
    _onNotification(message) {
      if (message.type === "delta") {
        this.deltaReceived.dispatch(message.delta);
      }
    }
    _connectionLost() {
      for (const subscription of this.subscriptions) {
        subscription.active = false;
      }
    }
    /** Re-acquire each subscription with a fresh token, once queued calls went out. */
    async _resume(reconnected) {
      if (!reconnected) {
        return;
      }
      const failures = [];
      await Promise.all(
        [...this.subscriptions].map(async (subscription) => {
          if (subscription.active) {
            return;
          }
          try {
            if (subscription.getToken === null) {
              throw new Error("Snorky: a DataSync subscription without getToken cannot be restored");
            }
            await subscription._acquire(await subscription.getToken(), true);
            this.restored.dispatch({ subscription });
          } catch (error) {
            if (error?.code === "disconnected") {
              return;
            }
            this.subscriptions.delete(subscription);
            failures.push(error);
            this.restored.dispatch({ subscription, error });
          }
        })
      );
      if (failures.length > 0) {
        throw failures[0];
      }
    }
  };
  DataSync.CollectionDeltaProcessor = CollectionDeltaProcessor;
  DataSync.Collection = Collection;
  DataSync.ArrayCollection = ArrayCollection;
  DataSync.ArrayIterator = ArrayIterator;
  DataSync.SingleItemCollection = SingleItemCollection;
  DataSync.SingleItemIterator = SingleItemIterator;
  DataSync.Subscription = DataSyncSubscription;

  // src/services/messaging.js
  var Messaging = class extends RPCService {
    init() {
      super.init();
      this.messageReceived = new Signal();
      this.restored = new Signal();
      this.names = /* @__PURE__ */ new Map();
      this.notificationReceived.add(this._onNotification, this);
    }
    /**
     * Take the participant name `name`.
     * @param {{name: any}} params
     */
    async registerParticipant(params) {
      const answer = await this.rpcCall("registerParticipant", params);
      this.names.set(stableStringify(params.name), params.name);
      return answer;
    }
    /**
     * Give up the participant name `name`.
     * @param {{name: any}} params
     */
    unregisterParticipant(params) {
      this.names.delete(stableStringify(params.name));
      return this.rpcCall("unregisterParticipant", params);
    }
    /** Every registered name, sorted. */
    listParticipants() {
      return this.rpcCall("listParticipants", {});
    }
    /**
     * Send `body` from `sender` (a name this client holds) to `dest`.
     * @param {{sender: any, dest: any, body: any}} params
     */
    send(params) {
      return this.rpcCall("send", params);
    }
    _onNotification(message) {
      if (message.type === "message") {
        this.messageReceived.dispatch(message);
      }
    }
    async _restore(reconnected) {
      if (!reconnected) {
        return;
      }
      const failures = [];
      await Promise.all(
        [...this.names.entries()].map(async ([key, name]) => {
          try {
            await this._restoreCall("registerParticipant", { name });
            this.restored.dispatch({ name });
          } catch (error) {
            if (error.code === "disconnected") {
              return;
            }
            this.names.delete(key);
            failures.push(error);
            this.restored.dispatch({ name, error });
          }
        })
      );
      if (failures.length > 0) {
        throw failures[0];
      }
    }
  };

  // src/services/progress.js
  var NOTIFICATIONS = /* @__PURE__ */ new Set(["init", "update", "done"]);
  var Progress = class extends RPCService {
    init() {
      super.init();
      this.taskChanged = new Signal();
      this.restored = new Signal();
      this.tasks = /* @__PURE__ */ new Map();
      this.watched = /* @__PURE__ */ new Set();
      this.notificationReceived.add(this._onNotification, this);
    }
    /**
     * Follow `task`. Resolves to its state, or `null` if it does not exist yet
     * (its `init` comes when it is created).
     * @param {{task: string}} params
     */
    async subscribe(params) {
      const answer = await this.rpcCall("subscribe", params);
      this.watched.add(params.task);
      return answer;
    }
    /**
     * Stop following `task`.
     * @param {{task: string}} params
     */
    unsubscribe(params) {
      this.watched.delete(params.task);
      return this.rpcCall("unsubscribe", params);
    }
    /**
     * The latest state of `task`, or `null`.
     * @param {string} task
     */
    getTask(task) {
      const state = this.tasks.get(task);
      return state ? { ...state } : null;
    }
    _onNotification(message) {
      if (!NOTIFICATIONS.has(message.type) || typeof message.task !== "string") {
        return;
      }
      const { type, ...fields } = message;
      const state = { ...type === "init" ? {} : this.tasks.get(message.task), ...fields };
      if (type === "done" && state.status === "completed" && typeof state.max === "number") {
        state.value = state.max;
      }
      this.tasks.set(message.task, state);
      this.taskChanged.dispatch({ ...state }, message);
    }
    async _restore(reconnected) {
      if (!reconnected) {
        return;
      }
      const failures = [];
      await Promise.all(
        [...this.watched].map(async (task) => {
          try {
            const state = await this._restoreCall("subscribe", { task });
            this.restored.dispatch({ task, state });
          } catch (error) {
            if (error.code === "disconnected") {
              return;
            }
            this.watched.delete(task);
            failures.push(error);
            this.restored.dispatch({ task, state: null, error });
          }
        })
      );
      if (failures.length > 0) {
        throw failures[0];
      }
    }
  };

  // src/services/pubsub.js
  var PubSub = class extends RPCService {
    init() {
      super.init();
      this.messagePublished = new Signal();
      this.restored = new Signal();
      this.subscriptions = /* @__PURE__ */ new Map();
      this.unsubscribed = new Signal();
      this.gap = new Signal();
      this.subscribedByServer = new Signal();
      this.userMessage = new Signal();
      this.presenceChanged = new Signal();
      this.notificationReceived.add(this._onNotification, this);
    }
    /**
     * Subscribe to `channel`. Resolves to `null`, or for a channel with history
     * to its position `{offset, epoch}` (asked with `position: true`, so that the
     * subscription can be recovered after a reconnection). `token` is a
     * subscription token for a channel the connection's own token does not grant.
     * @param {{channel: any, recover?: {offset: number, epoch: string}, token?: string}} params
     */
    async subscribe(params) {
      const key = stableStringify(params.channel);
      const answer = await this.rpcCall("subscribe", { position: true, ...params });
      const entry = this.subscriptions.get(key) ?? { channel: params.channel, epoch: null, offset: null, buffer: null };
      this.subscriptions.set(key, entry);
      if (answer !== null && typeof answer === "object") {
        this._deliverRecovered(entry, answer);
      }
      return answer;
    }
    /**
     * Cancel the subscription to `channel`.
     * @param {{channel: any}} params
     */
    unsubscribe(params) {
      this.subscriptions.delete(stableStringify(params.channel));
      return this.rpcCall("unsubscribe", params);
    }
    /**
     * Publish `message` to `channel`.
     * @param {{channel: any, message: any}} params
     */
    publish(params) {
      return this.rpcCall("publish", params);
    }
    /**
     * Who is subscribed to `channel`, where its namespace allows it:
     * `[{identity, info, connections}]`.
     * @param {{channel: any}} params
     */
    presence(params) {
      return this.rpcCall("presence", params);
    }
    /**
     * How many identities and connections are subscribed to `channel`.
     * @param {{channel: any}} params
     */
    presenceStats(params) {
      return this.rpcCall("presence_stats", params);
    }
    /**
     * The most recent messages of `channel` (at most `limit`), where its namespace
     * allows it: `{offset, epoch, publications}`.
     * @param {{channel: any, limit?: number}} params
     */
    history(params) {
      return this.rpcCall("history", params);
    }
    /** The channels subscribed to. */
    channels() {
      return [...this.subscriptions.values()].map((entry) => entry.channel);
    }
    _onNotification(message) {
      if (message.type === "unsubscribed") {
        this.subscriptions.delete(stableStringify(message.channel));
        this.unsubscribed.dispatch(message);
        return;
      }
      if (message.type === "gap") {
        if (this.subscriptions.has(stableStringify(message.channel))) {
          this.gap.dispatch(message);
        }
        return;
      }
      if (message.type === "subscribed") {
        const entry2 = { channel: message.channel, epoch: null, offset: null, buffer: null, server: true };
        this.subscriptions.set(stableStringify(message.channel), entry2);
        this._deliverRecovered(entry2, message);
        this.subscribedByServer.dispatch(message);
        return;
      }
      if (message.type === "user_message") {
        this.userMessage.dispatch(message);
        return;
      }
      if (message.type === "join" || message.type === "leave") {
        this.presenceChanged.dispatch(message);
        return;
      }
      if (message.type !== "message") {
        return;
      }
      const entry = this.subscriptions.get(stableStringify(message.channel));
      if (entry !== void 0 && typeof message.offset === "number") {
        if (entry.buffer !== null) {
          entry.buffer.push(message);
          return;
        }
        if (!accept(entry, message)) {
          return;
        }
      }
      this.messagePublished.dispatch(message);
    }
    /** Deliver the publications of a subscribe answer, then take its position. */
    _deliverRecovered(entry, answer) {
      let missed = 0;
      if (Array.isArray(answer.publications)) {
        for (const publication of answer.publications) {
          if (accept(entry, publication)) {
            missed++;
            this.messagePublished.dispatch(publication);
          }
        }
      }
      if (typeof answer.offset === "number" && typeof answer.epoch === "string") {
        if (entry.epoch !== answer.epoch || entry.offset === null || answer.offset > entry.offset) {
          entry.epoch = answer.epoch;
          entry.offset = answer.offset;
        }
      }
      return missed;
    }
    async _restore(reconnected) {
      if (!reconnected) {
        return;
      }
      const failures = [];
      for (const [key, entry] of [...this.subscriptions.entries()]) {
        if (entry.server) {
          this.subscriptions.delete(key);
        }
      }
      await Promise.all(
        [...this.subscriptions.entries()].map(async ([key, entry]) => {
          const history = entry.epoch !== null && entry.offset !== null;
          const params = { channel: entry.channel, position: true };
          if (history) {
            params.recover = { offset: entry.offset, epoch: entry.epoch };
          }
          entry.buffer = [];
          let answer;
          try {
            answer = await this._restoreCall("subscribe", params);
          } catch (error) {
            entry.buffer = null;
            if (error.code === "disconnected") {
              return;
            }
            this.subscriptions.delete(key);
            failures.push(error);
            this.restored.dispatch({ channel: entry.channel, recovered: false, history, missed: 0, error });
            return;
          }
          let missed = 0;
          const recovered = history && answer !== null && answer.recovered === true;
          if (answer !== null && typeof answer === "object") {
            if (!recovered) {
              entry.epoch = null;
              entry.offset = null;
            }
            missed = this._deliverRecovered(entry, answer);
          }
          const buffered = entry.buffer;
          entry.buffer = null;
          for (const message of buffered) {
            if (accept(entry, message)) {
              this.messagePublished.dispatch(message);
            }
          }
          this.restored.dispatch({ channel: entry.channel, recovered, history: answer !== null, missed });
        })
      );
      if (failures.length > 0) {
        throw failures[0];
      }
    }
    _connectionLost() {
      for (const entry of this.subscriptions.values()) {
        entry.buffer = null;
      }
    }
  };
  function accept(entry, message) {
    if (typeof message.offset !== "number") {
      return true;
    }
    if (entry.epoch === message.epoch && entry.offset !== null && message.offset <= entry.offset) {
      return false;
    }
    entry.epoch = message.epoch ?? null;
    entry.offset = message.offset;
    return true;
  }

  // src/index.js
  var version = true ? "0.2.0.dev0" : "dev";
  Object.assign(Snorky, {
    version,
    Signal,
    SignalBinding,
    SnorkyError,
    CloseCodes,
    CloseReconnect,
    States,
    Service,
    RPCService,
    PubSub,
    Chat,
    Messaging,
    Cursors,
    DataSync,
    Progress,
    stableStringify,
    backoffDelay,
    readTokenClaims
  });
  var index_default = Snorky;

  // src/classic.js
  globalThis.Snorky = index_default;
})();
