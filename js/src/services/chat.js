/**
 * Chat: channels with members, presence and read receipts. Channels joined
 * are joined again after a reconnection.
 *
 * @module
 */

import { stableStringify } from "../encoding.js";
import { Signal } from "../signal.js";
import { RPCService } from "./base.js";

export class Chat extends RPCService {
  init() {
    super.init();
    /** A message in a joined channel (args: `{type, from, channel, body, timestamp}`). */
    this.messageReceived = new Signal();
    /** A member arrived or left (args: `{type, from, channel, status, timestamp, info}`). */
    this.presenceReceived = new Signal();
    /** Another connection of the same identity read a channel (args: `{type, channel, timestamp}`). */
    this.readReceived = new Signal();
    /** The member list of a channel changed (args: `channel, members`). */
    this.membersChanged = new Signal();
    /**
     * After a reconnection, a channel was joined again (args: `{channel, answer, error?}`):
     * `answer` is the `join` answer (members, presence, history).
     */
    this.restored = new Signal();
    /**
     * Channel key -> `{channel, members}`; members are `{identity, info}`, in joining order.
     * @type {Map<string, {channel: any, members: {identity: any, info: any}[]}>}
     */
    this.channels = new Map();
    /**
     * The server removed this connection from a channel (args: `{type: "unsubscribed", channel}`);
     * the client has forgotten the channel and will not join it again after a reconnection.
     */
    this.unsubscribed = new Signal();
    /**
     * Messages of a joined channel were lost on the way (args: `{type: "gap", channel,
     * missed}`): the server's node was cut off from the others, so `missed` messages
     * and presence changes never reached this client. The app should reload the
     * channel (leave and join it again for its members and history).
     */
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
    const presence = Array.isArray(answer?.presence)
      ? answer.presence
      : (answer?.members ?? []).map((identity) => ({ identity, info: null }));
    const entry = { channel, members: presence.map((m) => ({ identity: m.identity, info: m.info ?? null })) };
    this.channels.set(stableStringify(channel), entry);
    this.membersChanged.dispatch(channel, this.getMembers(channel));
  }

  _onNotification(message) {
    if (message.type === "message") {
      this.messageReceived.dispatch(message);
    } else if (message.type === "presence") {
      const entry = this.channels.get(stableStringify(message.channel));
      if (entry !== undefined) {
        const key = stableStringify(message.from);
        const index = entry.members.findIndex((m) => stableStringify(m.identity) === key);
        if (message.status === "joined" && (index < 0 || message.from === null)) {
          entry.members.push({ identity: message.from, info: message.info ?? null });
        } else if (message.status === "left" && index >= 0) {
          entry.members.splice(index, 1);
        }
      }
      this.presenceReceived.dispatch(message);
      if (entry !== undefined) {
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
      }),
    );
    if (failures.length > 0) {
      throw failures[0];
    }
  }
}
