import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SENSITIVE_VARIABLES, validateBrokerEnv } from './config.schema';
import { parseRate, parseRegionLocations } from './security-config';

const MINIMAL: Record<string, string> = {
  MERIDIAN_REGION: 'eu',
  MERIDIAN_ISSUER: 'http://127.0.0.1:3000',
  MERIDIAN_KEK: randomBytes(32).toString('base64'),
  MERIDIAN_ADMIN_CLIENT_ID: 'meridian-admin',
  MERIDIAN_ADMIN_CLIENT_SECRET: 'admin-secret-0123456789abcdefghijk',
};

function errorsFor(extra: Record<string, string>): string[] {
  const r = validateBrokerEnv({ ...MINIMAL, ...extra }, '/srv');
  return r.ok ? [] : r.errors;
}

describe('security configuration (abuse limits, shedding, detectors, webhook)', () => {
  it('has defaults for every limit and threshold', () => {
    const r = validateBrokerEnv(MINIMAL, '/srv');
    if (!r.ok) throw new Error(r.errors.join('\n'));
    const s = r.config.security;
    expect(s.rateLimits.token).toEqual({
      client: { limit: 6000, periodSeconds: 60 },
      source: { limit: 6000, periodSeconds: 60 },
    });
    expect(s.lockout).toMatchObject({
      clientFailures: { limit: 10, periodSeconds: 60 },
      seconds: 60,
      maxSeconds: 3600,
    });
    expect(s.shedding).toEqual({ maxInFlight: 512, maxEventLoopDelayMs: 200 });
    expect(s.detectors.travel).toBeUndefined();
    expect(s.webhook).toBeUndefined();
  });

  it('parses <count>/<seconds> and off', () => {
    expect(parseRate('10/60')).toEqual({ limit: 10, periodSeconds: 60 });
    expect(parseRate('off')).toBe('off');
    for (const bad of ['10', '0/60', '10/0', 'ten/60', '-1/60', '10/100000'])
      expect(parseRate(bad)).toBeUndefined();
    const r = validateBrokerEnv({ ...MINIMAL, MERIDIAN_RATE_LIMIT_TOKEN_CLIENT: 'off' }, '/srv');
    expect(r.ok && r.config.security.rateLimits.token.client).toBeUndefined();
  });

  it('parses region locations', () => {
    expect(parseRegionLocations('eu=50.11,8.68; us=38.90,-77.04')).toEqual({
      eu: { lat: 50.11, lon: 8.68 },
      us: { lat: 38.9, lon: -77.04 },
    });
    for (const bad of ['eu=91,0', 'eu=0,181', 'EU=1,2', 'eu=1', 'eu=1,2;eu=3,4'])
      expect(parseRegionLocations(bad)).toBeUndefined();
  });

  it.each([
    ['MERIDIAN_RATE_LIMIT_TOKEN_CLIENT', '100 per minute'],
    ['MERIDIAN_RATE_LIMIT_LOGIN_SOURCE', '5'],
    ['MERIDIAN_RATE_LIMIT_BATCH', '0'],
    ['MERIDIAN_LOCKOUT_CLIENT_FAILURES', 'x/y'],
    ['MERIDIAN_LOCKOUT_SECONDS', '-5'],
    ['MERIDIAN_SHED_MAX_IN_FLIGHT', 'many'],
    ['MERIDIAN_SHED_MAX_EVENT_LOOP_DELAY_MS', '1.5'],
    ['MERIDIAN_DETECT_CODE_REPLAY', '1/0'],
    ['MERIDIAN_TRAVEL_MAX_KMH', 'fast'],
    ['MERIDIAN_REGION_LOCATIONS', 'eu=frankfurt'],
    ['MERIDIAN_SECURITY_WEBHOOK_URL', 'ftp://alerts.example.com'],
  ])('a bad %s stops the start with one line naming it', (variable, value) => {
    const errors = errorsFor({ [variable]: value, MERIDIAN_SECURITY_WEBHOOK_SECRET: 'x'.repeat(40) });
    const mine = errors.filter((e) => e.startsWith(`${variable} `));
    expect(mine).toHaveLength(1);
  });

  it('wants a webhook secret of 32+ characters with the URL, https unless loopback', () => {
    expect(errorsFor({ MERIDIAN_SECURITY_WEBHOOK_URL: 'https://alerts.example.com/hook' })[0]).toMatch(
      /^MERIDIAN_SECURITY_WEBHOOK_SECRET is required/,
    );
    expect(
      errorsFor({
        MERIDIAN_SECURITY_WEBHOOK_URL: 'https://alerts.example.com/hook',
        MERIDIAN_SECURITY_WEBHOOK_SECRET: 'short',
      })[0],
    ).toMatch(/^MERIDIAN_SECURITY_WEBHOOK_SECRET must be at least 32/);
    expect(
      errorsFor({
        MERIDIAN_SECURITY_WEBHOOK_URL: 'http://alerts.example.com/hook',
        MERIDIAN_SECURITY_WEBHOOK_SECRET: 'x'.repeat(32),
      })[0],
    ).toMatch(/^MERIDIAN_SECURITY_WEBHOOK_URL must use https/);
    expect(errorsFor({ MERIDIAN_SECURITY_WEBHOOK_SECRET: 'x'.repeat(32) })[0]).toMatch(
      /^MERIDIAN_SECURITY_WEBHOOK_SECRET is set without/,
    );
    expect(
      errorsFor({
        MERIDIAN_SECURITY_WEBHOOK_URL: 'http://127.0.0.1:9/hook',
        MERIDIAN_SECURITY_WEBHOOK_SECRET: 'x'.repeat(32),
      }),
    ).toEqual([]);
  });

  it('never lets the webhook secret into a log line (sensitive)', () => {
    expect(SENSITIVE_VARIABLES.has('MERIDIAN_SECURITY_WEBHOOK_SECRET')).toBe(true);
  });
});
