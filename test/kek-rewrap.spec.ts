/**
 * KEK change without downtime, as an operator does it: brokers restarted with the new KEK as
 * MERIDIAN_KEK and the old one as MERIDIAN_KEK_PREVIOUS, `npm run kek:rewrap` while they serve,
 * then MERIDIAN_KEK_PREVIOUS removed. Real brokers from dist/, the real command, real PostgreSQL.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FederationRepository } from '@meridian/federation';
import { kekId, open, seal } from '@meridian/keys';
import { ControlDatabase, createControlDataSource } from '@meridian/persistence';
import {
  REPO_ROOT,
  adminCall,
  brokerEnv,
  clientCredentials,
  freshDatabases,
  newKek,
  registerService,
  runBrokerProcess,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';
import { freePort } from './support/ports';
import { startUpstreamIdp, type UpstreamIdp } from './support/upstream-idp';

const REWRAP = join(REPO_ROOT, 'dist', 'apps', 'broker', 'kek-rewrap.js');
const AUDIENCE = 'https://kek.example';

interface CommandRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function rewrapEnv(dbs: { control: { url: string }; region: Record<string, { url: string }> }) {
  return (kek: string, previous?: string): Record<string, string> =>
    brokerEnv({
      port: 1,
      controlUrl: dbs.control.url,
      regionUrl: dbs.region.eu!.url,
      kek,
      extra: previous ? { MERIDIAN_KEK_PREVIOUS: previous } : {},
    });
}

/** Runs `npm run kek:rewrap`'s script; `onLine` sees each stdout line (and may kill the child). */
function runRewrap(
  env: Record<string, string>,
  args: string[] = [],
  onLine?: (line: string, kill: () => void) => void,
): Promise<CommandRun> {
  const child = spawn(process.execPath, [REWRAP, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: REPO_ROOT,
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) onLine?.(line, () => child.kill('SIGKILL'));
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

async function rows<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []) {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

async function jwks(url: string): Promise<JSONWebKeySet> {
  return (await (await fetch(`${url}/jwks`)).json()) as JSONWebKeySet;
}

describe('KEK rotation: re-wrap every data key while brokers keep signing', () => {
  const A = newKek();
  const B = newKek();
  let dbs: Awaited<ReturnType<typeof freshDatabases>>;
  let idp: UpstreamIdp;
  let env: ReturnType<typeof rewrapEnv>;
  let port: number;
  let service: { clientId: string; clientSecret: string };
  const secrets = {
    current: 'upstream-secret-current-0123456789',
    previous: 'upstream-secret-previous-0123456789',
  };
  let kidsUnderA: string[];

  beforeAll(async () => {
    dbs = await freshDatabases('kek_rewrap');
    env = rewrapEnv(dbs);
    idp = await startUpstreamIdp({ users: [] });
    port = await freePort();
    // Everything sealed under A: signing keys (one rotation: current, next and retiring) and an
    // upstream secret mid-rotation (current and previous both sealed).
    const a = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url, kek: A, port });
    service = await registerService(a, {
      resourceId: 'kek-api',
      audience: AUDIENCE,
      scopes: ['kek:read'],
      clientId: 'kek-service',
      clientScope: 'kek:read',
    });
    const fed = await adminCall(a, 'PUT', '/admin/federations/upstream', {
      displayName: 'Upstream',
      issuer: idp.issuer,
      clientId: 'meridian-eu',
      clientSecret: secrets.previous,
      kind: 'global',
    });
    expect(fed.status).toBe(201);
    const rotated = await adminCall(a, 'POST', '/admin/federations/upstream/secret', {
      clientSecret: secrets.current,
      overlapSeconds: 3600,
    });
    expect(rotated.status).toBe(200);
    expect((await adminCall(a, 'POST', '/admin/keys/rotate')).status).toBe(200);
    kidsUnderA = (await jwks(a.url)).keys.map((k) => k.kid!).sort();
    expect(kidsUnderA).toHaveLength(3);
    await a.stop();
  }, 120_000);

  afterAll(async () => {
    await idp?.stop();
    await dbs?.drop();
  });

  it('refuses to start with only the new KEK before the re-wrap, naming MERIDIAN_KEK', async () => {
    const proc = runBrokerProcess(
      brokerEnv({
        controlUrl: dbs.control.url,
        regionUrl: dbs.region.eu!.url,
        kek: B,
        port: await freePort(),
      }),
    );
    expect(await proc.exited).not.toBe(0);
    expect(proc.output()).toMatch(/MERIDIAN_KEK does not decrypt the signing keys/);
  }, 60_000);

  it('re-wraps under B while a broker with B and previous A keeps issuing verifiable tokens', async () => {
    let broker: SpawnedBroker | undefined;
    try {
      broker = await spawnBroker({
        controlUrl: dbs.control.url,
        regionUrl: dbs.region.eu!.url,
        kek: B,
        port,
        extra: { MERIDIAN_KEK_PREVIOUS: A, MERIDIAN_KEY_REFRESH_SECONDS: '1' },
      });
      const keySet = createLocalJWKSet(await jwks(broker.url));
      let stop = false;
      const statuses: number[] = [];
      const verified: boolean[] = [];
      const load = (async () => {
        while (!stop) {
          const r = await clientCredentials(broker!.url, service, AUDIENCE);
          statuses.push(r.status);
          if (r.status === 200)
            verified.push(
              await jwtVerify(r.body.access_token as string, keySet, { issuer: broker!.issuer }).then(
                () => true,
                () => false,
              ),
            );
        }
      })();

      const run = await runRewrap(env(B, A), ['--batch-size', '1']);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('signing keys: 1/3 re-wrapped');
      expect(run.stdout).toContain('signing keys: 3/3 re-wrapped');
      expect(run.stdout).toContain('upstream client secrets: 1/1 re-wrapped');
      expect(run.stdout).toMatch(/done: every data key of region eu is wrapped under KEK/);

      // Key refreshes (every second) pick up the re-wrapped rows; signing never stops.
      await new Promise((r) => setTimeout(r, 2500));
      stop = true;
      await load;
      expect(statuses.length).toBeGreaterThan(5);
      expect(new Set(statuses)).toEqual(new Set([200]));
      expect(verified.every(Boolean)).toBe(true);
      expect(broker.output()).not.toMatch(/key refresh failed|KEK_MISMATCH/);
    } finally {
      await broker?.stop();
    }

    const idB = kekId(Buffer.from(B, 'base64'));
    const keys = await rows<{ kek_id: string }>(dbs.region.eu!.url, 'select kek_id from signing_key');
    expect(keys.map((k) => k.kek_id)).toEqual([idB, idB, idB]);
    const [fed] = await rows<{ kek_id: string; previous_kek_id: string }>(
      dbs.control.url,
      'select kek_id, previous_kek_id from federation_secret',
    );
    expect(fed).toEqual({ kek_id: idB, previous_kek_id: idB });
  }, 120_000);

  it('a broker started with only B then serves the same keys, and B alone opens the upstream secrets', async () => {
    const broker = await spawnBroker({
      controlUrl: dbs.control.url,
      regionUrl: dbs.region.eu!.url,
      kek: B,
      port,
    });
    try {
      const published = await jwks(broker.url);
      expect(published.keys.map((k) => k.kid!).sort()).toEqual(kidsUnderA);
      const r = await clientCredentials(broker.url, service, AUDIENCE);
      expect(r.status).toBe(200);
      await jwtVerify(r.body.access_token as string, createLocalJWKSet(published), { issuer: broker.issuer });
    } finally {
      await broker.stop();
    }
    const ds = createControlDataSource({ url: dbs.control.url, poolSize: 1 });
    await ds.initialize();
    try {
      const repo = new FederationRepository(new ControlDatabase(ds), 'eu', Buffer.from(B, 'base64'));
      expect(await repo.secrets('upstream')).toEqual(secrets);
    } finally {
      await ds.destroy();
    }
  }, 120_000);

  it('running it again changes nothing', async () => {
    const before = await rows(
      dbs.region.eu!.url,
      'select kid, sealed_private_jwk from signing_key order by kid',
    );
    const run = await runRewrap(env(B, A));
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('signing keys: 0 re-wrapped, 0 left under another KEK');
    expect(run.stdout).toContain('upstream client secrets: 0 re-wrapped, 0 left under another KEK');
    expect(run.stdout).not.toMatch(/\d+\/\d+ re-wrapped/);
    expect(
      await rows(dbs.region.eu!.url, 'select kid, sealed_private_jwk from signing_key order by kid'),
    ).toEqual(before);
    // Without MERIDIAN_KEK_PREVIOUS too: nothing is left that needs it.
    expect((await runRewrap(env(B))).code).toBe(0);
  }, 60_000);
});

describe('an interrupted re-wrap', () => {
  const B = newKek();
  const C = newKek();
  const kekB = Buffer.from(B, 'base64');
  const kekC = Buffer.from(C, 'base64');
  const MANY = 1500;
  let dbs: Awaited<ReturnType<typeof freshDatabases>>;
  let env: ReturnType<typeof rewrapEnv>;

  /** Every row's kek_id names the KEK that really wraps it: no batch was half applied. */
  async function consistency() {
    const secrets = await rows<{ federation_id: string; sealed: Buffer; kek_id: string }>(
      dbs.control.url,
      'select federation_id, sealed, kek_id from federation_secret',
    );
    let underC = 0;
    for (const s of secrets) {
      const kek = s.kek_id === kekId(kekC) ? kekC : kekB;
      if (kek === kekC) underC++;
      expect(open(kek, s.sealed, `federation-secret:eu:${s.federation_id}`).toString()).toBe(
        `secret-of-${s.federation_id}`,
      );
    }
    return { total: secrets.length, underC };
  }

  beforeAll(async () => {
    dbs = await freshDatabases('kek_rewrap_resume');
    env = rewrapEnv(dbs);
    // The schema and three signing keys under B.
    const b = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url, kek: B });
    await adminCall(b, 'POST', '/admin/keys/rotate');
    await b.stop();
    const ids = Array.from({ length: MANY }, (_, i) => `fed-${String(i).padStart(5, '0')}`);
    const sealed = ids.map((id) => seal(kekB, Buffer.from(`secret-of-${id}`), `federation-secret:eu:${id}`));
    const client = new Client({ connectionString: dbs.control.url });
    await client.connect();
    try {
      await client.query(
        `insert into federation (id, config, enabled) select id, '{}'::jsonb, false from unnest($1::text[]) as id`,
        [ids],
      );
      await client.query(
        `insert into federation_secret (federation_id, region, client_id, sealed, kek_id)
         select id, 'eu', 'c', s, $3 from unnest($1::text[], $2::bytea[]) as t(id, s)`,
        [ids, sealed, kekId(kekB)],
      );
    } finally {
      await client.end();
    }
  }, 120_000);

  afterAll(async () => {
    await dbs?.drop();
  });

  it('--limit stops after that many rows and reports what is left', async () => {
    const run = await runRewrap(env(C, B), ['--batch-size', '1', '--limit', '2']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('signing keys: 2 re-wrapped, 1 left under another KEK');
    expect(run.stdout).toContain(`upstream client secrets: 0 re-wrapped, ${MANY} left under another KEK`);
    expect(run.stdout).toContain('not finished: run npm run kek:rewrap again');
  }, 60_000);

  it('killed mid-run (SIGKILL), it leaves whole batches done and the rest untouched; a second run finishes', async () => {
    let killedAt = '';
    const killed = await runRewrap(env(C, B), ['--batch-size', '10'], (line, kill) => {
      if (!killedAt && /upstream client secrets: [1-9]\d*0\/\d+ re-wrapped/.test(line)) {
        killedAt = line;
        kill();
      }
    });
    expect(killedAt).not.toBe('');
    expect(killed.code).toBeNull(); // killed by the signal
    const after = await consistency();
    expect(after.underC).toBeGreaterThan(0);
    expect(after.underC).toBeLessThan(MANY);
    expect(after.underC % 10).toBe(0);

    const resumed = await runRewrap(env(C, B), ['--batch-size', '200']);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(
      `upstream client secrets: ${MANY - after.underC} re-wrapped, 0 left under another KEK`,
    );
    expect(resumed.stdout).toContain('done:');
    expect(await consistency()).toEqual({ total: MANY, underC: MANY });

    const again = await runRewrap(env(C, B));
    expect(again.stdout).toContain('upstream client secrets: 0 re-wrapped, 0 left under another KEK');
  }, 120_000);

  it('names a row no configured KEK opens and exits 1 without touching it', async () => {
    const stray = newKek();
    const client = new Client({ connectionString: dbs.control.url });
    await client.connect();
    try {
      await client.query(`insert into federation (id, config, enabled) values ('zz-stray', '{}', false)`);
      await client.query(
        `insert into federation_secret (federation_id, region, client_id, sealed, kek_id) values ('zz-stray', 'eu', 'c', $1, $2)`,
        [
          seal(Buffer.from(stray, 'base64'), Buffer.from('x'), 'federation-secret:eu:zz-stray'),
          'stray-kek-id',
        ],
      );
    } finally {
      await client.end();
    }
    const run = await runRewrap(env(C, B));
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('federation_secret zz-stray (wrapped under KEK id stray-kek-id)');
    expect(run.stdout).toContain('upstream client secrets: 0 re-wrapped, 1 left under another KEK');
  }, 60_000);

  it('refuses bad arguments with one line', async () => {
    const run = await runRewrap(env(C, B), ['--batch-size', '0']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe('kek:rewrap: --batch-size must be a whole number from 1 to 100000');
  });
});
