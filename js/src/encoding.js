/**
 * Small pure helpers about JSON values and tokens.
 *
 * @module
 */

/**
 * JSON text of `value` with object keys sorted, so that two equal values give
 * the same text whatever their key order. The server matches channels and
 * documents by value (`{"room": 5}` is one channel however it is written); the
 * client uses this text as the key of its own maps.
 * @param {any} value
 * @returns {string}
 */
export function stableStringify(value) {
  if (Array.isArray(value)) {
    return "[" + value.map((item) => stableStringify(item === undefined ? null : item)).join(",") + "]";
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value)
      .filter((key) => value[key] !== undefined)
      .sort();
    return "{" + keys.map((key) => JSON.stringify(key) + ":" + stableStringify(value[key])).join(",") + "}";
  }
  return JSON.stringify(value);
}

/**
 * The claims of a JWT, read without checking its signature (the server
 * checks it); `null` if `token` is not a JWT.
 * @param {any} token
 * @returns {Record<string, any> | null}
 */
export function readTokenClaims(token) {
  if (typeof token !== "string") {
    return null;
  }
  const parts = token.split(".");
  if (parts.length !== 3) {
    return null;
  }
  try {
    let base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    base64 += "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(base64);
    const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims !== null && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * The delay before reconnection attempt number `attempt` (0 for the first):
 * exponential backoff with full jitter, a random time between 0 and
 * `min(max, base * 2 ** attempt)` milliseconds.
 * @param {number} attempt
 * @param {{base: number, max: number}} options
 * @param {() => number} [random] returns a number in [0, 1)
 * @returns {number}
 */
export function backoffDelay(attempt, { base, max }, random = Math.random) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * Whether `object` has its own property `key` (`Object.hasOwn`, for older browsers).
 * @param {object} object
 * @param {PropertyKey} key
 */
export function hasOwn(object, key) {
  return Object.prototype.hasOwnProperty.call(object, key);
}
