import { describe, expect, it } from 'vitest';
import { ResidencyError } from './errors';
import {
  parsePolicy,
  policyRef,
  validatePolicy,
  type PolicyValidationContext,
  type ResidencyPolicy,
} from './policy';

const CONTRACT_EXAMPLE = {
  appliesTo: { jurisdictions: ['DE', 'FR', 'EU'] },
  homeRegion: 'eu',
  storageRegions: ['eu'],
  processingRegions: ['eu'],
  release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name'] } },
  retention: { auditDays: 365, inactiveProfileDays: 730 },
  pseudonymiseForeignLogs: true,
};

const MINIMAL = {
  appliesTo: { jurisdictions: ['US'] },
  homeRegion: 'us',
  storageRegions: ['us', 'eu'],
  release: { default: ['sub', 'residency'] },
};

const CTX: PolicyValidationContext = { knownRegions: ['eu', 'us', 'ap'], otherPolicies: [] };

function fieldsOf(result: ReturnType<typeof validatePolicy>): string[] {
  if (result.ok) throw new Error('expected validation errors, got ok');
  return result.errors.map((e) => e.field);
}

/** A deep copy of `base` with `path` (dot-separated) set to `value`, or removed for `undefined`. */
function withField(base: object, path: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(base) as Record<string, unknown>;
  const keys = path.split('.');
  let target = copy;
  for (const key of keys.slice(0, -1)) target = target[key] as Record<string, unknown>;
  if (value === undefined) delete target[keys.at(-1)!];
  else target[keys.at(-1)!] = value;
  return copy;
}

describe('validatePolicy — accepted documents', () => {
  it('accepts the CONTRACT.md example as written', () => {
    expect(validatePolicy('eu-gdpr', CONTRACT_EXAMPLE, CTX)).toEqual({ ok: true, policy: CONTRACT_EXAMPLE });
  });

  it('fills in every default of a minimal document', () => {
    expect(validatePolicy('us', MINIMAL, CTX)).toEqual({
      ok: true,
      policy: {
        appliesTo: { jurisdictions: ['US'] },
        homeRegion: 'us',
        storageRegions: ['us', 'eu'],
        processingRegions: ['us', 'eu'],
        release: { default: ['sub', 'residency'], byRegion: {} },
        retention: { auditDays: 365, inactiveProfileDays: 730 },
        pseudonymiseForeignLogs: true,
      },
    });
  });

  it.each([
    ['retention', { auditDays: 1 }],
    ['retention', { inactiveProfileDays: 36_500 }],
    ['pseudonymiseForeignLogs', false],
    ['processingRegions', ['us', 'ap']],
    ['release.default', ['sub', 'residency', 'email', 'address', 'urn.example.claim']],
  ])('accepts %s = %j', (field, value) => {
    expect(validatePolicy('us', withField(MINIMAL, field, value), CTX).ok).toBe(true);
  });

  it('keeps a given retention field and defaults the other', () => {
    const result = validatePolicy('us', withField(MINIMAL, 'retention', { auditDays: 90 }), CTX);
    expect(result.ok && result.policy.retention).toEqual({ auditDays: 90, inactiveProfileDays: 730 });
  });

  it('does not alias the arrays of the document it was given', () => {
    const doc = structuredClone(MINIMAL);
    const result = validatePolicy('us', doc, CTX);
    doc.storageRegions.push('ap');
    expect(result.ok && result.policy.storageRegions).toEqual(['us', 'eu']);
    expect(result.ok && result.policy.processingRegions).toEqual(['us', 'eu']);
  });

  it('ignores a current version of the same policy when looking for overlaps', () => {
    const current: ResidencyPolicy = { ...parsePolicy('eu-gdpr', 2, CONTRACT_EXAMPLE, CTX) };
    expect(validatePolicy('eu-gdpr', CONTRACT_EXAMPLE, { ...CTX, otherPolicies: [current] }).ok).toBe(true);
  });
});

describe('validatePolicy — each broken field is named', () => {
  it.each<[string, string, unknown, string]>([
    ['an unknown top-level field', 'homeRgion', 'eu', 'homeRgion'],
    ['an unknown field in release', 'release.defaults', ['sub'], 'release.defaults'],
    ['an unknown field in retention', 'retention', { auditDays: 30, days: 3 }, 'retention.days'],
    ['a missing appliesTo', 'appliesTo', undefined, 'appliesTo'],
    ['an empty appliesTo', 'appliesTo.jurisdictions', [], 'appliesTo.jurisdictions'],
    ['jurisdictions that are not an array', 'appliesTo.jurisdictions', 'DE', 'appliesTo.jurisdictions'],
    ['a lower-case jurisdiction', 'appliesTo.jurisdictions', ['DE', 'fr'], 'appliesTo.jurisdictions[1]'],
    ['an alpha-3 jurisdiction', 'appliesTo.jurisdictions', ['DEU'], 'appliesTo.jurisdictions[0]'],
    ['a duplicate jurisdiction', 'appliesTo.jurisdictions', ['DE', 'FR', 'DE'], 'appliesTo.jurisdictions[2]'],
    ['a non-string jurisdiction', 'appliesTo.jurisdictions', ['DE', 49], 'appliesTo.jurisdictions[1]'],
    ['a missing homeRegion', 'homeRegion', undefined, 'homeRegion'],
    ['an unknown homeRegion', 'homeRegion', 'mars', 'homeRegion'],
    ['an unknown storage region', 'storageRegions', ['eu', 'mars'], 'storageRegions[1]'],
    ['a duplicate storage region', 'storageRegions', ['eu', 'us', 'eu'], 'storageRegions[2]'],
    ['empty storageRegions', 'storageRegions', [], 'storageRegions'],
    ['the home region not first in storageRegions', 'storageRegions', ['us', 'eu'], 'storageRegions'],
    ['the home region missing from storageRegions', 'storageRegions', ['us'], 'storageRegions'],
    ['an unknown processing region', 'processingRegions', ['eu', 'mars'], 'processingRegions[1]'],
    ['processingRegions without the home region', 'processingRegions', ['us'], 'processingRegions'],
    ['a missing release', 'release', undefined, 'release'],
    ['sub missing from release.default', 'release.default', ['residency', 'email'], 'release.default'],
    ['residency missing from release.default', 'release.default', ['sub'], 'release.default'],
    [
      'an invalid claim name in release.default',
      'release.default',
      ['sub', 'residency', 'e mail'],
      'release.default[2]',
    ],
    [
      'an unknown region in release.byRegion',
      'release.byRegion',
      { mars: ['email'] },
      'release.byRegion.mars',
    ],
    [
      'an invalid claim name in release.byRegion',
      'release.byRegion',
      { us: ['email', '1x'] },
      'release.byRegion.us[1]',
    ],
    [
      'release.byRegion values that are not arrays',
      'release.byRegion',
      { us: 'email' },
      'release.byRegion.us',
    ],
    ['a fractional auditDays', 'retention.auditDays', 1.5, 'retention.auditDays'],
    ['a zero auditDays', 'retention.auditDays', 0, 'retention.auditDays'],
    [
      'an inactiveProfileDays beyond 36500',
      'retention.inactiveProfileDays',
      36_501,
      'retention.inactiveProfileDays',
    ],
    ['a string auditDays', 'retention.auditDays', '365', 'retention.auditDays'],
    ['a non-boolean pseudonymiseForeignLogs', 'pseudonymiseForeignLogs', 'yes', 'pseudonymiseForeignLogs'],
  ])('refuses %s', (_name, path, value, field) => {
    const result = validatePolicy('eu-gdpr', withField(CONTRACT_EXAMPLE, path, value), CTX);
    expect(result.ok).toBe(false);
    expect(fieldsOf(result)).toEqual([field]);
  });

  it.each([
    ['a policy id with @ (it would break `id@version`)', 'eu@gdpr'],
    ['an empty policy id', ''],
  ])('refuses %s', (_name, id) => {
    expect(fieldsOf(validatePolicy(id, CONTRACT_EXAMPLE, CTX))).toEqual(['id']);
  });

  it.each([null, [], 'policy', 3])('refuses a document that is not an object: %j', (doc) => {
    expect(fieldsOf(validatePolicy('p', doc, CTX))).toEqual(['(document)']);
  });

  it('reports several problems at once, each with its field', () => {
    const doc = {
      appliesTo: { jurisdictions: [] },
      homeRegion: 'eu',
      storageRegions: ['eu', 'mars'],
      processingRegions: ['us'],
      release: { default: ['email'] },
      retention: { auditDays: -1 },
      pseudonymiseForeignLogs: 'true',
      comment: 'draft',
    };
    expect(fieldsOf(validatePolicy('eu-gdpr', doc, CTX)).sort()).toEqual(
      [
        'comment',
        'appliesTo.jurisdictions',
        'storageRegions[1]',
        'processingRegions',
        'release.default',
        'retention.auditDays',
        'pseudonymiseForeignLogs',
      ].sort(),
    );
  });

  it('explains how to fix an unknown region', () => {
    const result = validatePolicy(
      'eu-gdpr',
      withField(CONTRACT_EXAMPLE, 'storageRegions', ['eu', 'mars']),
      CTX,
    );
    expect(result.ok ? [] : result.errors).toEqual([
      {
        field: 'storageRegions[1]',
        message:
          '"mars" is not a registered region (known: eu, us, ap); register it with PUT /admin/regions/{id} first',
      },
    ]);
  });
});

describe('validatePolicy — prototype-pollution keys', () => {
  const json = JSON.stringify(CONTRACT_EXAMPLE);

  it.each([
    ['a top-level __proto__', ['{', '{"__proto__":{"polluted":true},'], '__proto__'],
    [
      '__proto__ in release.byRegion',
      ['"byRegion":{', '"byRegion":{"__proto__":["email"],'],
      'release.byRegion.__proto__',
    ],
    [
      'constructor in retention',
      ['"retention":{', '"retention":{"constructor":{"prototype":{}},'],
      'retention.constructor',
    ],
    ['prototype in appliesTo', ['"appliesTo":{', '"appliesTo":{"prototype":1,'], 'appliesTo.prototype'],
  ])('refuses %s in a document parsed from JSON', (_name, [from, to], field) => {
    const doc: unknown = JSON.parse(json.replace(from!, to!));
    expect(fieldsOf(validatePolicy('eu-gdpr', doc, CTX))).toEqual([field]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('validatePolicy — one jurisdiction, one policy', () => {
  const euGdpr = parsePolicy('eu-gdpr', 3, CONTRACT_EXAMPLE, CTX);
  const us = parsePolicy('us', 1, MINIMAL, CTX);

  const deOnly = parsePolicy(
    'de-only',
    1,
    { ...CONTRACT_EXAMPLE, appliesTo: { jurisdictions: ['DE'] } },
    CTX,
  );

  it.each<[string, string[], ResidencyPolicy[], string, string]>([
    [
      'the same country in two policies',
      ['US'],
      [euGdpr, us],
      'appliesTo.jurisdictions[0]',
      '"US" is already covered by policy "us"',
    ],
    [
      'a member state when another policy lists EU',
      ['CH', 'IT'],
      [euGdpr, us],
      'appliesTo.jurisdictions[1]',
      'policy "eu-gdpr" lists "EU"',
    ],
    [
      'EU when another policy lists a member state',
      ['EU'],
      [deOnly, us],
      'appliesTo.jurisdictions[0]',
      'lists the EU member state "DE"',
    ],
    [
      'EU when another policy lists EU',
      ['EU'],
      [euGdpr],
      'appliesTo.jurisdictions[0]',
      '"EU" is already covered by policy "eu-gdpr"',
    ],
  ])(
    'refuses %s, naming the jurisdiction and the other policy',
    (_name, jurisdictions, otherPolicies, field, message) => {
      const result = validatePolicy(
        'new-policy',
        { ...MINIMAL, appliesTo: { jurisdictions } },
        { ...CTX, otherPolicies },
      );
      const errors = result.ok ? [] : result.errors;
      expect(errors.map((e) => e.field)).toEqual([field]);
      expect(errors[0]!.message).toContain(message);
    },
  );

  it('refuses DE next to a policy listing EU (DE is an EU member state)', () => {
    const result = validatePolicy(
      'de-bdsg',
      { ...CONTRACT_EXAMPLE, appliesTo: { jurisdictions: ['DE'] } },
      {
        ...CTX,
        otherPolicies: [
          parsePolicy('eu-wide', 1, { ...CONTRACT_EXAMPLE, appliesTo: { jurisdictions: ['EU'] } }, CTX),
        ],
      },
    );
    expect(result).toEqual({
      ok: false,
      errors: [
        {
          field: 'appliesTo.jurisdictions[0]',
          message: '"DE" is an EU member state and policy "eu-wide" lists "EU"; remove one of them',
        },
      ],
    });
  });

  it('accepts a non-member next to a policy listing EU', () => {
    expect(
      validatePolicy(
        'ch',
        { ...MINIMAL, appliesTo: { jurisdictions: ['CH', 'GB'] } },
        { ...CTX, otherPolicies: [euGdpr] },
      ).ok,
    ).toBe(true);
  });
});

describe('parsePolicy and policyRef', () => {
  it('returns a versioned policy whose reference is id@version', () => {
    const policy = parsePolicy('eu-gdpr', 3, CONTRACT_EXAMPLE, CTX);
    expect(policy.id).toBe('eu-gdpr');
    expect(policy.version).toBe(3);
    expect(policyRef(policy)).toBe('eu-gdpr@3');
  });

  it('throws ERR_RESIDENCY_POLICY_INVALID carrying every field error', () => {
    let caught: unknown;
    try {
      parsePolicy('eu-gdpr', 1, { ...CONTRACT_EXAMPLE, homeRegion: 'mars', storageRegions: [] }, CTX);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ResidencyError);
    const error = caught as ResidencyError;
    expect(error.code).toBe('ERR_RESIDENCY_POLICY_INVALID');
    expect(error.errors.map((e) => e.field)).toEqual(['homeRegion', 'storageRegions']);
  });
});
