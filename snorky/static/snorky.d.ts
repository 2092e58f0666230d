// Snorky 0.2.0.dev0: type declarations of the JavaScript client.
// Copied by js/build.mjs from js/src/snorky.d.ts; do not edit.

// The public API of Snorky's JavaScript client. The same declarations serve the
// ES module (`import Snorky from "/snorky.mjs"`) and the classic script
// (`window.Snorky`). js/test/types.test.mjs type-checks them with TypeScript.

/** A function called by a signal. */
export type Listener<A extends unknown[]> = (...args: A) => unknown;

/** What `Signal.add` returns: `detach()` stops listening. */
export declare class SignalBinding<A extends unknown[] = unknown[]> {
  readonly signal: Signal<A>;
  readonly listener: Listener<A>;
  readonly context: unknown;
  readonly once: boolean;
  detach(): void;
}

/** An event: listeners added with `add` are called by `dispatch`, in order. */
export declare class Signal<A extends unknown[] = unknown[]> {
  add(listener: Listener<A>, context?: unknown): SignalBinding<A>;
  addOnce(listener: Listener<A>, context?: unknown): SignalBinding<A>;
  remove(listener: Listener<A>, context?: unknown): Listener<A>;
  removeAll(): void;
  has(listener: Listener<A>, context?: unknown): boolean;
  getNumListeners(): number;
  dispatch(...args: A): void;
}

/** The codes of the client's own errors; the server's are in the protocol reference. */
export type ClientErrorCode = "timeout" | "disconnected" | "closed" | "token_unavailable";

/** A failed call: `message` is the server's text; test `code`. */
export declare class SnorkyError extends Error {
  constructor(message: string, code: string, details?: { service?: string | null; command?: string; data?: unknown });
  readonly code: ClientErrorCode | string;
  readonly service: string | null;
  readonly command: string | null;
  /** The server's whole error message, when there was one. */
  readonly data: unknown;
}

export declare const CloseCodes: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  ABNORMAL: 1006;
  INVALID_DATA: 1007;
  MESSAGE_TOO_BIG: 1009;
  INTERNAL_ERROR: 1011;
  SERVICE_RESTART: 1012;
  TRY_AGAIN_LATER: 1013;
  INVALID_TOKEN: 4001;
  TOKEN_EXPIRED: 4002;
  FORBIDDEN_ORIGIN: 4003;
  DISCONNECTED: 4004;
  TOO_MANY_CONNECTIONS: 4005;
  SLOW_CLIENT: 4008;
  TOO_MANY_REQUESTS: 4029;
}>;

/** What the client does after each close code: stay closed, back off, go now, or get a new token. */
export declare const CloseReconnect: Readonly<Record<number, "no" | "backoff" | "now" | "new token">>;

export type State = "connecting" | "connected" | "reconnecting" | "disconnected";

export declare const States: Readonly<{
  CONNECTING: "connecting";
  CONNECTED: "connected";
  RECONNECTING: "reconnecting";
  DISCONNECTED: "disconnected";
}>;

/**
 * What the client needs of a socket: `WebSocket` and `SockJS` fit. The client
 * sets the four handlers: `onmessage` receives `{data}`, `onclose` `{code, reason}`.
 */
export interface SocketLike {
  onopen: unknown;
  onmessage: unknown;
  onclose: unknown;
  onerror: unknown;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketClass = new (url: string) => SocketLike;

/** A connector class: `new ServiceClass(name, snorky)`. */
export type ServiceClass<S extends Service = Service> = new (name: string, snorky: Snorky) => S;

export interface BackoffOptions {
  /** Milliseconds; the first delay is random below this (default 500). */
  base?: number;
  /** Milliseconds; no delay is longer (default 30000). */
  max?: number;
}

export interface SnorkyOptions {
  /** Log every message to the console (default false). */
  debug?: boolean;
  /** Connect at once (default true); otherwise call `connect()`. */
  autoConnect?: boolean;
  /** Reconnect after losing the connection (default true). */
  reconnect?: boolean;
  backoff?: BackoffOptions;
  /** Milliseconds a call waits for its answer (default 10000; 0: forever). */
  rpcTimeout?: number;
  /** Milliseconds a socket may take to open before the attempt counts as failed (default 10000; 0: forever). */
  connectTimeout?: number;
  /** The token to connect with. */
  token?: string | null;
  /** Returns a fresh token: before connecting without one, after the server refused one, and before it expires. */
  getToken?: (() => string | Promise<string>) | null;
  /** How the token reaches the server: in the URL (default) or with the `authenticate` command. */
  tokenTransport?: "url" | "message";
  /** The name of the auth service (default "auth"). */
  authService?: string;
  /** Refresh the token this many milliseconds before it expires (default 60000, at most a fifth of its lifetime). */
  refreshMargin?: number;
  /** Create the socket yourself (to pass options to SockJS, say). */
  createSocket?: ((url: string) => SocketLike) | null;
  /** Whether the socket class is SockJS (relative URLs then resolve to http:, not ws:); guessed from its name. */
  sockjs?: boolean | null;
}

export interface SnorkyObjectOptions extends SnorkyOptions {
  url: string;
  socket?: SocketClass;
  services?: Record<string, ServiceClass>;
}

export interface CallOptions {
  /** Milliseconds (0: forever); default: the client's `rpcTimeout`. */
  timeout?: number;
}

export interface AuthAnswer {
  identity: unknown;
  info: unknown;
  expiresAt: number | null;
}

/** A connection to a Snorky server. */
export declare class Snorky<Services extends Record<string, Service> = Record<string, any>> {
  constructor(
    socketClass: SocketClass,
    address: string,
    services?: { [K in keyof Services]: ServiceClass<Services[K]> },
    options?: SnorkyOptions,
  );
  constructor(options: SnorkyObjectOptions);

  readonly address: string;
  readonly socketClass: SocketClass;
  readonly options: Required<SnorkyOptions>;
  debug: boolean;
  readonly services: Services;
  readonly state: State;
  readonly isConnected: boolean;
  readonly isConnecting: boolean;
  readonly identity: unknown;
  readonly userInfo: unknown;
  readonly token: string | null;

  readonly connected: Signal<[{ reconnected: boolean }]>;
  readonly disconnected: Signal<[{ code: number; reason: string; willReconnect: boolean }]>;
  readonly stateChanged: Signal<[State, State]>;
  readonly reconnecting: Signal<[{ attempt: number; delay: number; code: number }]>;
  readonly restored: Signal<[{ failures: { service: string; error: unknown }[] }]>;
  readonly authenticated: Signal<[{ identity: unknown; info: unknown; expiresAt: number | null }]>;
  readonly error: Signal<[unknown]>;

  connect(): void;
  disconnect(): void;
  call<T = any>(service: string, command: string, params?: Record<string, unknown>, options?: CallOptions): Promise<T>;
  authenticate(token: string): Promise<AuthAnswer>;
  logDebug(...args: unknown[]): void;

  static readonly version: string;
  static readonly Signal: typeof Signal;
  static readonly SignalBinding: typeof SignalBinding;
  static readonly SnorkyError: typeof SnorkyError;
  static readonly CloseCodes: typeof CloseCodes;
  static readonly CloseReconnect: typeof CloseReconnect;
  static readonly States: typeof States;
  static readonly Service: typeof Service;
  static readonly RPCService: typeof RPCService;
  static readonly PubSub: typeof PubSub;
  static readonly Chat: typeof Chat;
  static readonly Messaging: typeof Messaging;
  static readonly Cursors: typeof Cursors;
  static readonly DataSync: typeof DataSync;
  static readonly Progress: typeof Progress;
  static stableStringify(value: unknown): string;
  static backoffDelay(attempt: number, options: { base: number; max: number }, random?: () => number): number;
  static readTokenClaims(token: unknown): Record<string, any> | null;
}

/** A connector to one service of the server. */
export declare class Service {
  constructor(name: string, snorky: Snorky);
  readonly name: string;
  readonly snorky: Snorky;
  /** Every message from the service. */
  readonly packetReceived: Signal<[any]>;
  init(): void;
  sendMessage(message: unknown): void;
}

/** A connector for a service spoken to with commands. */
export declare class RPCService extends Service {
  /** Every message that is not an answer. */
  readonly notificationReceived: Signal<[any]>;
  rpcCall<T = any>(command: string, params?: Record<string, unknown>, options?: CallOptions): Promise<T>;
  onPacket(message: unknown): void;
  /** Add a method per command, each calling `rpcCall(command, params)`. */
  static addRPCMethods(commands: string[]): void;
}

// PubSub ------------------------------------------------------------------------

export interface StreamPosition {
  offset: number;
  epoch: string;
}

export interface PublishedMessage {
  type: "message";
  channel: any;
  message: any;
  offset?: number;
  epoch?: string;
}

export interface PubSubRestore {
  channel: any;
  /** Every message published during the gap was delivered. */
  recovered: boolean;
  /** The channel keeps history. */
  history: boolean;
  /** How many missed messages were delivered. */
  missed: number;
  error?: SnorkyError;
}

/** Messages of a followed channel were lost on the way; reload what the channel feeds. */
export interface Gap {
  type: "gap";
  channel: any;
  /** How many messages never reached this client. */
  missed: number;
}

export declare class PubSub extends RPCService {
  readonly messagePublished: Signal<[PublishedMessage]>;
  readonly restored: Signal<[PubSubRestore]>;
  /** The server ended a subscription; the client has forgotten it. */
  readonly unsubscribed: Signal<[{ type: "unsubscribed"; channel: any }]>;
  /** Messages of a subscribed channel were lost (the server could not fill the gap): reload it. */
  readonly gap: Signal<[Gap]>;
  /** The server subscribed this connection; it decides again after a reconnection. */
  readonly subscribedByServer: Signal<[{ type: "subscribed"; channel: any; offset?: number; epoch?: string }]>;
  /** A message to this user from the application. */
  readonly userMessage: Signal<[{ type: "user_message"; message: any }]>;
  /** A connection joined or left a channel whose namespace announces it. */
  readonly presenceChanged: Signal<
    [{ type: "join" | "leave"; channel: any; identity: any; info: any; client: string | null }]
  >;
  readonly subscriptions: Map<
    string,
    { channel: any; epoch: string | null; offset: number | null; server?: boolean }
  >;
  subscribe(params: { channel: any; recover?: StreamPosition; token?: string; position?: boolean }): Promise<
    null | (StreamPosition & { recovered?: boolean; publications?: PublishedMessage[] })
  >;
  unsubscribe(params: { channel: any }): Promise<null>;
  publish(params: { channel: any; message: any }): Promise<null>;
  presence(params: { channel: any }): Promise<{ identity: any; info: any; connections: number }[]>;
  presenceStats(params: { channel: any }): Promise<{ identities: number; connections: number }>;
  history(params: { channel: any; limit?: number }): Promise<StreamPosition & { publications: PublishedMessage[] }>;
  channels(): any[];
}

// Chat ----------------------------------------------------------------------------

export interface ChatMember {
  identity: any;
  info: any;
}

export interface ChatMessage {
  type: "message";
  from: any;
  channel: any;
  body: any;
  timestamp: string;
}

export interface ChatPresence {
  type: "presence";
  from: any;
  channel: any;
  status: "joined" | "left";
  timestamp: string;
  info: any;
}

export interface ChatRead {
  type: "read";
  channel: any;
  timestamp: string;
}

export interface ChatJoinAnswer {
  members: any[];
  presence: ChatMember[];
  history?: ChatMessage[];
}

export declare class Chat extends RPCService {
  readonly messageReceived: Signal<[ChatMessage]>;
  readonly presenceReceived: Signal<[ChatPresence]>;
  readonly readReceived: Signal<[ChatRead]>;
  readonly membersChanged: Signal<[any, ChatMember[]]>;
  readonly restored: Signal<[{ channel: any; answer: ChatJoinAnswer | null; error?: SnorkyError }]>;
  /** The server removed this connection from a channel; the client has forgotten it. */
  readonly unsubscribed: Signal<[{ type: "unsubscribed"; channel: any }]>;
  /** Messages of a joined channel were lost (the server's node was cut off): reload it. */
  readonly gap: Signal<[Gap]>;
  join(params: { channel: any }): Promise<ChatJoinAnswer>;
  leave(params: { channel: any }): Promise<null>;
  send(params: { channel: any; body: any }): Promise<null>;
  read(params: { channel: any }): Promise<null>;
  getMembers(channel: any): ChatMember[];
}

// Messaging -----------------------------------------------------------------------

export interface ParticipantMessage {
  type: "message";
  sender: any;
  dest: any;
  body: any;
}

export declare class Messaging extends RPCService {
  readonly messageReceived: Signal<[ParticipantMessage]>;
  readonly restored: Signal<[{ name: any; error?: SnorkyError }]>;
  readonly names: Map<string, any>;
  registerParticipant(params: { name: any }): Promise<null>;
  unregisterParticipant(params: { name: any }): Promise<null>;
  listParticipants(): Promise<any[]>;
  send(params: { sender: any; dest: any; body: any }): Promise<null>;
}

// Cursors -------------------------------------------------------------------------

export declare class Cursor {
  readonly isMine: boolean;
}

export declare class ForeignCursor extends Cursor {
  constructor(data: Record<string, unknown>, document: CursorDocument);
  readonly isMine: false;
  publicHandle: number;
  position: any;
  status: any;
  owner: any;
  document: CursorDocument;
}

export declare class OwnCursor extends Cursor {
  constructor(document: CursorDocument, data: { privateHandle: any; position: any; status: any });
  readonly isMine: true;
  readonly document: CursorDocument;
  readonly privateHandle: any;
  /** Known once the server answered the creation. */
  publicHandle: number | undefined;
  position: any;
  status: any;
  removed: boolean;
  pendingPromiseCount: number;
  update(newData: { position?: any; status?: any }): Promise<void>;
  remove(): Promise<void>;
  isSynchronized(): boolean;
}

export declare class CursorDocument {
  constructor(service: Cursors, name: any, cursors?: Record<string, unknown>[]);
  readonly service: Cursors;
  readonly name: any;
  readonly cursors: (OwnCursor | ForeignCursor)[];
  readonly cursorAdded: Signal<[ForeignCursor]>;
  readonly cursorUpdated: Signal<[ForeignCursor]>;
  readonly cursorRemoved: Signal<[ForeignCursor]>;
  createCursor(params?: { position?: any; status?: any }): [OwnCursor, Promise<void>];
  leave(): Promise<null>;
  foreignCursors(): ForeignCursor[];
  ownCursors(): OwnCursor[];
}

export declare class Cursors extends RPCService {
  readonly documents: Record<string, CursorDocument>;
  readonly ownCursors: Record<string, OwnCursor>;
  readonly restored: Signal<[{ document: CursorDocument; error?: SnorkyError }]>;
  /** The server removed this connection from a document; its cursors are gone. */
  readonly unsubscribed: Signal<[{ type: "unsubscribed"; document: any }]>;
  join(params: { document: any }): Promise<CursorDocument>;
  leave(params: { document: any }): Promise<null>;
  getFreePrivateHandle(): number;
  static readonly Document: typeof CursorDocument;
  static readonly Cursor: typeof Cursor;
  static readonly ForeignCursor: typeof ForeignCursor;
  static readonly OwnCursor: typeof OwnCursor;
}

// DataSync ------------------------------------------------------------------------

export type Delta =
  | { type: "insert"; model: string; data: any; tag?: string }
  | { type: "update"; model: string; oldData: any; newData: any; tag?: string }
  | { type: "delete"; model: string; data: any; tag?: string };

export interface CollectionIterator {
  hasNext(): boolean;
  next(): any;
  update(item: any): void;
  remove(): void;
}

export declare class Collection {
  insert(item: any): void;
  getIterator(): CollectionIterator;
}

export declare class ArrayIterator implements CollectionIterator {
  constructor(array: any[], options: { transformItem: (item: any) => any });
  hasNext(): boolean;
  next(): any;
  update(item: any): void;
  remove(): void;
}

export declare class ArrayCollection<T = any> extends Collection {
  constructor(array: T[], options?: { transformItem?: (item: any) => T });
  readonly array: T[];
  getIterator(): ArrayIterator;
}

export declare class SingleItemIterator implements CollectionIterator {
  constructor(collection: SingleItemCollection);
  hasNext(): boolean;
  next(): any;
  update(item: any): void;
  remove(): void;
}

export declare class SingleItemCollection extends Collection {
  constructor(readHandler: () => any, updateHandler: (item: any) => void, removeHandler?: () => void);
  getIterator(): SingleItemIterator;
}

export declare class CollectionDeltaProcessor {
  constructor(
    collections?: Record<string, Collection | Record<string, Collection>>,
    options?: { itemsAreEqual?: (item: any, other: any, delta: Delta) => boolean },
  );
  collections: Record<string, Collection | Record<string, Collection>>;
  itemsAreEqual(item: any, other: any, delta: Delta): boolean;
  processDelta(delta: Delta): void;
}

export declare class DataSyncSubscription {
  readonly service: DataSync;
  readonly token: string | null;
  readonly active: boolean;
  readonly getToken: (() => string | Promise<string>) | null;
  cancel(): Promise<null>;
}

export declare class DataSync extends RPCService {
  readonly deltaReceived: Signal<[Delta]>;
  readonly restored: Signal<[{ subscription: DataSyncSubscription; error?: unknown }]>;
  readonly subscriptions: Set<DataSyncSubscription>;
  acquireSubscription(params: { token: string }): Promise<null>;
  cancelSubscription(params: { token: string }): Promise<null>;
  subscribe(params: { token?: string; getToken?: () => string | Promise<string> }): Promise<DataSyncSubscription>;
  static readonly CollectionDeltaProcessor: typeof CollectionDeltaProcessor;
  static readonly Collection: typeof Collection;
  static readonly ArrayCollection: typeof ArrayCollection;
  static readonly ArrayIterator: typeof ArrayIterator;
  static readonly SingleItemCollection: typeof SingleItemCollection;
  static readonly SingleItemIterator: typeof SingleItemIterator;
  static readonly Subscription: typeof DataSyncSubscription;
}

// Progress ------------------------------------------------------------------------

export interface TaskState {
  task: string;
  name?: string;
  min?: number;
  max?: number;
  value?: number;
  label?: string | null;
  indeterminate?: boolean;
  status?: "running" | "completed" | "failed";
  error?: string | null;
}

export interface ProgressNotification extends TaskState {
  type: "init" | "update" | "done";
}

export declare class Progress extends RPCService {
  readonly taskChanged: Signal<[TaskState, ProgressNotification]>;
  readonly restored: Signal<[{ task: string; state: TaskState | null; error?: SnorkyError }]>;
  readonly tasks: Map<string, TaskState>;
  readonly watched: Set<string>;
  subscribe(params: { task: string }): Promise<TaskState | null>;
  unsubscribe(params: { task: string }): Promise<null>;
  getTask(task: string): TaskState | null;
}

// Helpers -------------------------------------------------------------------------

export declare const version: string;
export declare function stableStringify(value: unknown): string;
export declare function backoffDelay(
  attempt: number,
  options: { base: number; max: number },
  random?: () => number,
): number;
export declare function readTokenClaims(token: unknown): Record<string, any> | null;

export default Snorky;

declare global {
  interface Window {
    /** Defined by the classic script build, `/snorky.js`. */
    Snorky: typeof Snorky;
  }
}
