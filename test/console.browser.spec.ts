/**
 * The console in real Chromium (Debian package, playwright-core), against spawned brokers, real
 * upstream IdPs and PostgreSQL: a person with both roles signs in through an upstream IdP,
 * onboards a new federation (a fresh upstream oidc-provider) that people then sign in through,
 * edits a residency policy with a dry run before saving, registers a resource and a client,
 * rotates keys, exports and erases a data subject, and reads the audit trail. Every page is
 * checked with axe-core (WCAG 2.1 A/AA) and must trip no CSP rule. Screenshots go to
 * docs/screenshots (test/support/chromium.ts).
 */
import { readFile } from 'node:fs/promises';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, tokenRequest } from './support/broker';
import {
  accessibilityViolations,
  launchChromium,
  newContext,
  screenshot,
  watchPage,
} from './support/chromium';
import { ANNA, CARLA, EU_POLICY, FederationFixture } from './support/federation-fixture';
import { freePort } from './support/ports';
import { startUpstreamIdp, type UpstreamIdp, type UpstreamUser } from './support/upstream-idp';

const ANNA_EMAIL = (ANNA.claims as { email: string }).email;
const NORA: UpstreamUser = {
  username: 'nora',
  password: 'nora-password-1',
  claims: { email: 'nora.canary@example.fr', email_verified: true, name: 'Nora Nordlicht' },
};
const NORDIC_SECRET = 'nordic-upstream-secret-0a1b2c3d4e5f';

const f = new FederationFixture();
let nordic: UpstreamIdp;
let chromium: Browser;
let context: BrowserContext;
let page: Page;
let seen: ReturnType<typeof watchPage>;
/** Anna's Meridian sub, as the console shows it. */
let annaSub: string;

beforeAll(async () => {
  await f.start('consolebrowser', {
    env: {
      MERIDIAN_CONSOLE_ROLES: JSON.stringify({
        'meridian:admin': { emails: [ANNA_EMAIL] },
        'meridian:compliance': { emails: [ANNA_EMAIL] },
      }),
    },
  });
  nordic = await startUpstreamIdp({ users: [NORA] });
  chromium = await launchChromium();
  context = await newContext(chromium);
  page = await context.newPage();
  seen = watchPage(page);
});

afterAll(async () => {
  await chromium?.close();
  await nordic?.stop();
  await f.stop();
});

/** No axe (WCAG 2.1 A/AA) violation, nothing blocked by the CSP, no script error. */
async function expectAccessible(p: Page = page, s = seen): Promise<void> {
  expect(await accessibilityViolations(p)).toEqual([]);
  expect(s.cspViolations).toEqual([]);
  expect(s.errors).toEqual([]);
}

const h1 = (p: Page = page) => p.getByRole('heading', { level: 1 }).textContent();

/** On an upstream IdP's login form: sign in. */
async function upstreamSignIn(p: Page, user: UpstreamUser): Promise<void> {
  await p.getByLabel('Username').fill(user.username);
  await p.getByLabel('Password').fill(user.password);
  await p.getByRole('button', { name: 'Sign in' }).click();
}

async function nav(name: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Console sections' }).getByRole('link', { name }).click();
}

describe('the console in Chromium', () => {
  it('signs in a person with both roles through an upstream IdP, from any console page, keyboard first', async () => {
    const first = await page.goto(`${f.eu.url}/console/federations`);
    expect(first?.status()).toBe(200);
    // The broker's own sign-in: the chooser, then the German eID's login form.
    await page.getByRole('link', { name: 'German eID' }).click();
    await upstreamSignIn(page, ANNA);
    await page.waitForURL(`${f.eu.url}/console/federations`);
    expect(await h1()).toBe('Federations');
    annaSub = (await page.locator('.who code').textContent())!;
    expect(annaSub).toMatch(/\S{8,}/);
    expect(await page.locator('.who').textContent()).toContain('meridian:admin, meridian:compliance');
    // The first Tab reaches the skip link; it moves focus to the main content.
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => (globalThis as any).document.activeElement.textContent)).toBe(
      'Skip to content',
    );
    await page.keyboard.press('Enter');
    expect(await page.evaluate(() => (globalThis as any).document.activeElement.id)).toBe('main');
    await expectAccessible();
  });

  it('shows every region and its health (peer brokers’ /readyz)', async () => {
    await nav('Regions');
    const rows = page.locator('tbody tr');
    expect(await rows.count()).toBe(2);
    for (const region of ['eu', 'us']) {
      const row = page.locator('tbody tr', {
        has: page.getByRole('rowheader', { name: new RegExp(`^${region}`) }),
      });
      expect(await row.textContent()).toContain('Ready');
    }
    await expectAccessible();
  });

  it('onboards a federation with a live discovery check (422 in place), then people sign in through it', async () => {
    await nav('Federations');
    await page.getByRole('link', { name: 'Onboard a federation' }).click();
    expect(await h1()).toBe('Onboard a federation');
    const redirectUri = await page.locator('#redirect-uri').textContent();
    expect(redirectUri).toBe(`${f.eu.issuer}/federation/callback`);
    // The administrator registers the broker at the new identity provider with that redirect URI.
    await nordic.addClient({
      client_id: 'meridian-eu',
      client_secret: NORDIC_SECRET,
      redirect_uris: [redirectUri!],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid email profile',
    });

    const nobody = `http://127.0.0.1:${await freePort()}`;
    await page.getByLabel('Federation id').fill('nordic-id');
    await page.getByLabel('Display name').fill('Nordic ID');
    await page.getByLabel('Issuer URL').fill(nobody);
    await page.getByLabel('Kind').selectOption('national');
    await page.getByLabel('Jurisdiction').fill('FR');
    await page.getByLabel('Client id at the identity provider').fill('meridian-eu');
    await page.getByLabel('Client secret').fill(NORDIC_SECRET);
    const refused = page.waitForResponse((r) => r.request().method() === 'POST');
    await page.getByRole('button', { name: 'Check discovery and save' }).click();
    expect((await refused).status()).toBe(422);
    // In place: next to the issuer field, and in the summary at the top.
    const issuer = page.getByLabel('Issuer URL');
    expect(await issuer.getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#f-issuer-error').textContent()).toMatch(
      /discovery document of .* could not be used/,
    );
    expect(await page.getByRole('alert').textContent()).toContain('There is a problem');
    expect(await page.getByLabel('Federation id').inputValue()).toBe('nordic-id');
    await expectAccessible();

    await issuer.fill(nordic.issuer);
    await page.getByLabel('Client secret').fill(NORDIC_SECRET);
    await page.getByRole('button', { name: 'Check discovery and save' }).click();
    await page.waitForURL(/\/console\/federations\/nordic-id\?done=created/);
    expect(await h1()).toBe('Federation Nordic ID');
    expect(await page.locator('#redirect-uri').textContent()).toBe(redirectUri);
    await expectAccessible();

    await nav('Federations');
    const row = page.locator('tbody tr', { has: page.getByRole('rowheader', { name: 'Nordic ID' }) });
    expect(await row.textContent()).toContain('Enabled');
    await screenshot(page, 'console-federations');

    // A person signs in through it to an app…
    const login = await f.login('eu', 'nordic-id', NORA);
    if ('error' in login) throw new Error(`${login.error}: ${login.description}`);
    expect(login.accessToken.residency).toMatchObject({ region: 'eu', jurisdiction: 'FR' });
    // …and, picking it on the broker's chooser, to the console (where she holds no role).
    const other = await newContext(chromium);
    const nora = await other.newPage();
    const noraSeen = watchPage(nora);
    await nora.goto(`${f.eu.url}/console`);
    await nora.getByRole('link', { name: 'Nordic ID' }).click();
    await upstreamSignIn(nora, NORA);
    await nora.waitForURL(`${f.eu.url}/console`, { timeout: 10_000 }).catch(async (err) => {
      throw new Error(`${nora.url()}\n${(await nora.content()).slice(0, 3000)}`, { cause: err });
    });
    expect(await h1(nora)).toBe('No console role');
    const refusedFeds = await nora.goto(`${f.eu.url}/console/federations`);
    expect(refusedFeds?.status()).toBe(403);
    expect(await h1(nora)).toBe('Not allowed');
    await expectAccessible(nora, noraSeen);
    await other.close();

    // Disabled in the console: nobody signs in through it any more.
    await row.getByRole('button', { name: 'Disable Nordic ID' }).click();
    await page.waitForURL(/done=disabled/);
    expect(await page.getByRole('status').textContent()).toContain('nordic-id disabled');
    const after = await f.login('eu', 'nordic-id', NORA);
    expect('error' in after && after.error).toBe('access_denied');
  });

  it('edits a residency policy: errors next to the field, a dry run before saving, versions with their differences', async () => {
    await nav('Residency policies');
    await page.getByRole('link', { name: 'eu-gdpr' }).click();
    expect(await h1()).toBe('Policy eu-gdpr');
    const documentField = page.getByLabel('Policy document (JSON)');

    await documentField.fill('{ "appliesTo": ');
    await page.getByRole('button', { name: 'Dry run' }).click();
    expect(await page.getByLabel('Policy document (JSON)').getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#f-document-error').textContent()).toContain('is not valid JSON');
    expect(await page.getByRole('button', { name: /^Save/ }).count()).toBe(0);

    await page
      .getByLabel('Policy document (JSON)')
      .fill(JSON.stringify({ ...EU_POLICY, storageRegions: ['mars'] }, null, 2));
    await page.getByRole('button', { name: 'Dry run' }).click();
    expect(await page.locator('#f-document-error').textContent()).toContain('storageRegions');
    expect(await page.getByRole('button', { name: /^Save/ }).count()).toBe(0);
    await expectAccessible();

    const candidate = {
      ...EU_POLICY,
      appliesTo: { jurisdictions: ['DE', 'FR', 'EU', 'CH'] },
      release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name', 'given_name'] } },
    };
    await page.getByLabel('Policy document (JSON)').fill(JSON.stringify(candidate, null, 2));
    await page.getByRole('button', { name: 'Dry run' }).click();
    expect(await page.locator('#dry-run-title').textContent()).toBe('Dry run of eu-gdpr version 2');
    const decisions = page.locator('#jurisdiction-changes');
    expect(await decisions.getByRole('rowheader', { name: 'CH' }).count()).toBe(1);
    expect(await decisions.getByRole('rowheader', { name: 'DE' }).count()).toBe(1);
    expect(await page.locator('#dry-run').textContent()).toContain('release.byRegion.eu');
    // Nothing is saved by a dry run.
    expect((await adminCall(f.eu, 'GET', '/compliance/policies/eu-gdpr')).body.current.version).toBe(1);
    await expectAccessible();
    await screenshot(page, 'console-policy-dry-run');

    await page.getByRole('button', { name: 'Save as version 2' }).click();
    await page.waitForURL(/\/console\/policies\/eu-gdpr\?done=saved/);
    expect(await page.getByRole('status').textContent()).toContain('eu-gdpr@2');
    const v2 = page.getByRole('region', { name: 'eu-gdpr@2' });
    expect(await v2.getByRole('table', { name: 'Changes from version 1 to 2' }).textContent()).toContain(
      'release.byRegion.eu',
    );
    const stored = (await adminCall(f.eu, 'GET', '/compliance/policies/eu-gdpr')).body;
    expect(stored.current.version).toBe(2);
    expect(stored.history[0].createdBy).toBe(annaSub);
    await expectAccessible();
  });

  it('registers a resource and a client; the generated secret is shown once and works', async () => {
    await nav('Resources');
    await page.getByRole('link', { name: 'Register a resource' }).click();
    await page.getByLabel('Resource id').fill('orders');
    await page.getByLabel('Audience').fill('https://orders.example.com');
    await page.getByLabel('Scopes').fill('orders:read orders:write');
    await page.getByRole('button', { name: 'Register' }).click();
    await page.waitForURL(/\/console\/resources\?done=created/);
    expect(await page.getByRole('rowheader', { name: 'orders' }).count()).toBe(1);
    await expectAccessible();

    await nav('Clients');
    await page.getByRole('link', { name: 'Register a client' }).click();
    await page.getByLabel('Client id').fill('orders-worker');
    await page.getByLabel('Authorization code (people, with PKCE)').uncheck();
    await page.getByLabel('Refresh token').uncheck();
    await page.getByLabel('Client credentials (a service acting for itself)').check();
    await page.getByLabel('Scopes').fill('orders:read');
    await page.getByLabel('Resources (audiences)').fill('https://orders.example.com');
    await page.getByRole('button', { name: 'Register' }).click();
    expect(await h1()).toBe('Client orders-worker registered');
    const secret = (await page.locator('#client-secret').textContent())!;
    await expectAccessible();
    const t = await tokenRequest(
      f.eu.url,
      { grant_type: 'client_credentials', resource: 'https://orders.example.com', scope: 'orders:read' },
      { clientId: 'orders-worker', clientSecret: secret },
    );
    expect(t.status).toBe(200);

    await page.getByRole('link', { name: 'Open client orders-worker' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Orders worker');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(/\/console\/clients\?done=updated/);
    expect(await page.locator('tbody tr', { hasText: 'orders-worker' }).textContent()).toContain(
      'Orders worker',
    );
    // The secret was kept.
    expect(
      (
        await tokenRequest(
          f.eu.url,
          { grant_type: 'client_credentials', resource: 'https://orders.example.com' },
          { clientId: 'orders-worker', clientSecret: secret },
        )
      ).status,
    ).toBe(200);
  });

  it('shows the keys and rotates them', async () => {
    await nav('Keys');
    const current = async () =>
      (await page
        .locator('tbody tr', { has: page.getByRole('rowheader', { name: /^current/ }) })
        .locator('code')
        .textContent())!;
    const before = await current();
    expect(await page.getByRole('rowheader', { name: /^next/ }).count()).toBe(1);
    await page.getByRole('button', { name: 'Rotate the signing key now' }).click();
    await page.waitForURL(/done=rotated/);
    expect(await current()).not.toBe(before);
    expect(await page.getByRole('rowheader', { name: /^retiring/ }).count()).toBeGreaterThanOrEqual(1);
    await expectAccessible();
  });

  it('exports a data subject as a file, reads the audit trail, then erases the subject after confirmation', async () => {
    const login = await f.login('eu', 'global-id', CARLA);
    if ('error' in login) throw new Error(`${login.error}: ${login.description}`);
    const carla = String(login.idToken.sub);
    const started = new Date(Date.now() - 60_000);

    await nav('Data subjects');
    await page.getByLabel('Subject identifier (sub)').fill(carla);
    await page.getByRole('button', { name: 'Look up' }).click();
    expect(await h1()).toBe('Data subject');
    expect(await page.locator('#subject-sub').textContent()).toBe(carla);
    expect(await page.getByRole('main').textContent()).toContain((CARLA.claims as { email: string }).email);
    await expectAccessible();
    await screenshot(page, 'console-subject');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download the export (JSON)' }).click(),
    ]);
    expect(download.suggestedFilename()).toMatch(/^meridian-subject-eu-[\w.-]+\.json$/);
    const exported = JSON.parse(await readFile((await download.path())!, 'utf8'));
    expect(exported.subject.sub).toBe(carla);
    expect(exported.subject.profile.email).toBe((CARLA.claims as { email: string }).email);

    // The audit trail: both exports, by Anna, filtered by subject, type and time.
    await nav('Audit trail');
    await page.getByLabel('Subject (target)').fill(carla);
    await page.getByLabel('Type').fill('subject.export');
    await page.getByLabel('From (UTC)').fill(started.toISOString().slice(0, 16));
    await page.getByRole('button', { name: 'Filter' }).click();
    const events = page.locator('#audit-events tbody tr');
    expect(await events.count()).toBe(2);
    for (const row of await events.all()) {
      expect(await row.getByRole('rowheader').textContent()).toBe('subject.export');
      expect(await row.textContent()).toContain(annaSub);
    }
    await page
      .getByLabel('Until (UTC)')
      .fill(new Date(started.getTime() - 60_000).toISOString().slice(0, 16));
    await page.getByRole('button', { name: 'Filter' }).click();
    expect(await events.count()).toBe(0);
    await page.getByLabel('Until (UTC)').fill('');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expectAccessible();
    await screenshot(page, 'console-audit');

    // Erasure: a confirmation step that must name the subject.
    await page.goto(`${f.eu.url}/console/subjects?sub=${encodeURIComponent(carla)}`);
    await page.getByRole('link', { name: 'Erase this subject…' }).click();
    expect(await h1()).toBe('Erase a data subject');
    await page.getByLabel('Type the subject identifier to confirm').fill('not-the-sub');
    await page.getByRole('button', { name: 'Erase permanently' }).click();
    expect(await page.locator('#f-confirm-error').textContent()).toContain('nothing was erased');
    expect((await adminCall(f.eu, 'GET', `/privacy/subjects/${encodeURIComponent(carla)}`)).status).toBe(200);
    await expectAccessible();
    await page.getByLabel('Type the subject identifier to confirm').fill(carla);
    await page.getByRole('button', { name: 'Erase permanently' }).click();
    expect(await h1()).toBe('Subject erased');
    expect((await adminCall(f.eu, 'GET', `/privacy/subjects/${encodeURIComponent(carla)}`)).status).toBe(404);

    await nav('Data subjects');
    await page.getByLabel('Subject identifier (sub)').fill(carla);
    await page.getByRole('button', { name: 'Look up' }).click();
    expect(await page.getByRole('status').textContent()).toContain('No subject');
    // The audit trail no longer names her: the filter by her sub finds nothing.
    await page.goto(`${f.eu.url}/console/audit?subject=${encodeURIComponent(carla)}`);
    expect(await events.count()).toBe(0);
  });

  it('signs out: the session ends at the console and at the broker', async () => {
    await page.goto(`${f.eu.url}/console`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    // The broker asks to confirm ending its own session.
    await page.getByRole('button', { name: /sign me out|abmelden/i }).click();
    await page.waitForURL(`${f.eu.url}/console/signed-out`);
    expect(await h1()).toBe('Signed out');
    const again = await page.goto(`${f.eu.url}/console/keys`);
    expect(new URL(again!.url()).pathname).not.toBe('/console/keys');
  });
});
