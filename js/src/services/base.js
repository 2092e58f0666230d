/**
 * The base classes of connectors: `Service` (free-form messages) and
 * `RPCService` (commands answered by the server, and notifications).
 *
 * @module
 */

import { Signal } from "../signal.js";

/**
 * A connector to one service of the server, by name. The client creates one
 * per entry of its `services` option: `new ServiceClass(name, snorky)`.
 */
export class Service {
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
    /** Every message from this service (args: `message`). */
    this.packetReceived = new Signal();
    this.init();
  }

  /** Called by the constructor; subclasses set up their state and signals here. */
  init() {}

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
  _restore(reconnected) {}

  /**
   * Called once the connection is ready and queued calls went out: for
   * restores that need the app's own calls (a DataSync `getToken` that asks
   * the server). Failures are reported through the client's `error` signal.
   * @param {boolean} reconnected
   * @returns {Promise<void> | void}
   */
  _resume(reconnected) {}

  /** Called when the connection is lost or closed. */
  _connectionLost() {}
}

/**
 * A service spoken to with commands: `rpcCall(command, params)` returns a
 * Promise of the answer; notifications go to `notificationReceived`.
 */
export class RPCService extends Service {
  init() {
    /** Every message that is not an answer (args: `message`). */
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
        value: function (params) {
          return this.rpcCall(command, params || {});
        },
        writable: true,
        configurable: true,
      });
    }
  }
}
