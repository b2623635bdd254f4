import { describe, expect, it } from 'vitest';
import { validateSidecarEnv } from './config';

const valid = {
  PORT: '8080',
  SIDECAR_UPSTREAM: 'http://127.0.0.1:3000',
  SIDECAR_AUDIENCE: 'https://orders.example.com',
  SIDECAR_TRUST_BUNDLE_URL: 'https://eu.id.example.com/.well-known/meridian/trust-bundle',
};
const report = {
  SIDECAR_REPORT_URL: 'https://eu.id.example.com/security/events',
  SIDECAR_REPORT_CLIENT_ID: 'orders-sidecar',
  SIDECAR_REPORT_CLIENT_SECRET: 'sidecar-secret-0123456789',
};

function errors(env: Record<string, string>): string[] {
  const r = validateSidecarEnv(env);
  return r.ok ? [] : r.errors;
}

describe('security reports to the broker (SIDECAR_REPORT_*)', () => {
  it('are off unless configured', () => {
    const r = validateSidecarEnv(valid);
    expect(r.ok && r.config.report).toBeUndefined();
  });

  it('reads the endpoint, the client and the interval', () => {
    const r = validateSidecarEnv({ ...valid, ...report, SIDECAR_REPORT_INTERVAL_MS: '1000' });
    expect(r.ok && r.config.report).toEqual({
      url: 'https://eu.id.example.com/security/events',
      clientId: 'orders-sidecar',
      clientSecret: 'sidecar-secret-0123456789',
      intervalMs: 1000,
    });
  });

  it.each([
    ['SIDECAR_REPORT_URL', { ...report, SIDECAR_REPORT_URL: 'https://eu.id.example.com/events' }],
    ['SIDECAR_REPORT_URL', { ...report, SIDECAR_REPORT_URL: 'http://eu.id.example.com/security/events' }],
    ['SIDECAR_REPORT_CLIENT_ID', { ...report, SIDECAR_REPORT_CLIENT_ID: '' }],
    ['SIDECAR_REPORT_CLIENT_SECRET', { ...report, SIDECAR_REPORT_CLIENT_SECRET: '' }],
    ['SIDECAR_REPORT_URL', { SIDECAR_REPORT_CLIENT_ID: 'x', SIDECAR_REPORT_CLIENT_SECRET: 'y' }],
    ['SIDECAR_REPORT_INTERVAL_MS', { ...report, SIDECAR_REPORT_INTERVAL_MS: '10' }],
  ])('a bad or missing %s is one line naming it', (variable, env) => {
    const found = errors({ ...valid, ...env });
    expect(found).toHaveLength(1);
    expect(found[0]!.startsWith(`${variable} `)).toBe(true);
  });

  it('allows http only on loopback', () => {
    expect(
      errors({ ...valid, ...report, SIDECAR_REPORT_URL: 'http://127.0.0.1:4000/security/events' }),
    ).toEqual([]);
  });
});
