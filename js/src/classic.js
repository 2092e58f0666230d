/**
 * Entry point of the classic script build (`/snorky.js`): defines the global
 * `Snorky`, as Snorky 0.1's script did.
 *
 * @module
 */

import Snorky from "./index.js";

globalThis.Snorky = Snorky;
