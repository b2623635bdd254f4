/**
 * Rate limits shared by every replica of a region, cheap on the hot path.
 *
 * The shared state is a GCRA bucket per key in the region database (SecurityStore.take). A
 * replica does not ask the database for every request: it reserves a few units of a key at once
 * (at most `batch`, and at most 1/50 of the key's limit, so small limits stay exact) and spends
 * them locally for up to the key's period (at most a minute). Reserved units are taken from the
 * shared bucket when they are reserved, so the replicas together never admit more than the
 * limit's rate; a burst can run ahead of the bucket by at most the units each replica holds
 * (≤ 2 % of the limit per replica), and units a replica reserved and did not spend are lost for
 * the others (the same bound). A refusal is remembered until the bucket can have room again.
 *
 * When the store does not answer (error or `timeoutMs`), the limiter fails closed: the request
 * is refused as `unavailable` (503 with Retry-After) and, for `breakerMs`, further requests are
 * refused at once instead of queueing behind a dead database. Units already reserved are still
 * spent. See README "Abuse limits" for why closed.
 */
import type { Rate } from '@meridian/config';
import type { SecurityStore, TakeRequest, TakeResult } from './security.store';

export interface LimitCheck {
  /** The bucket, e.g. `token:client:orders-worker`. */
  key: string;
  rate: Rate;
}

export type Verdict =
  | { ok: true }
  | { ok: false; reason: 'limited'; key: string; retryAfterMs: number }
  | { ok: false; reason: 'unavailable'; retryAfterMs: number };

interface Local {
  units: number;
  /** Units are spendable until then. */
  until: number;
  /** Refused (by the shared bucket) until then. */
  refusedUntil: number;
  pending?: Promise<void>;
}

const OK: Verdict = Object.freeze({ ok: true });
/**
 * How long reserved units stay spendable here: the key's period, at most a minute. Units are
 * charged to the shared bucket when reserved, so a longer lease admits no more than a shorter
 * one (the bound is the lease size per replica either way); it saves a database round trip for
 * every client that calls less than once a second but more than once a period.
 */
function leaseMs(rate: Rate): number {
  return Math.min(60_000, Math.max(1000, rate.periodSeconds * 1000));
}
/** Keys held in memory at most; beyond, the oldest are dropped (their unspent units with them). */
const MAX_KEYS = 100_000;
/** Keys asked for in one statement at most. */
const MAX_BATCH = 256;

export interface RateLimiterOptions {
  batch: number;
  timeoutMs?: number;
  breakerMs?: number;
  /** Retry-After when the store is unavailable. */
  unavailableRetryMs?: number;
  now?: () => number;
  onStoreError?: (err: unknown) => void;
}

export class RateLimiter {
  private readonly local = new Map<string, Local>();
  private brokenUntil = 0;
  private readonly queue: {
    requests: TakeRequest[];
    resolve: (results: TakeResult[]) => void;
    reject: (err: unknown) => void;
  }[] = [];
  private flushScheduled = false;
  private readonly timeoutMs: number;
  private readonly breakerMs: number;
  private readonly unavailableRetryMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: Pick<SecurityStore, 'take'>,
    private readonly opts: RateLimiterOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.breakerMs = opts.breakerMs ?? 1000;
    this.unavailableRetryMs = opts.unavailableRetryMs ?? 5000;
    this.now = opts.now ?? Date.now;
  }

  /** How many units of a key one replica reserves at once. */
  leaseSize(rate: Rate): number {
    return Math.max(1, Math.min(this.opts.batch, Math.floor(rate.limit / 50)));
  }

  /**
   * Takes one unit of every key, or refuses. Synchronous (no promise) whenever every key is
   * answered from this replica's reservations — the common case for a busy key.
   */
  admit(checks: readonly LimitCheck[]): Verdict | Promise<Verdict> {
    const sync = this.trySync(checks);
    if (sync !== undefined) return sync;
    return this.admitAsync(checks);
  }

  private entry(key: string): Local {
    let e = this.local.get(key);
    if (!e) {
      if (this.local.size >= MAX_KEYS) this.prune();
      this.local.set(key, (e = { units: 0, until: 0, refusedUntil: 0 }));
    }
    return e;
  }

  /** A verdict from local state alone, or undefined when a key needs the store. */
  private trySync(checks: readonly LimitCheck[]): Verdict | undefined {
    const now = this.now();
    let missing = false;
    for (const c of checks) {
      const e = this.local.get(c.key);
      if (e && e.refusedUntil > now)
        return { ok: false, reason: 'limited', key: c.key, retryAfterMs: e.refusedUntil - now };
      if (!e || e.units <= 0 || e.until <= now) missing = true;
    }
    if (missing) {
      if (this.brokenUntil > now)
        return { ok: false, reason: 'unavailable', retryAfterMs: this.unavailableRetryMs };
      return undefined;
    }
    for (const c of checks) this.local.get(c.key)!.units--;
    return OK;
  }

  private async admitAsync(checks: readonly LimitCheck[]): Promise<Verdict> {
    for (let attempt = 0; attempt < 4; attempt++) {
      const now = this.now();
      const waits: Promise<void>[] = [];
      const needed: { check: LimitCheck; e: Local }[] = [];
      for (const c of checks) {
        const e = this.entry(c.key);
        if (e.refusedUntil > now || (e.units > 0 && e.until > now)) continue;
        if (e.pending) waits.push(e.pending);
        else needed.push({ check: c, e });
      }
      if (needed.length) waits.push(this.reserve(needed));
      if (waits.length) {
        try {
          await Promise.all(waits);
        } catch (err) {
          this.opts.onStoreError?.(err);
          this.brokenUntil = this.now() + this.breakerMs;
          return { ok: false, reason: 'unavailable', retryAfterMs: this.unavailableRetryMs };
        }
      }
      const verdict = this.trySync(checks);
      if (verdict !== undefined) return verdict;
    }
    // Other requests spent every reserved unit each time: take one unit for this request alone.
    return this.exact(checks);
  }

  private reserve(needed: { check: LimitCheck; e: Local }[]): Promise<void> {
    const requests: TakeRequest[] = needed.map(({ check }) => ({
      key: check.key,
      emissionMs: (check.rate.periodSeconds * 1000) / check.rate.limit,
      periodMs: check.rate.periodSeconds * 1000,
      want: this.leaseSize(check.rate),
    }));
    const pending = this.take(requests).then((results) => {
      const now = this.now();
      results.forEach((r, i) => {
        const e = needed[i]!.e;
        if (r.granted > 0) {
          // Units left from an expired reservation are gone (they were taken long ago).
          e.units = (e.until > now ? e.units : 0) + r.granted;
          e.until = now + leaseMs(needed[i]!.check.rate);
        } else e.refusedUntil = now + Math.max(1, Math.ceil(r.retryAfterMs));
      });
    });
    const settled = pending.finally(() => {
      for (const { e } of needed) if (e.pending === settled) e.pending = undefined;
    });
    for (const { e } of needed) e.pending = settled;
    return settled;
  }

  private async exact(checks: readonly LimitCheck[]): Promise<Verdict> {
    let results;
    try {
      results = await this.take(
        checks.map((c) => ({
          key: c.key,
          emissionMs: (c.rate.periodSeconds * 1000) / c.rate.limit,
          periodMs: c.rate.periodSeconds * 1000,
          want: 1,
        })),
      );
    } catch (err) {
      this.opts.onStoreError?.(err);
      this.brokenUntil = this.now() + this.breakerMs;
      return { ok: false, reason: 'unavailable', retryAfterMs: this.unavailableRetryMs };
    }
    const refused = results.findIndex((r) => r.granted === 0);
    if (refused === -1) return OK;
    const r = results[refused]!;
    this.entry(checks[refused]!.key).refusedUntil = this.now() + r.retryAfterMs;
    return { ok: false, reason: 'limited', key: checks[refused]!.key, retryAfterMs: r.retryAfterMs };
  }

  /** Drops what this replica holds for a key (e.g. the key was just locked out). */
  forget(key: string): void {
    this.local.delete(key);
  }

  private prune(): void {
    const now = this.now();
    for (const [k, e] of this.local)
      if (!e.pending && e.refusedUntil <= now && (e.units <= 0 || e.until <= now)) this.local.delete(k);
    if (this.local.size < MAX_KEYS) return;
    let drop = this.local.size - Math.floor(MAX_KEYS * 0.9);
    for (const [k, e] of this.local) {
      if (drop <= 0) break;
      if (e.pending) continue;
      this.local.delete(k);
      drop--;
    }
  }

  /**
   * The shared bucket, asked once per event-loop turn: every request that needs the store in
   * the same turn goes into one statement (with many clients each calling now and then, every
   * request needs a reservation, and one round trip per request would cost more than the token
   * endpoint's own work). The statement locks keys in key order, so batches never deadlock.
   */
  private take(requests: TakeRequest[]): Promise<TakeResult[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ requests, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    while (this.queue.length) {
      const callers: typeof this.queue = [];
      let size = 0;
      while (this.queue.length && size < MAX_BATCH) {
        const c = this.queue.shift()!;
        callers.push(c);
        size += c.requests.length;
      }
      this.withTimeout(this.store.take(callers.flatMap((c) => c.requests))).then(
        (results) => {
          let at = 0;
          for (const c of callers) {
            c.resolve(results.slice(at, at + c.requests.length));
            at += c.requests.length;
          }
        },
        (err: unknown) => {
          for (const c of callers) c.reject(err);
        },
      );
    }
  }

  private withTimeout<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`rate-limit store did not answer within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }
}
