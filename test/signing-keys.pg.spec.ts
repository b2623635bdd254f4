/**
 * The key store's schedule, with an injected clock: rotation when due (once, whichever replica
 * notices first), retiring keys published until every token they signed has expired, and
 * private keys sealed so that only the right KEK opens them.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlDatabase, RegionDatabase } from '@meridian/persistence';
import {
  MAX_SIGNED_LIFETIME_SECONDS,
  RETIRE_GRACE_SECONDS,
  SigningKeyStore,
  open,
  seal,
} from '@meridian/keys';
import { openStores } from './support/stores';

let stores: Awaited<ReturnType<typeof openStores<'eu'>>>;
let region: RegionDatabase<'eu'>;
let control: ControlDatabase;
const kek = randomBytes(32);
let clock = new Date('2030-01-01T00:00:00Z');
const store = () =>
  new SigningKeyStore(region, control, { region: 'eu', alg: 'ES256', kek, now: () => clock });

beforeAll(async () => {
  stores = await openStores('sk', ['eu']);
  ({ control } = stores);
  region = stores.region.eu;
  await control.query(`insert into region (id, issuer) values ('eu', 'http://127.0.0.1:1')`);
});

afterAll(async () => {
  await stores?.close();
});

describe('scheduled rotation', () => {
  it('creates one current and one next key when replicas start together', async () => {
    await Promise.all([store().ensureKeys(), store().ensureKeys(), store().ensureKeys()]);
    const states = (await region.query<{ state: string }>('select state from signing_key'))
      .map((r) => r.state)
      .sort();
    expect(states).toEqual(['current', 'next']);
  });

  it('does not rotate before the interval, rotates once after it even if every replica asks', async () => {
    const interval = 30 * 86400;
    const before = (await store().load()).current.kid;
    clock = new Date(clock.getTime() + (interval - 60) * 1000);
    expect(await store().rotateIfDue(interval)).toBe(false);
    clock = new Date(clock.getTime() + 120 * 1000);
    const results = await Promise.all([
      store().rotateIfDue(interval),
      store().rotateIfDue(interval),
      store().rotateIfDue(interval),
    ]);
    expect(results.filter(Boolean)).toHaveLength(1);
    const set = await store().load();
    expect(set.current.kid).not.toBe(before);
    expect(set.published.find((k) => k.kid === before)?.state).toBe('retiring');
  });

  it('keeps a retiring key published until the longest token it signed has expired, then drops it everywhere', async () => {
    const set = await store().load();
    const retiring = set.published.find((k) => k.state === 'retiring')!;
    expect(retiring.publishUntil!.getTime() - clock.getTime()).toBe(
      (MAX_SIGNED_LIFETIME_SECONDS + RETIRE_GRACE_SECONDS) * 1000,
    );
    clock = new Date(retiring.publishUntil!.getTime() - 1000);
    expect((await store().load()).published.map((k) => k.kid)).toContain(retiring.kid);
    clock = new Date(retiring.publishUntil!.getTime() + 1000);
    expect((await store().load()).published.map((k) => k.kid)).not.toContain(retiring.kid);
    await store().ensureKeys(); // prunes and republishes
    const published = await control.query<{ kid: string }>(`select kid from region_key where region = 'eu'`);
    expect(published.map((k) => k.kid)).not.toContain(retiring.kid);
    expect(await region.query('select 1 from signing_key where kid = $1', [retiring.kid])).toHaveLength(0);
  });

  it('refuses to open the keys with another KEK, naming MERIDIAN_KEK', async () => {
    const wrong = new SigningKeyStore(region, control, {
      region: 'eu',
      alg: 'ES256',
      kek: randomBytes(32),
      now: () => clock,
    });
    await expect(wrong.load()).rejects.toMatchObject({
      code: 'ERR_KEK_MISMATCH',
      message: expect.stringContaining('MERIDIAN_KEK'),
    });
  });

  it('opens the keys with the previous KEK during a KEK change', async () => {
    const changing = new SigningKeyStore(region, control, {
      region: 'eu',
      alg: 'ES256',
      kek: randomBytes(32),
      kekPrevious: kek,
      now: () => clock,
    });
    await expect(changing.load()).resolves.toMatchObject({ current: expect.anything() });
  });
});

describe('envelope encryption', () => {
  it('binds a sealed secret to its context: it does not open under another kid', () => {
    const sealed = seal(kek, Buffer.from('secret'), 'signing-key:eu:a');
    expect(open(kek, sealed, 'signing-key:eu:a').toString()).toBe('secret');
    expect(() => open(kek, sealed, 'signing-key:eu:b')).toThrow();
  });

  it('detects a tampered ciphertext', () => {
    const sealed = seal(kek, Buffer.from('secret'), 'ctx');
    sealed[sealed.length - 1] ^= 1;
    expect(() => open(kek, sealed, 'ctx')).toThrow();
  });
});
