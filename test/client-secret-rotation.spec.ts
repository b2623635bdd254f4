/**
 * Client secret rotation through the admin API of a spawned broker: a new secret shown once,
 * the old one accepted at the token endpoint until its expiry and refused after, never more
 * than two valid at once, only hashes stored, every change audited.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCall,
  clientCredentials,
  freshDatabases,
  registerService,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';

const AUDIENCE = 'https://rotation.example';
let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;

async function query<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []) {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

async function service(clientId: string) {
  return registerService(broker, {
    resourceId: `res-${clientId}`,
    audience: `${AUDIENCE}/${clientId}`,
    scopes: ['rot:read'],
    clientId,
    clientScope: 'rot:read',
  });
}

const token = (clientId: string, clientSecret: string) =>
  clientCredentials(broker.url, { clientId, clientSecret }, `${AUDIENCE}/${clientId}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dbs = await freshDatabases('client_secret_rotation');
  broker = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
}, 120_000);

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

describe('POST /admin/clients/{id}/secret — rotation with an overlap window', () => {
  it('accepts both secrets during the overlap and refuses the old one after its expiry', async () => {
    const old = await service('rot-overlap');
    expect((await token(old.clientId, old.clientSecret)).status).toBe(200);

    const before = Math.floor(Date.now() / 1000);
    const r = await adminCall(broker, 'POST', `/admin/clients/${old.clientId}/secret`, { overlapSeconds: 4 });
    expect(r.status).toBe(200);
    const fresh = r.body.client_secret as string;
    expect(fresh).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fresh).not.toBe(old.clientSecret);
    expect(r.body.previous_client_secret_expires_at).toBeGreaterThanOrEqual(before + 4);
    expect(r.body.previous_client_secret_expires_at).toBeLessThanOrEqual(before + 6);

    expect((await token(old.clientId, fresh)).status).toBe(200);
    expect((await token(old.clientId, old.clientSecret)).status).toBe(200);

    // The client's view names the overlap, never a secret or its hash; shown once means once.
    const view = await adminCall(broker, 'GET', `/admin/clients/${old.clientId}`);
    expect(view.body.previous_client_secret_expires_at).toBe(r.body.previous_client_secret_expires_at);
    expect(view.body.has_client_secret).toBe(true);
    expect(JSON.stringify(view.body)).not.toMatch(/hmac|"client_secret"|"previous_client_secret"/);

    // At most two valid at once.
    const third = await adminCall(broker, 'POST', `/admin/clients/${old.clientId}/secret`, {});
    expect(third.status).toBe(409);
    expect(third.body.error_description ?? third.body.message).toMatch(/two valid secrets/);

    await sleep(Math.max(0, r.body.previous_client_secret_expires_at * 1000 - Date.now()) + 1000);
    const refused = await token(old.clientId, old.clientSecret);
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('invalid_client');
    expect((await token(old.clientId, fresh)).status).toBe(200);
    const after = await adminCall(broker, 'GET', `/admin/clients/${old.clientId}`);
    expect(after.body.previous_client_secret_expires_at).toBeUndefined();

    // The overlap is over: the next rotation is allowed again.
    expect((await adminCall(broker, 'POST', `/admin/clients/${old.clientId}/secret`, {})).status).toBe(200);
  }, 60_000);

  it('stores only hashes of both secrets in the control plane', async () => {
    const c = await service('rot-hashed');
    const r = await adminCall(broker, 'POST', `/admin/clients/${c.clientId}/secret`, { overlapSeconds: 600 });
    const [row] = await query<{ metadata: Record<string, unknown> }>(
      dbs.control.url,
      'select metadata from oidc_client where client_id = $1',
      [c.clientId],
    );
    const text = JSON.stringify(row!.metadata);
    expect(text).not.toContain(c.clientSecret);
    expect(text).not.toContain(r.body.client_secret);
    expect(row!.metadata.client_secret).toMatch(/^\$hmac-sha256\$/);
    expect(row!.metadata.previous_client_secret).toMatch(/^\$hmac-sha256\$/);
  });

  it('overlapSeconds 0 refuses the old secret at once (a leaked secret)', async () => {
    const c = await service('rot-leak');
    const r = await adminCall(broker, 'POST', `/admin/clients/${c.clientId}/secret`, { overlapSeconds: 0 });
    expect(r.status).toBe(200);
    expect(r.body.previous_client_secret_expires_at).toBeNull();
    expect((await token(c.clientId, c.clientSecret)).status).toBe(401);
    expect((await token(c.clientId, r.body.client_secret)).status).toBe(200);
  });

  it('DELETE /admin/clients/{id}/secret/previous ends the overlap early', async () => {
    const c = await service('rot-end');
    const r = await adminCall(broker, 'POST', `/admin/clients/${c.clientId}/secret`, {
      overlapSeconds: 3600,
    });
    expect((await token(c.clientId, c.clientSecret)).status).toBe(200);
    expect((await adminCall(broker, 'DELETE', `/admin/clients/${c.clientId}/secret/previous`)).status).toBe(
      204,
    );
    expect((await token(c.clientId, c.clientSecret)).status).toBe(401);
    expect((await token(c.clientId, r.body.client_secret)).status).toBe(200);
    expect((await adminCall(broker, 'DELETE', `/admin/clients/${c.clientId}/secret/previous`)).status).toBe(
      404,
    );
  });

  it('keeps the overlap across a PUT that keeps the secret, ends it with a PUT that sets one', async () => {
    const c = await service('rot-put');
    const r = await adminCall(broker, 'POST', `/admin/clients/${c.clientId}/secret`, {
      overlapSeconds: 3600,
    });
    const body = {
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'rot:read',
      resources: [`${AUDIENCE}/${c.clientId}`],
    };
    expect((await adminCall(broker, 'PUT', `/admin/clients/${c.clientId}`, body)).status).toBe(200);
    expect((await token(c.clientId, c.clientSecret)).status).toBe(200);
    expect((await token(c.clientId, r.body.client_secret)).status).toBe(200);
    const chosen = `chosen-${randomBytes(24).toString('base64url')}`;
    expect(
      (await adminCall(broker, 'PUT', `/admin/clients/${c.clientId}`, { ...body, client_secret: chosen }))
        .status,
    ).toBe(200);
    expect((await token(c.clientId, c.clientSecret)).status).toBe(401);
    expect((await token(c.clientId, r.body.client_secret)).status).toBe(401);
    expect((await token(c.clientId, chosen)).status).toBe(200);
  });

  it('audits rotations and early ends with the acting client, without secrets', async () => {
    const c = await service('rot-audit');
    const r = await adminCall(broker, 'POST', `/admin/clients/${c.clientId}/secret`, { overlapSeconds: 120 });
    await adminCall(broker, 'DELETE', `/admin/clients/${c.clientId}/secret/previous`);
    const rows = await query<{ actor: string; action: string; detail: Record<string, unknown> }>(
      dbs.region.eu!.url,
      `select actor, action, detail from audit_event where target_id = $1 and action like 'client.secret.%' order by id`,
      [c.clientId],
    );
    expect(rows.map((e) => e.action)).toEqual(['client.secret.rotate', 'client.secret.revoke_previous']);
    expect(rows[0]!.actor).toBe(broker.adminClientId);
    expect(rows[0]!.detail.overlapSeconds).toBe(120);
    expect(JSON.stringify(rows)).not.toContain(r.body.client_secret);
  });

  it('refuses what has no secret to rotate, and bad bodies naming the field', async () => {
    expect((await adminCall(broker, 'POST', '/admin/clients/no-such-client/secret', {})).status).toBe(404);
    const admin = await adminCall(broker, 'POST', `/admin/clients/${broker.adminClientId}/secret`, {});
    expect(admin.status).toBe(409);
    const c = await service('rot-bad');
    for (const overlapSeconds of [-1, 30 * 86400 + 1, 'soon']) {
      const bad = await adminCall(broker, 'POST', `/admin/clients/${c.clientId}/secret`, { overlapSeconds });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).toContain('overlapSeconds');
    }
    const extra = await adminCall(broker, 'POST', `/admin/clients/${c.clientId}/secret`, {
      client_secret: 'x',
    });
    expect(extra.status).toBe(400);
  });
});
