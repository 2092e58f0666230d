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
  ABNORMAL: 1006,
  MESSAGE_TOO_BIG: 1009,
  INVALID_TOKEN: 4001,
  TOKEN_EXPIRED: 4002,
  FORBIDDEN_ORIGIN: 4003,
  DISCONNECTED: 4004,
  SLOW_CLIENT: 4008,
});
