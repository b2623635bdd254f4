import { describe, expect, it } from 'vitest';
import {
  decide,
  decideOrThrow,
  decisionFor,
  dryRun,
  type DryRunSubject,
  type FederationFacts,
} from './engine';
import { ResidencyError } from './errors';
import { parsePolicy, type ResidencyPolicyDocument, type ResidencyPolicy } from './policy';

const CTX = { knownRegions: ['eu', 'us', 'ap'], otherPolicies: [] };

function policy(id: string, version: number, doc: ResidencyPolicyDocument): ResidencyPolicy {
  return parsePolicy(id, version, doc, CTX);
}

const EU_GDPR_DOC: ResidencyPolicyDocument = {
  appliesTo: { jurisdictions: ['DE', 'FR', 'EU'] },
  homeRegion: 'eu',
  storageRegions: ['eu'],
  release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name'], us: ['name'] } },
};
const EU_GDPR = policy('eu-gdpr', 3, EU_GDPR_DOC);
const EU_ONLY = policy('eu-wide', 1, { ...EU_GDPR_DOC, appliesTo: { jurisdictions: ['EU'] } });
const DE_ONLY = policy('de-bdsg', 2, {
  ...EU_GDPR_DOC,
  appliesTo: { jurisdictions: ['DE'] },
  storageRegions: ['eu', 'ap'],
  processingRegions: ['eu'],
});
const US = policy('us', 1, {
  appliesTo: { jurisdictions: ['US', 'CA'] },
  homeRegion: 'us',
  storageRegions: ['us', 'eu'],
  release: { default: ['sub', 'residency', 'name'] },
  retention: { auditDays: 90 },
  pseudonymiseForeignLogs: false,
});

const NATIONAL_DE: FederationFacts = { id: 'de-eid', kind: 'national', jurisdiction: 'DE' };
const GLOBAL: FederationFacts = { id: 'social', kind: 'global' };

describe('decide — where a subject’s data lives', () => {
  it.each<[string, FederationFacts, Record<string, unknown>, ResidencyPolicy[], string, string, string]>([
    [
      'a national DE federation under a policy listing DE/FR/EU is homed in eu',
      NATIONAL_DE,
      {},
      [EU_GDPR, US],
      'DE',
      'eu-gdpr@3',
      'eu',
    ],
    [
      'a DE-national federation is covered when only an EU policy exists',
      NATIONAL_DE,
      {},
      [EU_ONLY, US],
      'DE',
      'eu-wide@1',
      'eu',
    ],
    [
      'a national federation ignores the country its users claim',
      NATIONAL_DE,
      { country: 'US' },
      [EU_GDPR, US],
      'DE',
      'eu-gdpr@3',
      'eu',
    ],
    [
      'a regional EU federation is covered by the policy listing EU',
      { id: 'eu-idp', kind: 'regional', jurisdiction: 'EU' },
      {},
      [EU_ONLY, US],
      'EU',
      'eu-wide@1',
      'eu',
    ],
    [
      'a federation jurisdiction is normalised',
      { id: 'fr', kind: 'national', jurisdiction: ' fr ' },
      {},
      [EU_GDPR],
      'FR',
      'eu-gdpr@3',
      'eu',
    ],
    [
      'a global user with country "us" (lower case) is normalised to US',
      GLOBAL,
      { country: 'us' },
      [EU_GDPR, US],
      'US',
      'us@1',
      'us',
    ],
    [
      'a global user with address.country DE is homed in eu',
      GLOBAL,
      { address: { country: 'DE' } },
      [EU_GDPR, US],
      'DE',
      'eu-gdpr@3',
      'eu',
    ],
    [
      'a global user from a member state not listed by name is covered through EU',
      GLOBAL,
      { country: 'IT' },
      [EU_GDPR, US],
      'IT',
      'eu-gdpr@3',
      'eu',
    ],
    ['an exact listing beats EU', NATIONAL_DE, {}, [EU_ONLY, DE_ONLY, US], 'DE', 'de-bdsg@2', 'eu'],
  ])('%s', (_name, federation, claims, policies, jurisdiction, policyRef, homeRegion) => {
    const result = decide(federation, claims, policies);
    if (!result.ok) throw new Error(`expected a decision, got ${result.code}: ${result.message}`);
    expect(result.decision.jurisdiction).toBe(jurisdiction);
    expect(result.decision.policyRef).toBe(policyRef);
    expect(result.decision.homeRegion).toBe(homeRegion);
  });
});

describe('decide — fails closed, never guesses a region', () => {
  it.each<[string, FederationFacts, Record<string, unknown>, ResidencyPolicy[], string, string]>([
    [
      'a global user without a country',
      GLOBAL,
      { email: 'a@example.com' },
      [EU_GDPR, US],
      'ERR_RESIDENCY_NO_JURISDICTION',
      'did not state a single country',
    ],
    [
      'a global user with contradicting country claims',
      GLOBAL,
      { country: 'DE', address: { country: 'US' } },
      [EU_GDPR, US],
      'ERR_RESIDENCY_NO_JURISDICTION',
      '"social"',
    ],
    [
      'a global user with a country name instead of a code',
      GLOBAL,
      { address: { country: 'Germany' } },
      [EU_GDPR, US],
      'ERR_RESIDENCY_NO_JURISDICTION',
      'ISO 3166-1 alpha-2',
    ],
    [
      'a national federation without a jurisdiction',
      { id: 'x', kind: 'national' },
      { country: 'DE' },
      [EU_GDPR],
      'ERR_RESIDENCY_NO_JURISDICTION',
      'Federation "x" is national but has no valid jurisdiction',
    ],
    [
      'a regional federation with a malformed jurisdiction',
      { id: 'y', kind: 'regional', jurisdiction: 'Europe' },
      {},
      [EU_GDPR],
      'ERR_RESIDENCY_NO_JURISDICTION',
      'must set its "jurisdiction"',
    ],
    [
      'an uncovered jurisdiction (JP)',
      { id: 'jp', kind: 'national', jurisdiction: 'JP' },
      {},
      [EU_GDPR, US],
      'ERR_RESIDENCY_NO_POLICY',
      'No residency policy covers jurisdiction "JP"',
    ],
    [
      'an uncovered global user (JP)',
      GLOBAL,
      { country: 'jp' },
      [EU_GDPR, US],
      'ERR_RESIDENCY_NO_POLICY',
      'add "JP" to a policy',
    ],
    [
      'a member state when no policy lists it or EU',
      NATIONAL_DE,
      {},
      [US],
      'ERR_RESIDENCY_NO_POLICY',
      '"DE"',
    ],
    [
      'any subject when there are no policies',
      GLOBAL,
      { country: 'US' },
      [],
      'ERR_RESIDENCY_NO_POLICY',
      '"US"',
    ],
    [
      'a jurisdiction two policies list exactly',
      NATIONAL_DE,
      {},
      [EU_GDPR, DE_ONLY],
      'ERR_RESIDENCY_AMBIGUOUS_POLICY',
      'de-bdsg, eu-gdpr',
    ],
  ])('refuses %s', (_name, federation, claims, policies, code, message) => {
    const result = decide(federation, claims, policies);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.code).toBe(code);
    expect(result.message).toContain(message);
  });

  it('decideOrThrow throws a ResidencyError with the refusal’s code', () => {
    expect(() => decideOrThrow(GLOBAL, {}, [EU_GDPR])).toThrowError(
      expect.objectContaining({ code: 'ERR_RESIDENCY_NO_JURISDICTION' }) as Error,
    );
    expect(() => decideOrThrow(GLOBAL, {}, [EU_GDPR])).toThrow(ResidencyError);
    expect(decideOrThrow(NATIONAL_DE, {}, [EU_GDPR]).policyRef).toBe('eu-gdpr@3');
  });
});

describe('the decision', () => {
  const decision = decideOrThrow(NATIONAL_DE, {}, [EU_GDPR, US]);
  const usDecision = decideOrThrow(GLOBAL, { country: 'US' }, [EU_GDPR, US]);
  const deDecision = decideOrThrow(NATIONAL_DE, {}, [DE_ONLY, US]);

  it.each<[string, string, string[]]>([
    ['the home region gets default ∪ byRegion[home]', 'eu', ['sub', 'residency', 'email', 'name']],
    [
      'a foreign region named in byRegion gets default ∪ byRegion[region]',
      'us',
      ['sub', 'residency', 'name'],
    ],
    ['a region the policy does not name gets release.default only', 'ap', ['sub', 'residency']],
    ['an unknown region gets release.default only', 'mars', ['sub', 'residency']],
    ['an inherited key is not a region', 'constructor', ['sub', 'residency']],
  ])('releaseFor: %s', (_name, region, claims) => {
    expect(decision.releaseFor(region)).toEqual(claims);
  });

  it('releaseFor lists a claim once when default and byRegion both name it', () => {
    const p = policy('p', 1, {
      ...EU_GDPR_DOC,
      release: { default: ['sub', 'residency', 'name'], byRegion: { eu: ['name', 'email'] } },
    });
    expect(decideOrThrow(NATIONAL_DE, {}, [p]).releaseFor('eu')).toEqual([
      'sub',
      'residency',
      'name',
      'email',
    ]);
  });

  it('residencyClaim has exactly region, jurisdiction, policy id@version and processing', () => {
    expect(decision.residencyClaim()).toStrictEqual({
      region: 'eu',
      jurisdiction: 'DE',
      policy: 'eu-gdpr@3',
      processing: ['eu'],
    });
  });

  it('processingRegions defaults to storageRegions', () => {
    expect(usDecision.storageRegions).toEqual(['us', 'eu']);
    expect(usDecision.processingRegions).toEqual(['us', 'eu']);
    expect(usDecision.residencyClaim().processing).toEqual(['us', 'eu']);
  });

  it.each<[string, string, boolean, boolean]>([
    ['eu', 'the home region', true, true],
    ['ap', 'a storage-only region', true, false],
    ['us', 'a region the policy does not list', false, false],
  ])('mayStoreIn / mayProcessIn %s (%s)', (region, _name, store, process) => {
    expect(deDecision.mayStoreIn(region)).toBe(store);
    expect(deDecision.mayProcessIn(region)).toBe(process);
  });

  it('carries retention and log pseudonymisation, with the defaults filled in', () => {
    expect(decision.retention).toEqual({ auditDays: 365, inactiveProfileDays: 730 });
    expect(decision.pseudonymiseForeignLogs).toBe(true);
    expect(usDecision.retention).toEqual({ auditDays: 90, inactiveProfileDays: 730 });
    expect(usDecision.pseudonymiseForeignLogs).toBe(false);
  });

  it('cannot be changed through what it hands out', () => {
    decision.residencyClaim().processing.push('us');
    decision.releaseFor('eu').push('phone_number');
    expect(decision.residencyClaim().processing).toEqual(['eu']);
    expect(decision.releaseFor('eu')).toEqual(['sub', 'residency', 'email', 'name']);
    expect(Object.isFrozen(decision)).toBe(true);
  });
});

describe('dryRun — what replacing a policy would do to the subjects stored here', () => {
  const subjects: DryRunSubject[] = [
    { jurisdiction: 'DE', homeRegion: 'eu', policyId: 'de-bdsg' },
    { jurisdiction: 'DE', homeRegion: 'eu', policyId: 'de-bdsg' },
    { jurisdiction: 'DE', homeRegion: 'eu', policyId: 'de-bdsg' },
    { jurisdiction: 'FR', homeRegion: 'eu', policyId: 'eu-gdpr' },
    { jurisdiction: 'IT', homeRegion: 'eu', policyId: 'eu-gdpr' },
  ];
  const euGdpr = policy('eu-gdpr', 3, { ...EU_GDPR_DOC, appliesTo: { jurisdictions: ['FR', 'EU'] } });
  const others = [euGdpr, DE_ONLY, US];
  const zero = { changeHomeRegion: 0, loseReleasedClaims: 0, loseCoverage: 0, leaveRegion: 0 };

  it('counts the DE subjects when a candidate moves DE from eu to us', () => {
    const candidate = policy('de-bdsg', 3, {
      ...EU_GDPR_DOC,
      appliesTo: { jurisdictions: ['DE'] },
      homeRegion: 'us',
      storageRegions: ['us'],
    });
    expect(dryRun(candidate, DE_ONLY, subjects, others, 'eu')).toEqual({
      region: 'eu',
      subjects: 5,
      ...zero,
      changeHomeRegion: 3,
      leaveRegion: 3,
      byJurisdiction: {
        DE: { subjects: 3, ...zero, changeHomeRegion: 3, leaveRegion: 3 },
        FR: { subjects: 1, ...zero },
        IT: { subjects: 1, ...zero },
      },
    });
  });

  it('counts subjects as losing released claims when email is removed from byRegion.eu', () => {
    const candidate = policy('eu-gdpr', 4, {
      ...EU_GDPR_DOC,
      appliesTo: { jurisdictions: ['FR', 'EU'] },
      release: { default: ['sub', 'residency'], byRegion: { eu: ['name'], us: ['name'] } },
    });
    const report = dryRun(candidate, euGdpr, subjects, others, 'eu');
    expect(report).toMatchObject({ subjects: 5, ...zero, loseReleasedClaims: 2 });
    expect(report.byJurisdiction).toEqual({
      DE: { subjects: 3, ...zero },
      FR: { subjects: 1, ...zero, loseReleasedClaims: 1 },
      IT: { subjects: 1, ...zero, loseReleasedClaims: 1 },
    });
  });

  it.each<[string, ResidencyPolicyDocument, Partial<typeof zero>]>([
    [
      'an unchanged policy changes nothing',
      { ...EU_GDPR_DOC, appliesTo: { jurisdictions: ['FR', 'EU'] } },
      {},
    ],
    [
      'releasing more claims loses none',
      {
        ...EU_GDPR_DOC,
        appliesTo: { jurisdictions: ['FR', 'EU'] },
        release: {
          default: ['sub', 'residency', 'locale'],
          byRegion: { eu: ['email', 'name', 'phone_number'], us: ['name'] },
        },
      },
      {},
    ],
    [
      'moving a claim from byRegion.us to default loses none',
      {
        ...EU_GDPR_DOC,
        appliesTo: { jurisdictions: ['FR', 'EU'] },
        release: { default: ['sub', 'residency', 'name'], byRegion: { eu: ['email'] } },
      },
      {},
    ],
    [
      'dropping byRegion.us loses claims released to us',
      {
        ...EU_GDPR_DOC,
        appliesTo: { jurisdictions: ['FR', 'EU'] },
        release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name'] } },
      },
      { loseReleasedClaims: 2 },
    ],
    [
      'dropping EU from appliesTo leaves IT uncovered',
      { ...EU_GDPR_DOC, appliesTo: { jurisdictions: ['FR'] } },
      { loseCoverage: 1 },
    ],
    [
      'adding a storage region does not move anyone',
      { ...EU_GDPR_DOC, appliesTo: { jurisdictions: ['FR', 'EU'] }, storageRegions: ['eu', 'us'] },
      {},
    ],
  ])('%s', (_name, doc, expected) => {
    const report = dryRun(policy('eu-gdpr', 4, doc), euGdpr, subjects, others, 'eu');
    expect(report).toMatchObject({ subjects: 5, ...zero, ...expected });
  });

  it('a new policy changes no subject governed by another one', () => {
    const candidate = policy('jp', 1, {
      ...EU_GDPR_DOC,
      appliesTo: { jurisdictions: ['JP'] },
      homeRegion: 'ap',
      storageRegions: ['ap'],
    });
    expect(dryRun(candidate, undefined, subjects, others, 'eu')).toMatchObject({ subjects: 5, ...zero });
  });

  it('does not blame a candidate for stale records under another policy', () => {
    const stale: DryRunSubject[] = [{ jurisdiction: 'US', homeRegion: 'eu', policyId: 'us' }];
    expect(dryRun(euGdpr, euGdpr, stale, others, 'eu')).toMatchObject({ subjects: 1, ...zero });
  });
});

describe('decisionFor', () => {
  it('is not changed by later edits to the policy object it was made from', () => {
    const p = policy('p', 1, structuredClone(EU_GDPR_DOC));
    const decision = decisionFor(p, 'DE');
    p.release.byRegion.eu!.push('phone_number');
    p.release.default.push('locale');
    p.storageRegions.push('us');
    expect(decision.releaseFor('eu')).toEqual(['sub', 'residency', 'email', 'name']);
    expect(decision.releaseFor('ap')).toEqual(['sub', 'residency']);
    expect(decision.mayStoreIn('us')).toBe(false);
  });
});
