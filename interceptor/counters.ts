/**
 * Request counters shared by every data-plane isolate through one
 * SharedArrayBuffer, so /queue is exact without messages per request.
 *
 * Per route slot: Concurrency (in flight, held included), Held (waiting for a
 * ready endpoint), Requests (a uint32 that wraps; the main isolate widens it
 * by summing deltas). Per pod slot: in flight, for least-in-flight balancing
 * and the per-pod cap. Slots are handed out by the main isolate (SlotTable)
 * and reused only after every isolate has confirmed it no longer routes to
 * the old key and the slot is idle.
 */

const ROUTE_FIELDS = 3;
const CONC = 0;
const HELD = 1;
const REQS = 2;

export interface CounterLayout {
  routeCapacity: number;
  podCapacity: number;
}

export const DEFAULT_LAYOUT: CounterLayout = { routeCapacity: 65_536, podCapacity: 65_536 };

/** The slot used when a table outgrows the capacity: counted, but shared. */
export const OVERFLOW_SLOT = 0;

export class SharedCounters {
  readonly routes: Int32Array;
  readonly pods: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer, readonly layout: CounterLayout) {
    const routeInts = layout.routeCapacity * ROUTE_FIELDS;
    this.routes = new Int32Array(buffer, 0, routeInts);
    this.pods = new Int32Array(buffer, routeInts * 4, layout.podCapacity);
  }

  static create(layout: CounterLayout = DEFAULT_LAYOUT): SharedCounters {
    const bytes = (layout.routeCapacity * ROUTE_FIELDS + layout.podCapacity) * 4;
    return new SharedCounters(new SharedArrayBuffer(bytes), layout);
  }

  /** A request starts; true when the route's concurrency went from 0 to 1. */
  begin(slot: number): boolean {
    Atomics.add(this.routes, slot * ROUTE_FIELDS + REQS, 1);
    return Atomics.add(this.routes, slot * ROUTE_FIELDS + CONC, 1) === 0;
  }

  /** A request ends; true when the route's concurrency went back to 0. */
  end(slot: number): boolean {
    return Atomics.sub(this.routes, slot * ROUTE_FIELDS + CONC, 1) === 1;
  }

  /** Takes a held place unless `max` are already held; false when full. */
  holdBegin(slot: number, max: number): boolean {
    const i = slot * ROUTE_FIELDS + HELD;
    if (Atomics.add(this.routes, i, 1) >= max) {
      Atomics.sub(this.routes, i, 1);
      return false;
    }
    return true;
  }

  holdEnd(slot: number): void {
    Atomics.sub(this.routes, slot * ROUTE_FIELDS + HELD, 1);
  }

  concurrency(slot: number): number {
    return Atomics.load(this.routes, slot * ROUTE_FIELDS + CONC);
  }

  held(slot: number): number {
    return Atomics.load(this.routes, slot * ROUTE_FIELDS + HELD);
  }

  /** The wrapping request counter, as an unsigned 32-bit number. */
  requests32(slot: number): number {
    return Atomics.load(this.routes, slot * ROUTE_FIELDS + REQS) >>> 0;
  }

  podBegin(slot: number): void {
    Atomics.add(this.pods, slot, 1);
  }

  podEnd(slot: number): void {
    Atomics.sub(this.pods, slot, 1);
  }

  podLoad(slot: number): number {
    return Atomics.load(this.pods, slot);
  }
}

/**
 * Main-isolate bookkeeping of slots by key. `assign` gives every current key
 * a slot (keeping existing ones) at a table version; keys that disappear are
 * retired and become free once `reclaim` sees every isolate at or past that
 * version and the slot idle. Slot 0 is reserved as the overflow slot.
 */
export class SlotTable {
  readonly #byKey = new Map<string, number>();
  readonly #free: number[] = [];
  #next = 1;
  readonly #retired: Array<{ slot: number; version: number }> = [];

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.#byKey.size;
  }

  slotOf(key: string): number | undefined {
    return this.#byKey.get(key);
  }

  entries(): IterableIterator<[string, number]> {
    return this.#byKey.entries();
  }

  /** Returns the keys that got a fresh slot and whether any key overflowed. */
  assign(keys: Iterable<string>, version: number): { fresh: string[]; overflow: number } {
    const want = new Set(keys);
    for (const [key, slot] of this.#byKey) {
      if (!want.has(key)) {
        this.#byKey.delete(key);
        if (slot !== OVERFLOW_SLOT) this.#retired.push({ slot, version });
      }
    }
    const fresh: string[] = [];
    let overflow = 0;
    for (const key of want) {
      if (this.#byKey.has(key)) continue;
      let slot = this.#free.pop();
      if (slot === undefined && this.#next < this.capacity) slot = this.#next++;
      if (slot === undefined) {
        slot = OVERFLOW_SLOT;
        overflow++;
      }
      this.#byKey.set(key, slot);
      fresh.push(key);
    }
    return { fresh, overflow };
  }

  /** Frees retired slots every isolate has moved past and that are idle. */
  reclaim(minAckedVersion: number, idle: (slot: number) => boolean): number {
    let n = 0;
    for (let i = this.#retired.length - 1; i >= 0; i--) {
      const r = this.#retired[i]!;
      if (r.version <= minAckedVersion && idle(r.slot)) {
        this.#free.push(r.slot);
        this.#retired.splice(i, 1);
        n++;
      }
    }
    return n;
  }
}
