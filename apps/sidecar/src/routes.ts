/**
 * Per-route scope requirements (SIDECAR_ROUTES_FILE) and the canonical form of a request path
 * they are matched against.
 *
 * Rules only ever add requirements: every rule that matches a request applies, on top of
 * SIDECAR_REQUIRED_SCOPES. Matching is deliberately broader than most upstream routers (case
 * and trailing slash ignored, `;params` cut, `//` collapsed), so that a spelling the upstream
 * treats as the same route cannot slip past the rule written for it; spellings whose meaning
 * depends on the upstream (dot segments, encoded `/` or `\`) are refused before any check.
 */

export interface RouteRule {
  /** Upper-case methods, or undefined for any. GET implies HEAD. */
  readonly methods: ReadonlySet<string> | undefined;
  /** Canonical path (see {@link canonicalPath}) without the trailing `/*`. */
  readonly path: string;
  /** `/orders/*`: `/orders` itself and everything below it. */
  readonly prefix: boolean;
  readonly scopes: readonly string[];
  /** As written in the file, for logs. */
  readonly source: string;
}

export type ParsedRoutes = { ok: true; routes: RouteRule[] } | { ok: false; errors: string[] };

export type CanonicalPath = { ok: true; path: string } | { ok: false; reason: string };

// RFC 6749 §3.3 scope-token; RFC 9110 §9.1 method = token.
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const RULE_KEYS = new Set(['method', 'path', 'scopes']);

/**
 * The form a request path is matched in: no query, percent-decoded, `;params` cut from each
 * segment, empty segments dropped, lower case. Refuses dot segments and encoded `/`, `\`, NUL:
 * an upstream may resolve those to a path the sidecar never checked.
 *
 * @example canonicalPath('/Orders//42;v=1/?x=1') // { ok: true, path: '/orders/42' }
 */
export function canonicalPath(pathAndQuery: string): CanonicalPath {
  const q = pathAndQuery.indexOf('?');
  const path = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
  if (path[0] !== '/') return { ok: false, reason: 'the request target is not an absolute path' };
  // Fast path: plain ASCII paths without escapes, dots or parameters.
  if (/^[/A-Za-z0-9_~-]*$/.test(path) && !path.includes('//')) {
    const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    return { ok: true, path: trimmed.toLowerCase() };
  }
  if (path.includes('\\')) return { ok: false, reason: 'the path contains a backslash' };
  const out: string[] = [];
  for (const raw of path.split('/')) {
    let segment = raw;
    if (segment.includes('%')) {
      try {
        segment = decodeURIComponent(segment);
      } catch {
        return { ok: false, reason: 'the path has an invalid percent-encoding' };
      }
      if (/[/\\\0]/.test(segment)) return { ok: false, reason: 'the path has an encoded "/", "\\" or NUL' };
    }
    // RFC 3986 §5.2.4: dot segments are resolved by the client; one that arrives here would be
    // resolved differently by different servers.
    if (segment === '.' || segment === '..')
      return { ok: false, reason: 'the path has a "." or ".." segment' };
    const semicolon = segment.indexOf(';');
    if (semicolon !== -1) segment = segment.slice(0, semicolon);
    if (segment === '.' || segment === '..')
      return { ok: false, reason: 'the path has a "." or ".." segment' };
    if (segment !== '') out.push(segment.toLowerCase());
  }
  return { ok: true, path: `/${out.join('/')}` };
}

/** Validates the routes file: an array of `{ method?, path, scopes }` (or `{ routes: [...] }`). */
export function parseRoutes(json: unknown): ParsedRoutes {
  const list = Array.isArray(json)
    ? json
    : typeof json === 'object' && json !== null && Array.isArray((json as { routes?: unknown }).routes)
      ? (json as { routes: unknown[] }).routes
      : undefined;
  if (!list) {
    return { ok: false, errors: ['must be a JSON array of { "method", "path", "scopes" } rules'] };
  }
  const errors: string[] = [];
  const routes: RouteRule[] = [];
  list.forEach((item: unknown, i) => {
    const at = `rule ${i + 1}`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      errors.push(`${at} must be an object { "method", "path", "scopes" }`);
      return;
    }
    const r = item as Record<string, unknown>;
    // A misspelt key ("scope") must not silently drop a requirement.
    const unknown = Object.keys(r).filter((k) => !RULE_KEYS.has(k));
    if (unknown.length)
      errors.push(`${at} has unknown keys ${JSON.stringify(unknown)} (allowed: method, path, scopes)`);

    let methods: Set<string> | undefined;
    if (r.method !== undefined && r.method !== '*') {
      const given = Array.isArray(r.method) ? r.method : [r.method];
      if (given.length === 0 || !given.every((m) => typeof m === 'string' && METHOD_TOKEN.test(m))) {
        errors.push(`${at}: "method" must be an HTTP method, a list of them, or "*"`);
      } else if (!given.includes('*')) {
        methods = new Set(given.map((m) => (m as string).toUpperCase()));
        // Most servers answer HEAD with their GET route.
        if (methods.has('GET')) methods.add('HEAD');
      }
    }

    let path = '';
    let prefix = false;
    if (typeof r.path !== 'string' || r.path[0] !== '/') {
      errors.push(`${at}: "path" must start with "/", e.g. "/orders" or "/orders/*"`);
    } else {
      const raw = r.path.endsWith('/*') ? r.path.slice(0, -2) : r.path;
      prefix = r.path.endsWith('/*');
      if (raw.includes('*') || raw.includes('?')) {
        errors.push(`${at}: "path" may only end in "/*" (no other wildcards, no query)`);
      } else {
        const c = canonicalPath(raw === '' ? '/' : raw);
        if (!c.ok) errors.push(`${at}: "path" ${c.reason.replace(/^the path /, '')}`);
        else path = c.path === '/' && prefix ? '' : c.path;
      }
    }

    if (!Array.isArray(r.scopes) || !r.scopes.every((s) => typeof s === 'string' && SCOPE_TOKEN.test(s))) {
      errors.push(`${at}: "scopes" must be a list of scope names, e.g. ["orders:write"]`);
    }
    routes.push({
      methods,
      path,
      prefix,
      scopes: Array.isArray(r.scopes) ? [...(r.scopes as string[])] : [],
      source: `${Array.isArray(r.method) ? r.method.join(',') : (r.method ?? '*')} ${String(r.path)}`,
    });
  });
  return errors.length ? { ok: false, errors } : { ok: true, routes };
}

/** Whether `rule` applies to a request with this method and canonical path. */
export function ruleMatches(rule: RouteRule, method: string, path: string): boolean {
  if (rule.methods && !rule.methods.has(method)) return false;
  if (!rule.prefix) return path === rule.path || (rule.path === '' && path === '/');
  return path === rule.path || path.startsWith(`${rule.path}/`) || (rule.path === '' && path === '/');
}

/**
 * The scopes a request needs: `global` plus those of every matching rule, without duplicates.
 * Returns `global` itself when no rule matches (no allocation on the common path).
 */
export function requiredScopesFor(
  rules: readonly RouteRule[],
  global: readonly string[],
  method: string,
  path: string,
): readonly string[] {
  let scopes: string[] | undefined;
  for (const rule of rules) {
    if (!ruleMatches(rule, method, path)) continue;
    scopes ??= [...global];
    for (const s of rule.scopes) if (!scopes.includes(s)) scopes.push(s);
  }
  return scopes ?? global;
}
