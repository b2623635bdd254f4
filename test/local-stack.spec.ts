/**
 * The newcomer's path: `npm start` (scripts/dev-stack.mjs on the build) brings up the eu and us
 * brokers on one embedded PostgreSQL, prints where they are and the admin credentials, and
 * Ctrl-C stops everything, the database included. Also a single broker with no database URL.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, adminToken, runBrokerProcess, waitReady, brokerEnv } from './support/broker';
import { freePort } from './support/ports';

const dirs: string[] = [];
function tempDir(): string {
  // Under the repo's .meridian/: every parent must be traversable by the embedded server's user.
  mkdirSync(join(REPO_ROOT, '.meridian'), { recursive: true });
  const dir = mkdtempSync(join(REPO_ROOT, '.meridian', 'test-stack-'));
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function postmasterRunning(pgDir: string): boolean {
  const pidFile = join(pgDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return false;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start — the local multi-region stack', () => {
  it('runs eu and us on one embedded PostgreSQL, prints URLs and admin credentials, and stops cleanly on Ctrl-C', async () => {
    const dataDir = tempDir();
    const [euPort, usPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, [join(REPO_ROOT, 'scripts/dev-stack.mjs')], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        MERIDIAN_DATA_DIR: dataDir,
        MERIDIAN_EU_PORT: String(euPort),
        MERIDIAN_US_PORT: String(usPort),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      const deadline = Date.now() + 90_000;
      while (!out.includes('Ctrl-C stops everything') && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(out).toContain('Ctrl-C stops everything');
      expect(out).toContain(`http://127.0.0.1:${euPort}`);
      expect(out).toContain(`http://127.0.0.1:${usPort}`);
      const secret = /client_secret: (\S+)/.exec(out)?.[1];
      expect(secret).toBeTruthy();

      const bundle = (await (
        await fetch(`http://127.0.0.1:${euPort}/.well-known/meridian/trust-bundle`)
      ).json()) as {
        regions: { region: string }[];
      };
      expect(bundle.regions.map((r) => r.region).sort()).toEqual(['eu', 'us']);
      // The printed admin credentials work at both regions.
      for (const port of [euPort, usPort]) {
        const url = `http://127.0.0.1:${port}`;
        await expect(
          adminToken({
            url,
            issuer: url,
            env: {},
            adminClientId: 'meridian-admin',
            adminClientSecret: secret!,
            output: () => '',
            stop: async () => {},
          }),
        ).resolves.toEqual(expect.any(String));
      }
      expect(postmasterRunning(join(dataDir, 'pg'))).toBe(true);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(postmasterRunning(join(dataDir, 'pg'))).toBe(false);
  });

  it('refuses with a clear message when a port is taken', async () => {
    const dataDir = tempDir();
    const { createServer } = await import('node:net');
    const server = createServer();
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    try {
      const child = spawn(process.execPath, [join(REPO_ROOT, 'scripts/dev-stack.mjs')], {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          MERIDIAN_DATA_DIR: dataDir,
          MERIDIAN_EU_PORT: String(port),
          MERIDIAN_US_PORT: String(await freePort()),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(code).not.toBe(0);
      expect(out).toContain(`port ${port}`);
      expect(out).toContain('already in use');
    } finally {
      server.close();
    }
  });
});

describe('a broker with no database URL', () => {
  it('starts an embedded PostgreSQL under MERIDIAN_DATA_DIR, one database per role, and stops it with the broker', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const env = brokerEnv({ port, controlUrl: '', regionUrl: '', extra: { MERIDIAN_DATA_DIR: dataDir } });
    delete env.CONTROL_DATABASE_URL;
    delete env.REGION_DATABASE_URL;
    const proc = runBrokerProcess(env);
    try {
      await waitReady(`http://127.0.0.1:${port}`, proc.exited, 90_000);
      expect(postmasterRunning(join(dataDir, 'pg'))).toBe(true);
      expect(proc.output()).toContain('embedded');
    } finally {
      proc.child.kill('SIGTERM');
    }
    expect(await proc.exited).toBe(0);
    expect(postmasterRunning(join(dataDir, 'pg'))).toBe(false);
  });

  it('refuses the embedded database when NODE_ENV=production', async () => {
    const env = brokerEnv({
      port: await freePort(),
      controlUrl: '',
      regionUrl: '',
      extra: { NODE_ENV: 'production', MERIDIAN_ISSUER: 'https://eu.id.example.com' },
    });
    delete env.CONTROL_DATABASE_URL;
    delete env.REGION_DATABASE_URL;
    const proc = runBrokerProcess(env);
    expect(await proc.exited).not.toBe(0);
    expect(proc.output()).toMatch(/CONTROL_DATABASE_URL/);
  });
});
