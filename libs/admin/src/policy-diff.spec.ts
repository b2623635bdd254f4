import { describe, expect, it } from 'vitest';
import type { ResidencyPolicy } from '@meridian/residency';
import { documentChanges, jurisdictionChanges } from './policy-diff';

function policy(id: string, version: number, over: Partial<ResidencyPolicy> = {}): ResidencyPolicy {
  return {
    id,
    version,
    appliesTo: { jurisdictions: ['DE', 'FR', 'EU'] },
    homeRegion: 'eu',
    storageRegions: ['eu'],
    processingRegions: ['eu'],
    release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name'] } },
    retention: { auditDays: 365, inactiveProfileDays: 730 },
    pseudonymiseForeignLogs: true,
    ...over,
  };
}

describe('documentChanges', () => {
  it('names each changed, added and removed field by its path', () => {
    expect(
      documentChanges(
        { a: 1, b: { c: [1, 2], d: 'x' }, gone: true },
        { a: 1, b: { c: [1, 2, 3], e: 'y' }, added: { z: 1 } },
      ),
    ).toEqual([
      { path: 'b.c', kind: 'changed', before: [1, 2], after: [1, 2, 3] },
      { path: 'b.d', kind: 'removed', before: 'x' },
      { path: 'b.e', kind: 'added', after: 'y' },
      { path: 'gone', kind: 'removed', before: true },
      { path: 'added', kind: 'added', after: { z: 1 } },
    ]);
    expect(documentChanges({ a: [1] }, { a: [1] })).toEqual([]);
  });
});

describe('jurisdictionChanges', () => {
  const us = policy('us-default', 1, {
    appliesTo: { jurisdictions: ['US'] },
    homeRegion: 'us',
    storageRegions: ['us'],
    processingRegions: ['us'],
  });

  it('a jurisdiction added to a policy gains coverage; the others keep their decision', () => {
    const current = policy('eu-gdpr', 1);
    const candidate = policy('eu-gdpr', 2, { appliesTo: { jurisdictions: ['DE', 'FR', 'EU', 'CH'] } });
    const changes = jurisdictionChanges(candidate, current, [us], ['US']);
    expect(changes.map((c) => c.jurisdiction)).toEqual(['CH']);
    expect(changes[0]).toMatchObject({ before: null, changed: ['coverage'], after: { policy: 'eu-gdpr' } });
  });

  it('moving storage changes the decision of every jurisdiction the policy covers, and says what', () => {
    const current = policy('eu-gdpr', 1);
    const candidate = policy('eu-gdpr', 2, {
      storageRegions: ['eu', 'us'],
      release: { default: ['residency', 'sub'], byRegion: { eu: ['name', 'email'] } },
    });
    const changes = jurisdictionChanges(candidate, current, [us]);
    expect(changes.map((c) => [c.jurisdiction, c.changed])).toEqual([
      ['DE', ['storageRegions']],
      ['EU', ['storageRegions']],
      ['FR', ['storageRegions']],
    ]);
  });

  it('a jurisdiction taken out of a policy loses coverage (unless EU still covers a member state)', () => {
    const current = policy('eu-gdpr', 1, { appliesTo: { jurisdictions: ['DE', 'CH', 'EU'] } });
    const candidate = policy('eu-gdpr', 2, { appliesTo: { jurisdictions: ['EU'] } });
    const changes = jurisdictionChanges(candidate, current, [us]);
    expect(changes.map((c) => [c.jurisdiction, c.changed])).toEqual([['CH', ['coverage']]]);
    expect(changes[0]!.after).toBeNull();
  });

  it('a new policy: every jurisdiction it names', () => {
    const candidate = policy('br-lgpd', 1, {
      appliesTo: { jurisdictions: ['BR'] },
      homeRegion: 'us',
      storageRegions: ['us'],
      processingRegions: ['us'],
    });
    expect(
      jurisdictionChanges(candidate, undefined, [us, policy('eu-gdpr', 1)]).map((c) => c.jurisdiction),
    ).toEqual(['BR']);
  });
});
