/**
 * The broker's client cache (ControlClientAdapter) against a real control database: clients stay
 * cached for as long as the change feed (`oidc_client_change`, filled by a trigger) answers, and
 * a write by any replica — or by hand in SQL — evicts them at the next poll. When the feed is
 * gone, entries age out after `ttlMs` and the control plane's silence becomes an error: never a
 * client served on trust nobody can check any more (fail closed).
 */
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlDatabase } from '@meridian/persistence';
import { ControlClientAdapter } from '@meridian/tokens';
import { openStores } from './support/stores';

let stores: Awaited<ReturnType<typeof openStores<'eu'>>>;

beforeAll(async () => {
  stores = await openStores('client_cache', ['eu']);
});

afterAll(async () => {
  await stores?.close();
});

/** The control database as the adapter sees it, counting metadata reads; `down` makes it fail. */
function counted(db: ControlDatabase) {
  const state = { reads: 0, down: false };
  const wrapped = {
    dataSource: db.dataSource,
    async query<T>(sql: string, params?: unknown[]): Promise<T[]> {
      if (state.down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
      if (sql.includes('from oidc_client where')) state.reads++;
      return db.query<T>(sql, params);
    },
  } as unknown as ControlDatabase;
  return { db: wrapped, state };
}

let n = 0;
async function newClient(name = `c${++n}`): Promise<string> {
  const id = `cache-${name}-${Date.now()}`;
  await stores.control.query(`insert into oidc_client (client_id, metadata) values ($1, $2)`, [
    id,
    { client_id: id, client_name: 'v1' },
  ]);
  return id;
}

async function rename(id: string, name: string): Promise<void> {
  await stores.control.query(
    `update oidc_client set metadata = jsonb_set(metadata, '{client_name}', to_jsonb($2::text)) where client_id = $1`,
    [id, name],
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('client cache and the control plane change feed', () => {
  it('a client that does not change is read once, however long the feed stays healthy', async () => {
    const id = await newClient();
    const { db, state } = counted(stores.control);
    const cache = new ControlClientAdapter(db, { ttlMs: 300 });
    await cache.sync();
    expect((await cache.find(id))?.client_name).toBe('v1');
    for (let i = 0; i < 8; i++) {
      await sleep(100);
      await cache.sync();
      expect((await cache.find(id))?.client_name).toBe('v1');
    }
    // 800 ms, well past ttlMs, on one read.
    expect(state.reads).toBe(1);
  });

  it('a write by another replica (here: by hand in SQL) evicts the client at the next poll', async () => {
    const id = await newClient();
    const cache = new ControlClientAdapter(stores.control, { ttlMs: 60_000 });
    await cache.sync();
    expect((await cache.find(id))?.client_name).toBe('v1');
    await rename(id, 'v2');
    // Until the poll the old metadata is served (the propagation bound is one poll)…
    expect((await cache.find(id))?.client_name).toBe('v1');
    await cache.sync();
    // …and after it, the new.
    expect((await cache.find(id))?.client_name).toBe('v2');
  });

  it('a deleted client is gone after the next poll', async () => {
    const id = await newClient();
    const cache = new ControlClientAdapter(stores.control, { ttlMs: 60_000 });
    await cache.sync();
    expect(await cache.find(id)).toBeDefined();
    await stores.control.query('delete from oidc_client where client_id = $1', [id]);
    await cache.sync();
    expect(await cache.find(id)).toBeUndefined();
  });

  it('an unknown id is remembered as unknown, and registering it is seen at the next poll', async () => {
    const id = `cache-late-${Date.now()}`;
    const { db, state } = counted(stores.control);
    const cache = new ControlClientAdapter(db, { ttlMs: 60_000 });
    await cache.sync();
    expect(await cache.find(id)).toBeUndefined();
    expect(await cache.find(id)).toBeUndefined();
    expect(state.reads).toBe(1);
    await stores.control.query(`insert into oidc_client (client_id, metadata) values ($1, $2)`, [
      id,
      { client_id: id, client_name: 'late' },
    ]);
    await cache.sync();
    expect((await cache.find(id))?.client_name).toBe('late');
  });

  it('made-up ids do not evict real clients', async () => {
    const id = await newClient();
    const { db, state } = counted(stores.control);
    const cache = new ControlClientAdapter(db, { ttlMs: 60_000, maxEntries: 100, maxMisses: 100 });
    await cache.sync();
    await cache.find(id);
    for (let i = 0; i < 300; i++) await cache.find(`made-up-${i}`);
    const before = state.reads;
    expect((await cache.find(id))?.client_name).toBe('v1');
    expect(state.reads).toBe(before);
  });

  it('a write committed after a later one was already polled is still seen (sequence gap)', async () => {
    const slowId = await newClient('slow');
    const fastId = await newClient('fast');
    const cache = new ControlClientAdapter(stores.control, { ttlMs: 60_000 });
    await cache.sync();
    await cache.find(slowId);
    await cache.find(fastId);
    const slow = new Client({ connectionString: stores.dbs.control.url });
    await slow.connect();
    try {
      // The slow transaction takes its sequence number first, commits last.
      await slow.query('begin');
      await slow.query(
        `update oidc_client set metadata = jsonb_set(metadata, '{client_name}', '"v2"') where client_id = $1`,
        [slowId],
      );
      await rename(fastId, 'v2');
      await cache.sync();
      expect((await cache.find(fastId))?.client_name).toBe('v2');
      expect((await cache.find(slowId))?.client_name).toBe('v1');
      await slow.query('commit');
    } finally {
      await slow.end();
    }
    await cache.sync();
    expect((await cache.find(slowId))?.client_name).toBe('v2');
  });

  it('a read that raced an eviction is not cached: the next request reads again', async () => {
    const id = await newClient();
    const { db, state } = counted(stores.control);
    const cache = new ControlClientAdapter(db, { ttlMs: 60_000 });
    await cache.sync();
    const reading = cache.find(id);
    cache.invalidate(id);
    await reading;
    await cache.find(id);
    expect(state.reads).toBe(2);
  });

  it('concurrent requests for one cold client read the database once', async () => {
    const id = await newClient();
    const { db, state } = counted(stores.control);
    const cache = new ControlClientAdapter(db, { ttlMs: 60_000 });
    await cache.sync();
    const found = await Promise.all(Array.from({ length: 20 }, () => cache.find(id)));
    expect(found.every((m) => m?.client_name === 'v1')).toBe(true);
    expect(state.reads).toBe(1);
  });

  it('fails closed: with the control plane gone, a cached client is refused once ttlMs has passed', async () => {
    const id = await newClient();
    const { db, state } = counted(stores.control);
    const cache = new ControlClientAdapter(db, { ttlMs: 300 });
    await cache.sync();
    expect(await cache.find(id)).toBeDefined();
    state.down = true;
    await expect(cache.sync()).rejects.toThrow(/ECONNREFUSED/);
    // Within ttlMs of the last good poll the entry is still served…
    expect(await cache.find(id)).toBeDefined();
    await sleep(350);
    expect(cache.feedHealthy()).toBe(false);
    // …after it, the control plane must answer, and it does not.
    await expect(cache.find(id)).rejects.toThrow(/ECONNREFUSED/);
    state.down = false;
    await cache.sync();
    expect(await cache.find(id)).toBeDefined();
  });

  it('after the feed was silent for longer than ttlMs, its next answer starts from an empty cache', async () => {
    const id = await newClient();
    const { db, state } = counted(stores.control);
    const cache = new ControlClientAdapter(db, { ttlMs: 300 });
    await cache.sync();
    await cache.find(id);
    state.down = true;
    await expect(cache.sync()).rejects.toThrow();
    await sleep(350);
    state.down = false;
    // The feed answers again: the entry from before the silence is not trusted, even if the feed
    // reports no change for it (its change may have been cleaned out meanwhile).
    await cache.sync();
    expect(cache.size).toBe(0);
    await cache.find(id);
    expect(state.reads).toBe(2);
  });

  it('old change rows are the only ones the feed ever deletes', async () => {
    const id = await newClient();
    await stores.control.query(
      `update oidc_client_change set changed_at = now() - interval '2 hours' where client_id = $1`,
      [id],
    );
    const cache = new ControlClientAdapter(stores.control, { ttlMs: 60_000 });
    // The clean-up runs every 600th poll.
    for (let i = 0; i < 601; i++) await cache.sync();
    const rows = await stores.control.query<{ client_id: string }>(
      'select client_id from oidc_client_change where client_id = $1',
      [id],
    );
    expect(rows).toHaveLength(0);
    const recent = await stores.control.query<{ count: string }>('select count(*) from oidc_client_change');
    expect(Number(recent[0]!.count)).toBeGreaterThan(0);
  });
});
