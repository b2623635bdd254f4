import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { validateBrokerEnv, type ConfigResult } from './config.schema';

const KEK = randomBytes(32).toString('base64');
const ADMIN_SECRET = 'admin-secret-0123456789abcdefghijk'; // 34 characters
const DB_PASSWORD = 'db-pass-never-logged';

/** Everything set, as an operator would in production. */
const FULL: Record<string, string> = {
  MERIDIAN_REGION: 'eu',
  MERIDIAN_ISSUER: 'https://eu.id.example.com',
  PORT: '3000',
  CONTROL_DATABASE_URL: `postgres://meridian:${DB_PASSWORD}@db.internal:5432/meridian_control`,
  REGION_DATABASE_URL: `postgres://meridian:${DB_PASSWORD}@db.internal:5432/meridian_eu`,
  MERIDIAN_KEK: KEK,
  MERIDIAN_ADMIN_CLIENT_ID: 'meridian-admin',
  MERIDIAN_ADMIN_CLIENT_SECRET: ADMIN_SECRET,
  MERIDIAN_JURISDICTION: 'EU',
  MERIDIAN_LOCATOR_PEPPER: randomBytes(32).toString('base64'),
  LOG_LEVEL: 'info',
};

/** Only the required variables: development defaults for the rest. */
const MINIMAL: Record<string, string> = {
  MERIDIAN_REGION: 'eu',
  MERIDIAN_ISSUER: 'http://127.0.0.1:3000',
  MERIDIAN_KEK: KEK,
  MERIDIAN_ADMIN_CLIENT_ID: 'meridian-admin',
  MERIDIAN_ADMIN_CLIENT_SECRET: ADMIN_SECRET,
};

const REQUIRED = [
  'MERIDIAN_REGION',
  'MERIDIAN_ISSUER',
  'MERIDIAN_KEK',
  'MERIDIAN_ADMIN_CLIENT_ID',
  'MERIDIAN_ADMIN_CLIENT_SECRET',
] as const;

function errorsOf(result: ConfigResult): string[] {
  if (result.ok)
    throw new Error(`expected a configuration error, got ok (warnings: ${JSON.stringify(result.warnings)})`);
  return result.errors;
}

function validate(env: Record<string, string | undefined>): ConfigResult {
  return validateBrokerEnv(env, '/srv/meridian');
}

/** Exactly one error, and it starts with the variable's name. */
function expectOnlyError(env: Record<string, string | undefined>, variable: string): string {
  const errors = errorsOf(validate(env));
  expect(errors).toHaveLength(1);
  expect(errors[0]!.startsWith(`${variable} `), `"${errors[0]}" should start with "${variable} "`).toBe(true);
  return errors[0]!;
}

function without(env: Record<string, string>, name: string): Record<string, string> {
  const copy = { ...env };
  delete copy[name];
  return copy;
}

describe('validateBrokerEnv — required variables', () => {
  describe.each([
    ['full', FULL],
    ['minimal', MINIMAL],
  ])('on an otherwise %s environment', (_label, base) => {
    it.each(REQUIRED)('refuses to start without %s and names it', (name) => {
      const line = expectOnlyError(without(base, name), name);
      expect(line).toMatch(/is required/);
    });

    it.each(REQUIRED)('treats a blank %s as missing', (name) => {
      expectOnlyError({ ...base, [name]: '   ' }, name);
    });
  });

  it('reports every missing variable at once, one line each, when the environment is empty', () => {
    const errors = errorsOf(validate({}));
    expect(errors).toHaveLength(REQUIRED.length);
    for (const name of REQUIRED) expect(errors.filter((e) => e.startsWith(`${name} `))).toHaveLength(1);
  });
});

describe('validateBrokerEnv — malformed values', () => {
  const base16 = randomBytes(16).toString('base64');
  const base33 = randomBytes(33).toString('base64');
  const cases: [string, string, string | undefined][] = [
    // [label, variable, value]
    ['a KEK that is not base64', 'MERIDIAN_KEK', 'not base64 at all!'],
    ['a KEK of 3 characters', 'MERIDIAN_KEK', 'abc'],
    ['a KEK of 16 bytes', 'MERIDIAN_KEK', base16],
    ['a KEK of 33 bytes', 'MERIDIAN_KEK', base33],
    ['a KEK given as 64 hex digits', 'MERIDIAN_KEK', randomBytes(32).toString('hex')],
    ['a KEK_PREVIOUS of 16 bytes', 'MERIDIAN_KEK_PREVIOUS', base16],
    ['an http issuer on a public host', 'MERIDIAN_ISSUER', 'http://eu.id.example.com'],
    [
      'an http issuer on a host that merely starts with localhost',
      'MERIDIAN_ISSUER',
      'http://localhost.example.com',
    ],
    ['an http issuer on a host that merely starts with 127.', 'MERIDIAN_ISSUER', 'http://127.0.0.1.nip.io'],
    ['an issuer with a query', 'MERIDIAN_ISSUER', 'https://eu.id.example.com/?tenant=1'],
    ['an issuer with a fragment', 'MERIDIAN_ISSUER', 'https://eu.id.example.com/#top'],
    // RFC 8414 §2 / OIDC Discovery §4.3: an issuer has no query or fragment component — an
    // empty one ("?" or "#" with nothing after it) is still a component, and would end up
    // verbatim in every `iss` claim.
    ['an issuer with an empty query', 'MERIDIAN_ISSUER', 'https://eu.id.example.com/?'],
    ['an issuer with an empty fragment', 'MERIDIAN_ISSUER', 'https://eu.id.example.com/#'],
    ['an issuer with credentials', 'MERIDIAN_ISSUER', 'https://admin:pw@eu.id.example.com'],
    ['an issuer that is not a URL', 'MERIDIAN_ISSUER', 'eu.id.example.com'],
    ['an issuer with another scheme', 'MERIDIAN_ISSUER', 'ftp://eu.id.example.com'],
    ['PORT above 65535', 'PORT', '65536'],
    ['a negative PORT', 'PORT', '-1'],
    ['a PORT that is not a number', 'PORT', 'http'],
    ['a fractional PORT', 'PORT', '3000.5'],
    ['a hexadecimal PORT', 'PORT', '0x50'],
    [
      'a CONTROL_DATABASE_URL that is mysql://',
      'CONTROL_DATABASE_URL',
      'mysql://meridian@db.internal/meridian_control',
    ],
    ['a CONTROL_DATABASE_URL that is not a URL', 'CONTROL_DATABASE_URL', 'meridian_control'],
    ['a REGION_DATABASE_URL that is http://', 'REGION_DATABASE_URL', 'http://db.internal/meridian_eu'],
    ['an upper-case region id', 'MERIDIAN_REGION', 'EU'],
    ['a region id with an underscore', 'MERIDIAN_REGION', 'eu_west'],
    ['a region id starting with a digit', 'MERIDIAN_REGION', '1eu'],
    ['a region id of 33 characters', 'MERIDIAN_REGION', `e${'u'.repeat(32)}`],
    ['a lower-case jurisdiction', 'MERIDIAN_JURISDICTION', 'de'],
    ['a three-letter jurisdiction', 'MERIDIAN_JURISDICTION', 'DEU'],
    ['a jurisdiction with a digit', 'MERIDIAN_JURISDICTION', 'D1'],
    ['an unknown LOG_LEVEL', 'LOG_LEVEL', 'verbose'],
    ['an admin secret of 31 characters', 'MERIDIAN_ADMIN_CLIENT_SECRET', 'x'.repeat(31)],
    ['an admin client id with a space', 'MERIDIAN_ADMIN_CLIENT_ID', 'meridian admin'],
    ['an unknown signing algorithm', 'MERIDIAN_SIGNING_ALG', 'HS256'],
    ['a rotation interval shorter than a token lifetime', 'MERIDIAN_KEY_ROTATION_INTERVAL_SECONDS', '60'],
    ['a HOST that is a name', 'HOST', 'example.com'],
  ];

  it.each(cases)('refuses %s with exactly one line naming it', (_label, variable, value) => {
    expectOnlyError({ ...FULL, [variable]: value }, variable);
  });

  it.each([
    ['MERIDIAN_KEK', 'abc'],
    ['MERIDIAN_KEK', randomBytes(16).toString('base64')],
    ['MERIDIAN_ADMIN_CLIENT_SECRET', 'short-secret-value'],
  ])('never echoes the value of %s in the error', (variable, value) => {
    const [line] = errorsOf(validate({ ...FULL, [variable]: value }));
    expect(line).not.toContain(value);
  });

  it('never echoes a database URL or its password in the error', () => {
    const url = `mysql://meridian:${DB_PASSWORD}@db.internal/meridian_control`;
    const [line] = errorsOf(validate({ ...FULL, CONTROL_DATABASE_URL: url }));
    expect(line).not.toContain(DB_PASSWORD);
    expect(line).not.toContain(url);
  });

  it('refuses CONTROL_DATABASE_URL without REGION_DATABASE_URL, naming the missing one', () => {
    expectOnlyError(without(FULL, 'REGION_DATABASE_URL'), 'REGION_DATABASE_URL');
  });

  it('refuses REGION_DATABASE_URL without CONTROL_DATABASE_URL, naming the missing one', () => {
    expectOnlyError(without(FULL, 'CONTROL_DATABASE_URL'), 'CONTROL_DATABASE_URL');
  });

  it('refuses a region database that is the control database (personal data never goes to the control plane)', () => {
    expectOnlyError({ ...FULL, REGION_DATABASE_URL: FULL.CONTROL_DATABASE_URL }, 'REGION_DATABASE_URL');
  });

  it('reports several errors at once, one line per variable', () => {
    const errors = errorsOf(
      validate({
        ...FULL,
        MERIDIAN_KEK: 'abc',
        PORT: 'http',
        LOG_LEVEL: 'verbose',
        MERIDIAN_REGION: 'EU',
        MERIDIAN_ISSUER: 'http://eu.id.example.com',
      }),
    );
    expect(errors).toHaveLength(5);
    for (const name of ['MERIDIAN_KEK', 'PORT', 'LOG_LEVEL', 'MERIDIAN_REGION', 'MERIDIAN_ISSUER'])
      expect(
        errors.filter((e) => e.startsWith(`${name} `)),
        name,
      ).toHaveLength(1);
  });
});

describe('validateBrokerEnv — NODE_ENV=production', () => {
  const PROD = { ...FULL, NODE_ENV: 'production' };

  it('accepts a complete production environment without warnings', () => {
    const result = validate(PROD);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.warnings).toEqual([]);
  });

  it('refuses the embedded database (no database URLs)', () => {
    const line = expectOnlyError(
      without(without(PROD, 'CONTROL_DATABASE_URL'), 'REGION_DATABASE_URL'),
      'CONTROL_DATABASE_URL',
    );
    expect(line).toContain('REGION_DATABASE_URL');
  });

  it.each(['http://127.0.0.1:3000', 'http://localhost:3000', 'http://[::1]:3000'])(
    'refuses the http issuer %s even on loopback',
    (issuer) => {
      expectOnlyError({ ...PROD, MERIDIAN_ISSUER: issuer }, 'MERIDIAN_ISSUER');
    },
  );

  it('refuses a missing MERIDIAN_LOCATOR_PEPPER (regions must share one, never derive it)', () => {
    expectOnlyError(without(PROD, 'MERIDIAN_LOCATOR_PEPPER'), 'MERIDIAN_LOCATOR_PEPPER');
  });

  it('refuses a missing MERIDIAN_JURISDICTION', () => {
    expectOnlyError(without(PROD, 'MERIDIAN_JURISDICTION'), 'MERIDIAN_JURISDICTION');
  });
});

describe('validateBrokerEnv — valid environments', () => {
  it('accepts a full environment and normalises it', () => {
    const result = validate({ ...FULL, MERIDIAN_ISSUER: 'https://eu.id.example.com/', PORT: '8443' });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.warnings).toEqual([]);
    expect(result.config).toMatchObject({
      nodeEnv: 'development',
      region: 'eu',
      issuer: 'https://eu.id.example.com',
      port: 8443,
      host: '0.0.0.0',
      controlDatabaseUrl: FULL.CONTROL_DATABASE_URL,
      regionDatabaseUrl: FULL.REGION_DATABASE_URL,
      adminClientId: 'meridian-admin',
      adminClientSecret: ADMIN_SECRET,
      jurisdiction: 'EU',
      signingAlg: 'ES256',
      logLevel: 'info',
      dataDir: '/srv/meridian/.meridian',
    });
    expect(result.config.kek.equals(Buffer.from(KEK, 'base64'))).toBe(true);
  });

  it('accepts the KEK in base64url too', () => {
    const kek = randomBytes(32);
    const result = validate({ ...FULL, MERIDIAN_KEK: kek.toString('base64url') });
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.config.kek.equals(kek)).toBe(true);
  });

  it('accepts a minimal development environment, with a warning for each development default', () => {
    const result = validate(MINIMAL);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.warnings.map((w) => w.variable).sort()).toEqual([
      'CONTROL_DATABASE_URL',
      'MERIDIAN_JURISDICTION',
      'MERIDIAN_LOCATOR_PEPPER',
    ]);
    expect(result.config).toMatchObject({
      port: 3000,
      controlDatabaseUrl: undefined,
      regionDatabaseUrl: undefined,
      jurisdiction: 'XX',
      issuer: 'http://127.0.0.1:3000',
    });
  });

  it.each([
    'http://127.0.0.1:3000',
    'http://127.5.6.7',
    'http://localhost:3000',
    'http://eu.localhost:3000',
    'http://[::1]:3000',
  ])('allows the http issuer %s on loopback outside production', (issuer) => {
    expect(validate({ ...FULL, MERIDIAN_ISSUER: issuer }).ok).toBe(true);
  });

  it.each(['0', '1', '65535'])('accepts PORT=%s', (port) => {
    const result = validate({ ...FULL, PORT: port });
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.config.port).toBe(Number(port));
  });

  it('accepts an admin secret of exactly 32 characters', () => {
    expect(validate({ ...FULL, MERIDIAN_ADMIN_CLIENT_SECRET: 'y'.repeat(32) }).ok).toBe(true);
  });
});
