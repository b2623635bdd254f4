/**
 * The built broker (`node dist/apps/broker/main.js`) refuses a bad environment at start: a
 * non-zero exit within seconds and one line naming the variable — no stack trace, and no
 * secret (KEK, admin secret, database password) anywhere in what it printed.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerEnv, newKek, runBrokerProcess, spawnBroker, freshDatabases } from './support/broker';
import { freePort } from './support/ports';

const KEK = newKek();
const ADMIN_SECRET = `admin-secret-${randomBytes(16).toString('hex')}`;
const DB_PASSWORD = `db-pass-${randomBytes(8).toString('hex')}`;
/** A config error must stop the process well before this. */
const CONFIG_EXIT_MS = 10_000;
/** Connecting to, migrating and checking the databases takes longer than parsing the env. */
const STARTUP_EXIT_MS = 30_000;

interface Exit {
  code: number | null;
  /** stdout and stderr interleaved. */
  output: string;
  stderr: string;
  ms: number;
  killed: boolean;
}

/** Runs the built broker until it exits by itself, or kills it after `limitMs`. */
async function runUntilExit(env: Record<string, string | undefined>, limitMs: number): Promise<Exit> {
  const started = Date.now();
  const proc = runBrokerProcess(env);
  let stderr = '';
  proc.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    proc.child.kill('SIGKILL');
  }, limitMs);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, output: proc.output(), stderr, ms: Date.now() - started, killed };
}

function stderrLines(exit: Exit): string[] {
  return exit.stderr.split('\n').filter((l) => l.trim() !== '');
}

/** The broker's own lines about the configuration (libraries may warn on stderr too). */
function configErrorLines(exit: Exit): string[] {
  return stderrLines(exit).filter((l) => l.startsWith('config error:'));
}

/** What every refused start has in common. */
function expectRefused(exit: Exit, secrets: string[]): void {
  expect(exit.killed, `still running after the limit; output:\n${exit.output}`).toBe(false);
  expect(exit.code).not.toBe(0);
  expect(exit.code).not.toBeNull();
  // A stack trace is for the log at debug level, never the operator's console.
  expect(exit.output).not.toMatch(/^\s+at /m);
  for (const secret of secrets) expect(exit.output).not.toContain(secret);
}

function envWith(
  port: number,
  changes: Record<string, string | undefined>,
): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {
    ...brokerEnv({
      port,
      // Never reached: the configuration is refused before any connection.
      controlUrl: `postgres://meridian:${DB_PASSWORD}@127.0.0.1:1/meridian_control`,
      regionUrl: `postgres://meridian:${DB_PASSWORD}@127.0.0.1:1/meridian_eu`,
      kek: KEK,
      adminClientSecret: ADMIN_SECRET,
    }),
  };
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

const SECRETS = [KEK, ADMIN_SECRET, DB_PASSWORD];

describe('broker start — a missing or malformed variable stops the process with one line naming it', () => {
  const cases: [string, string, Record<string, string | undefined>, RegExp][] = [
    // [label, variable, env changes, what the line says]
    [
      'MERIDIAN_REGION is missing',
      'MERIDIAN_REGION',
      { MERIDIAN_REGION: undefined },
      /MERIDIAN_REGION is required/,
    ],
    [
      'MERIDIAN_ISSUER is missing',
      'MERIDIAN_ISSUER',
      { MERIDIAN_ISSUER: undefined },
      /MERIDIAN_ISSUER is required/,
    ],
    ['MERIDIAN_KEK is missing', 'MERIDIAN_KEK', { MERIDIAN_KEK: undefined }, /MERIDIAN_KEK is required/],
    [
      'MERIDIAN_ADMIN_CLIENT_ID is missing',
      'MERIDIAN_ADMIN_CLIENT_ID',
      { MERIDIAN_ADMIN_CLIENT_ID: undefined },
      /MERIDIAN_ADMIN_CLIENT_ID is required/,
    ],
    [
      'MERIDIAN_ADMIN_CLIENT_SECRET is missing',
      'MERIDIAN_ADMIN_CLIENT_SECRET',
      { MERIDIAN_ADMIN_CLIENT_SECRET: undefined },
      /MERIDIAN_ADMIN_CLIENT_SECRET is required/,
    ],
    [
      'MERIDIAN_REGION is not a region id',
      'MERIDIAN_REGION',
      { MERIDIAN_REGION: 'EU West' },
      /MERIDIAN_REGION must be/,
    ],
    [
      'MERIDIAN_ISSUER is http on a public host',
      'MERIDIAN_ISSUER',
      { MERIDIAN_ISSUER: 'http://eu.id.example.com' },
      /MERIDIAN_ISSUER must use https/,
    ],
    [
      'MERIDIAN_KEK is "abc"',
      'MERIDIAN_KEK',
      { MERIDIAN_KEK: 'abc' },
      /MERIDIAN_KEK must be base64 of 32 bytes/,
    ],
    [
      'MERIDIAN_KEK is 16 bytes',
      'MERIDIAN_KEK',
      { MERIDIAN_KEK: randomBytes(16).toString('base64') },
      /MERIDIAN_KEK must be base64 of 32 bytes/,
    ],
    [
      'MERIDIAN_ADMIN_CLIENT_ID has a space',
      'MERIDIAN_ADMIN_CLIENT_ID',
      { MERIDIAN_ADMIN_CLIENT_ID: 'test admin' },
      /MERIDIAN_ADMIN_CLIENT_ID must be/,
    ],
    [
      'MERIDIAN_ADMIN_CLIENT_SECRET is short',
      'MERIDIAN_ADMIN_CLIENT_SECRET',
      { MERIDIAN_ADMIN_CLIENT_SECRET: 'short-admin-secret' },
      /MERIDIAN_ADMIN_CLIENT_SECRET must be at least 32 characters/,
    ],
    ['PORT is not a number', 'PORT', { PORT: 'eighty' }, /PORT must be a TCP port number/],
    ['PORT is out of range', 'PORT', { PORT: '70000' }, /PORT must be a TCP port number/],
  ];

  it.concurrent.each(cases)(
    'exits non-zero within seconds when %s',
    async (_label, variable, changes, says) => {
      const env = envWith(await freePort(), changes);
      const exit = await runUntilExit(env, CONFIG_EXIT_MS);
      const secrets = [
        ...SECRETS,
        ...Object.values(changes).filter((v): v is string => !!v && v.length >= 8),
      ];
      expectRefused(exit, secrets);
      const lines = configErrorLines(exit);
      expect(lines, exit.output).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^config error: ${variable} `));
      expect(lines[0]).toMatch(says);
    },
  );

  it('reports every bad variable at once, one line each', async () => {
    const env = envWith(await freePort(), {
      MERIDIAN_KEK: 'abc',
      PORT: 'eighty',
      MERIDIAN_REGION: undefined,
    });
    const exit = await runUntilExit(env, CONFIG_EXIT_MS);
    expectRefused(exit, SECRETS);
    const lines = configErrorLines(exit);
    expect(lines, exit.output).toHaveLength(3);
    for (const variable of ['MERIDIAN_REGION', 'PORT', 'MERIDIAN_KEK'])
      expect(
        lines.filter((l) => l.startsWith(`config error: ${variable} `)),
        variable,
      ).toHaveLength(1);
  });
});

describe('broker start — databases', () => {
  let dbs: Awaited<ReturnType<typeof freshDatabases>>;
  const kekA = newKek();
  const kekB = newKek();

  beforeAll(async () => {
    dbs = await freshDatabases('config_start', ['eu']);
    // Initialise the databases once with KEK A: migrations, region marker `eu`, signing keys.
    const eu = await spawnBroker({
      controlUrl: dbs.control.url,
      regionUrl: dbs.region.eu!.url,
      kek: kekA,
      adminClientSecret: ADMIN_SECRET,
    });
    await eu.stop();
  });

  afterAll(async () => {
    await dbs?.drop();
  });

  it('exits non-zero naming CONTROL_DATABASE_URL when neither database is reachable, without the password', async () => {
    const closed = await freePort();
    const env = envWith(await freePort(), {
      CONTROL_DATABASE_URL: `postgres://meridian:${DB_PASSWORD}@127.0.0.1:${closed}/meridian_control`,
      REGION_DATABASE_URL: `postgres://meridian:${DB_PASSWORD}@127.0.0.1:${closed}/meridian_eu`,
    });
    const exit = await runUntilExit(env, STARTUP_EXIT_MS);
    expectRefused(exit, SECRETS);
    expect(
      stderrLines(exit).some((l) => l.includes('CONTROL_DATABASE_URL')),
      exit.output,
    ).toBe(true);
  });

  it('exits non-zero naming REGION_DATABASE_URL when only the region database is unreachable', async () => {
    const closed = await freePort();
    const env = envWith(await freePort(), {
      CONTROL_DATABASE_URL: dbs.control.url,
      REGION_DATABASE_URL: `postgres://meridian:${DB_PASSWORD}@127.0.0.1:${closed}/meridian_eu`,
    });
    const exit = await runUntilExit(env, STARTUP_EXIT_MS);
    expectRefused(exit, SECRETS);
    expect(
      stderrLines(exit).some((l) => l.includes('REGION_DATABASE_URL')),
      exit.output,
    ).toBe(true);
  });

  it('refuses a second start with a different MERIDIAN_KEK, and a us broker on the eu region database', async () => {
    const [otherKek, usOnEu] = await Promise.all([
      (async () =>
        runUntilExit(
          brokerEnv({
            port: await freePort(),
            controlUrl: dbs.control.url,
            regionUrl: dbs.region.eu!.url,
            kek: kekB,
            adminClientSecret: ADMIN_SECRET,
          }),
          STARTUP_EXIT_MS,
        ))(),
      (async () =>
        runUntilExit(
          brokerEnv({
            region: 'us',
            port: await freePort(),
            controlUrl: dbs.control.url,
            regionUrl: dbs.region.eu!.url,
            kek: kekA,
            adminClientSecret: ADMIN_SECRET,
          }),
          STARTUP_EXIT_MS,
        ))(),
    ]);

    expectRefused(otherKek, [kekA, kekB, ADMIN_SECRET]);
    expect(
      stderrLines(otherKek).some((l) => l.includes('MERIDIAN_KEK')),
      otherKek.output,
    ).toBe(true);

    expectRefused(usOnEu, [kekA, ADMIN_SECRET]);
    expect(
      stderrLines(usOnEu).some((l) => /REGION_DATABASE_URL.*\beu\b/.test(l)),
      usOnEu.output,
    ).toBe(true);
  });

  it('still starts with the original MERIDIAN_KEK afterwards: a refused start changes nothing', async () => {
    const eu = await spawnBroker({
      controlUrl: dbs.control.url,
      regionUrl: dbs.region.eu!.url,
      kek: kekA,
      adminClientSecret: ADMIN_SECRET,
    });
    try {
      const res = await fetch(`${eu.url}/.well-known/openid-configuration`);
      expect(res.status).toBe(200);
    } finally {
      await eu.stop();
    }
    expect(eu.output()).not.toContain(kekA);
    expect(eu.output()).not.toContain(ADMIN_SECRET);
  });
});
