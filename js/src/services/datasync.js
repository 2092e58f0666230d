/**
 * DataSync: acquire subscriptions the application server authorized and
 * receive their deltas.
 *
 * A subscription token works once, and the server cancels a subscription
 * when its connection goes. So that a reconnection can restore it, subscribe
 * with `getToken`, a function that asks the application for a fresh token
 * (and, usually, reloads the rows it shows: deltas sent during the gap are
 * lost).
 *
 * @module
 */

import { Signal } from "../signal.js";
import { RPCService } from "./base.js";
import {
  ArrayCollection,
  ArrayIterator,
  Collection,
  CollectionDeltaProcessor,
  SingleItemCollection,
  SingleItemIterator,
} from "./collections.js";

/** A subscription made with `datasync.subscribe()`. */
export class DataSyncSubscription {
  /**
   * @param {DataSync} service
   * @param {(() => any) | null} getToken
   */
  constructor(service, getToken) {
    this.service = service;
    /** The token of the current acquisition. */
    this.token = null;
    this.getToken = getToken;
    /** Whether it is acquired on the current connection. */
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
}

export class DataSync extends RPCService {
  init() {
    super.init();
    /** A delta for one of this client's subscriptions (args: `delta`). Snorky 0.1's signal. */
    this.deltaReceived = new Signal();
    /**
     * After a reconnection, a subscription was acquired again with a fresh
     * token (args: `{subscription, error?}`).
     */
    this.restored = new Signal();
    /** The subscriptions made with `subscribe()`. @type {Set<DataSyncSubscription>} */
    this.subscriptions = new Set();
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
    if (token === undefined && typeof getToken !== "function") {
      throw new TypeError("Snorky: datasync.subscribe() needs a token or getToken");
    }
    const subscription = new DataSyncSubscription(this, typeof getToken === "function" ? getToken : null);
    await subscription._acquire(token === undefined ? await getToken() : token, false);
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
      }),
    );
    if (failures.length > 0) {
      throw failures[0];
    }
  }
}

DataSync.CollectionDeltaProcessor = CollectionDeltaProcessor;
DataSync.Collection = Collection;
DataSync.ArrayCollection = ArrayCollection;
DataSync.ArrayIterator = ArrayIterator;
DataSync.SingleItemCollection = SingleItemCollection;
DataSync.SingleItemIterator = SingleItemIterator;
DataSync.Subscription = DataSyncSubscription;
