/**
 * The canary property for a national federation with `storeProfile: false` (issue 3: "a mode
 * where the broker keeps no personal data at rest for that federation (only the pseudonymous
 * link)"): after logins at the home region and through a hand-off from another region, no
 * database — home, other region, control plane — holds any of the person's data; the home region
 * holds the pseudonymous link and the residency decision only.
 */
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/broker';
import { ANNA, FederationFixture, canariesOf, leaks } from './support/federation-fixture';

const f = new FederationFixture();
let dumps: { control: string; eu: string; us: string };
let canaries: string[];
const subs: Record<'eu' | 'us', string> = { eu: '', us: '' };

beforeAll(async () => {
  await f.start('fednoprofile', { deStoreProfile: false, logLevel: 'debug' });
  canaries = canariesOf(ANNA, f.de);
  for (const region of ['us', 'eu'] as const) {
    const r = await f.login(region, 'de-eid', ANNA);
    if ('error' in r) throw new Error(`login at ${region}: ${r.error}: ${r.description}`);
    subs[region] = r.idToken.sub!;
  }
  dumps = await f.dumps();
});

afterAll(async () => {
  await f.stop();
});

async function query<T extends Record<string, unknown>>(region: 'eu' | 'us', sql: string, params: unknown[]) {
  const db = new Client({ connectionString: f.regionUrl(region) });
  await db.connect();
  try {
    return (await db.query<T>(sql, params)).rows;
  } finally {
    await db.end();
  }
}

describe('storeProfile: false — a national federation whose users may not be stored by the broker', () => {
  it('the federation is configured with storeProfile false', async () => {
    const r = await adminCall(f.eu, 'GET', '/admin/federations/de-eid');
    expect(r.status).toBe(200);
    expect(r.body.storeProfile).toBe(false);
  });

  it('logs in through it at either region, with one stable sub and residency eu', () => {
    expect(subs.us).toBe(subs.eu);
  });

  it('no database holds any of the person’s data: not the home region (eu)', () => {
    expect(leaks(dumps.eu, canaries)).toEqual([]);
  });

  it('… not the other region (us)', () => {
    expect(leaks(dumps.us, canaries)).toEqual([]);
  });

  it('… not the control plane', () => {
    expect(leaks(dumps.control, canaries)).toEqual([]);
  });

  it('the home region keeps the pseudonymous link and the residency decision only', async () => {
    const [subject] = await query(
      'eu',
      'select claims, store_profile, home, residency from subject where sub = $1',
      [subs.eu],
    );
    expect(subject).toEqual({
      claims: {},
      store_profile: false,
      home: true,
      residency: { region: 'eu', jurisdiction: 'DE', policy: 'eu-gdpr@1', processing: ['eu'] },
    });
    const links = await query<{ federation_id: string; link_key: string }>(
      'eu',
      'select federation_id, link_key from federated_identity where sub = $1',
      [subs.eu],
    );
    expect(links).toHaveLength(1);
    expect(links[0]!.federation_id).toBe('de-eid');
    expect(links[0]!.link_key).toMatch(/^link_[A-Za-z0-9_-]{43}$/);
  });

  it('neither broker writes the person’s data to its logs', () => {
    for (const region of ['eu', 'us'] as const)
      expect(leaks(f.broker(region).output(), canaries), `${region} broker log`).toEqual([]);
  });
});
