/**
 * The admin and compliance APIs of issue 3, against spawned brokers with real upstream IdPs:
 * federation onboarding (`PUT /admin/federations/{id}`: discovery fetched and checked, 422 with a
 * reason; 400 naming the field), residency policies as versioned, validated data
 * (`/compliance/policies`), and the policy dry run over the subjects a region holds.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, adminToken } from './support/broker';
import { dumpDatabase } from './support/dump';
import { ANNA, EU_POLICY, FederationFixture } from './support/federation-fixture';
import { freePort } from './support/ports';

const f = new FederationFixture();
/** A discovery server on loopback that serves broken documents under /<case>. */
let fake: Server;
let fakeUrl: string;
let adminOnly: string;
let complianceOnly: string;

beforeAll(async () => {
  await f.start('fedcompliance');
  fake = createServer((req, res) => {
    const path = new URL(req.url ?? '/', fakeUrl).pathname;
    const m = /^\/([a-z-]+)\/\.well-known\/openid-configuration$/.exec(path);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const issuer = `${fakeUrl}/${m[1]}`;
    const doc: Record<string, unknown> = {
      issuer,
      authorization_endpoint: `${issuer}/auth`,
      token_endpoint: `${issuer}/token`,
      jwks_uri: `${issuer}/jwks`,
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
    };
    if (m[1] === 'other-issuer') doc.issuer = `${fakeUrl}/someone-else`;
    if (m[1] === 'no-jwks') delete doc.jwks_uri;
    if (m[1] === 'no-code') doc.response_types_supported = ['id_token'];
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
  });
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  adminOnly = await adminToken(f.eu, 'meridian:admin');
  complianceOnly = await adminToken(f.eu, 'meridian:compliance');
});

afterAll(async () => {
  await new Promise<void>((resolve) => (fake ? fake.close(() => resolve()) : resolve()));
  await f.stop();
});

const SECRET = 'onboarding-secret-7c1f0b9e5d2a4c38';

function federation(overrides: Record<string, unknown> = {}) {
  return {
    displayName: 'Test IdP',
    issuer: f.global.issuer,
    clientId: 'meridian-test',
    clientSecret: SECRET,
    kind: 'global',
    ...overrides,
  };
}

const putFed = (id: string, body: unknown, token?: string) =>
  adminCall(f.eu, 'PUT', `/admin/federations/${id}`, body, token);

function expect422(r: { status: number; body: any }, reason: RegExp) {
  expect(r.status).toBe(422);
  expect(r.body.error).toBe('unprocessable_entity');
  expect(r.body.error_description).toMatch(reason);
}

function expect400(r: { status: number; body: any }, field: string) {
  expect(r.status).toBe(400);
  expect(r.body.error).toBe('invalid_request');
  expect(r.body.error_description).toContain(field);
}

describe('federation onboarding: PUT /admin/federations/{id} checks the issuer’s discovery', () => {
  it('422 when the discovery document cannot be fetched (nothing listens on the port)', async () => {
    const r = await putFed('closed', federation({ issuer: `http://127.0.0.1:${await freePort()}` }));
    expect422(r, /could not be used: connection refused/);
  });

  it('422 when the URL is not an issuer (the IdP has no discovery under that path)', async () => {
    expect422(await putFed('sub-path', federation({ issuer: `${f.de.issuer}/tenant` })), /could not be used/);
  });

  it('422 when the discovery document names another issuer (OIDC Discovery §4.3)', async () => {
    const r = await putFed('mismatch', federation({ issuer: `${fakeUrl}/other-issuer` }));
    expect422(r, /could not be used.*issuer/);
  });

  it('422 when the discovery document publishes no jwks_uri', async () => {
    expect422(await putFed('no-jwks', federation({ issuer: `${fakeUrl}/no-jwks` })), /publishes no jwks_uri/);
  });

  it('422 when the IdP does not support the code response type', async () => {
    expect422(
      await putFed('no-code', federation({ issuer: `${fakeUrl}/no-code` })),
      /does not support the code response type/,
    );
  });

  it('stores nothing for a refused federation', async () => {
    for (const id of ['closed', 'sub-path', 'mismatch', 'no-jwks', 'no-code'])
      expect((await adminCall(f.eu, 'GET', `/admin/federations/${id}`)).status).toBe(404);
  });

  it('422 for an enabled national federation whose jurisdiction (JP) no policy covers; accepted with enabled: false', async () => {
    const jp = federation({ kind: 'national', jurisdiction: 'JP', issuer: f.de.issuer });
    expect422(await putFed('jp-eid', jp), /"JP".*enabled: false/);
    expect((await adminCall(f.eu, 'GET', '/admin/federations/jp-eid')).status).toBe(404);

    const disabled = await putFed('jp-eid', { ...jp, enabled: false });
    expect(disabled.status).toBe(201);
    expect(disabled.body).toMatchObject({
      id: 'jp-eid',
      kind: 'national',
      jurisdiction: 'JP',
      enabled: false,
    });
    expect422(await putFed('jp-eid', jp), /"JP"/);
    expect((await adminCall(f.eu, 'GET', '/admin/federations/jp-eid')).body.enabled).toBe(false);
  });

  it('400 for a national federation without jurisdiction', async () => {
    expect400(await putFed('bad', federation({ kind: 'national', issuer: f.de.issuer })), 'jurisdiction');
  });

  it('400 for a global federation with a jurisdiction', async () => {
    expect400(await putFed('bad', federation({ jurisdiction: 'DE' })), 'jurisdiction');
  });

  it('400 for a claimMapping onto a protocol claim or from a non-path', async () => {
    expect400(await putFed('bad', federation({ claimMapping: { sub: 'email' } })), 'claimMapping.sub');
    expect400(await putFed('bad', federation({ claimMapping: { email: 42 } })), 'claimMapping.email');
    expect400(await putFed('bad', federation({ claimMapping: { email: 'a..b' } })), 'claimMapping.email');
  });

  it('400 for an unknown field, naming it', async () => {
    expect400(await putFed('bad', federation({ colour: 'blue' })), 'colour');
  });

  it('400 for an unknown kind', async () => {
    expect400(await putFed('bad', federation({ kind: 'planetary' })), 'kind');
  });

  it('201 then 200; the answer carries redirectUri on the broker’s issuer and never the secret', async () => {
    const created = await putFed('test-idp', federation());
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      id: 'test-idp',
      issuer: f.global.issuer,
      kind: 'global',
      enabled: true,
      storeProfile: true,
      hasClientSecret: true,
      redirectUri: `${f.eu.issuer}/federation/callback`,
    });
    expect(JSON.stringify(created.body)).not.toContain(SECRET);
    const updated = await putFed(
      'test-idp',
      federation({ displayName: 'Test IdP 2', clientSecret: undefined }),
    );
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ displayName: 'Test IdP 2', hasClientSecret: true });

    const atUs = await adminCall(f.us, 'PUT', '/admin/federations/test-idp', federation());
    expect(atUs.body.redirectUri).toBe(`${f.us.issuer}/federation/callback`);
  });

  it('GET one and the list never show the secret; it is sealed in the control database', async () => {
    const one = await adminCall(f.eu, 'GET', '/admin/federations/test-idp');
    expect(one.status).toBe(200);
    expect(one.body.redirectUri).toBe(`${f.eu.issuer}/federation/callback`);
    const list = await adminCall(f.eu, 'GET', '/admin/federations');
    expect(list.status).toBe(200);
    expect((list.body as { id: string }[]).map((x) => x.id)).toEqual(
      expect.arrayContaining(['de-eid', 'global-id', 'test-idp']),
    );
    for (const body of [one.body, list.body]) {
      expect(JSON.stringify(body)).not.toContain(SECRET);
      for (const secret of Object.values(f.upstreamSecrets))
        expect(JSON.stringify(body)).not.toContain(secret);
    }
    const control = await dumpDatabase(f.dbs.control.url);
    expect(control).not.toContain(SECRET);
    for (const secret of Object.values(f.upstreamSecrets)) expect(control).not.toContain(secret);
  });

  it('DELETE removes it (204), then GET and DELETE are 404', async () => {
    expect((await adminCall(f.eu, 'DELETE', '/admin/federations/test-idp')).status).toBe(204);
    expect((await adminCall(f.eu, 'GET', '/admin/federations/test-idp')).status).toBe(404);
    expect((await adminCall(f.eu, 'DELETE', '/admin/federations/test-idp')).status).toBe(404);
  });

  it('401 without a token or with a forged one; 403 with a compliance-only token (RFC 6750 §3.1)', async () => {
    const none = await fetch(`${f.eu.url}/admin/federations`);
    expect(none.status).toBe(401);
    expect((await adminCall(f.eu, 'GET', '/admin/federations', undefined, 'not-a-token')).status).toBe(401);
    const forbidden = await adminCall(f.eu, 'GET', '/admin/federations', undefined, complianceOnly);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error).toBe('insufficient_scope');
    expect((await putFed('x', federation(), complianceOnly)).status).toBe(403);
    expect(
      (await adminCall(f.eu, 'DELETE', '/admin/federations/de-eid', undefined, complianceOnly)).status,
    ).toBe(403);
  });
});

const BR_POLICY = {
  appliesTo: { jurisdictions: ['BR'] },
  homeRegion: 'us',
  storageRegions: ['us'],
  release: { default: ['sub', 'residency'] },
};

const putPolicy = (id: string, body: unknown, token?: string) =>
  adminCall(f.eu, 'PUT', `/compliance/policies/${id}`, body, token);

describe('residency policies: /compliance/policies (scope meridian:compliance)', () => {
  it('PUT creates version 1, PUT again version 2; GET shows the current version and the history', async () => {
    const v1 = await putPolicy('br-lgpd', BR_POLICY);
    expect(v1.status).toBe(201);
    expect(v1.body).toMatchObject({ id: 'br-lgpd', version: 1, ref: 'br-lgpd@1' });
    expect(v1.body.document).toMatchObject({
      ...BR_POLICY,
      processingRegions: ['us'],
      pseudonymiseForeignLogs: true,
    });
    const v2 = await putPolicy('br-lgpd', {
      ...BR_POLICY,
      release: { default: ['sub', 'residency', 'email'] },
    });
    expect(v2.status).toBe(201);
    expect(v2.body).toMatchObject({ version: 2, ref: 'br-lgpd@2' });

    const got = await adminCall(f.eu, 'GET', '/compliance/policies/br-lgpd', undefined, complianceOnly);
    expect(got.status).toBe(200);
    expect(got.body.current).toMatchObject({ version: 2, ref: 'br-lgpd@2' });
    expect(got.body.current.document.release.default).toEqual(['sub', 'residency', 'email']);
    expect(got.body.history.map((h: { ref: string }) => h.ref).sort()).toEqual(['br-lgpd@1', 'br-lgpd@2']);
    const first = got.body.history.find((h: { version: number }) => h.version === 1);
    expect(first.document.release.default).toEqual(['sub', 'residency']);

    const list = await adminCall(f.eu, 'GET', '/compliance/policies', undefined, complianceOnly);
    expect(list.body.map((p: { ref: string }) => p.ref).sort()).toEqual([
      'br-lgpd@2',
      'eu-gdpr@1',
      'us-default@1',
    ]);
    // The control plane is shared: the other region sees the same versions.
    expect((await adminCall(f.us, 'GET', '/compliance/policies/br-lgpd')).body.current.version).toBe(2);
  });

  it('audits every new version', async () => {
    const r = await adminCall(f.eu, 'GET', '/audit/events?type=policy.put', undefined, complianceOnly);
    expect(r.status).toBe(200);
    expect(r.body.events.map((e: { target_id: string }) => e.target_id)).toEqual(
      expect.arrayContaining(['br-lgpd@1', 'br-lgpd@2']),
    );
  });

  function expectFieldError(r: { status: number; body: any }, field: string, message: RegExp) {
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_request');
    const hit = (r.body.errors as { field: string; message: string }[]).find((e) => e.field === field);
    expect(hit, JSON.stringify(r.body.errors)).toBeDefined();
    expect(hit!.message).toMatch(message);
    expect(r.body.error_description).toContain(field);
  }

  it('400 naming the field for a storage region that is not registered', async () => {
    expectFieldError(
      await putPolicy('bad', { ...BR_POLICY, homeRegion: 'us', storageRegions: ['us', 'mars'] }),
      'storageRegions[1]',
      /"mars" is not a registered region/,
    );
    expectFieldError(
      await putPolicy('bad', { ...BR_POLICY, homeRegion: 'mars', storageRegions: ['mars'] }),
      'homeRegion',
      /"mars" is not a registered region/,
    );
  });

  it('400 naming appliesTo.jurisdictions for an empty appliesTo', async () => {
    expectFieldError(
      await putPolicy('bad', { ...BR_POLICY, appliesTo: { jurisdictions: [] } }),
      'appliesTo.jurisdictions',
      /at least one/,
    );
  });

  it('400 naming the jurisdiction another policy already covers (DE is eu-gdpr’s)', async () => {
    expectFieldError(
      await putPolicy('bad', { ...BR_POLICY, appliesTo: { jurisdictions: ['BR', 'DE'] } }),
      'appliesTo.jurisdictions[1]',
      /"DE" is already covered by policy "eu-gdpr"/,
    );
    // EU overlaps each member state: AT is inside eu-gdpr's "EU".
    expectFieldError(
      await putPolicy('bad', { ...BR_POLICY, appliesTo: { jurisdictions: ['AT'] } }),
      'appliesTo.jurisdictions[0]',
      /eu-gdpr/,
    );
  });

  it('400 naming storageRegions when the home region is not listed first', async () => {
    expectFieldError(
      await putPolicy('bad', { ...BR_POLICY, homeRegion: 'us', storageRegions: ['eu', 'us'] }),
      'storageRegions',
      /must list the home region "us" first/,
    );
  });

  it('stores no version for a refused document', async () => {
    expect((await adminCall(f.eu, 'GET', '/compliance/policies/bad')).status).toBe(404);
  });

  it('403 with an admin-only token, 401 without a token', async () => {
    const r = await putPolicy('br-lgpd', BR_POLICY, adminOnly);
    expect(r.status).toBe(403);
    expect(r.body.error).toBe('insufficient_scope');
    expect((await adminCall(f.eu, 'GET', '/compliance/policies', undefined, adminOnly)).status).toBe(403);
    expect((await fetch(`${f.eu.url}/compliance/policies`)).status).toBe(401);
    expect(
      (await adminCall(f.eu, 'POST', '/compliance/policies/eu-gdpr/dry-run', EU_POLICY, adminOnly)).status,
    ).toBe(403);
  });
});

describe('policy dry run: POST /compliance/policies/{id}/dry-run', () => {
  let before: any;

  beforeAll(async () => {
    const r = await f.login('eu', 'de-eid', ANNA);
    if ('error' in r) throw new Error(`${r.error}: ${r.description}`);
    before = (await adminCall(f.eu, 'GET', '/compliance/policies/eu-gdpr')).body;
  });

  const dryRun = (doc: unknown) =>
    adminCall(f.eu, 'POST', '/compliance/policies/eu-gdpr/dry-run', doc, complianceOnly);

  it('counts the subjects stored at eu that would change home region if DE moved to us', async () => {
    const r = await dryRun({
      ...EU_POLICY,
      homeRegion: 'us',
      storageRegions: ['us'],
      processingRegions: ['us'],
    });
    expect(r.status).toBe(200);
    expect(r.body.region).toBe('eu');
    expect(r.body.subjects).toBeGreaterThanOrEqual(1);
    expect(r.body.changeHomeRegion).toBeGreaterThanOrEqual(1);
    expect(r.body.leaveRegion).toBeGreaterThanOrEqual(1);
    expect(r.body.byJurisdiction.DE.changeHomeRegion).toBeGreaterThanOrEqual(1);
  });

  it('counts the subjects that would lose released claims if email were no longer released to eu', async () => {
    const r = await dryRun({
      ...EU_POLICY,
      release: { default: ['sub', 'residency'], byRegion: { eu: ['name'] } },
    });
    expect(r.status).toBe(200);
    expect(r.body.loseReleasedClaims).toBeGreaterThanOrEqual(1);
    expect(r.body.changeHomeRegion).toBe(0);
  });

  it('an unchanged document changes nothing', async () => {
    const r = await dryRun(EU_POLICY);
    expect(r.body).toMatchObject({
      changeHomeRegion: 0,
      loseReleasedClaims: 0,
      loseCoverage: 0,
      leaveRegion: 0,
    });
  });

  it('400 naming the field for an invalid candidate', async () => {
    const r = await dryRun({ ...EU_POLICY, storageRegions: ['mars'] });
    expect(r.status).toBe(400);
    expect(r.body.error_description).toContain('storageRegions');
  });

  it('changes nothing: same version and history, and the next login is still decided by eu-gdpr@1', async () => {
    const after = (await adminCall(f.eu, 'GET', '/compliance/policies/eu-gdpr')).body;
    expect(after.current).toEqual(before.current);
    expect(after.history).toHaveLength(before.history.length);
    const r = await f.login('eu', 'de-eid', ANNA);
    if ('error' in r) throw new Error(`${r.error}: ${r.description}`);
    expect(r.accessToken.residency).toEqual({
      region: 'eu',
      jurisdiction: 'DE',
      policy: 'eu-gdpr@1',
      processing: ['eu'],
    });
    const audit = await adminCall(
      f.eu,
      'GET',
      '/audit/events?type=policy.dry-run',
      undefined,
      complianceOnly,
    );
    expect(audit.body.events.length).toBeGreaterThanOrEqual(3);
  });
});
