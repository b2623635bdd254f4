/**
 * Bounded in-memory maps: the verified-token cache and the DPoP `jti` replay cache. Insertion
 * order of a `Map` is the recency order (a hit re-inserts), so the first key is the least
 * recently used one.
 */
import type { DpopReplayStore } from './types';

/**
 * A bounded map whose entries carry their own expiry (internal: the verified-token and
 * introspection caches).
 *
 * @internal
 * @example
 * ```ts
 * const cache = new BoundedCache<{ expiresAtMs: number; value: string }>(1000);
 * cache.set('k', { value: 'v', expiresAtMs: Date.now() + 60_000 });
 * cache.get('k', Date.now())?.value; // 'v'
 * ```
 */
export class BoundedCache<V extends { expiresAtMs: number }> {
  private readonly map = new Map<string, V>();

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The entry, unless it has expired (then it is dropped). */
  get(key: string, now: number): V | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    if (now >= entry.expiresAtMs) {
      this.map.delete(key);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, entry);
    return entry;
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  set(key: string, entry: V): void {
    if (this.maxEntries <= 0) return;
    this.map.delete(key);
    while (this.map.size >= this.maxEntries) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.map.delete(oldest.value);
    }
    this.map.set(key, entry);
  }
}

/**
 * The default {@link DpopReplayStore}: process memory, bounded. RFC 9449 §11.1: proof `jti`s
 * are remembered for as long as the proof would be accepted. When the store is full, expired
 * entries go first; only then the oldest (closest to expiry) ones.
 *
 * @internal
 * @example
 * ```ts
 * const store = new MemoryReplayStore(Date.now);
 * store.checkAndRemember('jkt:jti', Date.now() + 90_000); // true
 * store.checkAndRemember('jkt:jti', Date.now() + 90_000); // false: a replay
 * ```
 */
export class MemoryReplayStore implements DpopReplayStore {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly now: () => number,
    private readonly maxEntries = 100_000,
  ) {}

  checkAndRemember(key: string, expiresAtMs: number): boolean {
    const now = this.now();
    const until = this.seen.get(key);
    if (until !== undefined && until > now) return false;
    if (this.seen.size >= this.maxEntries) this.sweep(now);
    this.seen.delete(key);
    this.seen.set(key, expiresAtMs);
    return true;
  }

  private sweep(now: number): void {
    for (const [key, until] of this.seen) {
      if (until <= now) this.seen.delete(key);
    }
    while (this.seen.size >= this.maxEntries) {
      const oldest = this.seen.keys().next();
      if (oldest.done) break;
      this.seen.delete(oldest.value);
    }
  }
}
