/**
 * Snorky's JavaScript client, as an ES module:
 *
 *     import Snorky from "/snorky.mjs";
 *     const snorky = new Snorky(WebSocket, "/ws", { pubsub: Snorky.PubSub });
 *
 * Every name is also a property of the `Snorky` class, as in Snorky 0.1
 * (`Snorky.PubSub`, `Snorky.DataSync.ArrayCollection`), and of `window.Snorky`
 * in the classic script build.
 *
 * @module
 */

import { Snorky, States } from "./client.js";
import { backoffDelay, readTokenClaims, stableStringify } from "./encoding.js";
import { CloseCodes, CloseReconnect, SnorkyError } from "./errors.js";
import { RPCService, Service } from "./services/base.js";
import { Chat } from "./services/chat.js";
import {
  ArrayCollection,
  ArrayIterator,
  Collection,
  CollectionDeltaProcessor,
  SingleItemCollection,
  SingleItemIterator,
} from "./services/collections.js";
import { Cursor, CursorDocument, Cursors, ForeignCursor, OwnCursor } from "./services/cursors.js";
import { DataSync, DataSyncSubscription } from "./services/datasync.js";
import { Messaging } from "./services/messaging.js";
import { Progress } from "./services/progress.js";
import { PubSub } from "./services/pubsub.js";
import { Signal, SignalBinding } from "./signal.js";

/** The client's version: the Python package's, set by the build. */
export const version = typeof __SNORKY_VERSION__ === "string" ? __SNORKY_VERSION__ : "dev";

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
  readTokenClaims,
});

export default Snorky;
export {
  Snorky,
  States,
  Signal,
  SignalBinding,
  SnorkyError,
  CloseCodes,
  CloseReconnect,
  Service,
  RPCService,
  PubSub,
  Chat,
  Messaging,
  Cursors,
  CursorDocument,
  Cursor,
  ForeignCursor,
  OwnCursor,
  DataSync,
  DataSyncSubscription,
  Progress,
  Collection,
  ArrayCollection,
  ArrayIterator,
  SingleItemCollection,
  SingleItemIterator,
  CollectionDeltaProcessor,
  stableStringify,
  backoffDelay,
  readTokenClaims,
};
