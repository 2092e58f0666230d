/**
 * Applying DataSync deltas to the page's own data: collections, their
 * iterators, and the processor that routes each delta to a collection
 * (Snorky 0.1's API).
 *
 * @module
 */

import { hasOwn } from "../encoding.js";

/** Base class of collections: `insert(item)` and `getIterator()`. */
export class Collection {
  /** @param {any} item */
  insert(item) {
    throw new Error("Snorky: Collection.insert() is not implemented");
  }

  /** @returns {{hasNext(): boolean, next(): any, update(item: any): void, remove(): void}} */
  getIterator() {
    throw new Error("Snorky: Collection.getIterator() is not implemented");
  }
}

/** Walks an array; `update` and `remove` act on the item last returned by `next`. */
export class ArrayIterator {
  /**
   * @param {any[]} array
   * @param {{transformItem: (item: any) => any}} options
   */
  constructor(array, options) {
    this.array = array;
    this.options = options;
    this.index = -1;
    this.deleted = false;
  }

  hasNext() {
    return this.index < this.array.length - 1;
  }

  next() {
    if (!this.hasNext()) {
      throw new Error("Snorky: the iterator has no more items");
    }
    this.deleted = false;
    this.index++;
    return this.array[this.index];
  }

  _checkCurrent() {
    if (this.deleted) {
      throw new Error("Snorky: the iterator's current item was removed (call next())");
    }
    if (this.index < 0) {
      throw new Error("Snorky: the iterator has no current item (call next() first)");
    }
  }

  /** @param {any} item the new value of the current item (transformed) */
  update(item) {
    this._checkCurrent();
    this.array[this.index] = this.options.transformItem(item);
  }

  /** Remove the current item. */
  remove() {
    this._checkCurrent();
    this.array.splice(this.index, 1);
    this.index--;
    this.deleted = true;
  }
}

/**
 * A collection over an array the page owns (a list a framework renders):
 * insertions are appended. `options.transformItem` turns each row into the
 * item stored (a model object, say).
 */
export class ArrayCollection extends Collection {
  /**
   * @param {any[]} array
   * @param {{transformItem?: (item: any) => any}} [options]
   */
  constructor(array, options = {}) {
    super();
    this.array = array;
    this.options = { transformItem: (item) => item, ...options };
  }

  insert(item) {
    this.array.push(this.options.transformItem(item));
  }

  getIterator() {
    return new ArrayIterator(this.array, this.options);
  }
}

/** Walks the one item of a `SingleItemCollection`. */
export class SingleItemIterator {
  /** @param {SingleItemCollection} collection */
  constructor(collection) {
    this.collection = collection;
    this.fetched = false;
  }

  hasNext() {
    return !this.fetched;
  }

  next() {
    if (this.fetched) {
      throw new Error("Snorky: the iterator has no more items");
    }
    this.fetched = true;
    return this.collection.readHandler();
  }

  update(item) {
    if (!this.fetched) {
      throw new Error("Snorky: the iterator has no current item (call next() first)");
    }
    this.collection.updateHandler(item);
  }

  remove() {
    if (!this.fetched) {
      throw new Error("Snorky: the iterator has no current item (call next() first)");
    }
    this.collection.removeHandler();
  }
}

/**
 * A collection of one item held anywhere (a detail view): reads, updates and
 * removals go through the three handlers. Insertions are ignored, with an error on the console.
 */
export class SingleItemCollection extends Collection {
  /**
   * @param {() => any} readHandler
   * @param {(item: any) => void} updateHandler
   * @param {() => void} [removeHandler]
   */
  constructor(readHandler, updateHandler, removeHandler = () => {}) {
    super();
    this.readHandler = readHandler;
    this.updateHandler = updateHandler;
    this.removeHandler = removeHandler;
  }

  insert(item) {
    console.error("Snorky: a SingleItemCollection cannot insert items");
  }

  getIterator() {
    return new SingleItemIterator(this);
  }
}

/**
 * Applies deltas to collections by model name:
 * `{Player: collection}`, or tagged views `{Player: {red: collection, blue: collection}}`
 * (a delta then names its view in `tag`).
 *
 * An insertion of an item the collection already holds updates it instead, so
 * a row loaded with the page and also delivered as a delta is not doubled.
 */
export class CollectionDeltaProcessor {
  /**
   * @param {Record<string, Collection | Record<string, Collection>>} [collections]
   * @param {{itemsAreEqual?: (item: any, other: any, delta: any) => boolean}} [options]
   */
  constructor(collections = {}, options = {}) {
    this.collections = collections;
    if (options.itemsAreEqual) {
      this.itemsAreEqual = options.itemsAreEqual;
    }
  }

  /**
   * Whether `item` (in a collection) and `other` (in a delta) are the same
   * row; by default, whether their `id`s are equal.
   */
  itemsAreEqual(item, other, delta) {
    return item != null && other != null && item.id === other.id;
  }

  /** The collection a delta goes to, or `null` (with an error on the console). */
  collectionFor(delta) {
    const entry = hasOwn(this.collections, delta.model) ? this.collections[delta.model] : undefined;
    if (entry === undefined) {
      console.error(`Snorky: a delta for a model with no collection: ${delta.model}`);
      return null;
    }
    if (entry instanceof Collection) {
      return entry;
    }
    if (delta.tag === undefined || !hasOwn(entry, delta.tag)) {
      console.error(`Snorky: a delta for ${delta.model} with an unknown tag: ${delta.tag}`);
      return null;
    }
    return entry[delta.tag];
  }

  /** Apply one delta (`insert`, `update` or `delete`). */
  processDelta(delta) {
    const collection = this.collectionFor(delta);
    if (collection === null) {
      return;
    }
    if (delta.type === "insert") {
      if (!this._apply(collection, delta.data, delta, (iterator) => iterator.update(delta.data))) {
        collection.insert(delta.data);
      }
    } else if (delta.type === "update") {
      this._apply(collection, delta.oldData, delta, (iterator) => iterator.update(delta.newData));
    } else if (delta.type === "delete") {
      this._apply(collection, delta.data, delta, (iterator) => iterator.remove());
    } else {
      console.error(`Snorky: a delta of unknown type: ${delta.type}`);
    }
  }

  /** Find the item equal to `row` and act on it; whether one was found. */
  _apply(collection, row, delta, action) {
    const iterator = collection.getIterator();
    while (iterator.hasNext()) {
      if (this.itemsAreEqual(iterator.next(), row, delta)) {
        action(iterator);
        return true;
      }
    }
    return false;
  }
}
