/**
 * The admin API of one spawned broker, against the contract: 401 for no or invalid token,
 * 403 for a token without `meridian:admin`, 400 naming the field for an invalid body, never a
 * 500 for a bad request; changes are audited in the region database with the acting client.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, base64url, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCall,
  adminToken,
  freshDatabases,
  registerService,
  spawnBroker,
  tokenRequest,
  type SpawnedBroker,
} from './support/broker';

type Method = 'GET' | 'PUT' | 'DELETE' | 'POST';
type Body = Record<string, unknown>;

const ADMIN_AUDIENCE = 'urn:meridian:admin';
const ADMIN_SECRET = `admin-secret-${randomBytes(16).toString('hex')}`;

let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
/** `meridian:admin meridian:compliance`, from the broker itself. */
let token: string;

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

/** One request with exactly the headers given (adminCall always adds a bearer token). */
async function raw(
  method: string,
  path: string,
  o: { authorization?: string; body?: string; contentType?: string } = {},
): Promise<{ status: number; body: any; text: string; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (o.authorization !== undefined) headers.authorization = o.authorization;
  if (o.body !== undefined) headers['content-type'] = o.contentType ?? 'application/json';
  const res = await fetch(`${broker.url}${path}`, { method, headers, body: o.body });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON
  }
  return { status: res.status, body, text, headers: res.headers };
}

function call(method: Method, path: string, body?: unknown) {
  return adminCall(broker, method, path, body, token);
}

async function regionQuery<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: dbs.region.eu!.url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

interface AuditRow {
  actor: string;
  action: string;
  target_type: string;
  target_id: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}

function auditRows(action: string, targetId: string): Promise<AuditRow[]> {
  return regionQuery<AuditRow>(
    'select actor, action, target_type, target_id, outcome, detail from audit_event where action = $1 and target_id = $2 order by id',
    [action, targetId],
  );
}

async function auditCount(): Promise<number> {
  const [row] = await regionQuery<{ n: number }>('select count(*)::int as n from audit_event');
  return row!.n;
}

async function revoke(accessToken: string): Promise<number> {
  const res = await fetch(`${broker.url}/token/revocation`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basic(broker.adminClientId, broker.adminClientSecret),
    },
    body: new URLSearchParams({ token: accessToken, token_type_hint: 'access_token' }),
  });
  await res.text();
  return res.status;
}

beforeAll(async () => {
  dbs = await freshDatabases('admin_api', ['eu']);
  broker = await spawnBroker({
    controlUrl: dbs.control.url,
    regionUrl: dbs.region.eu!.url,
    adminClientSecret: ADMIN_SECRET,
  });
  token = await adminToken(broker);
});

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

// ---------------------------------------------------------------------------------------------
// Authentication and authorisation of every route

const PROBE_REGION = { issuer: 'https://probe.id.example.com' };
const PROBE_RESOURCE = { audience: 'https://probe.example.com', scopes: ['probe:read'], region: 'eu' };
const PROBE_CLIENT = {
  client_secret: `probe-secret-${randomBytes(16).toString('hex')}`,
  redirect_uris: ['https://probe.example.com/callback'],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'openid',
};

const ROUTES: [Method, string, Body | undefined][] = [
  ['GET', '/admin/regions', undefined],
  ['GET', '/admin/regions/eu', undefined],
  ['PUT', '/admin/regions/probe', PROBE_REGION],
  ['GET', '/admin/resources', undefined],
  ['GET', '/admin/resources/auth-probe', undefined],
  ['PUT', '/admin/resources/auth-probe', PROBE_RESOURCE],
  ['DELETE', '/admin/resources/auth-probe', undefined],
  ['GET', '/admin/clients', undefined],
  ['GET', '/admin/clients/auth-probe', undefined],
  ['PUT', '/admin/clients/auth-probe', PROBE_CLIENT],
  ['DELETE', '/admin/clients/auth-probe', undefined],
  ['GET', '/admin/keys', undefined],
  ['POST', '/admin/keys/rotate', undefined],
];

// RFC 6750 §3.1 would have no error code when no credentials are sent at all ("SHOULD NOT");
// the contract (CONTRACT.md, sidecar and admin API) answers `invalid_token` there too, and so
// do these tests.
describe('RFC 6750 §3.1 — admin API: invalid_token (401) and insufficient_scope (403) on every route', () => {
  /** Bearer credentials that must all be refused, by name. */
  const bad: Record<string, string> = {};
  let complianceOnly: string;
  let revoked: string;
  let auditBefore: number;
  let keysBefore: unknown;

  beforeAll(async () => {
    // Targets the matrix below must leave exactly as they are.
    expect((await call('PUT', '/admin/resources/auth-probe', PROBE_RESOURCE)).status).toBe(201);
    expect((await call('PUT', '/admin/clients/auth-probe', PROBE_CLIENT)).status).toBe(201);

    const jwks = (await (await fetch(`${broker.url}/jwks`)).json()) as { keys: { kid: string }[] };
    const kid = jwks.keys[0]!.kid;
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      client_id: broker.adminClientId,
      scope: 'meridian:admin meridian:compliance',
      residency: { region: 'eu', jurisdiction: 'EU', processing: ['eu'] },
    };
    const { privateKey } = await generateKeyPair('ES256');
    const forge = (iat: number, exp: number) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
        .setIssuer(broker.issuer)
        .setAudience(ADMIN_AUDIENCE)
        .setSubject(broker.adminClientId)
        .setJti(randomUUID())
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(privateKey);

    bad['a garbage token'] = 'Bearer not-a-token';
    bad['a token signed by a key the broker never published (right iss, aud, typ and kid)'] =
      `Bearer ${await forge(now, now + 300)}`;
    bad['an expired token signed by a key the broker never published'] =
      `Bearer ${await forge(now - 3600, now - 3000)}`;
    const segment = (o: object) => base64url.encode(JSON.stringify(o));
    const payload = {
      ...claims,
      iss: broker.issuer,
      aud: ADMIN_AUDIENCE,
      sub: broker.adminClientId,
      jti: randomUUID(),
      iat: now,
      exp: now + 300,
    };
    bad['an unsigned alg:none token'] =
      `Bearer ${segment({ alg: 'none', typ: 'at+jwt' })}.${segment(payload)}.`;

    // A real token of this broker, whose payload is edited to grant more scope.
    complianceOnly = await adminToken(broker, 'meridian:compliance');
    const [h, p, s] = complianceOnly.split('.');
    const edited = {
      ...(JSON.parse(Buffer.from(p!, 'base64url').toString()) as Body),
      scope: 'meridian:admin meridian:compliance',
    };
    bad['a broker token whose payload was edited to add meridian:admin'] =
      `Bearer ${h}.${segment(edited)}.${s}`;

    // A real token of this broker, for another audience (RFC 8707).
    const orders = await registerService(broker, {
      resourceId: 'auth-orders',
      audience: 'https://auth-orders.example.com',
      scopes: ['orders:read'],
      clientId: 'auth-orders-client',
      clientScope: 'orders:read',
    });
    const other = await tokenRequest(
      broker.url,
      { grant_type: 'client_credentials', resource: 'https://auth-orders.example.com', scope: 'orders:read' },
      { clientId: orders.clientId, clientSecret: orders.clientSecret },
    );
    expect(other.status).toBe(200);
    expect(decodeJwt(other.body.access_token as string).aud).toBe('https://auth-orders.example.com');
    bad['a valid broker token issued for another audience'] = `Bearer ${other.body.access_token as string}`;
    bad['a token in a Basic header'] = basic(broker.adminClientId, broker.adminClientSecret);
    bad['a bearer scheme with no token'] = 'Bearer ';

    // RFC 7009: the admin client revokes its own token; it worked until then.
    revoked = await adminToken(broker);
    expect((await raw('GET', '/admin/regions', { authorization: `Bearer ${revoked}` })).status).toBe(200);
    expect(await revoke(revoked)).toBe(200);

    auditBefore = await auditCount();
    keysBefore = (await call('GET', '/admin/keys')).body;
  });

  describe.each(ROUTES)('%s %s', (method, path, body) => {
    const send = (authorization?: string) =>
      raw(method, path, { authorization, body: body === undefined ? undefined : JSON.stringify(body) });

    function expectInvalidToken(res: Awaited<ReturnType<typeof send>>): void {
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
      expect(res.body).toMatchObject({ error: 'invalid_token' });
    }

    it('refuses a request without a token: 401 invalid_token with WWW-Authenticate', async () => {
      expectInvalidToken(await send());
    });

    it.each([
      'a garbage token',
      'a token signed by a key the broker never published (right iss, aud, typ and kid)',
      'an expired token signed by a key the broker never published',
      'an unsigned alg:none token',
      'a broker token whose payload was edited to add meridian:admin',
      'a valid broker token issued for another audience',
      'a token in a Basic header',
      'a bearer scheme with no token',
    ])('refuses %s with 401 invalid_token', async (kind) => {
      expectInvalidToken(await send(bad[kind]));
    });

    it('refuses a revoked admin token with 401 invalid_token', async () => {
      expectInvalidToken(await send(`Bearer ${revoked}`));
    });

    it('refuses a valid admin token with only meridian:compliance: 403 insufficient_scope', async () => {
      const res = await send(`Bearer ${complianceOnly}`);
      expect(res.status).toBe(403);
      const challenge = res.headers.get('www-authenticate') ?? '';
      expect(challenge).toMatch(/^Bearer error="insufficient_scope"/);
      expect(challenge).toContain('scope="meridian:admin"');
      expect(res.body).toMatchObject({ error: 'insufficient_scope' });
    });
  });

  it('lets a refused call change nothing: no audit entry, no rotation, probes intact', async () => {
    expect(await auditCount()).toBe(auditBefore);
    expect((await call('GET', '/admin/keys')).body).toEqual(keysBefore);
    expect((await call('GET', '/admin/resources/auth-probe')).status).toBe(200);
    expect((await call('GET', '/admin/clients/auth-probe')).status).toBe(200);
    expect((await call('GET', '/admin/regions/probe')).status).toBe(404);
  });
});

// ---------------------------------------------------------------------------------------------
// Bodies

const REGION_OK: Body = { issuer: 'https://ap.id.example.com' };
const RESOURCE_OK: Body = { audience: 'https://valid.example.com', scopes: ['valid:read'], region: 'eu' };
const CLIENT_OK: Body = {
  redirect_uris: ['https://app.example.com/callback'],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'openid',
  resources: [],
};

function omit(body: Body, key: string): Body {
  const copy = { ...body };
  delete copy[key];
  return copy;
}

type Collection = 'regions' | 'resources' | 'clients';

const INVALID: [string, Collection, Body, string][] = [
  // [label, collection, body, the field the answer must name]
  ['an unknown field', 'regions', { ...REGION_OK, extra: 1 }, 'extra'],
  ['an issuer that is a number', 'regions', { issuer: 42 }, 'issuer'],
  ['no issuer', 'regions', {}, 'issuer'],
  ['an issuer that is not http(s)', 'regions', { issuer: 'ftp://ap.id.example.com' }, 'issuer'],
  ['an issuer with a fragment', 'regions', { issuer: 'https://ap.id.example.com#x' }, 'issuer'],
  ['a lower-case jurisdiction', 'regions', { ...REGION_OK, jurisdiction: 'sg' }, 'jurisdiction'],

  ['an unknown field', 'resources', { ...RESOURCE_OK, extra: 1 }, 'extra'],
  ['scopes as a string', 'resources', { ...RESOURCE_OK, scopes: 'valid:read' }, 'scopes'],
  ['an audience that is a number', 'resources', { ...RESOURCE_OK, audience: 7 }, 'audience'],
  ['no audience', 'resources', omit(RESOURCE_OK, 'audience'), 'audience'],
  ['no scopes', 'resources', omit(RESOURCE_OK, 'scopes'), 'scopes'],
  ['no region', 'resources', omit(RESOURCE_OK, 'region'), 'region'],
  [
    'accessTokenTtlSeconds 3601',
    'resources',
    { ...RESOURCE_OK, accessTokenTtlSeconds: 3601 },
    'accessTokenTtlSeconds',
  ],
  [
    'accessTokenTtlSeconds 0',
    'resources',
    { ...RESOURCE_OK, accessTokenTtlSeconds: 0 },
    'accessTokenTtlSeconds',
  ],
  [
    'accessTokenTtlSeconds 1.5',
    'resources',
    { ...RESOURCE_OK, accessTokenTtlSeconds: 1.5 },
    'accessTokenTtlSeconds',
  ],
  [
    'accessTokenTtlSeconds as a string',
    'resources',
    { ...RESOURCE_OK, accessTokenTtlSeconds: '300' },
    'accessTokenTtlSeconds',
  ],
  // RFC 8707 §2: the resource indicator is an absolute URI without a fragment.
  [
    'an audience with a fragment',
    'resources',
    { ...RESOURCE_OK, audience: 'https://valid.example.com/#frag' },
    'audience',
  ],
  ['a relative audience', 'resources', { ...RESOURCE_OK, audience: '/orders' }, 'audience'],
  ['an empty scopes array', 'resources', { ...RESOURCE_OK, scopes: [] }, 'scopes'],
  ['a scope with a space (RFC 6749 §3.3)', 'resources', { ...RESOURCE_OK, scopes: ['valid read'] }, 'scopes'],
  ['an unknown region', 'resources', { ...RESOURCE_OK, region: 'mars' }, 'region'],
  ['a malformed region', 'resources', { ...RESOURCE_OK, region: 'EU' }, 'region'],

  ['an unknown field', 'clients', { ...CLIENT_OK, extra: 1 }, 'extra'],
  [
    'token_endpoint_auth_method none',
    'clients',
    { ...CLIENT_OK, token_endpoint_auth_method: 'none' },
    'token_endpoint_auth_method',
  ],
  ['the implicit grant', 'clients', { ...CLIENT_OK, grant_types: ['implicit'] }, 'grant_types'],
  ['grant_types as a string', 'clients', { ...CLIENT_OK, grant_types: 'authorization_code' }, 'grant_types'],
  ['no grant_types', 'clients', omit(CLIENT_OK, 'grant_types'), 'grant_types'],
  ['response_types token', 'clients', { ...CLIENT_OK, response_types: ['token'] }, 'response_types'],
  [
    'a client_secret of 31 characters',
    'clients',
    { ...CLIENT_OK, client_secret: 'x'.repeat(31) },
    'client_secret',
  ],
  [
    'a client_secret that is a number',
    'clients',
    { ...CLIENT_OK, client_secret: 123456789 },
    'client_secret',
  ],
  ['no redirect_uris', 'clients', omit(CLIENT_OK, 'redirect_uris'), 'redirect_uris'],
  [
    'a redirect_uri with a fragment',
    'clients',
    { ...CLIENT_OK, redirect_uris: ['https://app.example.com/cb#x'] },
    'redirect_uris',
  ],
  ['the code flow without a redirect_uri', 'clients', { ...CLIENT_OK, redirect_uris: [] }, 'redirect_uris'],
  ['a malformed scope', 'clients', { ...CLIENT_OK, scope: 'openid  profile' }, 'scope'],
  ['jwks that is a string', 'clients', { ...CLIENT_OK, jwks: 'keys' }, 'jwks'],
  [
    'resources naming an unregistered audience',
    'clients',
    { ...CLIENT_OK, resources: ['https://unregistered.example.com'] },
    'resources',
  ],
];

describe('admin API bodies — 400 invalid_request naming the field', () => {
  it.each(INVALID.map(([label, coll, body, field], i) => [coll, label, body, field, i] as const))(
    'PUT /admin/%s refuses %s',
    async (coll, _label, body, field, i) => {
      const id = coll === 'regions' ? `invalid${i}` : `invalid-${i}`;
      const res = await call('PUT', `/admin/${coll}/${id}`, body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error).toBe('invalid_request');
      expect(res.body.error_description).toEqual(expect.stringContaining(field));
      // Nothing half-written.
      expect((await call('GET', `/admin/${coll}/${id}`)).status).toBe(404);
    },
  );

  it.each([
    ['regions', 'EU'],
    ['resources', 'bad id'],
    ['clients', 'bad id'],
  ] as const)('PUT /admin/%s refuses the malformed id %j', async (coll, id) => {
    const body = coll === 'regions' ? REGION_OK : coll === 'resources' ? RESOURCE_OK : CLIENT_OK;
    const res = await call('PUT', `/admin/${coll}/${encodeURIComponent(id)}`, body);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.error_description).toMatch(/id/);
  });

  it('refuses no refused body into the audit trail', async () => {
    const rows = await regionQuery(
      "select 1 from audit_event where target_id like 'invalid%' or target_id in ('EU', 'bad id')",
    );
    expect(rows).toEqual([]);
  });

  describe.each(['regions', 'resources', 'clients'] as const)(
    'PUT /admin/%s with a body that is not an object',
    (coll) => {
      it.each([
        ['malformed JSON', '{"a":'],
        ['an empty body', ''],
        ['a JSON array', '[]'],
        ['JSON null', 'null'],
        ['a JSON string', '"issuer"'],
        ['a JSON number', '42'],
      ])('answers %s with 400 invalid_request, not 500', async (_label, text) => {
        const res = await raw('PUT', `/admin/${coll}/not-an-object`, {
          authorization: `Bearer ${token}`,
          body: text,
        });
        expect(res.status, res.text).toBe(400);
        expect(res.body).toMatchObject({ error: 'invalid_request' });
        expect(res.text).not.toMatch(/\bat [\w.<>]+ \(/); // no stack frames
      });

      it('answers a body over 64 kB with 413 (or 400), not 500', async () => {
        const body = JSON.stringify({ issuer: `https://big.example.com/${'a'.repeat(70 * 1024)}` });
        const res = await raw('PUT', `/admin/${coll}/too-big`, { authorization: `Bearer ${token}`, body });
        expect([413, 400]).toContain(res.status);
        expect(res.body).toMatchObject({ error: expect.any(String) });
        expect((await call('GET', `/admin/${coll}/too-big`)).status).toBe(404);
      });
    },
  );
});

describe('admin API bodies — prototype pollution', () => {
  const valid = (coll: Collection, n: number): Body =>
    coll === 'regions'
      ? { issuer: `https://pollution${n}.id.example.com` }
      : coll === 'resources'
        ? { audience: `https://pollution${n}.example.com`, scopes: ['p:read'], region: 'eu' }
        : CLIENT_OK;
  // Canaries: fields a polluted Object.prototype would silently fill in on later requests.
  const POISON =
    '{"polluted": true, "jurisdiction": "ZZ", "accessTokenTtlSeconds": 3600, "client_secret": "polluted-secret-0123456789abcdefghij"}';
  const withKey = (body: Body, key: string, value: string) =>
    `${JSON.stringify(body).slice(0, -1)}, "${key}": ${value}}`;
  const CASES = (['regions', 'resources', 'clients'] as const).flatMap((coll) => [
    [coll, '__proto__', POISON] as const,
    [coll, 'constructor', `{"prototype": ${POISON}}`] as const,
  ]);

  // Like any other field the DTO does not declare (forbidNonWhitelisted): refused, not dropped.
  it.each(CASES.map((c, i) => [...c, i] as const))(
    'PUT /admin/%s refuses a body carrying "%s" with a 4xx',
    async (coll, key, value, i) => {
      const id = `pollution${i}`;
      const res = await raw('PUT', `/admin/${coll}/${id}`, {
        authorization: `Bearer ${token}`,
        body: withKey(valid(coll, i), key, value),
      });
      expect(res.text).not.toContain('polluted');
      expect(res.status, res.text).toBeGreaterThanOrEqual(400);
      expect(res.status, res.text).toBeLessThan(500);
      expect(res.body.error_description).toContain(key);
      expect((await call('GET', `/admin/${coll}/${id}`)).status).toBe(404);
    },
  );

  it('leaves later requests unpolluted: no canary value leaks into what they store or answer', async () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const region = await call('PUT', '/admin/regions/canary', { issuer: 'https://canary.id.example.com' });
    expect(region.status).toBe(201);
    expect(region.body.jurisdiction).toBeNull();

    const resource = await call('PUT', '/admin/resources/canary', {
      audience: 'https://canary.example.com',
      scopes: ['c:read'],
      region: 'eu',
    });
    expect(resource.status).toBe(201);
    expect(resource.body.accessTokenTtlSeconds).toBe(300);

    for (const path of ['/admin/regions', '/admin/resources', '/admin/clients', '/admin/keys']) {
      const res = await raw('GET', path, { authorization: `Bearer ${token}` });
      expect(res.status).toBe(200);
      expect(res.text).not.toContain('polluted');
      expect(res.text).not.toContain('"ZZ"');
    }
  });
});

// ---------------------------------------------------------------------------------------------
// What works

describe('admin API — regions', () => {
  it('creates with 201, updates with 200, and answers GET with the stored region; audited', async () => {
    const created = await call('PUT', '/admin/regions/ap', {
      issuer: 'https://ap.id.example.com/',
      jurisdiction: 'SG',
    });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ id: 'ap', issuer: 'https://ap.id.example.com', jurisdiction: 'SG' });

    const updated = await call('PUT', '/admin/regions/ap', { issuer: 'https://ap2.id.example.com' });
    expect(updated.status).toBe(200);
    expect(updated.body).toEqual({ id: 'ap', issuer: 'https://ap2.id.example.com', jurisdiction: 'SG' });

    expect((await call('GET', '/admin/regions/ap')).body).toEqual(updated.body);
    const list = await call('GET', '/admin/regions');
    expect(list.body.map((r: { id: string }) => r.id)).toEqual(expect.arrayContaining(['ap', 'eu']));

    const audit = await auditRows('region.put', 'ap');
    expect(audit).toHaveLength(2);
    for (const row of audit)
      expect(row).toMatchObject({ actor: broker.adminClientId, target_type: 'region', outcome: 'success' });
  });

  it('refuses an issuer another region already has, naming issuer', async () => {
    const res = await call('PUT', '/admin/regions/copycat', { issuer: broker.issuer });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.error_description).toContain('issuer');
  });

  it('answers 404 for a region that does not exist', async () => {
    const res = await call('GET', '/admin/regions/nowhere');
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('not_found');
  });
});

describe('admin API — resources', () => {
  it('creates with 201, updates with 200, GET returns it, DELETE makes it 404; every change audited', async () => {
    const body = {
      audience: 'https://orders.example.com',
      scopes: ['orders:read', 'orders:read'],
      region: 'eu',
    };
    const created = await call('PUT', '/admin/resources/orders', body);
    expect(created.status).toBe(201);
    expect(created.body).toEqual({
      id: 'orders',
      audience: 'https://orders.example.com',
      scopes: ['orders:read'],
      region: 'eu',
      accessTokenTtlSeconds: 300,
    });

    const updated = await call('PUT', '/admin/resources/orders', {
      ...body,
      scopes: ['orders:read', 'orders:write'],
      accessTokenTtlSeconds: 3600,
    });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({
      scopes: ['orders:read', 'orders:write'],
      accessTokenTtlSeconds: 3600,
    });
    expect((await call('GET', '/admin/resources/orders')).body).toEqual(updated.body);
    expect((await call('GET', '/admin/resources')).body).toContainEqual(updated.body);

    const deleted = await call('DELETE', '/admin/resources/orders');
    expect(deleted.status).toBe(204);
    expect((await call('GET', '/admin/resources/orders')).status).toBe(404);
    expect((await call('DELETE', '/admin/resources/orders')).status).toBe(404);

    const puts = await auditRows('resource.put', 'orders');
    expect(puts).toHaveLength(2);
    const dels = await auditRows('resource.delete', 'orders');
    expect(dels).toHaveLength(1);
    for (const row of [...puts, ...dels])
      expect(row).toMatchObject({ actor: broker.adminClientId, target_type: 'resource' });
  });

  it('refuses an audience another resource already has, naming audience', async () => {
    expect(
      (
        await call('PUT', '/admin/resources/first', {
          audience: 'https://dup.example.com',
          scopes: ['d:read'],
          region: 'eu',
        })
      ).status,
    ).toBe(201);
    const res = await call('PUT', '/admin/resources/second', {
      audience: 'https://dup.example.com',
      scopes: ['d:read'],
      region: 'eu',
    });
    expect(res.status).toBe(400);
    expect(res.body.error_description).toContain('audience');
    expect((await call('GET', '/admin/resources/second')).status).toBe(404);
  });

  it('refuses to register the built-in admin audience as a resource', async () => {
    const res = await call('PUT', '/admin/resources/hijack', {
      audience: ADMIN_AUDIENCE,
      scopes: ['meridian:admin'],
      region: 'eu',
    });
    expect(res.status).toBe(409);
    expect((await call('GET', '/admin/resources/hijack')).status).toBe(404);
  });
});

describe('admin API — clients', () => {
  const audience = 'https://billing.example.com';
  const clientBody = {
    redirect_uris: ['https://billing-app.example.com/callback'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid billing:read',
    resources: [audience],
  };
  const getToken = (secret: string) =>
    tokenRequest(
      broker.url,
      { grant_type: 'client_credentials', resource: audience, scope: 'billing:read' },
      { clientId: 'billing-app', clientSecret: secret },
    );

  function expectNoSecret(res: { body: unknown }, ...secrets: string[]): void {
    const text = JSON.stringify(res.body);
    expect(text).not.toContain('"client_secret"');
    expect(text).not.toContain('hmac-sha256');
    for (const s of secrets) expect(text).not.toContain(s);
  }

  beforeAll(async () => {
    expect(
      (await call('PUT', '/admin/resources/billing', { audience, scopes: ['billing:read'], region: 'eu' }))
        .status,
    ).toBe(201);
  });

  it('returns a generated secret once, on the PUT that generated it, and never again', async () => {
    const created = await call('PUT', '/admin/clients/billing-app', clientBody);
    expect(created.status).toBe(201);
    const secret = created.body.client_secret as string;
    expect(typeof secret).toBe('string');
    expect(secret.length).toBeGreaterThanOrEqual(32);
    expect(created.body).toMatchObject({
      client_id: 'billing-app',
      has_client_secret: true,
      resources: [audience],
    });
    expect(JSON.stringify(created.body)).not.toContain('hmac-sha256');

    const got = await call('GET', '/admin/clients/billing-app');
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({
      client_id: 'billing-app',
      has_client_secret: true,
      grant_types: clientBody.grant_types,
    });
    expectNoSecret(got, secret);

    const updated = await call('PUT', '/admin/clients/billing-app', {
      ...clientBody,
      client_name: 'Billing',
    });
    expect(updated.status).toBe(200);
    expect(updated.body.client_name).toBe('Billing');
    expectNoSecret(updated, secret);

    const list = await call('GET', '/admin/clients');
    expect(list.body.map((c: { client_id: string }) => c.client_id)).toEqual(
      expect.arrayContaining(['billing-app', broker.adminClientId]),
    );
    expectNoSecret(list, secret, broker.adminClientSecret);

    // The secret shown once is the one that works, and an update without a secret keeps it.
    expect((await getToken(secret)).status).toBe(200);
  });

  const chosen = `chosen-${randomBytes(20).toString('hex')}`;

  it('does not echo a secret the admin chose, and the new secret replaces the old one', async () => {
    const res = await call('PUT', '/admin/clients/billing-app', { ...clientBody, client_secret: chosen });
    expect(res.status).toBe(200);
    expectNoSecret(res, chosen);
    expect((await getToken(chosen)).status).toBe(200);
    expect((await getToken(`${chosen}x`)).status).toBe(401);
  });

  it('deletes a client: GET answers 404 and its secret no longer gets a token; every change audited without secrets', async () => {
    expect((await call('DELETE', '/admin/clients/billing-app')).status).toBe(204);
    expect((await call('GET', '/admin/clients/billing-app')).status).toBe(404);
    expect((await call('DELETE', '/admin/clients/billing-app')).status).toBe(404);
    const refused = await getToken(chosen);
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('invalid_client');

    const puts = await auditRows('client.put', 'billing-app');
    expect(puts).toHaveLength(3);
    const dels = await auditRows('client.delete', 'billing-app');
    expect(dels).toHaveLength(1);
    for (const row of [...puts, ...dels])
      expect(row).toMatchObject({ actor: broker.adminClientId, target_type: 'client' });
    expect(JSON.stringify(puts)).not.toMatch(/chosen-|hmac-sha256/);
  });

  it('protects the bootstrap admin client from PUT and DELETE', async () => {
    expect((await call('PUT', `/admin/clients/${broker.adminClientId}`, clientBody)).status).toBe(409);
    expect((await call('DELETE', `/admin/clients/${broker.adminClientId}`)).status).toBe(409);
    expect(
      (
        await tokenRequest(
          broker.url,
          { grant_type: 'client_credentials', resource: ADMIN_AUDIENCE, scope: 'meridian:admin' },
          {
            clientId: broker.adminClientId,
            clientSecret: broker.adminClientSecret,
          },
        )
      ).status,
    ).toBe(200);
  });
});

describe('admin API — keys', () => {
  it('lists the published keys without private material', async () => {
    const res = await call('GET', '/admin/keys');
    expect(res.status).toBe(200);
    const states = (res.body as { state: string }[]).map((k) => k.state).sort();
    expect(states).toEqual(expect.arrayContaining(['current', 'next']));
    for (const key of res.body as Body[])
      expect(Object.keys(key).sort()).toEqual(['activatedAt', 'alg', 'kid', 'publishUntil', 'state']);
  });

  it('rotates: the next key becomes current, earlier tokens stay valid, the rotation is audited', async () => {
    const before = (await call('GET', '/admin/keys')).body as { kid: string; state: string }[];
    const oldCurrent = before.find((k) => k.state === 'current')!.kid;
    const oldNext = before.find((k) => k.state === 'next')!.kid;

    const res = await call('POST', '/admin/keys/rotate');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ current: oldNext, retiring: oldCurrent });
    expect(res.body.next).not.toBe(oldNext);

    const after = (await call('GET', '/admin/keys')).body as { kid: string; state: string }[];
    expect(after.find((k) => k.state === 'current')!.kid).toBe(oldNext);
    expect(after.find((k) => k.kid === oldCurrent)?.state).toBe('retiring');

    // `token` was signed with the key now retiring: still accepted while it is published.
    expect(decodeProtectedHeader(token).kid).toBe(oldCurrent);
    expect((await raw('GET', '/admin/regions', { authorization: `Bearer ${token}` })).status).toBe(200);
    const fresh = await adminToken(broker);
    expect(decodeProtectedHeader(fresh).kid).toBe(oldNext);
    expect((await raw('GET', '/admin/regions', { authorization: `Bearer ${fresh}` })).status).toBe(200);

    const audit = await auditRows('keys.rotate', oldNext);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actor: broker.adminClientId, target_type: 'signing_key' });
  });
});

describe('admin API — OpenAPI document', () => {
  it('answers GET /admin/openapi.json with an OpenAPI document listing /admin/clients/{id}', async () => {
    const res = await raw('GET', '/admin/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toMatch(/^3\./);
    expect(Object.keys(res.body.paths['/admin/clients/{id}']).sort()).toEqual(['delete', 'get', 'put']);
    expect(res.body.paths['/admin/keys/rotate']).toHaveProperty('post');
  });
});

describe('admin API — redirect URIs (RFC 9700 §2.1, RFC 8252 §7) and media types', () => {
  it.each([
    ['http on a public host', 'http://app.example.com/cb'],
    ['javascript:', 'javascript:alert(1)'],
    ['data:', 'data:text/html,hi'],
    ['a scheme without a reverse-domain name', 'myapp:/cb'],
  ])('refuses a redirect URI with %s', async (_what, uri) => {
    const r = await call('PUT', '/admin/clients/redirect-probe', { ...CLIENT_OK, redirect_uris: [uri] });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_request');
    expect(r.body.error_description).toContain('redirect_uris');
  });

  it.each([
    ['https', 'https://app.example.com/cb'],
    ['loopback http (native apps)', 'http://127.0.0.1:8123/cb'],
    ['a private-use scheme', 'com.example.app:/oauth2redirect'],
  ])('accepts a redirect URI with %s', async (_what, uri) => {
    const native = !uri.startsWith('https:');
    const r = await call('PUT', '/admin/clients/redirect-ok', {
      ...CLIENT_OK,
      redirect_uris: [uri],
      ...(native ? { application_type: 'native' } : {}),
    });
    expect([200, 201]).toContain(r.status);
  });

  it('answers a body that is not JSON with 415', async () => {
    const r = await raw('PUT', '/admin/regions/media-probe', {
      authorization: `Bearer ${token}`,
      body: 'issuer=https://x.example',
      contentType: 'text/plain',
    });
    expect(r.status).toBe(415);
    expect(r.body.error).toBe('unsupported_media_type');
  });
});

describe('admin API — peer region issuers', () => {
  it.each([
    ['http on a public host', 'http://us.id.example.com'],
    ['a query', 'https://us.id.example.com/?x=1'],
    ['a fragment', 'https://us.id.example.com/#f'],
  ])('refuses an issuer with %s', async (_what, issuer) => {
    const r = await call('PUT', '/admin/regions/issuer-probe', { issuer });
    expect(r.status).toBe(400);
    expect(r.body.error_description).toContain('issuer');
  });
});
