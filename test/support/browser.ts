/**
 * A browser-like HTTP client for tests: a cookie jar, redirects followed the way browsers follow
 * them, HTML forms read and submitted — without a browser. Enough for OIDC front-channel flows
 * (authorization request → login form → callback) over real HTTP.
 */

export interface Page {
  url: URL;
  /** 0 when the navigation stopped before fetching `url` (see `stopAt`). */
  status: number;
  headers: Headers;
  html: string;
  /** Every URL requested in this navigation, in order, ending with `url`. */
  history: URL[];
  /** When the navigation stopped at a form POST (e.g. `response_mode=form_post`): what would have been posted. */
  postedForm?: URLSearchParams;
}

export interface FollowOptions {
  /** Do not fetch a URL this matches: return a Page with that url and status 0. */
  stopAt?: (url: URL) => boolean;
  /** Submit pages made of one POST form with only hidden inputs and a script submitting it. */
  autoSubmitForms?: boolean;
  method?: 'GET' | 'POST';
  body?: URLSearchParams;
  /** Origin header for a POST (browsers send it), default none. */
  origin?: string;
}

export interface FormSelector {
  /** Matched against the form's resolved action URL. */
  action?: RegExp;
  /** Which of the (matching) forms, default 0. */
  index?: number;
}

interface Cookie {
  name: string;
  value: string;
  domain: string;
  hostOnly: boolean;
  path: string;
  expires?: number;
}

/**
 * Cookies keyed by host name only, as browsers keep them: 127.0.0.1:4000 and 127.0.0.1:5000
 * share them. Path, Domain, Expires and Max-Age are honoured; Secure, HttpOnly and SameSite are
 * not (loopback over http, and there are no scripts or cross-site contexts here).
 */
export class CookieJar {
  private cookies: Cookie[] = [];

  /** Stores the cookies of one `Set-Cookie` header value received from `url`. */
  store(url: URL, setCookie: string): void {
    const [pair, ...attrs] = setCookie.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const host = url.hostname;
    let domain = host;
    let hostOnly = true;
    let path = defaultPath(url.pathname);
    let expires: number | undefined;
    let maxAge: number | undefined;
    for (const attr of attrs) {
      const i = attr.indexOf('=');
      const key = (i === -1 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const val = i === -1 ? '' : attr.slice(i + 1).trim();
      if (key === 'path' && val.startsWith('/')) path = val;
      else if (key === 'domain' && val) {
        const d = val.replace(/^\./, '').toLowerCase();
        if (host !== d && !host.endsWith(`.${d}`)) return; // a browser rejects it
        domain = d;
        hostOnly = false;
      } else if (key === 'max-age' && /^-?\d+$/.test(val)) maxAge = Number(val);
      else if (key === 'expires') {
        const t = Date.parse(val);
        if (!Number.isNaN(t)) expires = t;
      }
    }
    if (maxAge !== undefined) expires = Date.now() + maxAge * 1000;
    this.cookies = this.cookies.filter((c) => !(c.name === name && c.domain === domain && c.path === path));
    if (expires !== undefined && expires <= Date.now()) return;
    this.cookies.push({ name, value, domain, hostOnly, path, expires });
  }

  /** The cookies a request to `url` carries, most specific path first. */
  forUrl(url: URL): { name: string; value: string }[] {
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires === undefined || c.expires > now);
    const host = url.hostname;
    return this.cookies
      .filter((c) => (c.hostOnly ? host === c.domain : host === c.domain || host.endsWith(`.${c.domain}`)))
      .filter((c) => pathMatches(url.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length)
      .map(({ name, value }) => ({ name, value }));
  }

  header(url: URL): string | undefined {
    const list = this.forUrl(url);
    return list.length ? list.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }

  /** Every cookie held for a host name (any port, any path). */
  list(host: string): { name: string; value: string; path: string }[] {
    return this.cookies
      .filter((c) => c.domain === host || host.endsWith(`.${c.domain}`))
      .map(({ name, value, path }) => ({ name, value, path }));
  }

  clear(): void {
    this.cookies = [];
  }
}

function defaultPath(pathname: string): string {
  if (!pathname.startsWith('/')) return '/';
  const last = pathname.lastIndexOf('/');
  return last <= 0 ? '/' : pathname.slice(0, last);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class TestBrowser {
  readonly cookies = new CookieJar();
  private readonly maxHops: number;

  constructor(opts: { maxHops?: number } = {}) {
    this.maxHops = opts.maxHops ?? 20;
  }

  /** One GET, no redirect followed (a 302 comes back as the page). */
  async get(url: string | URL): Promise<Page> {
    const target = new URL(url);
    const res = await this.request(target, 'GET');
    return {
      url: target,
      status: res.status,
      headers: res.headers,
      html: await res.text(),
      history: [target],
    };
  }

  /**
   * Navigates to `url` and follows redirects (303, and 301/302 after a POST, become GET; 307/308
   * keep method and body), and, with `autoSubmitForms`, self-submitting POST forms.
   */
  async follow(url: string | URL, opts: FollowOptions = {}): Promise<Page> {
    let target = new URL(url);
    let method = opts.method ?? 'GET';
    let body = method === 'POST' ? (opts.body ?? new URLSearchParams()) : undefined;
    let origin = opts.origin;
    const history: URL[] = [];
    const trail: string[] = [];
    for (;;) {
      if (history.length >= this.maxHops) {
        throw new Error(
          `TestBrowser: more than ${this.maxHops} hops without reaching a page:\n  ${[...trail, `${method} ${target.href}`].join('\n  ')}`,
        );
      }
      history.push(target);
      if (opts.stopAt?.(target)) {
        return {
          url: target,
          status: 0,
          headers: new Headers(),
          html: '',
          history,
          ...(method === 'POST' ? { postedForm: body } : {}),
        };
      }
      const res = await this.request(target, method, body, origin);
      const location = res.headers.get('location');
      trail.push(`${method} ${target.href} → ${res.status}${location ? ` ${location}` : ''}`);
      if (REDIRECTS.has(res.status) && location) {
        await res.arrayBuffer();
        if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
          method = 'GET';
          body = undefined;
          origin = undefined;
        }
        target = new URL(location, target);
        continue;
      }
      const html = await res.text();
      if (opts.autoSubmitForms && res.status === 200) {
        const auto = autoSubmittedForm(html, target);
        if (auto) {
          trail[trail.length - 1] += ' (auto-submitted form)';
          method = 'POST';
          body = auto.fields;
          origin = target.origin;
          target = auto.action;
          continue;
        }
      }
      return { url: target, status: res.status, headers: res.headers, html, history };
    }
  }

  /**
   * Fills and submits a form of `page`: hidden and pre-filled inputs are kept, `fields` override
   * them, `button` (its text, name or value) adds the pressed button's name=value. Then follows.
   */
  async submit(
    page: Page,
    formSelector: FormSelector,
    fields: Record<string, string>,
    button?: string,
    opts: Omit<FollowOptions, 'method' | 'body' | 'origin'> = {},
  ): Promise<Page> {
    const forms = parseForms(page.html, page.url);
    const candidates = formSelector.action
      ? forms.filter((f) => formSelector.action!.test(f.action.href))
      : forms;
    const form = candidates[formSelector.index ?? 0];
    if (!form) {
      throw new Error(
        `TestBrowser: no form matching ${formSelector.action ?? ''}#${formSelector.index ?? 0} on ${page.url.href}; forms: ${
          forms.map((f) => `${f.method} ${f.action.href}`).join(', ') || 'none'
        }`,
      );
    }
    const values = new URLSearchParams(form.fields);
    for (const [name, value] of Object.entries(fields)) values.set(name, value);
    if (button !== undefined) {
      const pressed = form.buttons.find((b) => b.text === button || b.name === button || b.value === button);
      if (!pressed) {
        throw new Error(
          `TestBrowser: no button "${button}" in the form; buttons: ${form.buttons.map((b) => b.text || b.name).join(', ')}`,
        );
      }
      if (pressed.name) values.append(pressed.name, pressed.value);
    }
    if (form.method === 'GET') {
      const target = new URL(form.action);
      target.search = values.toString();
      return this.follow(target, opts);
    }
    return this.follow(form.action, { ...opts, method: 'POST', body: values, origin: page.url.origin });
  }

  private async request(
    url: URL,
    method: string,
    body?: URLSearchParams,
    origin?: string,
  ): Promise<Response> {
    const headers = new Headers({
      accept: 'text/html,application/xhtml+xml,*/*;q=0.8',
      'user-agent': 'meridian-test-browser',
    });
    const cookie = this.cookies.header(url);
    if (cookie) headers.set('cookie', cookie);
    if (body) headers.set('content-type', 'application/x-www-form-urlencoded');
    if (origin) headers.set('origin', origin);
    const res = await fetch(url, { method, headers, body: body?.toString(), redirect: 'manual' });
    for (const setCookie of res.headers.getSetCookie()) this.cookies.store(url, setCookie);
    return res;
  }
}

export interface ParsedForm {
  action: URL;
  method: 'GET' | 'POST';
  id?: string;
  /** Successful controls, in document order (unchecked boxes and buttons excluded). */
  fields: [string, string][];
  buttons: { name?: string; value: string; text: string }[];
  /** Input types, in document order. */
  inputTypes: string[];
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, ref: string) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return Number.isFinite(code) ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[ref.toLowerCase()] ?? whole;
  });
}

function attributes(tag: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  const re = /([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  for (const m of tag.matchAll(re)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

function textOf(html: string): string {
  return decodeEntities(html.replace(/<[^>]*>/g, ''))
    .replace(/\s+/g, ' ')
    .trim();
}

/** The forms of a page, read with regular expressions (no DOM): enough for server-rendered pages. */
export function parseForms(html: string, base: URL): ParsedForm[] {
  const withoutComments = html.replace(/<!--[\s\S]*?-->/g, '');
  const forms: ParsedForm[] = [];
  for (const m of withoutComments.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1]);
    const inner = m[2];
    const fields: [string, string][] = [];
    const inputTypes: string[] = [];
    const buttons: ParsedForm['buttons'] = [];
    for (const control of inner.matchAll(
      /<input\b([^>]*)>|<button\b([^>]*)>([\s\S]*?)<\/button>|<textarea\b([^>]*)>([\s\S]*?)<\/textarea>|<select\b([^>]*)>([\s\S]*?)<\/select>/gi,
    )) {
      if (control[1] !== undefined) {
        const a = attributes(control[1]);
        const type = (a.type ?? 'text').toLowerCase();
        inputTypes.push(type);
        if (type === 'submit' || type === 'image') {
          buttons.push({ name: a.name, value: a.value ?? '', text: a.value ?? '' });
          continue;
        }
        if (!a.name || type === 'button' || type === 'reset' || type === 'file') continue;
        if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
        fields.push([a.name, a.value ?? (type === 'checkbox' || type === 'radio' ? 'on' : '')]);
      } else if (control[2] !== undefined) {
        const a = attributes(control[2]);
        if ((a.type ?? 'submit').toLowerCase() !== 'submit') continue;
        buttons.push({ name: a.name, value: a.value ?? '', text: textOf(control[3]) });
      } else if (control[4] !== undefined) {
        const a = attributes(control[4]);
        if (a.name) fields.push([a.name, decodeEntities(control[5])]);
      } else if (control[6] !== undefined) {
        const a = attributes(control[6]);
        const options = [...control[7].matchAll(/<option\b([^>]*)>([^<]*)/gi)].map((o) => ({
          attrs: attributes(o[1]),
          text: textOf(o[2]),
        }));
        const chosen = options.find((o) => 'selected' in o.attrs) ?? options[0];
        if (a.name && chosen) fields.push([a.name, chosen.attrs.value ?? chosen.text]);
      }
    }
    // Buttons outside the form that name it (`<button form="id">`), as oidc-provider's logout page has.
    if (attrs.id) {
      for (const b of withoutComments.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)) {
        const a = attributes(b[1]);
        if (a.form === attrs.id && (a.type ?? 'submit').toLowerCase() === 'submit') {
          buttons.push({ name: a.name, value: a.value ?? '', text: textOf(b[2]) });
        }
      }
    }
    forms.push({
      action: new URL(attrs.action || base.href, base),
      method: (attrs.method ?? 'get').toUpperCase() === 'POST' ? 'POST' : 'GET',
      id: attrs.id,
      fields,
      buttons,
      inputTypes,
    });
  }
  return forms;
}

/** oidc-provider's form_post pages: one POST form, hidden inputs only, submitted by a script. */
function autoSubmittedForm(html: string, base: URL): { action: URL; fields: URLSearchParams } | undefined {
  const forms = parseForms(html, base);
  if (forms.length !== 1) return undefined;
  const [form] = forms;
  if (form.method !== 'POST' || !form.inputTypes.every((t) => t === 'hidden')) return undefined;
  if (!/<script\b[^>]*>[\s\S]*\.submit\(\)[\s\S]*?<\/script>/i.test(html)) return undefined;
  return { action: form.action, fields: new URLSearchParams(form.fields) };
}
