/**
 * Server-rendered pages people see: the login chooser, Meridian's error pages and the pages
 * oidc-provider renders (error, logout, signed out). No script at all (they work without
 * JavaScript and under a CSP that forbids inline code and other origins); one small stylesheet
 * served by the broker. Every string comes from i18n.ts in the negotiated language.
 */
import { messages, type ChooserNotice, type Lang, type LoginErrorKind, type Messages } from './i18n';

// The languages travel with the pages (the package index stays as it is).
export {
  DEFAULT_LANG,
  LANGS,
  MESSAGES,
  negotiateLanguage,
  parseAcceptLanguage,
  type ChooserNotice,
  type Lang,
  type LoginErrorKind,
  type Messages,
} from './i18n';

/**
 * `form-action` also names http: and https: because Chromium applies it to the redirects after a
 * form post: the chooser's forms end at an upstream IdP or a peer broker, the logout form at the
 * upstream's end_session endpoint, and apps may use loopback redirect URIs (RFC 8252 §7.3).
 */
export const LOGIN_CSP =
  "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'";

export const LOGIN_CSS_PATH = '/interaction/static/login.css';

/**
 * The headers of every page (Nest and oidc-provider alike); callers add `Vary: Accept-Language`
 * to whatever Vary they already send.
 */
export function pageHeaders(lang: Lang): Record<string, string> {
  return {
    'Content-Security-Policy': LOGIN_CSP,
    'Content-Language': lang,
    'Cache-Control': 'no-store',
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
  };
}

/** A login handed to the person's home broker: `from` sent them, `home` keeps their data. */
export interface HandOff {
  from: string;
  home: string;
}

/**
 * The hand-off a request at this broker is part of, read from its OAuth client: a peer broker
 * is the client `meridian-region-<id>` with `meridian_region: <id>` (validated at registration,
 * its redirect URIs registered), and sends people here only because their data is kept here.
 */
export function handOffFrom(client: unknown, region: string): HandOff | undefined {
  const c = client as
    | { clientId?: string; client_id?: string; meridianRegion?: unknown; meridian_region?: unknown }
    | undefined;
  const from = c?.meridianRegion ?? c?.meridian_region;
  const id = c?.clientId ?? c?.client_id;
  if (typeof from !== 'string' || from === region || id !== `meridian-region-${from}`) return undefined;
  return { from, home: region };
}

const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function layout(
  m: Messages,
  o: { title: string; region: string; handOff?: HandOff; body: string; bodyClass?: string },
): string {
  const handOff = o.handOff
    ? `<p class="handoff" id="handoff">${esc(m.handedOff(o.handOff.from, o.handOff.home))}</p>`
    : '';
  return `<!doctype html>
<html lang="${m.tag}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(o.title)} · Meridian</title><link rel="stylesheet" href="${LOGIN_CSS_PATH}"></head>
<body><header class="site"><p class="brand">${esc(m.brand)}</p></header>
<main><h1>${esc(o.title)}</h1>${handOff}${o.body}</main>
<footer class="site"><p class="region">${esc(m.servedBy(o.region))}</p></footer></body></html>`;
}

export interface ChooserFederation {
  id: string;
  displayName: string;
  /** The home region this provider's people are handed to, when it is not this one. */
  continuesAt?: string;
}

export function chooserPage(o: {
  lang: Lang;
  uid: string;
  region: string;
  federations: ChooserFederation[];
  notice?: ChooserNotice;
  email?: string;
  handOff?: HandOff;
}): string {
  const m = messages(o.lang);
  const uid = esc(encodeURIComponent(o.uid));
  const list = o.federations.length
    ? `<ul class="federations">${o.federations
        .map((f, i) => {
          const href = `/interaction/${uid}/federation/${esc(encodeURIComponent(f.id))}`;
          if (!f.continuesAt) return `<li><a class="button" href="${href}">${esc(f.displayName)}</a></li>`;
          return `<li><a class="button" href="${href}" aria-describedby="fed-${i}-note">${esc(f.displayName)}</a> <span class="note" id="fed-${i}-note">${esc(m.continuesAt(f.continuesAt))}</span></li>`;
        })
        .join('')}</ul>`
    : `<p>${esc(m.noProvider)}</p>`;
  const notice = o.notice
    ? `<div class="message" role="alert" id="notice"><p>${esc(m.notices[o.notice])}</p></div>`
    : '';
  const invalid = o.notice === 'unknown-email-domain';
  return layout(m, {
    title: m.signIn,
    region: o.region,
    handOff: o.handOff,
    body: `${notice}<section aria-labelledby="choose"><h2 id="choose">${esc(m.chooseProvider)}</h2>${list}</section>
<section aria-labelledby="by-email"><h2 id="by-email">${esc(m.orEmail)}</h2>
<form method="post" action="/interaction/${uid}/home-realm">
<label for="email">${esc(m.emailLabel)}</label>
<p class="hint" id="email-hint">${esc(m.emailHint)}</p>
<input id="email" name="email" type="email" autocomplete="email" spellcheck="false" required${
      invalid
        ? ' aria-invalid="true" aria-describedby="notice email-hint" autofocus'
        : ' aria-describedby="email-hint"'
    } value="${esc(o.email)}">
<button type="submit">${esc(m.continue)}</button></form></section>
<form method="post" action="/interaction/${uid}/cancel" class="cancel"><button type="submit" class="secondary">${esc(m.cancel)}</button></form>`,
  });
}

/** A page of Meridian's login as the use case describes it; rendered in the person's language. */
export type PageView =
  | ({ page: 'chooser' } & Omit<Parameters<typeof chooserPage>[0], 'lang'>)
  | ({ page: 'error' } & Omit<Parameters<typeof errorPage>[0], 'lang'>);

export function renderPage(view: PageView, lang: Lang): string {
  switch (view.page) {
    case 'chooser':
      return chooserPage({ ...view, lang });
    case 'error':
      return errorPage({ ...view, lang });
    default: {
      const exhaustive: never = view;
      throw new Error(`unknown page ${JSON.stringify(exhaustive)}`);
    }
  }
}

/** Meridian's own error pages (the login ran out, a logout link is stale). */
export function errorPage(o: {
  lang: Lang;
  kind: LoginErrorKind;
  region: string;
  handOff?: HandOff;
}): string {
  const m = messages(o.lang);
  const e = m.errors[o.kind];
  return layout(m, {
    title: e.title,
    region: o.region,
    handOff: o.handOff,
    body: `<div class="message" role="alert"><p>${esc(e.message)}</p></div><p>${esc(m.startAgain)}</p>`,
  });
}

/**
 * oidc-provider's error page (a request that cannot be answered by a redirect). The OAuth error
 * code and oidc-provider's English description are shown as details for support, marked as
 * English (WCAG 3.1.2) on the German page.
 */
export function providerErrorPage(o: {
  lang: Lang;
  region: string;
  error: string;
  description?: string;
  handOff?: HandOff;
}): string {
  const m = messages(o.lang);
  const p = m.providerError;
  const explanation = Object.hasOwn(p.byCode, o.error) ? p.byCode[o.error] : p.fallback;
  const description = o.description
    ? `<dt>${esc(p.description)}</dt><dd lang="en">${esc(o.description)}</dd>`
    : '';
  return layout(m, {
    title: p.title,
    region: o.region,
    handOff: o.handOff,
    body: `<div class="message" role="alert"><p>${esc(explanation)}</p></div><p>${esc(p.help)}</p>
<section aria-labelledby="details"><h2 id="details">${esc(p.details)}</h2>
<dl><dt>${esc(p.code)}</dt><dd><code>${esc(o.error)}</code></dd>${description}</dl></section>`,
  });
}

/**
 * oidc-provider's logout confirmation. `form` is oidc-provider's own hidden form
 * (`id="op.logoutForm"`, its xsrf token); the buttons submit it.
 */
export function logoutPage(o: { lang: Lang; region: string; form: string; handOff?: HandOff }): string {
  const m = messages(o.lang);
  return layout(m, {
    title: m.logout.title,
    region: o.region,
    handOff: o.handOff,
    body: `<p>${esc(m.logout.question(o.region))}</p>${o.form}
<div class="actions"><button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>${esc(m.logout.yes)}</button>
<button type="submit" form="op.logoutForm" class="secondary">${esc(m.logout.no)}</button></div>`,
  });
}

/** oidc-provider's page after a logout that names no return address. */
export function loggedOutPage(o: { lang: Lang; region: string }): string {
  const m = messages(o.lang);
  return layout(m, {
    title: m.loggedOut.title,
    region: o.region,
    body: `<p role="status">${esc(m.loggedOut.message)}</p><p>${esc(m.loggedOut.close)}</p>`,
  });
}

// Contrast (WCAG 1.4.3 / 1.4.11): text #14171a and #374151 on white, white on #0b5cad (6.7:1),
// the focus ring #14171a on white; notes #374151 (10:1).
export const LOGIN_CSS = `*,*::before,*::after{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f3f4f6;color:#14171a;line-height:1.5}
header.site,footer.site{max-width:30rem;margin:0 auto;padding:1rem 2rem}
.brand{margin:0;font-weight:600}
main{max-width:30rem;margin:0 auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.5rem;margin-top:0}h2{font-size:1.05rem;margin-top:1.5rem}
ul{list-style:none;padding:0}li{margin:.5rem 0}
.button,button{display:inline-block;padding:.6rem 1rem;border:2px solid #0b5cad;border-radius:6px;background:#0b5cad;color:#fff;text-decoration:none;font:inherit;cursor:pointer}
.button:hover,button:hover{background:#084a8c;border-color:#084a8c}
button.secondary{background:#fff;color:#0b5cad}
button.secondary:hover{background:#eef4fb;color:#084a8c}
.note,.hint{display:block;color:#374151;font-size:.9rem;margin:.25rem 0}
label{display:block;font-weight:600}
input{display:block;width:100%;padding:.5rem;margin:.25rem 0 .75rem;font:inherit;border:1px solid #6b7280;border-radius:4px}
input[aria-invalid=true]{border:2px solid #b91c1c}
.message{padding:.25rem .75rem;background:#fff4e5;border-left:4px solid #b45309;margin-bottom:1rem}
.handoff{padding:.5rem .75rem;background:#eef4fb;border-left:4px solid #0b5cad}
.cancel{margin-top:1.5rem}.actions{display:flex;gap:.75rem;flex-wrap:wrap;margin-top:1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
.region{color:#374151;font-size:.9rem;margin:0}
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #14171a;outline-offset:2px;box-shadow:0 0 0 2px #fff}
input:focus{outline:3px solid #14171a;outline-offset:2px}`;
