import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { validateBrokerEnv } from './config.schema';
import { parseConsoleRoles } from './console-roles';

const ENV: Record<string, string> = {
  MERIDIAN_REGION: 'eu',
  MERIDIAN_ISSUER: 'http://127.0.0.1:3000',
  MERIDIAN_KEK: randomBytes(32).toString('base64'),
  MERIDIAN_ADMIN_CLIENT_ID: 'meridian-admin',
  MERIDIAN_ADMIN_CLIENT_SECRET: 'admin-secret-0123456789abcdefghijk',
};

/** Exactly one error, naming the variable first. */
function onlyError(extra: Record<string, string>, variable: string): string {
  const result = validateBrokerEnv({ ...ENV, ...extra }, '/srv/meridian');
  if (result.ok) throw new Error('expected a configuration error');
  expect(result.errors).toHaveLength(1);
  expect(result.errors[0]!.startsWith(`${variable} `), result.errors[0]).toBe(true);
  return result.errors[0]!;
}

describe('MERIDIAN_CONSOLE_ROLES', () => {
  it('unset: nobody holds a role', () => {
    const result = validateBrokerEnv(ENV, '/srv/meridian');
    expect(result.ok && result.config.consoleRoles).toEqual({});
  });

  it('accepts subjects, emails (lower-cased) and federation-qualified groups', () => {
    const result = validateBrokerEnv(
      {
        ...ENV,
        MERIDIAN_CONSOLE_ROLES: JSON.stringify({
          'meridian:admin': { subjects: ['s-1'], emails: ['Ops@Example.com'], groups: ['corp-sso:admins'] },
          'meridian:compliance': { emails: ['dpo@example.com'] },
        }),
      },
      '/srv/meridian',
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.consoleRoles).toEqual({
      'meridian:admin': { subjects: ['s-1'], emails: ['ops@example.com'], groups: ['corp-sso:admins'] },
      'meridian:compliance': { subjects: [], emails: ['dpo@example.com'], groups: [] },
    });
  });

  it.each([
    ['not JSON', '{meridian:admin}', /not valid JSON/],
    ['an array', '[]', /JSON object/],
    ['an unknown role', '{"root":{"subjects":["a"]}}', /unknown role "root"/],
    ['an unknown rule key', '{"meridian:admin":{"users":["a"]}}', /meridian:admin\.users is not known/],
    ['a list that is not an array', '{"meridian:admin":{"emails":"a@b.c"}}', /must be an array/],
    ['an email that is not one', '{"meridian:admin":{"emails":["nobody"]}}', /emails\[0\] is not an email/],
    ['a group without its federation', '{"meridian:admin":{"groups":["admins"]}}', /federation id>:<group>/],
    ['an empty subject', '{"meridian:compliance":{"subjects":[""]}}', /subjects\[0\] must be a non-empty/],
  ])('refuses %s with one line naming the variable', (_label, value, reason) => {
    expect(onlyError({ MERIDIAN_CONSOLE_ROLES: value }, 'MERIDIAN_CONSOLE_ROLES')).toMatch(reason);
  });

  it('parses to a frozen mapping (nothing can grant itself a role later)', () => {
    const result = parseConsoleRoles('{"meridian:admin":{"subjects":["a"]}}');
    expect(result.ok && Object.isFrozen(result.mapping)).toBe(true);
    expect(result.ok && Object.isFrozen(result.mapping['meridian:admin'])).toBe(true);
  });
});

describe('MERIDIAN_CONSOLE_SESSION_SECONDS and MERIDIAN_CONSOLE_API_URL', () => {
  it('default: 8 hours, the broker’s own listener', () => {
    const result = validateBrokerEnv(ENV, '/srv/meridian');
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.consoleSessionSeconds).toBe(28800);
    expect(result.config.consoleApiUrl).toBeUndefined();
  });

  it.each(['60', '86401', 'an hour'])('refuses a session of %s', (value) => {
    onlyError({ MERIDIAN_CONSOLE_SESSION_SECONDS: value }, 'MERIDIAN_CONSOLE_SESSION_SECONDS');
  });

  it.each([
    'not a url',
    'ftp://broker.internal',
    'http://broker.internal/?x=1',
    'http://u:p@broker.internal',
  ])('refuses the API URL %s', (value) => {
    onlyError({ MERIDIAN_CONSOLE_API_URL: value }, 'MERIDIAN_CONSOLE_API_URL');
  });

  it('accepts an internal API URL and drops a trailing slash', () => {
    const result = validateBrokerEnv(
      { ...ENV, MERIDIAN_CONSOLE_API_URL: 'http://broker.internal:8080/' },
      '/srv/meridian',
    );
    expect(result.ok && result.config.consoleApiUrl).toBe('http://broker.internal:8080');
  });
});
