/**
 * Erasure notices between brokers: only a region's own published keys sign them, and only for
 * subjects homed in that region. Forged, self-addressed or malformed notices change nothing.
 */
import { SignJWT, generateKeyPair } from 'jose';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminToken } from './support/broker';
import { ANNA, FederationFixture } from './support/federation-fixture';

const f = new FederationFixture();
let sub: string;

async function usHasCopy(): Promise<boolean> {
  const c = new Client({ connectionString: f.dbs.region.us!.url });
  await c.connect();
  try {
    return (await c.query('select 1 from subject where sub = $1', [sub])).rowCount === 1;
  } finally {
    await c.end();
  }
}

async function post(body: unknown) {
  const res = await fetch(`${f.us.url}/privacy/erasure-notices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  await f.start('peererase');
  const r = await f.login('us', 'de-eid', ANNA);
  if ('error' in r) throw new Error(r.description);
  sub = r.idToken.sub!;
  expect(await usHasCopy()).toBe(true);
});

afterAll(async () => {
  await f.stop();
});

describe('erasure notices between regions', () => {
  it('refuses a notice signed by a key that is not the sender region’s', async () => {
    const attacker = await generateKeyPair('ES256');
    const notice = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', typ: 'meridian-erasure+jwt', kid: 'x' })
      .setIssuer(f.eu.issuer)
      .setAudience(f.us.issuer)
      .setSubject(sub)
      .setJti('forged')
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(attacker.privateKey);
    expect((await post({ notice })).status).toBe(401);
    expect(await usHasCopy()).toBe(true);
  });

  it('refuses malformed notices with a 4xx, never a 5xx', async () => {
    for (const body of [{}, { notice: 'not-a-jwt' }, { notice: 42 }, { notice: 'a'.repeat(5000) }]) {
      const r = await post(body);
      expect(r.status).toBe(401);
      expect(r.body.error).toBe('invalid_request');
    }
    expect(await usHasCopy()).toBe(true);
  });

  it('erases the copy when the home region erases the subject', async () => {
    const token = await adminToken(f.eu, 'meridian:compliance');
    const res = await fetch(`${f.eu.url}/privacy/subjects/${sub}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    expect(await usHasCopy()).toBe(false);
  });
});
