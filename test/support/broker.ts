/**
 * Real brokers for tests: spawned from the build (`dist/`), exactly as operators run them, or
 * started in-process when a test needs the OP engine's own models (e.g. to issue the
 * authorization code a federated login would issue).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { validateBrokerEnv } from '@meridian/config';
import { createLogger } from '@meridian/observability';
import { startBroker, type RunningBroker } from '../../apps/broker/src/bootstrap';
import { createTestDatabase, type TestDatabase } from './db';
import { freePort } from './ports';

export const REPO_ROOT = join(__dirname, '..', '..');
export const BROKER_MAIN = join(REPO_ROOT, 'dist', 'apps', 'broker', 'main.js');

export interface BrokerEnvOptions {
  region?: string;
  port?: number;
  /** Defaults to http://127.0.0.1:<port>; replicas of one region share one issuer. */
  issuer?: string;
  controlUrl: string;
  regionUrl: string;
  kek?: string;
  adminClientId?: string;
  adminClientSecret?: string;
  extra?: Record<string, string>;
}

export function newKek(): string {
  return randomBytes(32).toString('base64');
}

export function brokerEnv(o: BrokerEnvOptions & { port: number }): Record<string, string> {
  return {
    MERIDIAN_REGION: o.region ?? 'eu',
    MERIDIAN_ISSUER: o.issuer ?? `http://127.0.0.1:${o.port}`,
    PORT: String(o.port),
    HOST: '127.0.0.1',
    CONTROL_DATABASE_URL: o.controlUrl,
    REGION_DATABASE_URL: o.regionUrl,
    MERIDIAN_KEK: o.kek ?? newKek(),
    MERIDIAN_ADMIN_CLIENT_ID: o.adminClientId ?? 'test-admin',
    MERIDIAN_ADMIN_CLIENT_SECRET: o.adminClientSecret ?? 'test-admin-secret-0123456789abcdefghij',
    MERIDIAN_JURISDICTION: (o.region ?? 'eu') === 'us' ? 'US' : 'EU',
    LOG_LEVEL: 'info',
    ...o.extra,
  };
}

export interface TestBroker {
  url: string;
  issuer: string;
  env: Record<string, string>;
  adminClientId: string;
  adminClientSecret: string;
  /** Everything the process wrote (spawned brokers only). */
  output(): string;
  stop(): Promise<void>;
}

export interface SpawnedBroker extends TestBroker {
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** Runs `node dist/apps/broker/main.js` with `env` (nothing inherited but PATH/HOME). */
export function runBrokerProcess(env: Record<string, string | undefined>): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [BROKER_MAIN], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: REPO_ROOT,
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  // 'close', not 'exit': 'exit' can come before the last of stdout/stderr has been read, and a
  // config error's one line would be lost.
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  // A test worker that dies must not leave brokers behind.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  void exited.then(() => process.off('exit', reap));
  return { child, output: () => out, exited };
}

export async function waitReady(url: string, exited?: Promise<unknown>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let done = false;
  void exited?.then(() => (done = true));
  while (Date.now() < deadline) {
    if (done) throw new Error('broker exited before it was ready');
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`broker at ${url} not ready after ${timeoutMs} ms`);
}

export async function spawnBroker(o: BrokerEnvOptions): Promise<SpawnedBroker> {
  const port = o.port ?? (await freePort());
  const env = brokerEnv({ ...o, port });
  const proc = runBrokerProcess(env);
  try {
    await waitReady(`http://127.0.0.1:${port}`, proc.exited);
  } catch (err) {
    proc.child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${proc.output()}`, { cause: err });
  }
  return {
    url: `http://127.0.0.1:${port}`,
    issuer: env.MERIDIAN_ISSUER!,
    env,
    adminClientId: env.MERIDIAN_ADMIN_CLIENT_ID!,
    adminClientSecret: env.MERIDIAN_ADMIN_CLIENT_SECRET!,
    child: proc.child,
    exited: proc.exited,
    output: proc.output,
    async stop() {
      if (proc.child.exitCode !== null) return;
      proc.child.kill('SIGTERM');
      await proc.exited;
    },
  };
}

export interface InProcessBroker extends TestBroker {
  running: RunningBroker;
}

export async function startInProcessBroker(o: BrokerEnvOptions): Promise<InProcessBroker> {
  const port = o.port ?? (await freePort());
  const env = brokerEnv({ ...o, port, extra: { LOG_LEVEL: 'silent', ...o.extra } });
  const result = validateBrokerEnv(env);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  const running = await startBroker(result.config, {
    logger: createLogger({ level: 'silent', region: result.config.region }),
  });
  return {
    url: env.MERIDIAN_ISSUER!,
    issuer: env.MERIDIAN_ISSUER!,
    env,
    adminClientId: env.MERIDIAN_ADMIN_CLIENT_ID!,
    adminClientSecret: env.MERIDIAN_ADMIN_CLIENT_SECRET!,
    running,
    output: () => '',
    stop: () => running.close(),
  };
}

/** A control database and one region database per region, fresh for one test file. */
export async function freshDatabases(prefix: string, regions: string[] = ['eu']) {
  const control = await createTestDatabase(`${prefix}_control`);
  const byRegion: Record<string, TestDatabase> = {};
  for (const r of regions) byRegion[r] = await createTestDatabase(`${prefix}_${r}`);
  return {
    control,
    region: byRegion,
    async drop() {
      await Promise.allSettled([control.drop(), ...Object.values(byRegion).map((d) => d.drop())]);
    },
  };
}

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

export async function tokenRequest(
  url: string,
  params: Record<string, string>,
  auth?: { clientId: string; clientSecret: string },
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${url}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(auth ? { authorization: basic(auth.clientId, auth.clientSecret) } : {}),
    },
    body: new URLSearchParams(params),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

export async function adminToken(
  broker: TestBroker,
  scope = 'meridian:admin meridian:compliance',
): Promise<string> {
  const { status, body } = await tokenRequest(
    broker.url,
    { grant_type: 'client_credentials', resource: 'urn:meridian:admin', scope },
    { clientId: broker.adminClientId, clientSecret: broker.adminClientSecret },
  );
  if (status !== 200) throw new Error(`admin token: ${status} ${JSON.stringify(body)}`);
  return body.access_token as string;
}

export async function adminCall(
  broker: TestBroker,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${broker.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token ?? (await adminToken(broker))}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Registers a resource and a client_credentials client for it; returns the client's secret. */
export async function registerService(
  broker: TestBroker,
  o: {
    resourceId: string;
    audience: string;
    scopes: string[];
    clientId: string;
    clientScope: string;
    ttl?: number;
    region?: string;
  },
): Promise<{ clientId: string; clientSecret: string }> {
  const token = await adminToken(broker);
  const r = await adminCall(
    broker,
    'PUT',
    `/admin/resources/${o.resourceId}`,
    {
      audience: o.audience,
      scopes: o.scopes,
      region: o.region ?? 'eu',
      ...(o.ttl ? { accessTokenTtlSeconds: o.ttl } : {}),
    },
    token,
  );
  if (r.status >= 300) throw new Error(`resource: ${r.status} ${JSON.stringify(r.body)}`);
  const clientSecret = `secret-${randomBytes(24).toString('base64url')}`;
  const c = await adminCall(
    broker,
    'PUT',
    `/admin/clients/${o.clientId}`,
    {
      client_secret: clientSecret,
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: o.clientScope,
      resources: [o.audience],
    },
    token,
  );
  if (c.status >= 300) throw new Error(`client: ${c.status} ${JSON.stringify(c.body)}`);
  return { clientId: o.clientId, clientSecret };
}

/** RFC 6749 §4.4: a client_credentials token request for one resource. */
export function clientCredentials(
  url: string,
  client: { clientId: string; clientSecret: string },
  resource: string,
  scope?: string,
) {
  return tokenRequest(
    url,
    { grant_type: 'client_credentials', resource, ...(scope ? { scope } : {}) },
    client,
  );
}

/** RFC 7662 introspection, authenticated with client_secret_basic. */
export async function introspect(
  url: string,
  token: string,
  client: { clientId: string; clientSecret: string },
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basic(client.clientId, client.clientSecret),
    },
    body: new URLSearchParams({ token }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
