/**
 * The shared store behind abuse limits and detectors (region-0004-security.ts), on real
 * PostgreSQL with two connection pools standing in for two replicas of one region: GCRA buckets
 * that never grant more than the limit however the calls interleave, reservations (leases) that
 * keep the limit exact across replicas, detector counters that fire once, lockouts that back off,
 * and a limiter that fails closed when its store is gone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegionDatabase, createRegionDataSource } from '@meridian/persistence';
import { RateLimiter, SecurityStore } from '@meridian/security';
import { openStores } from './support/stores';

let stores: Awaited<ReturnType<typeof openStores<'eu'>>>;
let a: SecurityStore;
let b: SecurityStore;
let replicaB: RegionDatabase<'eu'>;

beforeAll(async () => {
  stores = await openStores('secstore', ['eu']);
  a = new SecurityStore(stores.region.eu);
  replicaB = new RegionDatabase('eu', createRegionDataSource({ url: stores.dbs.region.eu!.url }));
  await replicaB.dataSource.initialize();
  b = new SecurityStore(replicaB);
});

afterAll(async () => {
  await replicaB?.dataSource.destroy().catch(() => undefined);
  await stores?.close();
});

const per = (limit: number, periodSeconds: number) => ({
  emissionMs: (periodSeconds * 1000) / limit,
  periodMs: periodSeconds * 1000,
});

describe('GCRA buckets in the region database', () => {
  it('grants at most the limit in a burst, then refuses with the time until one unit fits', async () => {
    const key = `burst:${Math.random()}`;
    const [first] = await a.take([{ key, ...per(5, 60), want: 3 }]);
    expect(first!.granted).toBe(3);
    const [second] = await a.take([{ key, ...per(5, 60), want: 3 }]);
    expect(second!.granted).toBe(2); // what fits, not all-or-nothing
    const [third] = await b.take([{ key, ...per(5, 60), want: 1 }]);
    expect(third!.granted).toBe(0);
    // One unit is 12 s of the 60 s period; the bucket is full now, so about 12 s.
    expect(third!.retryAfterMs).toBeGreaterThan(11_000);
    expect(third!.retryAfterMs).toBeLessThanOrEqual(12_000);
  });

  it('two replicas taking one key in parallel never get more than the limit together', async () => {
    const key = `race:${Math.random()}`;
    const calls = Array.from({ length: 80 }, (_, i) =>
      (i % 2 ? a : b).take([{ key, ...per(30, 60), want: 1 }]),
    );
    const granted = (await Promise.all(calls)).reduce((n, [r]) => n + r!.granted, 0);
    expect(granted).toBe(30);
  });

  it('refills at the limit per period', async () => {
    const key = `refill:${Math.random()}`;
    expect((await a.take([{ key, ...per(10, 1), want: 10 }]))[0]!.granted).toBe(10);
    expect((await a.take([{ key, ...per(10, 1), want: 1 }]))[0]!.granted).toBe(0);
    await new Promise((r) => setTimeout(r, 250)); // 100 ms per unit
    const [after] = await a.take([{ key, ...per(10, 1), want: 10 }]);
    expect(after!.granted).toBeGreaterThanOrEqual(2);
    expect(after!.granted).toBeLessThanOrEqual(3);
  });

  it('answers several keys in one call, each on its own', async () => {
    const k1 = `multi1:${Math.random()}`;
    const k2 = `multi2:${Math.random()}`;
    await a.take([{ key: k2, ...per(1, 60), want: 1 }]);
    const [r1, r2] = await a.take([
      { key: k1, ...per(5, 60), want: 2 },
      { key: k2, ...per(1, 60), want: 1 },
    ]);
    expect(r1!.granted).toBe(2);
    expect(r2!.granted).toBe(0);
  });
});

describe('RateLimiter: reservations keep a shared limit exact and cheap', () => {
  it('two limiters (two replicas) admit exactly the limit between them, with few database calls', async () => {
    let calls = 0;
    const counting = (s: SecurityStore) => ({
      take: (r: Parameters<SecurityStore['take']>[0]) => {
        calls++;
        return s.take(r);
      },
    });
    const one = new RateLimiter(counting(a), { batch: 64 });
    const two = new RateLimiter(counting(b), { batch: 64 });
    const rate = { limit: 1000, periodSeconds: 3600 }; // 20 units per reservation
    const key = `lease:${Math.random()}`;
    let admitted = 0;
    for (let i = 0; i < 1300; i++) {
      let v = (i % 3 ? one : two).admit([{ key, rate }]);
      if (v instanceof Promise) v = await v;
      if (v.ok) admitted++;
    }
    // Units a replica reserved and did not spend are lost for the other: at most one reservation each.
    expect(admitted).toBeLessThanOrEqual(1000);
    expect(admitted).toBeGreaterThanOrEqual(1000 - 2 * 20);
    expect(calls).toBeLessThan(120);
  });

  it('a reservation lasts the key period (at most a minute): a client calling every few seconds asks the database once a minute, and requests of one event-loop turn share one statement', async () => {
    let clock = 1_000_000;
    const batches: number[] = [];
    const limiter = new RateLimiter(
      {
        take: (r: Parameters<SecurityStore['take']>[0]) => {
          batches.push(r.length);
          return a.take(r);
        },
      },
      { batch: 64, now: () => clock },
    );
    const rate = { limit: 6000, periodSeconds: 60 }; // 64 units per reservation
    const key = `period:${Math.random()}`;
    for (const at of [0, 2_000, 15_000, 45_000, 59_999]) {
      clock = 1_000_000 + at;
      const v = await limiter.admit([{ key, rate }]);
      expect(v.ok).toBe(true);
    }
    expect(batches).toEqual([1]);
    clock = 1_000_000 + 60_000;
    expect((await limiter.admit([{ key, rate }])).ok).toBe(true);
    expect(batches).toEqual([1, 1]);
    // 30 clients never seen, in one turn: one statement for all of them.
    const many = await Promise.all(
      Array.from({ length: 30 }, (_, i) => limiter.admit([{ key: `turn:${i}:${Math.random()}`, rate }])),
    );
    expect(many.every((v) => v.ok)).toBe(true);
    expect(batches).toEqual([1, 1, 30]);
  });

  it('a small limit is exact: one unit per database call', async () => {
    const limiter = new RateLimiter(a, { batch: 64 });
    expect(limiter.leaseSize({ limit: 10, periodSeconds: 60 })).toBe(1);
    const key = `small:${Math.random()}`;
    const verdicts = [];
    for (let i = 0; i < 12; i++)
      verdicts.push(await limiter.admit([{ key, rate: { limit: 10, periodSeconds: 60 } }]));
    expect(verdicts.filter((v) => v.ok)).toHaveLength(10);
    const last = verdicts.at(-1)!;
    expect(last).toMatchObject({ ok: false, reason: 'limited', key });
  });

  it('fails closed when the store is gone, and at once for the next requests (breaker)', async () => {
    const gone = new RegionDatabase('eu', createRegionDataSource({ url: stores.dbs.region.eu!.url }));
    await gone.dataSource.initialize();
    await gone.dataSource.destroy();
    let errors = 0;
    const limiter = new RateLimiter(new SecurityStore(gone), { batch: 64, onStoreError: () => errors++ });
    const rate = { limit: 100, periodSeconds: 60 };
    const v1 = await limiter.admit([{ key: 'closed', rate }]);
    expect(v1).toMatchObject({ ok: false, reason: 'unavailable' });
    const v2 = limiter.admit([{ key: 'closed-too', rate }]);
    expect(v2).not.toBeInstanceOf(Promise);
    expect(v2).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(errors).toBe(1);
  });
});

describe('detector counters and lockouts', () => {
  it('fires exactly once when parallel callers cross the threshold', async () => {
    const key = `fire:${Math.random()}`;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).count('test_detector', key, 60, 1, 5)),
    );
    expect(results.filter((r) => r.fire)).toHaveLength(1);
    expect(Math.max(...results.map((r) => r.estimate))).toBeGreaterThanOrEqual(12);
  });

  it('a repeated lockout doubles, up to the maximum; a locked key is not locked again', async () => {
    const key = `lock:${Math.random()}`;
    const first = await a.lock(key, 1, 3);
    expect(first).toMatchObject({ strikes: 1, seconds: 1, fresh: true });
    const again = await b.lock(key, 1, 3);
    expect(again.fresh).toBe(false);
    expect((await a.activeLockouts()).has(key)).toBe(true);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await a.activeLockouts()).has(key)).toBe(false);
    const second = await a.lock(key, 1, 3);
    expect(second).toMatchObject({ strikes: 2, seconds: 2, fresh: true });
    await new Promise((r) => setTimeout(r, 2100));
    const third = await a.lock(key, 1, 3);
    expect(third).toMatchObject({ strikes: 3, seconds: 3, fresh: true }); // 4 s capped at 3
  });
});
