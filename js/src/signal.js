/**
 * Signals: the event mechanism of every Snorky object.
 *
 * A signal is an object with listeners. `add(fn)` registers one,
 * `dispatch(...args)` calls each with the arguments, in the order they were
 * added. This is the shape Snorky 0.1's frontends used (`messagePublished.add(fn)`).
 *
 * A listener that throws does not stop the others nor the client: the error is
 * rethrown on its own, outside the dispatch, where the page's error reporting
 * sees it.
 *
 * @module
 */

/** @typedef {(...args: any[]) => any} Listener */

/**
 * What `add` returns: call `detach()` to stop listening.
 */
export class SignalBinding {
  /**
   * @param {Signal} signal
   * @param {Listener} listener
   * @param {any} context
   * @param {boolean} once
   */
  constructor(signal, listener, context, once) {
    this.signal = signal;
    this.listener = listener;
    this.context = context;
    this.once = once;
  }

  /** Remove this listener from its signal. */
  detach() {
    this.signal.remove(this.listener, this.context);
  }
}

export class Signal {
  constructor() {
    /** @type {SignalBinding[]} */
    this._bindings = [];
  }

  /**
   * Call `listener` (with `this` set to `context`) on every dispatch.
   * Adding the same listener and context twice adds it once.
   * @param {Listener} listener
   * @param {any} [context]
   * @returns {SignalBinding}
   */
  add(listener, context) {
    return this._register(listener, context, false);
  }

  /**
   * Call `listener` on the next dispatch only.
   * @param {Listener} listener
   * @param {any} [context]
   * @returns {SignalBinding}
   */
  addOnce(listener, context) {
    return this._register(listener, context, true);
  }

  /**
   * @param {Listener} listener
   * @param {any} context
   * @param {boolean} once
   */
  _register(listener, context, once) {
    if (typeof listener !== "function") {
      throw new TypeError("Signal listeners must be functions");
    }
    const found = this._find(listener, context);
    if (found >= 0) {
      return this._bindings[found];
    }
    const binding = new SignalBinding(this, listener, context, once);
    this._bindings.push(binding);
    return binding;
  }

  /**
   * @param {Listener} listener
   * @param {any} context
   */
  _find(listener, context) {
    return this._bindings.findIndex((b) => b.listener === listener && b.context === context);
  }

  /**
   * Stop calling `listener` (added with the same `context`).
   * @param {Listener} listener
   * @param {any} [context]
   */
  remove(listener, context) {
    const found = this._find(listener, context);
    if (found >= 0) {
      this._bindings.splice(found, 1);
    }
    return listener;
  }

  /** Remove every listener. */
  removeAll() {
    this._bindings = [];
  }

  /**
   * Whether `listener` (with `context`) is registered.
   * @param {Listener} listener
   * @param {any} [context]
   */
  has(listener, context) {
    return this._find(listener, context) >= 0;
  }

  /** How many listeners are registered. */
  getNumListeners() {
    return this._bindings.length;
  }

  /**
   * Call every listener with `args`.
   * @param {...any} args
   */
  dispatch(...args) {
    // A copy: listeners may add or remove listeners while we iterate.
    for (const binding of this._bindings.slice()) {
      if (binding.once) {
        this.remove(binding.listener, binding.context);
      }
      try {
        binding.listener.apply(binding.context, args);
      } catch (error) {
        rethrowLater(error);
      }
    }
  }
}

/**
 * Report an error thrown by application code without unwinding ours: through
 * `reportError` where there is one (browsers), else as an uncaught exception.
 * @param {unknown} error
 */
export function rethrowLater(error) {
  if (typeof globalThis.reportError === "function") {
    globalThis.reportError(error);
    return;
  }
  setTimeout(() => {
    throw error;
  }, 0);
}
