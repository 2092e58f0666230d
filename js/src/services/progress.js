/**
 * Progress: follow background tasks' progress bars. Tasks followed are
 * followed again after a reconnection (the server sends their state anew).
 *
 * @module
 */

import { Signal } from "../signal.js";
import { RPCService } from "./base.js";

const NOTIFICATIONS = new Set(["init", "update", "done"]);

export class Progress extends RPCService {
  init() {
    super.init();
    /**
     * A task followed changed (args: `state, notification`). `state` holds
     * everything known: `{task, name, min, max, value, label, indeterminate, status, error}`.
     */
    this.taskChanged = new Signal();
    /** After a reconnection, a task is followed again (args: `{task, state, error?}`). */
    this.restored = new Signal();
    /** Task id -> its latest state. @type {Map<string, Record<string, any>>} */
    this.tasks = new Map();
    /** The tasks followed. @type {Set<string>} */
    this.watched = new Set();
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
    const state = { ...(type === "init" ? {} : this.tasks.get(message.task)), ...fields };
    if (type === "done" && state.status === "completed" && typeof state.max === "number") {
      state.value = state.max; // A completed task is full; `done` does not say so.
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
      }),
    );
    if (failures.length > 0) {
      throw failures[0];
    }
  }
}
