/**
 * Detectors on the federated login (issue 6), with two regional brokers and real upstream IdPs
 * (test/support/federation-fixture.ts):
 *
 * - upstream IdP anomalies: ID tokens failing validation (the German eID signs with a key that
 *   is not in its JWKS) — the logins are refused, nothing is stored, and at the threshold the
 *   broker alerts (audit entry, counter, signed webhook);
 * - impossible travel: one person signing in at eu and, seconds later, at us (handed off to the
 *   home region eu, which sees both) — detected and audited at the home region.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/broker';
import { ANNA, FederationFixture } from './support/federation-fixture';
import { startWebhookReceiver } from './support/security';

const SECRET = `hook-${randomBytes(24).toString('base64url')}`;
let f: FederationFixture;
let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;

beforeAll(async () => {
  hooks = await startWebhookReceiver(SECRET);
  f = await new FederationFixture().start('secfed', {
    env: {
      MERIDIAN_REGION_LOCATIONS: 'eu=50.11,8.68;us=38.90,-77.04',
      MERIDIAN_TRAVEL_MAX_KMH: '1000',
      MERIDIAN_DETECT_UPSTREAM_ID_TOKEN_FAILURES: '2/300',
      MERIDIAN_SECURITY_WEBHOOK_URL: hooks.url,
      MERIDIAN_SECURITY_WEBHOOK_SECRET: SECRET,
    },
  });
});

afterAll(async () => {
  await f?.stop();
  await hooks?.stop();
});

async function subjectsAt(region: 'eu' | 'us'): Promise<number> {
  const pg = new Client({ connectionString: f.regionUrl(region) });
  await pg.connect();
  try {
    return Number((await pg.query('select count(*)::int as n from subject')).rows[0].n);
  } finally {
    await pg.end();
  }
}

describe('upstream IdP anomalies: ID tokens failing validation', () => {
  it('refuses each login, stores nothing, and alerts at the threshold (2 in 300 s)', async () => {
    f.de.setFault('bad-signature');
    try {
      const first = await f.login('eu', 'de-eid', ANNA);
      expect(first.error).toBe('access_denied');
      expect(hooks.alerts.filter((a) => a.detector === 'upstream_id_token_invalid')).toHaveLength(0);
      const second = await f.login('eu', 'de-eid', ANNA);
      expect(second.error).toBe('access_denied');
    } finally {
      f.de.setFault('none');
    }
    expect(await subjectsAt('eu')).toBe(0);
    const alert = await hooks.waitFor((a) => a.detector === 'upstream_id_token_invalid');
    expect(alert.verified).toBe(true);
    expect(alert.region).toBe('eu');
    expect(alert.target).toEqual({ type: 'federation', id: 'de-eid' });
    expect(alert.detail).toMatchObject({
      failures: 2,
      windowSeconds: 300,
      code: 'ERR_UPSTREAM_INVALID_RESPONSE',
    });
    const audit = await adminCall(f.eu, 'GET', '/audit/events?type=security.upstream_id_token_invalid');
    expect(audit.body.events).toHaveLength(1);
    expect(audit.body.events[0]).toMatchObject({ target_type: 'federation', target_id: 'de-eid' });
    const metrics = await (await fetch(`${f.eu.url}/metrics`)).text();
    expect(metrics).toMatch(
      /meridian_security_detections_total\{[^}]*detector="upstream_id_token_invalid"[^}]*\} 1/,
    );
  });
});

describe('impossible travel between regions (MERIDIAN_REGION_LOCATIONS, MERIDIAN_TRAVEL_MAX_KMH)', () => {
  it('flags a login at us seconds after one at eu, at the home region, about the subject', async () => {
    const atEu = await f.login('eu', 'de-eid', ANNA);
    if (!('idToken' in atEu) || !atEu.idToken) throw new Error(`login at eu failed: ${atEu.error}`);
    const sub = atEu.idToken.sub as string;
    // The same region again: plausible, nothing to say.
    const againEu = await f.login('eu', 'de-eid', ANNA);
    expect('idToken' in againEu).toBe(true);
    expect(hooks.alerts.filter((a) => a.detector === 'impossible_travel')).toHaveLength(0);

    const atUs = await f.login('us', 'de-eid', ANNA);
    if (!('idToken' in atUs) || !atUs.idToken) throw new Error(`login at us failed: ${atUs.error}`);
    expect(atUs.idToken.sub).toBe(sub);
    const alert = await hooks.waitFor((a) => a.detector === 'impossible_travel');
    expect(alert.verified).toBe(true);
    expect(alert.region).toBe('eu'); // the home region saw both logins
    expect(alert.target).toEqual({ type: 'subject', id: sub });
    expect(alert.detail).toMatchObject({ from: 'eu', to: 'us', maxKmh: 1000, federation: 'de-eid' });
    expect(alert.detail.distanceKm).toBeGreaterThan(6000);
    expect(alert.detail.kmh).toBeGreaterThan(1000);
    const audit = await adminCall(
      f.eu,
      'GET',
      `/audit/events?type=security.impossible_travel&subject=${sub}`,
    );
    expect(audit.body.events).toHaveLength(1);
    // The requesting region stored nothing about it.
    const atUsAudit = await adminCall(f.us, 'GET', '/audit/events?type=security.impossible_travel');
    expect(atUsAudit.body.events).toHaveLength(0);
  });
});
