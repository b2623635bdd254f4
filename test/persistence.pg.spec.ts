/**
 * The store contract on real PostgreSQL: single-use artefacts are single-use under
 * concurrency, grants revoke as a family, expired rows are invisible, and one region's rows
 * are invisible from another region's data source.
 */
import { errors } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  claimRegionDatabase,
  createRegionDataSource,
  migrate,
  type ControlDatabase,
  type RegionDatabase,
} from '@meridian/persistence';
import { RegionPayloadAdapter } from '@meridian/tokens';
import { freshDatabases } from './support/broker';
import { openStores } from './support/stores';

let stores: Awaited<ReturnType<typeof openStores<'eu' | 'us'>>>;
let eu: RegionDatabase<'eu' | 'us'>;
let us: RegionDatabase<'eu' | 'us'>;
let control: ControlDatabase;

beforeAll(async () => {
  stores = await openStores('store', ['eu', 'us']);
  ({ control } = stores);
  eu = stores.region.eu;
  us = stores.region.us;
});

afterAll(async () => {
  await stores?.close();
});

describe('oidc-provider adapter on the region database', () => {
  it('consumes a single-use code exactly once when redeemed twice in parallel', async () => {
    const codes = new RegionPayloadAdapter('AuthorizationCode', eu);
    await codes.upsert('code-par', { grantId: 'g-par', accountId: 's' }, 60);
    const results = await Promise.allSettled([
      codes.consume('code-par'),
      codes.consume('code-par'),
      codes.consume('code-par'),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(2);
    for (const r of rejected) expect(r.reason).toBeInstanceOf(errors.InvalidGrant);
  });

  it('revokes the whole grant when a consumed refresh token is consumed again (RFC 9700 §4.14.2)', async () => {
    const rts = new RegionPayloadAdapter('RefreshToken', eu);
    const grants = new RegionPayloadAdapter('Grant', eu);
    await grants.upsert('g-rt', { accountId: 's', clientId: 'c' }, 600);
    await rts.upsert('rt-1', { grantId: 'g-rt' }, 600);
    await rts.upsert('rt-2', { grantId: 'g-rt' }, 600);
    await rts.consume('rt-1');
    await expect(rts.consume('rt-1')).rejects.toBeInstanceOf(errors.InvalidGrant);
    expect(await grants.find('g-rt')).toBeUndefined();
    expect(await rts.find('rt-2')).toBeUndefined();
  });

  it('marks consumed rows so oidc-provider sees the replay', async () => {
    const codes = new RegionPayloadAdapter('AuthorizationCode', eu);
    await codes.upsert('code-seen', { grantId: 'g-seen' }, 60);
    await codes.consume('code-seen');
    expect((await codes.find('code-seen'))?.consumed).toEqual(expect.any(Number));
  });

  it('does not return expired rows', async () => {
    const sessions = new RegionPayloadAdapter('Session', eu);
    await sessions.upsert('sess-exp', { uid: 'u-exp', accountId: 's' }, 1);
    expect(await sessions.findByUid('u-exp')).toBeDefined();
    await new Promise((r) => setTimeout(r, 1_200));
    expect(await sessions.find('sess-exp')).toBeUndefined();
    expect(await sessions.findByUid('u-exp')).toBeUndefined();
  });

  it('keeps models apart: the same id in two models is two rows', async () => {
    const a = new RegionPayloadAdapter('Interaction', eu);
    const b = new RegionPayloadAdapter('Session', eu);
    await a.upsert('same-id', { kind: 'Interaction' }, 60);
    await b.upsert('same-id', { kind: 'Session' }, 60);
    expect((await a.find('same-id'))?.kind).toBe('Interaction');
    expect((await b.find('same-id'))?.kind).toBe('Session');
    await a.destroy('same-id');
    expect(await a.find('same-id')).toBeUndefined();
    expect(await b.find('same-id')).toBeDefined();
  });
});

describe('region isolation', () => {
  it('makes a row written in eu invisible from the us data source', async () => {
    const euSessions = new RegionPayloadAdapter('Session', eu);
    const usSessions = new RegionPayloadAdapter('Session', us);
    await euSessions.upsert('sess-eu-only', { accountId: 'person-in-eu', uid: 'uid-eu-only' }, 600);
    expect(await euSessions.find('sess-eu-only')).toBeDefined();
    expect(await usSessions.find('sess-eu-only')).toBeUndefined();
    expect(await usSessions.findByUid('uid-eu-only')).toBeUndefined();
    const [{ n }] = await us.query<{ n: string }>(
      `select count(*) as n from oidc_payload where payload::text like '%person-in-eu%'`,
    );
    expect(Number(n)).toBe(0);
  });

  it('refuses to bind a region database to a second region', async () => {
    await expect(claimRegionDatabase(eu.dataSource, 'us')).rejects.toMatchObject({
      code: 'ERR_REGION_DATABASE_MISMATCH',
    });
  });

  it('keeps no personal-data tables in the control plane', async () => {
    const tables = (
      await control.query<{ tablename: string }>(
        `select tablename from pg_tables where schemaname = 'public'`,
      )
    )
      .map((t) => t.tablename)
      .sort();
    expect(tables).toEqual([
      'federation',
      'federation_secret',
      'meridian_migrations',
      'oidc_client',
      // Client ids that changed (a change feed for the brokers' caches): configuration, not people.
      'oidc_client_change',
      'region',
      'region_key',
      'residency_policy',
      'resource',
      'subject_locator',
      'subject_tombstone',
    ]);
  });
});

describe('migrations', () => {
  it('run once when several processes migrate at the same time (advisory lock)', async () => {
    const fresh = await freshDatabases('migr', ['eu']);
    const sources = Array.from({ length: 4 }, () =>
      createRegionDataSource({ url: fresh.region.eu!.url, poolSize: 2 }),
    );
    try {
      await Promise.all(sources.map((s) => s.initialize()));
      const ran = await Promise.all(sources.map((s) => migrate(s)));
      expect(ran.flat()).toHaveLength(sources[0]!.migrations.length);
    } finally {
      await Promise.allSettled(sources.map((s) => s.destroy()));
      await fresh.drop();
    }
  });
});

describe('audit trail', () => {
  it('is append-only: the database refuses updates and deletes', async () => {
    await eu.query(
      `insert into audit_event (region, actor, action, target_type) values ('eu', 'tester', 'x', 'y')`,
    );
    await expect(eu.query(`update audit_event set actor = 'someone else'`)).rejects.toThrow(/append-only/);
    await expect(eu.query(`delete from audit_event`)).rejects.toThrow(/append-only/);
  });
});
