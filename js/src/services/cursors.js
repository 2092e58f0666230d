/**
 * Cursors: documents whose members see one another's cursors. After a
 * reconnection each document is joined again, its cursor list brought up to
 * date, and this page's own cursors created again where they were.
 *
 * @module
 */

import { stableStringify } from "../encoding.js";
import { Signal } from "../signal.js";
import { RPCService } from "./base.js";

/** Base class of every cursor (for `instanceof`). */
export class Cursor {}

/** Somebody else's cursor: `publicHandle`, `position`, `status`, `owner`, `document`. */
export class ForeignCursor extends Cursor {
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
}

/**
 * A cursor of this page. It exists at once; `publicHandle` arrives with the
 * server's answer. `update` and `remove` change it locally at once too.
 */
export class OwnCursor extends Cursor {
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
    this.publicHandle = undefined;
    this.removed = false;
    /** Calls about this cursor still waiting for their answer. */
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
      this.document.service.rpcCall("updateCursor", { privateHandle: this.privateHandle, newData }),
    ).then(() => undefined);
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
      () => undefined,
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
      status: this.status,
    };
    const call = internal ? service._restoreCall("createCursor", params) : service.rpcCall("createCursor", params);
    return this._track(call).then((publicHandle) => {
      this.publicHandle = publicHandle;
    });
  }
}

/** A joined document: its `cursors` (this page's and the others'), and signals about the others'. */
export class CursorDocument {
  /**
   * @param {Cursors} service
   * @param {any} name
   * @param {Record<string, any>[]} cursors
   */
  constructor(service, name, cursors) {
    this.service = service;
    this.name = name;
    /** @type {Cursor[]} */
    this.cursors = (cursors ?? []).map((data) => new ForeignCursor(data, this));
    /** Somebody else's cursor appeared (args: `cursor`). */
    this.cursorAdded = new Signal();
    /** Somebody else's cursor moved or changed status (args: `cursor`). */
    this.cursorUpdated = new Signal();
    /** Somebody else's cursor went away (args: `cursor`). */
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
      status: params.status ?? null,
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
}

export class Cursors extends RPCService {
  init() {
    super.init();
    /** Document key -> joined document. @type {Record<string, CursorDocument>} */
    this.documents = {};
    /** Private handle -> this page's cursor. @type {Record<string, OwnCursor>} */
    this.ownCursors = {};
    /** After a reconnection, a document was joined again (args: `{document, error?}`). */
    this.restored = new Signal();
    this._nextHandle = 1;
    /**
     * The server removed this connection from a document, with its cursors (args:
     * `{type: "unsubscribed", document}`); it is not joined again after a reconnection.
     */
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
    if (document !== undefined) {
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
    if (document === undefined) {
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
        if (failed !== undefined) {
          failures.push(failed.reason);
          this.restored.dispatch({ document, error: failed.reason });
        } else {
          this.restored.dispatch({ document });
        }
      }),
    );
    if (failures.length > 0) {
      throw failures[0];
    }
  }
}

Cursors.Document = CursorDocument;
Cursors.Cursor = Cursor;
Cursors.ForeignCursor = ForeignCursor;
Cursors.OwnCursor = OwnCursor;
