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
import {
  accessibilityViolations,
  launchChromium,
  newContext,
  screenshot,
  watchPage,
} from './support/chromium';
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
  it('brings up brokers, demo IdPs, app, services and sidecars; the demo logins work in Chromium; Ctrl-C stops everything', async () => {
    const dataDir = tempDir();
    const [euPort, usPort] = [await freePort(), await freePort()];
    // Demo ports: base, base+1, base+2 (IdPs), +100 (app), +201/+202 (sidecars), +211/+212 (services).
    const demoBase = 20_000 + Math.floor(Math.random() * 30_000);
    const startedAt = Date.now();
    const child = spawn(process.execPath, [join(REPO_ROOT, 'scripts/dev-stack.mjs')], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        MERIDIAN_DATA_DIR: dataDir,
        MERIDIAN_EU_PORT: String(euPort),
        MERIDIAN_US_PORT: String(usPort),
        MERIDIAN_DEMO_PORT_BASE: String(demoBase),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const browser = await launchChromium();
    try {
      const deadline = Date.now() + 120_000;
      while (!out.includes('Ctrl-C stops everything') && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(out, out).toContain('Ctrl-C stops everything');
      const readyMs = Date.now() - startedAt;
      // The issue's bar: everything up within two minutes on this machine.
      expect(readyMs).toBeLessThan(120_000);
      console.log(`npm start: ready in ${(readyMs / 1000).toFixed(1)} s`);
      const appUrl = `http://127.0.0.1:${demoBase + 100}`;
      expect(out).toContain(`Open first:  ${appUrl}/`);
      expect(out).toContain(`http://127.0.0.1:${euPort}`);
      expect(out).toContain(`http://127.0.0.1:${usPort}`);
      expect(out).toMatch(/anna\s+anna-demo/);
      const secret = /client_secret: (\S+)/.exec(out)?.[1];
      expect(secret).toBeTruthy();

      const bundle = (await (
        await fetch(`http://127.0.0.1:${euPort}/.well-known/meridian/trust-bundle`)
      ).json()) as {
        regions: { region: string }[];
      };
      expect(bundle.regions.map((r) => r.region).sort()).toEqual(['eu', 'us']);
      // The printed admin credentials work at both regions, and the demo was configured
      // through the admin API (federations visible there).
      for (const port of [euPort, usPort]) {
        const url = `http://127.0.0.1:${port}`;
        const token = await adminToken({
          url,
          issuer: url,
          env: {},
          adminClientId: 'meridian-admin',
          adminClientSecret: secret!,
          output: () => '',
          stop: async () => {},
        });
        const feds = (await (
          await fetch(`${url}/admin/federations`, { headers: { authorization: `Bearer ${token}` } })
        ).json()) as { id: string }[];
        expect(feds.map((f) => f.id).sort()).toEqual(['de-eid', 'global-id', 'us-login']);
      }
      expect(postmasterRunning(join(dataDir, 'pg'))).toBe(true);

      // --- Anna (German eID, jurisdiction DE) at the us app: handed to eu, data stays there.
      const anna = await newContext(browser);
      const page = await anna.newPage();
      const seen = watchPage(page);
      await page.goto(`${appUrl}/`);
      await page.getByRole('link', { name: 'Sign in with Meridian' }).click();
      expect(new URL(page.url()).port).toBe(String(usPort));
      await page.getByRole('link', { name: /German eID/ }).click();
      await page.getByLabel('Username').fill('anna');
      await page.getByLabel('Password').fill('anna-demo');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${appUrl}/`);
      const text = await page.locator('main').innerText();
      expect(text).toContain('"region": "eu"');
      expect(text).toContain('"jurisdiction": "DE"');
      expect(text).toContain('eu-gdpr@');
      // The eu policy releases only sub + residency towards us: no email, no name at the us app.
      expect(text).not.toContain('anna@example.de');
      expect(text).not.toContain('Anna Schmidt');
      // orders-us (region us) refuses: Anna's data may be processed in eu only.
      expect(text).toMatch(/orders-us[\s\S]*403 refused[\s\S]*ERR_RESIDENCY_PROCESSING/);
      expect(text).toMatch(/orders-eu[\s\S]*200 allowed[\s\S]*x-meridian-sub/);
      expect(seen.cspViolations).toEqual([]);
      expect(seen.errors).toEqual([]);
      const violations = await accessibilityViolations(page);
      expect(violations, JSON.stringify(violations)).toEqual([]);
      await screenshot(page, 'demo-app-anna-handoff');

      // --- Bob by email (home-realm discovery → US Login): a us person, released in full at us.
      const bob = await newContext(browser);
      const bobPage = await bob.newPage();
      await bobPage.goto(`${appUrl}/login`);
      if (!(await bobPage.getByLabel(/Email/).count()))
        throw new Error(`not the chooser: ${bobPage.url()}\n${await bobPage.locator('body').innerText()}`);
      await bobPage.getByLabel(/Email/).fill('bob@example.us');
      await bobPage.getByRole('button', { name: 'Continue' }).click();
      await bobPage.getByLabel('Username').fill('bob');
      await bobPage.getByLabel('Password').fill('bob-demo');
      await bobPage.getByRole('button', { name: 'Sign in' }).click();
      await bobPage.waitForURL(`${appUrl}/`);
      const bobText = await bobPage.locator('main').innerText();
      expect(bobText).toContain('bob@example.us');
      expect(bobText).toContain('"region": "us"');
      expect(bobText).toMatch(/orders-us[\s\S]*200 allowed/);
      expect(bobText).toMatch(/orders-eu[\s\S]*200 allowed/);
      await screenshot(bobPage, 'demo-app-bob');

      // --- Kenji (Global ID, country JP): no policy covers JP — refused, never guessed.
      const kenji = await newContext(browser);
      const kenjiPage = await kenji.newPage();
      await kenjiPage.goto(`${appUrl}/login`);
      await kenjiPage.getByRole('link', { name: /Global ID/ }).click();
      await kenjiPage.getByLabel('Username').fill('kenji');
      await kenjiPage.getByLabel('Password').fill('kenji-demo');
      await kenjiPage.getByRole('button', { name: 'Sign in' }).click();
      await kenjiPage.waitForLoadState();
      const kenjiText = await kenjiPage.locator('body').innerText();
      expect(kenjiText).not.toContain('Signed in');
      expect(kenjiText).toMatch(/JP|jurisdiction/i);
      await screenshot(kenjiPage, 'demo-refused-unknown-jurisdiction');

      // --- The console at eu: the demo admin's roles come from its upstream group (Global ID).
      const admin = await newContext(browser);
      const consolePage = await admin.newPage();
      await consolePage.goto(`http://127.0.0.1:${euPort}/console`);
      await consolePage.getByRole('link', { name: /Global ID/ }).click();
      await consolePage.getByLabel('Username').fill('admin');
      await consolePage.getByLabel('Password').fill('admin-demo');
      await consolePage.getByRole('button', { name: 'Sign in' }).click();
      await consolePage.waitForURL(`http://127.0.0.1:${euPort}/console`);
      expect(await consolePage.locator('body').innerText()).toContain(
        'You hold meridian:admin and meridian:compliance',
      );
    } finally {
      await browser.close();
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(postmasterRunning(join(dataDir, 'pg'))).toBe(false);
  }, 240_000);

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
