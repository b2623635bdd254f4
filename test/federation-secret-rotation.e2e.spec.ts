/**
 * The upstream IdP rotates the client secret it gave a region. A real upstream (oidc-provider)
 * changes the secret it accepts; the operator hands the new one to the broker with
 * POST /admin/federations/{id}/secret. Whichever side switches first, logins keep working during
 * the overlap: the broker tries the new secret, falls back to the previous one when the upstream
 * refuses it (RFC 6749 §5.2 invalid_client), until the overlap ends or the new one is promoted.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/broker';
import { ANNA, FederationFixture } from './support/federation-fixture';

const f = new FederationFixture();
const FED = 'de-eid';

/** The upstream switches to `secret` for region eu's client (the old one stops working there). */
async function upstreamUses(secret: string): Promise<void> {
  await f.de.addClient({
    client_id: 'meridian-eu',
    client_secret: secret,
    redirect_uris: [`${f.eu.issuer}/federation/callback`],
    post_logout_redirect_uris: [`${f.eu.issuer}/federation/logged-out`],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid email profile address',
  });
}

async function loginWorks(): Promise<boolean> {
  const r = await f.login('eu', FED, ANNA);
  return !('error' in r);
}

const newSecret = () => `upstream-eu-${randomBytes(16).toString('hex')}`;
const status = async () => (await adminCall(f.eu, 'GET', `/admin/federations/${FED}/secret`)).body;
const rotate = (clientSecret: string, overlapSeconds?: number) =>
  adminCall(f.eu, 'POST', `/admin/federations/${FED}/secret`, {
    clientSecret,
    ...(overlapSeconds !== undefined ? { overlapSeconds } : {}),
  });
const promote = () => adminCall(f.eu, 'POST', `/admin/federations/${FED}/secret/promote`);

async function controlRows(sql: string, params: unknown[] = []) {
  const client = new Client({ connectionString: f.dbs.control.url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

const used: string[] = [];

beforeAll(async () => {
  await f.start('fedsecret');
  used.push(f.upstreamSecrets[`eu:${FED}`]!);
}, 120_000);

afterAll(async () => {
  await f.stop();
});

describe('upstream federation secret rotation', () => {
  it('the upstream switches first: logins fail until the operator hands the broker the new secret', async () => {
    expect(await loginWorks()).toBe(true);
    const s2 = newSecret();
    used.push(s2);
    await upstreamUses(s2);
    const refused = await f.login('eu', FED, ANNA);
    expect('error' in refused && refused.error).toBeTruthy();

    const r = await rotate(s2, 600);
    expect(r.status).toBe(200);
    expect(r.body.current).toMatchObject({ lastAcceptedAt: null });
    expect(Date.parse(r.body.previous.expiresAt)).toBeGreaterThan(Date.now() + 590_000);
    expect(await loginWorks()).toBe(true);
    const s = await status();
    expect(s.current.lastAcceptedAt).not.toBeNull();
    expect(s.previous.lastAcceptedAt).toBeNull();

    // The upstream took the new one: the operator ends the overlap.
    expect((await promote()).status).toBe(200);
    expect((await status()).previous).toBeNull();
    expect((await promote()).status).toBe(404);
  }, 60_000);

  it('the broker is told first: the previous secret carries logins until the upstream switches', async () => {
    const s3 = newSecret();
    used.push(s3);
    const r = await rotate(s3, 600);
    expect(r.status).toBe(200);
    // The upstream still accepts only s2: the broker falls back to it.
    expect(await loginWorks()).toBe(true);
    let s = await status();
    expect(s.previous.lastAcceptedAt).not.toBeNull();
    expect(s.current.lastAcceptedAt).toBeNull();

    // At most two: no further rotation during the overlap.
    const third = await rotate(newSecret());
    expect(third.status).toBe(409);
    expect(JSON.stringify(third.body)).toContain('promote');

    await upstreamUses(s3);
    expect(await loginWorks()).toBe(true);
    s = await status();
    expect(s.current.lastAcceptedAt).not.toBeNull();

    // Promoted: the old secret is never tried again.
    expect((await promote()).status).toBe(200);
    await upstreamUses(used[1]!);
    expect(await loginWorks()).toBe(false);
    await upstreamUses(s3);
    expect(await loginWorks()).toBe(true);
  }, 60_000);

  it('stops trying the previous secret once its overlap has expired', async () => {
    const s4 = newSecret();
    used.push(s4);
    const r = await rotate(s4, 2);
    expect(r.status).toBe(200);
    expect(await loginWorks()).toBe(true); // upstream still on s3: previous accepted
    await new Promise((done) =>
      setTimeout(done, Math.max(0, Date.parse(r.body.previous.expiresAt) - Date.now()) + 500),
    );
    expect((await status()).previous).toBeNull();
    expect(await loginWorks()).toBe(false);
    await upstreamUses(s4);
    expect(await loginWorks()).toBe(true);
  }, 60_000);

  it('keeps every secret sealed and audits rotations and promotions', async () => {
    const dump = JSON.stringify(await controlRows('select * from federation_secret'));
    for (const secret of used) expect(dump).not.toContain(secret);
    const client = new Client({ connectionString: f.regionUrl('eu') });
    await client.connect();
    try {
      const { rows } = await client.query(
        `select action, actor, detail from audit_event where target_id = $1 and action like 'federation.secret.%' order by id`,
        [FED],
      );
      expect(rows.map((e: { action: string }) => e.action)).toEqual([
        'federation.secret.rotate',
        'federation.secret.promote',
        'federation.secret.rotate',
        'federation.secret.promote',
        'federation.secret.rotate',
      ]);
      expect(JSON.stringify(rows)).not.toMatch(new RegExp(used.join('|')));
    } finally {
      await client.end();
    }
  });

  it('leaves the other region’s copy alone and refuses bad requests', async () => {
    const us = (await adminCall(f.us, 'GET', `/admin/federations/${FED}/secret`)).body;
    expect(us.region).toBe('us');
    expect(us.previous).toBeNull();
    expect(
      (await adminCall(f.eu, 'POST', `/admin/federations/nope/secret`, { clientSecret: 'x' })).status,
    ).toBe(404);
    const bad = await adminCall(f.eu, 'POST', `/admin/federations/${FED}/secret`, { overlapSeconds: 5 });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('clientSecret');
  });
});
