/**
 * Errors the client rejects promises with, and the close codes it knows.
 *
 * @module
 */

/**
 * A call that failed. `message` is the server's text (as Snorky 0.1 rejected
 * with `Error(message)`); programs should test `code`: one of the server's
 * error codes (`already_subscribed`, `not_joined`, `forbidden`, ...; see the
 * protocol reference) or one of the client's own:
 *
 * - `timeout`: no answer within the call's timeout;
 * - `disconnected`: the connection was lost before the answer came;
 * - `closed`: the client was closed with `disconnect()`, or gave up reconnecting.
 */
export class SnorkyError extends Error {
  /**
   * @param {string} message
   * @param {string} code
   * @param {{service?: string | null, command?: string, data?: any}} [details]
   */
  constructor(message, code, details = {}) {
    super(message);
    this.name = "SnorkyError";
    /** A stable code to test. */
    this.code = code;
    /** The service the call went to. */
    this.service = details.service ?? null;
    /** The command called. */
    this.command = details.command ?? null;
    /** The whole error message from the server, when there was one. */
    this.data = details.data ?? null;
  }
}

/** Close codes the server sends (see the protocol reference). */
export const CloseCodes = Object.freeze({
  NORMAL: 1000,
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
  TOO_MANY_REQUESTS: 4029,
});

/**
 * What to do after each close code the server sends, as the server's table says
 * (snorky.errors.CLOSE_TABLE): "no" (stay closed), "backoff" (reconnect with a
 * growing delay), "now" (reconnect at once, not counted as a failure: the node is
 * draining) or "new token" (reconnect only with a new token, from `getToken`).
 * Codes not listed (1006 and other network failures) reconnect with backoff.
 */
export const CloseReconnect = Object.freeze({
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
  [CloseCodes.TOO_MANY_REQUESTS]: "backoff",
});
