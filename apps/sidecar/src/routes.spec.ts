import { describe, expect, it } from 'vitest';
import { canonicalPath, parseRoutes, requiredScopesFor, type RouteRule } from './routes';

function rules(json: unknown): RouteRule[] {
  const r = parseRoutes(json);
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.routes;
}

describe('canonicalPath', () => {
  it.each([
    ['/', '/'],
    ['/orders', '/orders'],
    ['/orders/', '/orders'],
    ['/Orders/42?x=1', '/orders/42'],
    ['//orders///42', '/orders/42'],
    ['/orders;jsessionid=abc/42', '/orders/42'],
    ['/%6Frders/%34%32', '/orders/42'],
    ['/caf%C3%A9', '/café'],
  ])('%s → %s', (input, expected) => {
    expect(canonicalPath(input)).toEqual({ ok: true, path: expected });
  });

  it.each([
    '/a/../b',
    '/a/./b',
    '/a/%2e%2E/b',
    '/a/..;x/b',
    '/a%2fb',
    '/a%5cb',
    '/a\\b',
    '/a%00b',
    '/%zz',
    'orders',
    '*',
  ])('refuses %s', (input) => {
    expect(canonicalPath(input).ok).toBe(false);
  });
});

describe('parseRoutes', () => {
  it('accepts an array or { routes }, methods as string, list or "*"', () => {
    const a = rules([{ method: 'post', path: '/orders', scopes: ['orders:write'] }]);
    expect(a[0]).toMatchObject({ path: '/orders', prefix: false, scopes: ['orders:write'] });
    expect([...a[0]!.methods!]).toEqual(['POST']);
    const b = rules({
      routes: [
        { method: ['GET'], path: '/orders/*', scopes: [] },
        { method: '*', path: '/*', scopes: ['x'] },
      ],
    });
    expect([...b[0]!.methods!].sort()).toEqual(['GET', 'HEAD']);
    expect(b[0]).toMatchObject({ path: '/orders', prefix: true });
    expect(b[1]).toMatchObject({ methods: undefined, path: '', prefix: true });
  });

  it('collects every mistake, naming the rule', () => {
    const r = parseRoutes([
      { path: 'orders', scopes: ['a'] },
      { method: 'GET POST', path: '/a', scopes: ['a'] },
      { path: '/a/*/b', scopes: ['a'] },
      { path: '/a', scope: ['a'] },
      { path: '/a', scopes: ['a b'] },
      'x',
    ]);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors).toEqual([
      'rule 1: "path" must start with "/", e.g. "/orders" or "/orders/*"',
      'rule 2: "method" must be an HTTP method, a list of them, or "*"',
      'rule 3: "path" may only end in "/*" (no other wildcards, no query)',
      'rule 4 has unknown keys ["scope"] (allowed: method, path, scopes)',
      'rule 4: "scopes" must be a list of scope names, e.g. ["orders:write"]',
      'rule 5: "scopes" must be a list of scope names, e.g. ["orders:write"]',
      'rule 6 must be an object { "method", "path", "scopes" }',
    ]);
    expect(parseRoutes({ rules: [] })).toMatchObject({ ok: false });
  });
});

describe('requiredScopesFor', () => {
  const table = rules([
    { method: 'POST', path: '/orders', scopes: ['orders:write'] },
    { method: ['PUT', 'DELETE'], path: '/orders/*', scopes: ['orders:write'] },
    { method: 'GET', path: '/orders/*', scopes: ['orders:read'] },
    { path: '/admin/*', scopes: ['orders:admin'] },
  ]);
  const global = ['base'];

  it.each([
    ['GET', '/', ['base']],
    ['POST', '/orders', ['base', 'orders:write']],
    ['POST', '/orders/1', ['base']],
    ['GET', '/orders', ['base', 'orders:read']],
    ['HEAD', '/orders/1', ['base', 'orders:read']],
    ['DELETE', '/orders/1/lines', ['base', 'orders:write']],
    ['GET', '/admin', ['base', 'orders:admin']],
    ['OPTIONS', '/admin/x', ['base', 'orders:admin']],
    ['GET', '/administrator', ['base']],
  ])('%s %s needs %j', (method, path, expected) => {
    expect(requiredScopesFor(table, global, method, path)).toEqual(expected);
  });

  it('every matching rule applies (rules only add), and the global list is returned as is when none match', () => {
    const overlapping = rules([
      { path: '/*', scopes: ['a'] },
      { path: '/x/*', scopes: ['b', 'a'] },
    ]);
    expect(requiredScopesFor(overlapping, [], 'GET', '/x/1')).toEqual(['a', 'b']);
    expect(requiredScopesFor(overlapping, [], 'GET', '/')).toEqual(['a']);
    expect(requiredScopesFor([], global, 'GET', '/x')).toBe(global);
  });
});
