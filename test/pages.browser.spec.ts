/**
 * The login pages in real Chromium (Debian package, playwright-core): axe-core finds no WCAG 2.1
 * A/AA violation, the strict CSP blocks nothing (the pages need nothing it forbids), the chooser
 * works from the keyboard and without JavaScript, and German is served to a German browser.
 * Screenshots go to docs/screenshots (test/support/chromium.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessibilityViolations,
  launchChromium,
  newContext,
  screenshot,
  watchPage,
} from './support/chromium';
import { ANNA, API, FederationFixture, type App } from './support/federation-fixture';

const f = new FederationFixture();
let chromium: Browser;
const apps: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  await f.start('pagesbrowser');
  for (const app of Object.values(f.apps)) apps.push(await stubApp(app));
  chromium = await launchChromium();
});

afterAll(async () => {
  await chromium?.close();
  await Promise.all(apps.map((a) => a.close()));
  await f.stop();
});

/** An authorization request of `region`'s app, as the app would send the browser to it. */
function authorizationRequest(region: 'eu' | 'us', extra: Record<string, string> = {}) {
  const app = f.apps[region]!;
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL(`${f.broker(region).url}/auth`);
  const params = {
    client_id: app.clientId,
    redirect_uri: app.redirectUri,
    response_type: 'code',
    scope: 'openid email profile api:read',
    resource: API,
    prompt: 'consent',
    state: randomBytes(8).toString('hex'),
    nonce: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    ...extra,
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return { url: url.href, verifier, app };
}

/** The app itself: a loopback server at its redirect URI answering with a blank page. */
async function stubApp(app: App): Promise<{ close(): Promise<void> }> {
  const at = new URL(app.redirectUri);
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><html lang="en"><title>app</title><main><h1>app</h1></main></html>');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(at.port), at.hostname, resolve);
  });
  return { close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

async function open(locale: string, url: string, opts: { javaScriptEnabled?: boolean } = {}) {
  const context =
    opts.javaScriptEnabled === false
      ? await chromium.newContext({
          locale,
          javaScriptEnabled: false,
          viewport: { width: 1100, height: 800 },
        })
      : await newContext(chromium, locale);
  const page = await context.newPage();
  const seen = watchPage(page);
  const response = await page.goto(url);
  return { context, page, seen, status: response?.status() };
}

async function expectAccessible(page: Page, seen: ReturnType<typeof watchPage>): Promise<void> {
  expect(await accessibilityViolations(page)).toEqual([]);
  expect(seen.cspViolations).toEqual([]);
  expect(seen.errors).toEqual([]);
}

/** The page's globals, as page functions use them (the project compiles without the DOM lib). */
interface BrowserGlobals {
  document: { activeElement: { tagName: string; id: string; textContent: string | null } };
  getComputedStyle(el: unknown): {
    outlineStyle: string;
    outlineWidth: string;
    borderTopLeftRadius: string;
  };
}

/** The stylesheet was loaded under the CSP and applies (only it rounds the main box's corners). */
async function expectStyled(page: Page): Promise<void> {
  const radius = await page
    .getByRole('main')
    .evaluate((el) => (globalThis as unknown as BrowserGlobals).getComputedStyle(el).borderTopLeftRadius);
  expect(radius).toBe('8px');
}

describe('the chooser in Chromium', () => {
  it('English: no axe (WCAG 2.1 AA) or CSP violations, landmarks, the hand-off note read as the link’s description', async () => {
    const { context, page, seen, status } = await open('en-US', authorizationRequest('us').url);
    try {
      expect(status).toBe(200);
      expect(await page.locator('html').getAttribute('lang')).toBe('en');
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Sign in');
      expect(await page.getByRole('main').count()).toBe(1);
      expect(await page.getByRole('banner').count()).toBe(1);
      expect(await page.getByRole('contentinfo').textContent()).toContain('region us');
      const german = page.getByRole('link', { name: 'German eID' });
      expect(await german.evaluate((el) => el.getAttribute('aria-describedby'))).toMatch(/^fed-\d+-note$/);
      const describedBy = await german.getAttribute('aria-describedby');
      expect(await page.locator(`#${describedBy}`).textContent()).toBe(
        'Continues at region eu, where your data is kept.',
      );
      expect(await page.getByRole('textbox', { name: 'Email address' }).getAttribute('type')).toBe('email');
      await expectStyled(page);
      await expectAccessible(page, seen);
      await screenshot(page, 'login-chooser-en');
    } finally {
      await context.close();
    }
  });

  it('German for a de-DE browser: every label German, no axe or CSP violations', async () => {
    const { context, page, seen, status } = await open('de-DE', authorizationRequest('us').url);
    try {
      expect(status).toBe(200);
      expect(await page.locator('html').getAttribute('lang')).toBe('de');
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Anmelden');
      expect(await page.getByRole('textbox', { name: 'E-Mail-Adresse' }).getAttribute('type')).toBe('email');
      expect(await page.getByRole('button', { name: 'Weiter' }).count()).toBe(1);
      expect(await page.getByRole('button', { name: 'Abbrechen' }).count()).toBe(1);
      expect(await page.locator('body').innerText()).not.toMatch(/Sign in|Email address|Continue|Cancel/);
      await expectStyled(page);
      await expectAccessible(page, seen);
      await screenshot(page, 'login-chooser-de');
    } finally {
      await context.close();
    }
  });

  it('keyboard: Tab reaches each provider and the email field with a visible focus ring; Enter submits', async () => {
    const { context, page, seen } = await open('en-US', authorizationRequest('us').url);
    try {
      const focused = () =>
        page.evaluate(() => {
          const w = globalThis as unknown as BrowserGlobals;
          const el = w.document.activeElement;
          const style = w.getComputedStyle(el);
          return {
            tag: el.tagName.toLowerCase(),
            id: el.id,
            text: el.textContent?.trim(),
            outline: `${style.outlineStyle} ${style.outlineWidth}`,
          };
        });
      await page.keyboard.press('Tab');
      expect(await focused()).toMatchObject({ tag: 'a', text: 'German eID', outline: 'solid 3px' });
      await page.keyboard.press('Tab');
      expect(await focused()).toMatchObject({ tag: 'a', text: 'Global ID', outline: 'solid 3px' });
      await page.keyboard.press('Tab');
      expect(await focused()).toMatchObject({ tag: 'input', id: 'email', outline: 'solid 3px' });
      await page.keyboard.press('Tab');
      expect(await focused()).toMatchObject({ tag: 'button', text: 'Continue', outline: 'solid 3px' });
      await page.keyboard.press('Tab');
      expect(await focused()).toMatchObject({ tag: 'button', text: 'Cancel', outline: 'solid 3px' });

      // Back to the email field; Enter submits: home-realm discovery picks German eID by domain,
      // and the login is handed to eu, which sends the browser to the IdP's form.
      await page.keyboard.press('Shift+Tab');
      await page.keyboard.press('Shift+Tab');
      expect(await focused()).toMatchObject({ id: 'email' });
      await page.keyboard.type('anna@example.de');
      await Promise.all([page.waitForURL((u) => u.origin === f.de.url), page.keyboard.press('Enter')]);
      expect(await page.getByLabel('Username').count()).toBe(1);
      expect(seen.cspViolations).toEqual([]);

      // Enter on a provider link follows it.
      await page.goto(authorizationRequest('us').url);
      await page.keyboard.press('Tab');
      expect(await focused()).toMatchObject({ text: 'German eID' });
      await Promise.all([page.waitForURL((u) => u.origin === f.de.url), page.keyboard.press('Enter')]);
      expect(seen.cspViolations).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('with JavaScript disabled, a person still logs in (chooser → hand-off to eu → IdP form → back at the us app)', async () => {
    const { url, verifier, app } = authorizationRequest('us');
    const { context, page, seen } = await open('en-US', url, { javaScriptEnabled: false });
    try {
      expect(await page.locator('html').getAttribute('lang')).toBe('en');
      await Promise.all([
        page.waitForURL((u) => u.origin === f.de.url),
        page.getByRole('link', { name: 'German eID' }).click(),
      ]);
      await page.getByLabel('Username').fill(ANNA.username);
      await page.getByLabel('Password').fill(ANNA.password);
      await Promise.all([
        page.waitForURL((u) => u.href.startsWith(app.redirectUri)),
        page.getByRole('button', { name: 'Sign in' }).click(),
      ]);
      const back = new URL(page.url());
      expect(back.searchParams.get('error')).toBeNull();
      const code = back.searchParams.get('code');
      expect(code).toBeTruthy();
      const tokens = await f.redeem('us', code!, verifier, app);
      expect(tokens.status).toBe(200);
      expect(typeof tokens.body.access_token).toBe('string');
      expect(seen.cspViolations).toEqual([]);
    } finally {
      await context.close();
    }
  });
});

describe('error pages in Chromium', () => {
  it('the expired sign-in page in German: role="alert", no axe or CSP violations', async () => {
    const { context, page, seen, status } = await open(
      'de-DE',
      `${f.eu.url}/interaction/${randomBytes(16).toString('base64url')}`,
    );
    try {
      expect(status).toBe(400);
      expect(await page.locator('html').getAttribute('lang')).toBe('de');
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe(
        'Anmeldung abgelaufen',
      );
      expect(await page.getByRole('alert').textContent()).toBe(
        'Diese Anmeldung ist abgelaufen oder wurde bereits abgeschlossen.',
      );
      await expectStyled(page);
      await expectAccessible(page, seen);
      await screenshot(page, 'login-error-de');
    } finally {
      await context.close();
    }
  });

  it('oidc-provider’s error page in German: no axe or CSP violations, the English details marked as English', async () => {
    const { context, page, seen, status } = await open(
      'de-DE',
      `${f.eu.url}/auth?client_id=no-such-app&response_type=code&scope=openid&redirect_uri=${encodeURIComponent('https://app.example/cb')}`,
    );
    try {
      expect(status).toBe(400);
      expect(await page.locator('html').getAttribute('lang')).toBe('de');
      expect(await page.getByRole('alert').textContent()).toBe(
        'Die Anwendung ist diesem Dienst nicht bekannt.',
      );
      expect(await page.locator('dd[lang="en"]').count()).toBe(1);
      await expectAccessible(page, seen);
    } finally {
      await context.close();
    }
  });

  it('the home broker’s page for a hand-off it cannot complete says where the person came from and why', async () => {
    const url = new URL(`${f.eu.url}/auth`);
    url.search = new URLSearchParams({
      client_id: 'meridian-region-us',
      redirect_uri: 'http://127.0.0.1:9/federation/callback',
      response_type: 'code',
      scope: 'openid',
      idp_hint: 'de-eid',
      code_challenge: randomBytes(32).toString('base64url'),
      code_challenge_method: 'S256',
    }).toString();
    const { context, page, seen, status } = await open('en-US', url.href);
    try {
      expect(status).toBe(400);
      expect(await page.locator('#handoff').textContent()).toBe(
        'You were sent here from region us because your data is kept in region eu.',
      );
      expect(await page.getByRole('contentinfo').textContent()).toContain('region eu');
      await expectStyled(page);
      await expectAccessible(page, seen);
      await screenshot(page, 'login-handoff');
    } finally {
      await context.close();
    }
  });
});

describe('logout pages in Chromium', () => {
  it('a handed-off person signs out: us’s and eu’s confirmations (eu names the hand-off) and “Abgemeldet”, all accessible', async () => {
    const { url, app } = authorizationRequest('us', { idp_hint: 'de-eid' });
    const { context, page, seen } = await open('de-DE', url);
    try {
      await page.getByLabel('Username').fill(ANNA.username);
      await page.getByLabel('Password').fill(ANNA.password);
      await Promise.all([
        page.waitForURL((u) => u.href.startsWith(app.redirectUri)),
        page.getByRole('button', { name: 'Sign in' }).click(),
      ]);

      await page.goto(`${f.us.url}/session/end?client_id=${app.clientId}`);
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Abmelden');
      expect(await page.locator('#handoff').count()).toBe(0);
      await expectAccessible(page, seen);

      await Promise.all([
        page.waitForURL((u) => u.origin === f.eu.url && u.pathname === '/session/end'),
        page.getByRole('button', { name: 'Ja, abmelden' }).click(),
      ]);
      expect(await page.locator('#handoff').textContent()).toBe(
        'Sie wurden von Region us hierher weitergeleitet, weil Ihre Daten in Region eu gespeichert sind.',
      );
      await expectAccessible(page, seen);

      await Promise.all([
        page.waitForURL((u) => u.origin === f.us.url && u.pathname === '/session/end/success'),
        page.getByRole('button', { name: 'Ja, abmelden' }).click(),
      ]);
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Abgemeldet');
      await expectAccessible(page, seen);
    } finally {
      await context.close();
    }
  });
});
