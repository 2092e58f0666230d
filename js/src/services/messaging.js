/**
 * Messaging: one-to-one messages between registered participant names. Names
 * held are registered again after a reconnection.
 *
 * @module
 */

import { stableStringify } from "../encoding.js";
import { Signal } from "../signal.js";
import { RPCService } from "./base.js";

export class Messaging extends RPCService {
  init() {
    super.init();
    /** A message to one of this client's names (args: `{type, sender, dest, body}`). */
    this.messageReceived = new Signal();
    /** After a reconnection, a name was registered again (args: `{name, error?}`). */
    this.restored = new Signal();
    /** @type {Map<string, any>} name key -> name */
    this.names = new Map();
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
      }),
    );
    if (failures.length > 0) {
      throw failures[0];
    }
  }
}
