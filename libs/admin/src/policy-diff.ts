/**
 * What changes between two versions of a residency policy: pure, no Nest or database. Used by
 * the dry run (`POST /compliance/policies/{id}/dry-run`) and by the console's version history.
 */
import { coveringPolicy, normaliseJurisdiction, type ResidencyPolicy } from '@meridian/residency';

export interface DocumentChange {
  /** JSON path, e.g. `release.byRegion.eu`, `storageRegions`. */
  path: string;
  kind: 'added' | 'removed' | 'changed';
  before?: unknown;
  after?: unknown;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Field-by-field changes from `before` to `after` (objects recursed into, arrays and scalars
 * compared whole), in the order of the keys of `before`, then the keys only `after` has.
 */
export function documentChanges(before: unknown, after: unknown, path = ''): DocumentChange[] {
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...Object.keys(before), ...Object.keys(after).filter((k) => !Object.hasOwn(before, k))];
    return keys.flatMap((key) => {
      const at = path ? `${path}.${key}` : key;
      if (!Object.hasOwn(after, key)) return [{ path: at, kind: 'removed' as const, before: before[key] }];
      if (!Object.hasOwn(before, key)) return [{ path: at, kind: 'added' as const, after: after[key] }];
      return documentChanges(before[key], after[key], at);
    });
  }
  if (same(before, after)) return [];
  if (before === undefined) return [{ path, kind: 'added', after }];
  if (after === undefined) return [{ path, kind: 'removed', before }];
  return [{ path, kind: 'changed', before, after }];
}

/** The part of a policy that decides about the people of one jurisdiction. */
export interface DecisionSummary {
  policy: string;
  homeRegion: string;
  storageRegions: string[];
  processingRegions: string[];
  release: { default: string[]; byRegion: Record<string, string[]> };
  retention: { auditDays: number; inactiveProfileDays: number };
  pseudonymiseForeignLogs: boolean;
}

export interface JurisdictionChange {
  jurisdiction: string;
  /** `null`: no policy covers the jurisdiction. */
  before: DecisionSummary | null;
  after: DecisionSummary | null;
  /** Which parts of the decision differ (`coverage` when it is covered on one side only). */
  changed: (keyof DecisionSummary | 'coverage')[];
}

function summary(p: ResidencyPolicy | undefined): DecisionSummary | null {
  if (!p) return null;
  const sorted = (l: string[]) => [...new Set(l)].sort();
  return {
    policy: p.id,
    homeRegion: p.homeRegion,
    storageRegions: [...p.storageRegions],
    processingRegions: [...p.processingRegions],
    release: {
      default: sorted(p.release.default),
      byRegion: Object.fromEntries(
        Object.keys(p.release.byRegion)
          .sort()
          .map((r) => [r, sorted(p.release.byRegion[r]!)]),
      ),
    },
    retention: { ...p.retention },
    pseudonymiseForeignLogs: p.pseudonymiseForeignLogs,
  };
}

/**
 * The jurisdictions whose decision would change if `candidate` replaced `current` (undefined for
 * a new policy), among those either version names and `alsoConsider` (e.g. the jurisdictions of
 * the subjects stored here). `others` are the current versions of the other policies. `EU`
 * stands for the member states no policy names on their own.
 */
export function jurisdictionChanges(
  candidate: ResidencyPolicy,
  current: ResidencyPolicy | undefined,
  others: readonly ResidencyPolicy[],
  alsoConsider: readonly string[] = [],
): JurisdictionChange[] {
  const rest = others.filter((p) => p.id !== candidate.id);
  const before = current ? [...rest, current] : [...rest];
  const after = [...rest, candidate];
  const codes = new Set<string>();
  for (const j of [
    ...candidate.appliesTo.jurisdictions,
    ...(current?.appliesTo.jurisdictions ?? []),
    ...alsoConsider,
  ]) {
    const code = normaliseJurisdiction(j);
    if (code) codes.add(code);
  }
  const out: JurisdictionChange[] = [];
  for (const jurisdiction of [...codes].sort()) {
    const b = summary(coveringPolicy(jurisdiction, before));
    const a = summary(coveringPolicy(jurisdiction, after));
    let changed: JurisdictionChange['changed'];
    if (!a || !b) changed = a || b ? ['coverage'] : [];
    else changed = (Object.keys(a) as (keyof DecisionSummary)[]).filter((k) => !same(a[k], b[k]));
    if (changed.length) out.push({ jurisdiction, before: b, after: a, changed });
  }
  return out;
}
