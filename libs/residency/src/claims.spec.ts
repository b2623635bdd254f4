import { describe, expect, it } from 'vitest';
import { claimAt, filterClaims, mapClaims, STANDARD_PROFILE_CLAIMS, validateClaimMapping } from './claims';

const UPSTREAM: Record<string, unknown> = {
  iss: 'https://idp.example.de',
  sub: 'upstream-248289761001',
  aud: 'meridian-eu',
  nonce: 'n-0S6_WzA2Mj',
  at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q',
  c_hash: 'LDktKdoQak3Pk0cnXxCltA',
  exp: 1_900_000_000,
  iat: 1_800_000_000,
  auth_time: 1_800_000_000,
  acr: 'http://eidas.europa.eu/LoA/high',
  amr: ['hwk'],
  sid: 'session-1',
  name: 'Erika Mustermann',
  email: 'erika@example.de',
  email_verified: true,
  address: { street_address: 'Heidestraße 17', locality: 'Köln', country: 'DE' },
  mail: 'e.mustermann@example.de',
  displayName: 'E. Mustermann',
  employeeNumber: '0815',
  phone_number: null,
  'urn:oid:2.5.4.42': 'Erika',
};

describe('mapClaims — without a mapping', () => {
  it('passes the standard OIDC Core §5.1 claims through and nothing else', () => {
    expect(mapClaims(UPSTREAM, undefined)).toStrictEqual({
      name: 'Erika Mustermann',
      email: 'erika@example.de',
      email_verified: true,
      address: { street_address: 'Heidestraße 17', locality: 'Köln', country: 'DE' },
    });
  });

  it('treats an empty mapping as no mapping', () => {
    expect(mapClaims(UPSTREAM, {})).toStrictEqual(mapClaims(UPSTREAM, undefined));
  });

  it('passes country through (global IdPs state it there)', () => {
    expect(mapClaims({ country: 'us', sub: 'x' }, undefined)).toStrictEqual({ country: 'us' });
  });

  it('knows the 19 standard claims plus country', () => {
    expect(STANDARD_PROFILE_CLAIMS).toHaveLength(20);
  });
});

describe('mapClaims — with a mapping', () => {
  it.each<[string, Record<string, string>, Record<string, unknown>]>([
    [
      'renames upstream claims',
      { email: 'mail', name: 'displayName' },
      { email: 'e.mustermann@example.de', name: 'E. Mustermann' },
    ],
    [
      'follows dot paths',
      { country: 'address.country', locality: 'address.locality' },
      { country: 'DE', locality: 'Köln' },
    ],
    ['keeps only the mapped claims', { email: 'email' }, { email: 'erika@example.de' }],
    [
      'ignores a missing upstream claim',
      { email: 'mail', nickname: 'nick', region: 'address.region' },
      { email: 'e.mustermann@example.de' },
    ],
    ['leaves out a null upstream claim (OIDC Core §5.3.2)', { phone_number: 'phone_number' }, {}],
    ['does not walk into a non-object', { x: 'name.length' }, {}],
    [
      'reads a claim URI containing dots as one key',
      { given_name: 'urn:oid:2.5.4.42' },
      { given_name: 'Erika' },
    ],
    [
      'never copies sub, iss or nonce, whatever the mapping says',
      { sub: 'sub', iss: 'iss', nonce: 'nonce', at_hash: 'at_hash', email: 'email' },
      { email: 'erika@example.de' },
    ],
    [
      'never copies the upstream sub under another name',
      { employee_id: 'sub', session: 'sid', email: 'email' },
      { email: 'erika@example.de' },
    ],
    ['never maps onto residency', { residency: 'address' }, {}],
    [
      'never reads or writes prototype keys',
      { __proto__x: 'email', constructor: 'email', polluted: '__proto__.polluted' },
      {},
    ],
  ])('%s', (_name, mapping, expected) => {
    expect(mapClaims(UPSTREAM, mapping)).toStrictEqual(expected);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('claimAt', () => {
  it.each<[string, unknown]>([
    ['address.country', 'DE'],
    ['address', UPSTREAM.address],
    ['address.country.length', undefined],
    ['address.toString', undefined],
    ['missing.path', undefined],
    ['__proto__', undefined],
  ])('%s → %j', (path, expected) => {
    expect(claimAt(UPSTREAM, path)).toStrictEqual(expected);
  });
});

describe('validateClaimMapping', () => {
  it.each<[string, unknown, string[]]>([
    ['accepts no mapping', undefined, []],
    ['accepts renames and dot paths', { email: 'mail', country: 'address.country' }, []],
    ['refuses a mapping that is not an object', ['email'], ['claimMapping']],
    ['refuses a protocol claim as target', { sub: 'employeeNumber' }, ['claimMapping.sub']],
    ['refuses a protocol claim as source', { employee_id: 'sub' }, ['claimMapping.employee_id']],
    ['refuses an invalid target name', { '1st': 'mail' }, ['claimMapping.1st']],
    ['refuses an empty path segment', { email: 'mail..x' }, ['claimMapping.email']],
    ['refuses a non-string source', { email: 3 }, ['claimMapping.email']],
    ['refuses prototype keys in a path', { email: 'constructor.prototype' }, ['claimMapping.email']],
  ])('%s', (_name, mapping, fields) => {
    expect(validateClaimMapping(mapping).map((e) => e.field)).toEqual(fields);
  });
});

describe('filterClaims', () => {
  const profile = {
    sub: 's-1',
    residency: { region: 'eu' },
    email: 'erika@example.de',
    name: 'Erika',
    address: { country: 'DE' },
  };

  it.each<[string, string[], Record<string, unknown>]>([
    [
      'keeps only the allowed claims',
      ['sub', 'residency', 'name'],
      { sub: 's-1', residency: { region: 'eu' }, name: 'Erika' },
    ],
    ['releases address as one whole claim', ['address'], { address: { country: 'DE' } }],
    ['does not release a part of a claim by dot path', ['address.country'], {}],
    ['ignores allowed names the profile lacks', ['sub', 'phone_number'], { sub: 's-1' }],
    ['releases nothing when nothing is allowed', [], {}],
    ['never releases inherited properties', ['constructor', 'toString', '__proto__'], {}],
  ])('%s', (_name, allowed, expected) => {
    expect(filterClaims(profile, allowed)).toStrictEqual(expected);
  });
});
