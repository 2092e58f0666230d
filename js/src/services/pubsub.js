/**
 * PubSub: channels to subscribe and publish to, with history recovery after a
 * reconnection on channels that keep history.
 *
 * @module
 */

import { stableStringify } from "../encoding.js";
import { Signal } from "../signal.js";
import { RPCService } from "./base.js";

export class PubSub extends RPCService {
  init() {
    super.init();
    /** A message arrived on a subscribed channel (args: `{type, channel, message, offset?, epoch?}`). */
    this.messagePublished = new Signal();
    /**
     * After a reconnection, a subscription is back (args: `{channel, recovered,
     * history, missed, error?}`). `recovered` is true when every message
     * published during the gap was delivered (only channels with history can
     * say so); otherwise the app should reload what the channel feeds.
     */
    this.restored = new Signal();
    /**
     * Channel key -> `{channel, epoch, offset, buffer}`: what the client follows.
     * @type {Map<string, {channel: any, epoch: string | null, offset: number | null, buffer: any[] | null}>}
     */
    this.subscriptions = new Map();
    /**
     * The server ended a subscription (args: `{type: "unsubscribed", channel}`);
     * the client has forgotten it and will not subscribe again after a reconnection.
     */
    this.unsubscribed = new Signal();
    /**
     * Messages of a subscribed channel were lost on the way (args: `{type: "gap",
     * channel, missed}`): the server's node was cut off from the others and the
     * channel's history could not fill the gap, so `missed` messages never reached
     * this client. The subscription goes on; the app should reload what the
     * channel feeds.
     */
    this.gap = new Signal();
    /**
     * The server subscribed this connection itself (args: `{type: "subscribed",
     * channel, offset?, epoch?}`): its messages arrive as any others. The server
     * decides again after a reconnection, so the client does not subscribe to it then.
     */
    this.subscribedByServer = new Signal();
    /** A message to this user, from the application (args: `{type: "user_message", message}`). */
    this.userMessage = new Signal();
    /**
     * A connection joined or left a channel whose namespace announces it (args:
     * `{type: "join" | "leave", channel, identity, info, client}`).
     */
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
      const entry = { channel: message.channel, epoch: null, offset: null, buffer: null, server: true };
      this.subscriptions.set(stableStringify(message.channel), entry);
      this._deliverRecovered(entry, message);
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
    if (entry !== undefined && typeof message.offset === "number") {
      if (entry.buffer !== null) {
        // A recovery is under way: live messages wait for the missed ones.
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
        this.subscriptions.delete(key); // the server subscribes it again if it still wants to
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
            return; // Tried again on the next connection.
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
            // A new stream (or none): start from its current position.
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
      }),
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
}

/**
 * Whether to deliver `message` (and take its position): not if its offset is
 * not above the last one delivered in the same stream.
 */
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
