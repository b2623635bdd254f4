import { describe, expect, it } from 'vitest';
import {
  coverage,
  coveringPolicy,
  EU_MEMBER_STATES,
  jurisdictionFromClaims,
  jurisdictionsOverlap,
  normaliseJurisdiction,
} from './jurisdiction';
import { parsePolicy, type ResidencyPolicy } from './policy';

const REGIONS = { knownRegions: ['eu', 'us', 'ap'], otherPolicies: [] };

function policy(id: string, jurisdictions: string[], homeRegion = 'eu'): ResidencyPolicy {
  return parsePolicy(
    id,
    1,
    {
      appliesTo: { jurisdictions },
      homeRegion,
      storageRegions: [homeRegion],
      release: { default: ['sub', 'residency'] },
    },
    REGIONS,
  );
}

describe('EU member states', () => {
  it('lists the 27 member states once each, Greece as GR', () => {
    expect(EU_MEMBER_STATES).toHaveLength(27);
    expect(new Set(EU_MEMBER_STATES).size).toBe(27);
    expect(EU_MEMBER_STATES).toContain('GR');
    expect(EU_MEMBER_STATES).not.toContain('EL');
    expect(EU_MEMBER_STATES).not.toContain('GB');
  });
});

describe('normaliseJurisdiction', () => {
  it.each([
    ['DE', 'DE'],
    [' de ', 'DE'],
    ['eu', 'EU'],
    ['us', 'US'],
    ['DEU', undefined],
    ['Germany', undefined],
    ['D', undefined],
    ['', undefined],
    ['D1', undefined],
    [49, undefined],
    [null, undefined],
    [undefined, undefined],
    [['DE'], undefined],
  ])('normalises %j to %j', (input, expected) => {
    expect(normaliseJurisdiction(input)).toBe(expected);
  });
});

describe('jurisdictionFromClaims', () => {
  it.each<[string, Record<string, unknown>, string | undefined]>([
    ['takes a top-level country code', { country: 'DE' }, 'DE'],
    ['upper-cases a lower-case country code', { country: 'us' }, 'US'],
    ['reads address.country (OIDC Core §5.1.1)', { address: { country: 'FR' } }, 'FR'],
    ['accepts both when they agree', { country: 'de', address: { country: 'DE' } }, 'DE'],
    [
      'refuses contradicting country and address.country',
      { country: 'DE', address: { country: 'US' } },
      undefined,
    ],
    [
      'falls back to address.country when country is not a code',
      { country: 'Germany', address: { country: 'DE' } },
      'DE',
    ],
    ['refuses a country name', { address: { country: 'Germany' } }, undefined],
    ['refuses an alpha-3 code', { country: 'DEU' }, undefined],
    ['refuses EU as a person’s country', { country: 'EU' }, undefined],
    ['refuses an address that is a string', { address: 'Unter den Linden 1, Berlin, DE' }, undefined],
    ['refuses a non-string country', { country: 276 }, undefined],
    ['answers nothing without any country claim', { email: 'a@example.com' }, undefined],
    [
      'does not read an inherited country',
      Object.create({ country: 'DE' }) as Record<string, unknown>,
      undefined,
    ],
  ])('%s', (_name, claims, expected) => {
    expect(jurisdictionFromClaims(claims)).toBe(expected);
  });
});

describe('coveringPolicy', () => {
  const euGdpr = policy('eu-gdpr', ['FR', 'EU']);
  const deOnly = policy('de-bdsg', ['DE']);
  const us = policy('us', ['US'], 'us');

  it.each<[string, string, ResidencyPolicy[], string | undefined]>([
    ['covers a listed jurisdiction exactly', 'FR', [euGdpr, us], 'eu-gdpr'],
    ['covers an EU member state through EU', 'DE', [euGdpr, us], 'eu-gdpr'],
    ['prefers an exact listing over EU', 'DE', [euGdpr, deOnly, us], 'de-bdsg'],
    ['prefers an exact listing over EU whatever the order', 'DE', [deOnly, euGdpr], 'de-bdsg'],
    ['covers EU itself only through an EU listing', 'EU', [euGdpr, us], 'eu-gdpr'],
    ['does not extend EU to a non-member', 'CH', [euGdpr, us], undefined],
    ['does not extend a member state listing to EU', 'EU', [deOnly, us], undefined],
    ['covers nothing without a listing', 'JP', [euGdpr, us], undefined],
    ['normalises the jurisdiction it is asked about', ' us ', [euGdpr, us], 'us'],
  ])('%s', (_name, jurisdiction, policies, expected) => {
    expect(coveringPolicy(jurisdiction, policies)?.id).toBe(expected);
  });

  it('fails closed when two policies list a jurisdiction exactly', () => {
    const other = policy('fr-2', ['FR']);
    expect(coverage('FR', [euGdpr, other])).toEqual({ kind: 'ambiguous', policyIds: ['eu-gdpr', 'fr-2'] });
    expect(coveringPolicy('FR', [euGdpr, other])).toBeUndefined();
  });
});

describe('jurisdictionsOverlap', () => {
  it.each([
    ['DE', 'DE', true],
    ['EU', 'DE', true],
    ['DE', 'EU', true],
    ['EU', 'EU', true],
    ['EU', 'CH', false],
    ['DE', 'FR', false],
  ])('%s and %s overlap: %s', (a, b, expected) => {
    expect(jurisdictionsOverlap(a, b)).toBe(expected);
  });
});
