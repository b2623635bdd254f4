/**
 * The pages people see, over real HTTP from two real brokers (eu, us) with real upstream IdPs:
 * the login chooser with email home-realm discovery, Meridian's error pages and the pages
 * oidc-provider renders (error, logout, signed out). Each is served in English or German by
 * Accept-Language (RFC 9110 §12.5.4) with Content-Language and Vary, under a strict CSP, without
 * any script, and says which region serves the person — and, at the home broker, that the
 * person was handed off to it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { negotiateLanguage } from '../libs/federation/src/i18n';
import { LOGIN_CSP, handOffFrom } from '../libs/federation/src/pages';
import { TestBrowser, type Page } from './support/browser';
import { ANNA, FederationFixture } from './support/federation-fixture';

const f = new FederationFixture();

beforeAll(async () => {
  await f.start('pages');
});

afterAll(async () => {
  await f.stop();
});

interface Fetched extends Page {
  lang?: string;
}

/** One request as a browser with `browser`'s cookies and the given Accept-Language would send it. */
async function fetchAs(
  browser: TestBrowser,
  url: string | URL,
  acceptLanguage?: string,
  init: { method?: 'GET' | 'POST'; body?: URLSearchParams } = {},
): Promise<Fetched> {
  const target = new URL(url);
  const headers: Record<string, string> = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
  const cookie = browser.cookies.header(target);
  if (cookie) headers.cookie = cookie;
  if (acceptLanguage !== undefined) headers['accept-language'] = acceptLanguage;
  if (init.body) headers['content-type'] = 'application/x-www-form-urlencoded';
  const res = await fetch(target, {
    method: init.method ?? 'GET',
    headers,
    body: init.body?.toString(),
    redirect: 'manual',
  });
  for (const c of res.headers.getSetCookie()) browser.cookies.store(target, c);
  const html = await res.text();
  return {
    url: target,
    status: res.status,
    headers: res.headers,
    html,
    history: [target],
    lang: /<html lang="([^"]+)"/.exec(html)?.[1],
  };
}

/** A fresh browser at `region`'s chooser (no idp_hint); returns the chooser's URL. */
async function chooser(region: 'eu' | 'us', browser = new TestBrowser()) {
  const { page } = await f.authorize(browser, region);
  expect(page.status).toBe(200);
  expect(page.url.pathname).toMatch(/^\/interaction\/[^/]+$/);
  return { browser, url: page.url };
}

const text = (html: string) =>
  html
    .replace(/<[^>]*>/g, ' ')
    .replace(/&#39;/g, "'")
    .replace(/\s+/g, ' ');

/**
 * What every page must be: the strict CSP, its language in `<html lang>` and Content-Language,
 * `Vary: Accept-Language`, no script or inline style or event handler, nothing from another
 * origin, landmarks, one h1, a label for every visible input, and the serving region.
 */
function expectPage(p: Fetched, lang: 'en' | 'de', region: 'eu' | 'us'): void {
  expect(p.headers.get('content-security-policy'), p.url.pathname).toBe(LOGIN_CSP);
  expect(p.headers.get('content-type')).toMatch(/^text\/html/);
  expect(p.headers.get('content-language')).toBe(lang);
  expect(p.lang).toBe(lang);
  expect(
    (p.headers.get('vary') ?? '')
      .toLowerCase()
      .split(',')
      .map((s) => s.trim()),
  ).toContain('accept-language');
  expect(p.headers.get('x-content-type-options')).toBe('nosniff');
  expect(p.html).not.toMatch(/<script/i);
  expect(p.html).not.toMatch(/<style|\sstyle=/i);
  expect(p.html).not.toMatch(/\son[a-z]+=/i);
  expect(p.html).not.toMatch(/<(?:img|iframe|object|embed)\b/i);
  for (const m of p.html.matchAll(/\s(?:href|src)="([^"]*)"/g)) expect(m[1]).toMatch(/^\/(?!\/)/);
  expect(p.html).toMatch(/<header class="site">/);
  expect(p.html).toMatch(/<main>/);
  expect(p.html).toMatch(/<footer class="site">/);
  expect(p.html.match(/<h1>/g)).toHaveLength(1);
  for (const input of p.html.matchAll(/<input\b([^>]*)>/g)) {
    if (/type="hidden"/.test(input[1])) continue;
    const id = /\sid="([^"]+)"/.exec(input[1])?.[1];
    expect(id, input[0]).toBeTruthy();
    expect(p.html).toContain(`<label for="${id}">`);
  }
  const served = {
    en: `You are being served by the Meridian broker of region ${region}.`,
    de: `Sie werden vom Meridian-Broker der Region ${region} bedient.`,
  }[lang];
  expect(text(p.html)).toContain(served);
}

describe('RFC 9110 §12.5.4 — Accept-Language chooses English or German', () => {
  it.each([
    [undefined, 'en'],
    ['', 'en'],
    ['de', 'de'],
    ['DE', 'de'],
    ['de-DE', 'de'],
    ['de-AT,de;q=0.9,en;q=0.8', 'de'],
    ['en-US,en;q=0.9,de;q=0.8', 'en'],
    ['en;q=0.4, de;q=0.6', 'de'],
    ['fr-FR, fr;q=0.9, de;q=0.5, en;q=0.1', 'de'],
    ['fr', 'en'],
    ['de;q=0', 'en'],
    ['de;q=0, *', 'en'],
    ['en;q=0, *;q=0.5', 'de'],
    ['*', 'en'],
    ['de;q=0.5, en;q=0.5', 'de'],
    ['en;q=0.5, de;q=0.5', 'en'],
    // A range naming the language exactly decides its weight over a more specific one.
    ['de-CH;q=0.9, de;q=0.1, en;q=0.5', 'en'],
    // Malformed weights drop the entry (qvalue has at most three decimals and is at most 1).
    ['de;q=1.5, en;q=0.5', 'en'],
    ['en;q=0.1, de;q=0.8000', 'en'],
    ['en;q=0.1, de;q=abc', 'en'],
    ['de-, en;q=0.2', 'en'],
    [['fr', 'de;q=0.5'], 'de'],
  ] as const)('%j → %s', (header, lang) => {
    expect(negotiateLanguage(header)).toBe(lang);
  });
});

describe('the chooser', () => {
  it('is English without Accept-Language, German for de-DE,de;q=0.9 — every string translated', async () => {
    const { browser, url } = await chooser('us');
    const en = await fetchAs(browser, url);
    expect(en.status).toBe(200);
    expectPage(en, 'en', 'us');
    const enText = text(en.html);
    for (const s of ['Sign in', 'Choose how to sign in', 'Or use your email address', 'Email address'])
      expect(enText).toContain(s);
    expect(en.html).toMatch(/<button type="submit">Continue<\/button>/);
    expect(en.html).toMatch(/<button type="submit" class="secondary">Cancel<\/button>/);

    const de = await fetchAs(browser, url, 'de-DE,de;q=0.9');
    expect(de.status).toBe(200);
    expectPage(de, 'de', 'us');
    const deText = text(de.html);
    for (const s of [
      'Anmelden',
      'Wählen Sie, wie Sie sich anmelden möchten',
      'Oder mit Ihrer E-Mail-Adresse',
      'E-Mail-Adresse',
      'Wir wählen Ihren Identitätsanbieter anhand der Domain',
    ])
      expect(deText).toContain(s);
    expect(de.html).toMatch(/<button type="submit">Weiter<\/button>/);
    expect(de.html).toMatch(/<button type="submit" class="secondary">Abbrechen<\/button>/);
    expect(de.html).toMatch(/<title>Anmelden · Meridian<\/title>/);
    // No English left on the German page but the providers' own names.
    for (const s of ['Sign in', 'Choose', 'Email', 'Continue', 'Cancel', 'region us.', 'served'])
      expect(deText).not.toContain(s);
  });

  it('follows q-values, not the order of the header, and falls back to English', async () => {
    const { browser, url } = await chooser('eu');
    const cases: [string, 'en' | 'de'][] = [
      ['en;q=0.5, de;q=0.9', 'de'],
      ['de;q=0.3, en', 'en'],
      ['fr-CA, fr;q=0.9, de;q=0.2, en;q=0.1', 'de'],
      ['fr, it', 'en'],
      ['de;q=0, *', 'en'],
      ['en;q=0, *;q=0.1', 'de'],
      ['en;q=0.1, de;q=0.8000', 'en'],
    ];
    for (const [header, lang] of cases) {
      const p = await fetchAs(browser, url, header);
      expect(p.status, header).toBe(200);
      expect(p.headers.get('content-language'), header).toBe(lang);
      expect(p.lang, header).toBe(lang);
    }
  });

  it('labels the email field, which is required and typed for email', async () => {
    const { browser, url } = await chooser('eu');
    const p = await fetchAs(browser, url, 'de');
    expect(p.html).toMatch(/<label for="email">E-Mail-Adresse<\/label>/);
    expect(p.html).toMatch(
      /<input id="email" name="email" type="email" autocomplete="email"[^>]* required aria-describedby="email-hint"/,
    );
    expect(p.html).toMatch(/<section aria-labelledby="choose"><h2 id="choose">/);
  });

  it('an email domain no provider serves shows the chooser again with an alert in the person’s language, the address kept', async () => {
    const { browser, url } = await chooser('eu');
    const post = (lang: string) =>
      fetchAs(browser, `${url.href}/home-realm`, lang, {
        method: 'POST',
        body: new URLSearchParams({ email: 'someone@nowhere.example' }),
      });
    const de = await post('de');
    expect(de.status).toBe(200);
    expectPage(de, 'de', 'eu');
    expect(de.html).toMatch(
      /<div class="message" role="alert" id="notice"><p>Für diese E-Mail-Domain ist kein Identitätsanbieter eingerichtet\. Wählen Sie einen aus der Liste\.<\/p><\/div>/,
    );
    expect(de.html).toMatch(/aria-invalid="true" aria-describedby="notice email-hint"/);
    expect(de.html).toContain('value="someone@nowhere.example"');

    const en = await post('en-GB');
    expectPage(en, 'en', 'eu');
    expect(en.html).toMatch(
      /role="alert" id="notice"><p>No identity provider is configured for that email domain\. Choose one from the list\.<\/p>/,
    );
  });
});

describe('error pages in the person’s language', () => {
  it('an interaction that is gone: 400 “Sign-in expired” / “Anmeldung abgelaufen” with role="alert"', async () => {
    const browser = new TestBrowser();
    const url = `${f.eu.url}/interaction/${randomBytes(16).toString('base64url')}`;
    const en = await fetchAs(browser, url, 'en');
    expect(en.status).toBe(400);
    expectPage(en, 'en', 'eu');
    expect(en.html).toContain('<h1>Sign-in expired</h1>');
    expect(en.html).toContain(
      '<div class="message" role="alert"><p>This sign-in has expired or was already completed.</p></div>',
    );
    const de = await fetchAs(browser, url, 'de-DE,de;q=0.9,en;q=0.8');
    expect(de.status).toBe(400);
    expectPage(de, 'de', 'eu');
    expect(de.html).toContain('<h1>Anmeldung abgelaufen</h1>');
    expect(de.html).toContain(
      'role="alert"><p>Diese Anmeldung ist abgelaufen oder wurde bereits abgeschlossen.</p>',
    );
    expect(text(de.html)).toContain('Kehren Sie zur Anwendung zurück und beginnen Sie erneut.');
  });

  it('an upstream callback with an unknown state and a stale logout link, in German', async () => {
    const browser = new TestBrowser();
    const callback = await fetchAs(browser, `${f.us.url}/federation/callback?state=nope&code=x`, 'de');
    expect(callback.status).toBe(400);
    expectPage(callback, 'de', 'us');
    expect(callback.html).toContain('<h1>Anmeldung abgelaufen</h1>');

    const loggedOut = await fetchAs(browser, `${f.us.url}/federation/logged-out?state=stale.link`, 'de');
    expect(loggedOut.status).toBe(400);
    expectPage(loggedOut, 'de', 'us');
    expect(loggedOut.html).toContain('<h1>Abgemeldet</h1>');
    expect(loggedOut.html).toContain(
      'role="alert"><p>Sie sind abgemeldet. Dieser Link ist abgelaufen oder ungültig.</p>',
    );
    const en = await fetchAs(browser, `${f.us.url}/federation/logged-out?state=stale.link`);
    expectPage(en, 'en', 'us');
    expect(en.html).toContain('You are signed out. This link has expired or is not valid.');
  });

  it('oidc-provider’s error page (unknown client, unregistered redirect_uri) is translated, with the OAuth details for support', async () => {
    const browser = new TestBrowser();
    const unknown = new URL(`${f.eu.url}/auth`);
    unknown.search = new URLSearchParams({
      client_id: 'no-such-app',
      redirect_uri: 'https://app.example/cb',
      response_type: 'code',
      scope: 'openid',
    }).toString();
    const de = await fetchAs(browser, unknown, 'de');
    expect(de.status).toBe(400);
    expectPage(de, 'de', 'eu');
    expect(de.html).toContain('<h1>Die Anmeldung kann nicht fortgesetzt werden</h1>');
    expect(de.html).toContain(
      '<div class="message" role="alert"><p>Die Anwendung ist diesem Dienst nicht bekannt.</p></div>',
    );
    expect(de.html).toMatch(/<dt>Fehlercode<\/dt><dd><code>invalid_client<\/code><\/dd>/);
    // oidc-provider's own English description, marked as English on the German page.
    expect(de.html).toMatch(/<dt>Beschreibung<\/dt><dd lang="en">[^<]+<\/dd>/);

    const badRedirect = new URL(`${f.eu.url}/auth`);
    badRedirect.search = new URLSearchParams({
      client_id: f.apps.eu!.clientId,
      redirect_uri: 'https://evil.example/cb',
      response_type: 'code',
      scope: 'openid',
      code_challenge: randomBytes(32).toString('base64url'),
      code_challenge_method: 'S256',
    }).toString();
    const en = await fetchAs(browser, badRedirect, 'en-US,en;q=0.9');
    expect(en.status).toBe(400);
    expect(en.headers.get('location')).toBeNull();
    expectPage(en, 'en', 'eu');
    expect(en.html).toContain('<h1>Sign-in could not continue</h1>');
    expect(en.html).toMatch(
      /role="alert"><p>The application asked to return you to an address it has not registered/,
    );
    expect(en.html).toContain('<code>invalid_redirect_uri</code>');
    // A client that is not a peer broker: no hand-off notice.
    expect(en.html).not.toContain('You were sent here');
  });
});

describe('logout pages (oidc-provider’s, with Meridian’s look and languages)', () => {
  it('a handed-off person signing out at us sees us’s confirmation, then the home broker’s saying why they are at eu, then “Signed out”', async () => {
    const browser = new TestBrowser();
    const login = await f.login('us', 'de-eid', ANNA, browser);
    expect('error' in login).toBe(false);
    const end = new URL(`${f.us.url}/session/end`);
    end.searchParams.set('client_id', f.apps.us!.clientId);

    const atUs = await fetchAs(browser, end, 'de');
    expect(atUs.status).toBe(200);
    expectPage(atUs, 'de', 'us');
    expect(atUs.html).toContain('<h1>Abmelden</h1>');
    expect(text(atUs.html)).toContain('Möchten Sie sich bei Meridian in Region us abmelden?');
    expect(atUs.html).toMatch(
      /<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Ja, abmelden<\/button>/,
    );
    expect(atUs.html).toMatch(
      /<button type="submit" form="op.logoutForm" class="secondary">Nein, angemeldet bleiben<\/button>/,
    );
    expect(atUs.html).not.toContain('hierher weitergeleitet');

    // Confirmed at us: on to the home broker's end_session, as the peer client meridian-region-us.
    const atEu = await browser.submit(atUs, { index: 0 }, {}, 'logout', {
      stopAt: (u) => u.origin === f.de.url,
    });
    expect(atEu.url.origin).toBe(f.eu.url);
    expect(atEu.url.pathname).toBe('/session/end');
    expect(atEu.url.searchParams.get('client_id')).toBe('meridian-region-us');
    expect(atEu.status).toBe(200);
    const euEn: Fetched = { ...atEu, lang: /<html lang="([^"]+)"/.exec(atEu.html)?.[1] };
    expectPage(euEn, 'en', 'eu');
    expect(atEu.html).toContain(
      '<p class="handoff" id="handoff">You were sent here from region us because your data is kept in region eu.</p>',
    );
    const euDe = await fetchAs(browser, atEu.url, 'de');
    expectPage(euDe, 'de', 'eu');
    expect(euDe.html).toContain(
      'Sie wurden von Region us hierher weitergeleitet, weil Ihre Daten in Region eu gespeichert sind.',
    );

    // Yes at eu: the IdP's logout (it confirms by itself), back through eu and us, then
    // oidc-provider's "signed out" page at us (the app named no post_logout_redirect_uri).
    const done = await browser.submit(euDe, { index: 0 }, {}, 'logout', { autoSubmitForms: true });
    expect(done.status).toBe(200);
    expect(done.url.origin).toBe(f.us.url);
    expect(done.url.pathname).toBe('/session/end/success');
    expectPage({ ...done, lang: /<html lang="([^"]+)"/.exec(done.html)?.[1] }, 'en', 'us');
    expect(done.html).toContain('<h1>Signed out</h1>');
    const doneDe = await fetchAs(browser, done.url, 'de');
    expectPage(doneDe, 'de', 'us');
    expect(doneDe.html).toContain('<h1>Abgemeldet</h1>');
    expect(text(doneDe.html)).toContain('Sie können dieses Fenster schließen.');
  });
});

describe('the region serving the person, and the hand-off to their home region', () => {
  it('the chooser at us says that German eID continues at region eu (the policy’s home), Global ID nothing', async () => {
    const { browser, url } = await chooser('us');
    const en = await fetchAs(browser, url, 'en');
    const note =
      /<a class="button" href="[^"]*\/federation\/de-eid" aria-describedby="(fed-\d+-note)">German eID<\/a> <span class="note" id="([^"]+)">([^<]+)<\/span>/.exec(
        en.html,
      );
    expect(note, en.html).not.toBeNull();
    expect(note![2]).toBe(note![1]);
    expect(note![3]).toBe('Continues at region eu, where your data is kept.');
    expect(en.html).toMatch(/<li><a class="button" href="[^"]*\/federation\/global-id">Global ID<\/a><\/li>/);

    const de = await fetchAs(browser, url, 'de');
    expect(de.html).toMatch(
      />German eID<\/a> <span class="note" id="fed-\d+-note">Weiter in Region eu, wo Ihre Daten gespeichert sind\.<\/span>/,
    );
  });

  it('the chooser at eu, the home of German eID, announces no hand-off', async () => {
    const { browser, url } = await chooser('eu');
    const en = await fetchAs(browser, url);
    expect(en.html).toMatch(/<li><a class="button" href="[^"]*\/federation\/de-eid">German eID<\/a><\/li>/);
    expect(en.html).not.toContain('Continues at region');
    expect(text(en.html)).toContain('You are being served by the Meridian broker of region eu.');
  });

  it('the home broker’s error page for a hand-off it cannot complete says the person was sent from us because their data is kept in eu', async () => {
    // The peer client meridian-region-us asking eu with a redirect_uri it never registered (a
    // peer whose issuer moved): eu cannot send the person back, so it shows its error page.
    const url = new URL(`${f.eu.url}/auth`);
    url.search = new URLSearchParams({
      client_id: 'meridian-region-us',
      redirect_uri: 'http://127.0.0.1:9/federation/callback',
      response_type: 'code',
      scope: 'openid',
      idp_hint: 'de-eid',
      state: randomBytes(8).toString('hex'),
      code_challenge: createHash('sha256').update(randomBytes(32)).digest('base64url'),
      code_challenge_method: 'S256',
    }).toString();
    const browser = new TestBrowser();
    const en = await fetchAs(browser, url, 'en');
    expect(en.status).toBe(400);
    expectPage(en, 'en', 'eu');
    expect(en.html).toContain(
      '<h1>Sign-in could not continue</h1><p class="handoff" id="handoff">You were sent here from region us because your data is kept in region eu.</p>',
    );
    const de = await fetchAs(browser, url, 'de-CH, de;q=0.9');
    expectPage(de, 'de', 'eu');
    expect(de.html).toContain(
      '<p class="handoff" id="handoff">Sie wurden von Region us hierher weitergeleitet, weil Ihre Daten in Region eu gespeichert sind.</p>',
    );
  });

  it('only a peer broker’s own client (meridian-region-<id> naming that region) counts as a hand-off', () => {
    expect(handOffFrom({ clientId: 'meridian-region-us', meridianRegion: 'us' }, 'eu')).toEqual({
      from: 'us',
      home: 'eu',
    });
    expect(handOffFrom({ client_id: 'meridian-region-us', meridian_region: 'us' }, 'eu')).toEqual({
      from: 'us',
      home: 'eu',
    });
    expect(handOffFrom({ clientId: 'some-app', meridianRegion: 'us' }, 'eu')).toBeUndefined();
    expect(handOffFrom({ clientId: 'meridian-region-ap', meridianRegion: 'us' }, 'eu')).toBeUndefined();
    expect(handOffFrom({ clientId: 'meridian-region-eu', meridianRegion: 'eu' }, 'eu')).toBeUndefined();
    expect(handOffFrom({ clientId: 'eu-app' }, 'eu')).toBeUndefined();
    expect(handOffFrom(undefined, 'eu')).toBeUndefined();
  });

  it('a login through the chooser still completes after all this (German page, hand-off to eu, back at us)', async () => {
    const { browser, url } = await chooser('us');
    const de = await fetchAs(browser, url, 'de');
    const link = /href="([^"]*\/federation\/de-eid)"/.exec(de.html)![1]!;
    const form = await browser.follow(new URL(link, url));
    expect(form.url.origin).toBe(f.de.url);
    const back = await f.signIn(browser, form, ANNA, f.apps.us!);
    expect(back.url.searchParams.get('code')).toBeTruthy();
    expect(back.url.searchParams.get('error')).toBeNull();
  });
});
