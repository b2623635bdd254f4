import { describe, expect, it } from 'vitest';
import { validateSidecarEnv } from './config';

const valid = {
  PORT: '8080',
  SIDECAR_UPSTREAM: 'http://127.0.0.1:3000/api/',
  SIDECAR_AUDIENCE: 'https://orders.example.com',
  SIDECAR_TRUST_BUNDLE_URL: 'https://eu.id.example.com/.well-known/meridian/trust-bundle',
};

describe('validateSidecarEnv', () => {
  it('applies defaults and normalises the upstream base path', () => {
    const r = validateSidecarEnv(valid);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      audience: 'https://orders.example.com',
      requiredScopes: [],
      region: undefined,
      routes: [],
      extAuthzPrefix: '/ext-authz',
      publicUrl: undefined,
      upstreamTimeoutMs: 30_000,
      bundleRefreshCooldownMs: 30_000,
      clockToleranceSeconds: 30,
      logLevel: 'info',
    });
    expect(r.config.upstream.pathname).toBe('/api');
  });

  it('reads optional variables', () => {
    const r = validateSidecarEnv(
      {
        ...valid,
        SIDECAR_REQUIRED_SCOPES: ' orders:read  orders:write ',
        SIDECAR_REGION: 'eu',
        SIDECAR_EXT_AUTHZ_PREFIX: 'off',
        SIDECAR_PUBLIC_URL: 'https://orders.example.com/',
        SIDECAR_ROUTES_FILE: '/etc/sidecar/routes.json',
      },
      { readFile: () => '[{ "method": "POST", "path": "/orders", "scopes": ["orders:write"] }]' },
    );
    expect(r.ok && r.config).toMatchObject({
      requiredScopes: ['orders:read', 'orders:write'],
      region: 'eu',
      extAuthzPrefix: undefined,
      publicUrl: 'https://orders.example.com',
      routes: [{ path: '/orders', scopes: ['orders:write'] }],
    });
  });

  it('accepts http trust bundles on loopback only', () => {
    for (const url of ['http://127.0.0.1:3000/b', 'http://localhost/b', 'http://[::1]:3000/b']) {
      expect(validateSidecarEnv({ ...valid, SIDECAR_TRUST_BUNDLE_URL: url }).ok).toBe(true);
    }
    for (const url of ['http://10.0.0.1/b', 'http://id.example.com/b', 'file:///etc/bundle.json']) {
      const r = validateSidecarEnv({ ...valid, SIDECAR_TRUST_BUNDLE_URL: url });
      expect(!r.ok && r.errors[0]).toMatch(/^SIDECAR_TRUST_BUNDLE_URL must be (an )?https/);
    }
  });

  it('refuses an upstream carrying credentials or a query', () => {
    for (const u of ['http://user:pw@127.0.0.1:3000', 'http://127.0.0.1:3000/?a=1']) {
      const r = validateSidecarEnv({ ...valid, SIDECAR_UPSTREAM: u });
      expect(!r.ok && r.errors).toEqual([
        'SIDECAR_UPSTREAM must not carry credentials, a query or a fragment: only origin and base path',
      ]);
    }
  });

  it('collects every error, each line starting with its variable', () => {
    const r = validateSidecarEnv(
      { PORT: '-1', SIDECAR_ROUTES_FILE: '/x', SIDECAR_SHUTDOWN_GRACE_MS: 'soon' },
      {
        readFile: () => {
          throw Object.assign(new Error('no'), { code: 'EACCES' });
        },
      },
    );
    expect(!r.ok && r.errors.map((e) => e.split(' ')[0])).toEqual([
      'PORT',
      'SIDECAR_UPSTREAM',
      'SIDECAR_AUDIENCE',
      'SIDECAR_TRUST_BUNDLE_URL',
      'SIDECAR_ROUTES_FILE',
      'SIDECAR_SHUTDOWN_GRACE_MS',
    ]);
    expect(!r.ok && r.errors[4]).toBe('SIDECAR_ROUTES_FILE cannot be read (EACCES): /x');
  });
});
