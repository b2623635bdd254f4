/**
 * Data-subject rights (issue 3; GDPR Art. 15/17): export and erasure at the subject's home
 * region, 404 with `home_region` elsewhere, and what erasure leaves behind — no profile, no live
 * token, audit entries pseudonymised — before and after, end to end.
 */
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, adminToken, introspect, tokenRequest } from './support/broker';
import { dumpDatabase } from './support/dump';
import { ANNA, API, FederationFixture, canariesOf, leaks } from './support/federation-fixture';

const f = new FederationFixture();
let compliance: { eu: string; us: string };
let anna: {
  sub: string;
  accessToken: string;
  refreshToken: string;
  usAccessToken: string;
  usRefreshToken: string;
};

beforeAll(async () => {
  await f.start('fedprivacy');
  compliance = {
    eu: await adminToken(f.eu, 'meridian:compliance'),
    us: await adminToken(f.us, 'meridian:compliance'),
  };
  // Anna (de-eid → home eu) signs in at the eu app, and through a hand-off at the us app.
  const atEu = await f.login('eu', 'de-eid', ANNA);
  const atUs = await f.login('us', 'de-eid', ANNA);
  if ('error' in atEu || 'error' in atUs) throw new Error('login failed');
  expect(atUs.idToken.sub).toBe(atEu.idToken.sub);
  anna = {
    sub: atEu.idToken.sub!,
    accessToken: atEu.tokens.access_token,
    refreshToken: atEu.tokens.refresh_token!,
    usAccessToken: atUs.tokens.access_token,
    usRefreshToken: atUs.tokens.refresh_token!,
  };
});

afterAll(async () => {
  await f.stop();
});

const privacy = (region: 'eu' | 'us', method: 'GET' | 'DELETE', sub = anna.sub) =>
  adminCall(
    f.broker(region),
    method,
    `/privacy/subjects/${encodeURIComponent(sub)}`,
    undefined,
    compliance[region],
  );

async function regionRows<T extends Record<string, unknown>>(
  region: 'eu' | 'us',
  sql: string,
  params: unknown[],
) {
  const db = new Client({ connectionString: f.regionUrl(region) });
  await db.connect();
  try {
    return (await db.query<T>(sql, params)).rows;
  } finally {
    await db.end();
  }
}

function refresh(region: 'eu' | 'us', refreshToken: string) {
  return tokenRequest(
    f.broker(region).url,
    { grant_type: 'refresh_token', refresh_token: refreshToken, resource: API },
    f.apps[region]!,
  );
}

describe('GDPR Art. 15 — export, GET /privacy/subjects/{sub}', () => {
  it('at eu (home) exports the profile, linked identities, sessions, grants and audit entries', async () => {
    const r = await privacy('eu', 'GET');
    expect(r.status).toBe(200);
    expect(r.body.region).toBe('eu');
    expect(r.body.subject).toMatchObject({
      sub: anna.sub,
      home: true,
      federation: 'de-eid',
      residency: { region: 'eu', jurisdiction: 'DE', policy: 'eu-gdpr@1', processing: ['eu'] },
    });
    expect(r.body.subject.profile).toMatchObject({ email: ANNA.claims.email, name: ANNA.claims.name });
    expect(r.body.linkedIdentities).toHaveLength(1);
    expect(r.body.linkedIdentities[0]).toMatchObject({ federation_id: 'de-eid' });
    expect(r.body.sessions.length).toBeGreaterThanOrEqual(1);
    const clients = r.body.grants.map((g: { clientId: string }) => g.clientId);
    // Her grants at eu: the eu app, and the us broker as the client of the hand-off.
    expect(clients).toEqual(expect.arrayContaining(['eu-app', 'meridian-region-us']));
    const actions = r.body.audit.map((a: { action: string }) => a.action);
    expect(actions).toContain('subject.login');
    // The policy decision, with its rule and reason (issue 6).
    const login = r.body.audit.find((a: { action: string }) => a.action === 'subject.login');
    expect(login.detail).toMatchObject({
      policy: 'eu-gdpr@1',
      rule: expect.stringMatching(
        /^eu-gdpr@1: appliesTo\.jurisdictions lists (DE|EU, and DE is an EU member state)$/,
      ),
      reason: 'national federation "de-eid" (jurisdiction DE)',
    });
    // Token values are not part of an export.
    const text = JSON.stringify(r.body);
    expect(text).not.toContain(anna.refreshToken);
    expect(text).not.toContain(anna.accessToken);
  });

  it('the export is audited', async () => {
    const r = await adminCall(
      f.eu,
      'GET',
      `/audit/events?type=subject.export&subject=${encodeURIComponent(anna.sub)}`,
      undefined,
      compliance.eu,
    );
    expect(r.status).toBe(200);
    expect(r.body.events.length).toBeGreaterThanOrEqual(1);
  });

  it('at us (not her home) answers 404 with home_region eu, for export and for erasure', async () => {
    for (const method of ['GET', 'DELETE'] as const) {
      const r = await privacy('us', method);
      expect(r.status).toBe(404);
      expect(r.body.home_region).toBe('eu');
      expect(r.body.error).toBe('not_found');
    }
    // Erasure refused at us changed nothing at eu.
    expect((await privacy('eu', 'GET')).status).toBe(200);
  });

  it('an unknown sub is a plain 404 everywhere', async () => {
    for (const region of ['eu', 'us'] as const) {
      const r = await privacy(region, 'GET', 'm-no-such-subject');
      expect(r.status).toBe(404);
      expect(r.body.home_region).toBeUndefined();
    }
  });

  it('403 with an admin-only token', async () => {
    const r = await adminCall(
      f.eu,
      'GET',
      `/privacy/subjects/${encodeURIComponent(anna.sub)}`,
      undefined,
      await adminToken(f.eu, 'meridian:admin'),
    );
    expect(r.status).toBe(403);
  });
});

interface AuditRow extends Record<string, unknown> {
  id: string;
  at: Date;
  action: string;
  outcome: string;
}

describe('GDPR Art. 17 — erasure, DELETE /privacy/subjects/{sub} at the home region', () => {
  let auditBefore: AuditRow[];

  beforeAll(async () => {
    // Before: everything alive.
    expect((await introspect(f.eu.url, anna.accessToken, f.apps.eu!)).body.active).toBe(true);
    expect((await introspect(f.us.url, anna.usAccessToken, f.apps.us!)).body.active).toBe(true);
    expect((await dumpDatabase(f.regionUrl('eu'))).includes(ANNA.claims.email as string)).toBe(true);
    auditBefore = await regionRows<AuditRow>(
      'eu',
      'select id, at, action, outcome from audit_event order by id',
      [],
    );
    expect(auditBefore.filter((e) => e.action === 'subject.login').length).toBeGreaterThanOrEqual(2);
    const r = await privacy('eu', 'DELETE');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ erased: true, region: 'eu' });
  });

  it('afterwards the export is 404 at eu', async () => {
    const r = await privacy('eu', 'GET');
    expect(r.status).toBe(404);
  });

  it('her refresh token from before is dead (invalid_grant)', async () => {
    const r = await refresh('eu', anna.refreshToken);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
  });

  it('her access token introspects inactive (RFC 7662 §2.2)', async () => {
    const r = await introspect(f.eu.url, anna.accessToken, f.apps.eu!);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ active: false });
  });

  it('her tokens from the hand-off login at us die too: refresh invalid_grant, access token inactive', async () => {
    const r = await refresh('us', anna.usRefreshToken);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
    expect((await introspect(f.us.url, anna.usAccessToken, f.apps.us!)).body).toEqual({ active: false });
  });

  it('us keeps no subject row about her once her home region erased her', async () => {
    expect(await regionRows('us', 'select sub from subject where sub = $1', [anna.sub])).toEqual([]);
  });

  it('the eu database no longer holds her email or name', async () => {
    const dump = await dumpDatabase(f.regionUrl('eu'));
    expect(leaks(dump, canariesOf(ANNA, f.de))).toEqual([]);
  });

  it('no subject row, link or OP artefact (session, grant, token) about her is left at eu', async () => {
    expect(await regionRows('eu', 'select sub from subject where sub = $1', [anna.sub])).toEqual([]);
    expect(await regionRows('eu', 'select sub from federated_identity where sub = $1', [anna.sub])).toEqual(
      [],
    );
    expect(
      await regionRows('eu', `select model from oidc_payload where payload->>'accountId' = $1`, [anna.sub]),
    ).toEqual([]);
  });

  it('audit entries about her are pseudonymised: none names her sub any more', async () => {
    expect(
      await regionRows('eu', 'select id, action from audit_event where target_id = $1 or actor = $1', [
        anna.sub,
      ]),
    ).toEqual([]);
    const bySubject = await adminCall(
      f.eu,
      'GET',
      `/audit/events?subject=${encodeURIComponent(anna.sub)}`,
      undefined,
      compliance.eu,
    );
    expect(bySubject.body.events).toEqual([]);
    // The entries are still there, under a pseudonym.
    const logins = await adminCall(f.eu, 'GET', '/audit/events?type=subject.login', undefined, compliance.eu);
    expect(logins.body.events.length).toBeGreaterThanOrEqual(1);
    for (const e of logins.body.events) expect(e.target_id).toMatch(/^log_/);
  });

  it('the audit trail keeps every entry (same ids, times, actions, outcomes) and stays append-only', async () => {
    const after = await regionRows<AuditRow>(
      'eu',
      'select id, at, action, outcome from audit_event order by id',
      [],
    );
    expect(after.slice(0, auditBefore.length)).toEqual(auditBefore);
    await expect(
      regionRows('eu', `update audit_event set target_id = 'x' where id = $1`, [auditBefore[0]!.id]),
    ).rejects.toThrow(/append-only/);
    await expect(
      regionRows('eu', 'delete from audit_event where id = $1', [auditBefore[0]!.id]),
    ).rejects.toThrow(/append-only/);
  });

  it('GET /audit/events?type=subject.erase shows the erasure, without her sub', async () => {
    const r = await adminCall(f.eu, 'GET', '/audit/events?type=subject.erase', undefined, compliance.eu);
    expect(r.status).toBe(200);
    expect(r.body.events).toHaveLength(1);
    expect(r.body.events[0]).toMatchObject({ action: 'subject.erase', region: 'eu' });
    expect(r.body.events[0].target_id).toMatch(/^log_/);
    expect(JSON.stringify(r.body.events[0])).not.toContain(anna.sub);
  });

  it('the locator forgets her: us answers a plain 404 without home_region', async () => {
    const r = await privacy('us', 'GET');
    expect(r.status).toBe(404);
    expect(r.body.home_region).toBeUndefined();
  });

  it('a new login afterwards works and creates a fresh subject', async () => {
    const r = await f.login('eu', 'de-eid', ANNA);
    if ('error' in r) throw new Error(`${r.error}: ${r.description}`);
    expect(r.idToken.sub).not.toBe(anna.sub);
    expect(r.idToken.email).toBe(ANNA.claims.email);
    const exported = await privacy('eu', 'GET', r.idToken.sub);
    expect(exported.status).toBe(200);
    expect(exported.body.subject.profile.email).toBe(ANNA.claims.email);
  });
});
