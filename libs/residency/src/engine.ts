/**
 * The residency decision: federation + upstream claims → jurisdiction → policy → where the
 * subject's data lives and what may leave it. Fails closed: no jurisdiction or no covering policy
 * is a refusal, never a default region.
 */
import { ResidencyError, type DecisionErrorCode } from './errors';
import { coverage, coveringPolicy, jurisdictionFromClaims, normaliseJurisdiction } from './jurisdiction';
import { policyRef, type ResidencyPolicy } from './policy';

export type FederationKind = 'national' | 'regional' | 'global';

export interface FederationFacts {
  id: string;
  kind: FederationKind;
  /** ISO 3166-1 alpha-2 or `EU`; required for `national` and `regional`, ignored for `global`. */
  jurisdiction?: string;
}

/** The `residency` claim of CONTRACT.md. */
export interface ResidencyClaim {
  region: string;
  jurisdiction: string;
  /** `<policy id>@<version>`. */
  policy: string;
  processing: string[];
}

export interface ResidencyDecision {
  jurisdiction: string;
  policyId: string;
  policyVersion: number;
  /** `<policy id>@<version>`. */
  policyRef: string;
  homeRegion: string;
  storageRegions: string[];
  processingRegions: string[];
  /**
   * Claim names that may leave the home region towards clients and services of `region`:
   * `release.default` ∪ `release.byRegion[region]`. The same rule holds for the home region's own
   * clients; a region the policy does not name gets `release.default` only.
   */
  releaseFor(region: string): string[];
  residencyClaim(): ResidencyClaim;
  mayStoreIn(region: string): boolean;
  mayProcessIn(region: string): boolean;
  pseudonymiseForeignLogs: boolean;
  retention: { auditDays: number; inactiveProfileDays: number };
  /** Why: the rule that matched and where the jurisdiction came from — for the audit trail. */
  basis: DecisionBasis;
}

/** The rule and the reason of a decision, as the audit trail records them (no personal data). */
export interface DecisionBasis {
  /** The policy entry that matched, e.g. `eu-residents@3: appliesTo.jurisdictions lists DE`. */
  rule: string;
  /** Where the jurisdiction came from, e.g. `national federation "de-eid" (jurisdiction DE)`. */
  reason: string;
}

export type DecisionResult =
  | { ok: true; decision: ResidencyDecision }
  | {
      ok: false;
      code: DecisionErrorCode;
      message: string;
      /** What was established before the refusal: the jurisdiction and where it came from. */
      basis: { jurisdiction?: string; reason: string };
    };

/** Claims a policy releases towards `region`, `release.default` first, without duplicates. */
export function releasedClaims(policy: ResidencyPolicy, region: string): string[] {
  const extra = Object.hasOwn(policy.release.byRegion, region) ? policy.release.byRegion[region]! : [];
  return [...new Set([...policy.release.default, ...extra])];
}

/** The decision for a subject whose jurisdiction and policy are already known. */
export function decisionFor(
  policy: ResidencyPolicy,
  jurisdiction: string,
  basis: DecisionBasis = {
    rule: `${policyRef(policy)} covers ${jurisdiction}`,
    reason: 'jurisdiction given by the caller',
  },
): ResidencyDecision {
  const storageRegions = [...policy.storageRegions];
  const processingRegions = [...policy.processingRegions];
  const ref = policyRef(policy);
  // A snapshot: a caller changing its policy object later must not change a decision already made.
  const released = new Map(
    [...new Set([...Object.keys(policy.release.byRegion), policy.homeRegion])].map((r) => [
      r,
      releasedClaims(policy, r),
    ]),
  );
  const releasedByDefault = [...new Set(policy.release.default)];
  return Object.freeze({
    jurisdiction,
    policyId: policy.id,
    policyVersion: policy.version,
    policyRef: ref,
    homeRegion: policy.homeRegion,
    storageRegions,
    processingRegions,
    releaseFor: (region: string) => [...(released.get(region) ?? releasedByDefault)],
    residencyClaim: () => ({
      region: policy.homeRegion,
      jurisdiction,
      policy: ref,
      processing: [...processingRegions],
    }),
    mayStoreIn: (region: string) => storageRegions.includes(region),
    mayProcessIn: (region: string) => processingRegions.includes(region),
    pseudonymiseForeignLogs: policy.pseudonymiseForeignLogs,
    retention: { ...policy.retention },
    basis: Object.freeze({ ...basis }),
  });
}

function subjectJurisdiction(
  federation: FederationFacts,
  upstreamClaims: Record<string, unknown>,
): { ok: true; jurisdiction: string; reason: string } | { ok: false; message: string; reason: string } {
  switch (federation.kind) {
    case 'national':
    case 'regional': {
      // A national or regional IdP's users are under its jurisdiction, whatever their claims say.
      const jurisdiction = normaliseJurisdiction(federation.jurisdiction);
      const reason = `${federation.kind} federation "${federation.id}" (jurisdiction ${jurisdiction ?? 'not set'})`;
      return jurisdiction
        ? { ok: true, jurisdiction, reason }
        : {
            ok: false,
            reason,
            message: `Federation "${federation.id}" is ${federation.kind} but has no valid jurisdiction; an admin must set its "jurisdiction" (ISO 3166-1 alpha-2 or "EU").`,
          };
    }
    case 'global': {
      const jurisdiction = jurisdictionFromClaims(upstreamClaims);
      const top = Object.hasOwn(upstreamClaims, 'country') ? upstreamClaims.country : undefined;
      const claim =
        typeof top === 'string' && top.trim().toUpperCase() === jurisdiction ? 'country' : 'address.country';
      const reason = jurisdiction
        ? `global federation "${federation.id}", claim ${claim}`
        : `global federation "${federation.id}": no single country in the claims`;
      return jurisdiction
        ? { ok: true, jurisdiction, reason }
        : {
            ok: false,
            reason,
            message: `The identity provider "${federation.id}" did not state a single country for this account (a "country" or "address.country" claim with an ISO 3166-1 alpha-2 code such as "DE"), so it cannot be decided where the account's data may be stored. Use another identity provider, or ask an admin to map the country claim for "${federation.id}".`,
          };
    }
    default: {
      const exhaustive: never = federation.kind;
      return {
        ok: false,
        reason: `federation "${federation.id}" of unknown kind`,
        message: `Federation "${federation.id}" has an unknown kind "${String(exhaustive)}".`,
      };
    }
  }
}

/**
 * Decides where a subject's data lives. `national`/`regional` federations give the jurisdiction;
 * for `global` ones it comes from the claims (`country`, else `address.country`) — pass the
 * mapped claims, so a federation's `claimMapping` can point `country` at the upstream's field.
 * `policies` are the current versions of all policies.
 */
export function decide(
  federation: FederationFacts,
  upstreamClaims: Record<string, unknown>,
  policies: readonly ResidencyPolicy[],
): DecisionResult {
  const found = subjectJurisdiction(federation, upstreamClaims);
  if (!found.ok)
    return {
      ok: false,
      code: 'ERR_RESIDENCY_NO_JURISDICTION',
      message: found.message,
      basis: { reason: found.reason },
    };
  const { jurisdiction } = found;
  const basis = { jurisdiction, reason: found.reason };
  const covered = coverage(jurisdiction, policies);
  switch (covered.kind) {
    case 'exact':
    case 'eu':
      return {
        ok: true,
        decision: decisionFor(covered.policy, jurisdiction, {
          rule:
            covered.kind === 'exact'
              ? `${policyRef(covered.policy)}: appliesTo.jurisdictions lists ${jurisdiction}`
              : `${policyRef(covered.policy)}: appliesTo.jurisdictions lists EU, and ${jurisdiction} is an EU member state`,
          reason: found.reason,
        }),
      };
    case 'none':
      return {
        ok: false,
        basis,
        code: 'ERR_RESIDENCY_NO_POLICY',
        message: `No residency policy covers jurisdiction "${jurisdiction}", so accounts from there cannot be stored in any region. A compliance officer must add "${jurisdiction}" to a policy's appliesTo.jurisdictions.`,
      };
    case 'ambiguous':
      return {
        ok: false,
        basis,
        code: 'ERR_RESIDENCY_AMBIGUOUS_POLICY',
        message: `Jurisdiction "${jurisdiction}" is covered by more than one residency policy (${covered.policyIds.join(', ')}). A compliance officer must remove it from all but one.`,
      };
    default: {
      const exhaustive: never = covered;
      throw new Error(`unhandled coverage ${JSON.stringify(exhaustive)}`);
    }
  }
}

/** The decision, or a {@link ResidencyError} with the refusal's code. */
export function decideOrThrow(
  federation: FederationFacts,
  upstreamClaims: Record<string, unknown>,
  policies: readonly ResidencyPolicy[],
): ResidencyDecision {
  const result = decide(federation, upstreamClaims, policies);
  if (!result.ok) throw new ResidencyError(result.code, result.message);
  return result.decision;
}

/** A subject stored in the region a dry run is asked about, as recorded at its last decision. */
export interface DryRunSubject {
  jurisdiction: string;
  homeRegion: string;
  policyId: string;
}

export interface DryRunCounts {
  /** Subjects examined. */
  subjects: number;
  /** Would get a home region other than the recorded one. */
  changeHomeRegion: number;
  /** Would have fewer claims released towards some region. */
  loseReleasedClaims: number;
  /** Would be covered by no policy at all (and so be refused at their next login). */
  loseCoverage: number;
  /** Would no longer be allowed to be stored in the region asked about. */
  leaveRegion: number;
}

export interface DryRunReport extends DryRunCounts {
  region: string;
  byJurisdiction: Record<string, DryRunCounts>;
}

function emptyCounts(): DryRunCounts {
  return { subjects: 0, changeHomeRegion: 0, loseReleasedClaims: 0, loseCoverage: 0, leaveRegion: 0 };
}

/** Whether some region would be released fewer claims under `after` than under `before`. */
export function losesReleasedClaims(before: ResidencyPolicy, after: ResidencyPolicy): boolean {
  // A region named by neither policy gets `default` from both; '' stands for all of them.
  const regions = new Set([
    '',
    ...Object.keys(before.release.byRegion),
    ...Object.keys(after.release.byRegion),
  ]);
  for (const region of regions) {
    const kept = new Set(releasedClaims(after, region));
    if (releasedClaims(before, region).some((claim) => !kept.has(claim))) return true;
  }
  return false;
}

/**
 * What replacing `current` (undefined for a new policy) by `candidate` would do to `subjects`,
 * the subjects stored in `region`. Only subjects the candidate governs before or after count as
 * changed; the others are examined and reported unchanged, so stale records under unrelated
 * policies are not blamed on the candidate. `otherPolicies` are the current versions of the other
 * policies (one with the candidate's id is ignored).
 */
export function dryRun(
  candidate: ResidencyPolicy,
  current: ResidencyPolicy | undefined,
  subjects: readonly DryRunSubject[],
  otherPolicies: readonly ResidencyPolicy[],
  region: string,
): DryRunReport {
  const others = otherPolicies.filter((p) => p.id !== candidate.id);
  const after = [...others, candidate];
  const policyBefore = (id: string): ResidencyPolicy | undefined =>
    current && current.id === id ? current : others.find((p) => p.id === id);

  const total = emptyCounts();
  const byJurisdiction = new Map<string, DryRunCounts>();
  for (const subject of subjects) {
    const jurisdiction = normaliseJurisdiction(subject.jurisdiction) ?? subject.jurisdiction;
    let counts = byJurisdiction.get(jurisdiction);
    if (!counts) byJurisdiction.set(jurisdiction, (counts = emptyCounts()));
    const bump = (key: keyof DryRunCounts) => {
      total[key] += 1;
      counts[key] += 1;
    };
    bump('subjects');

    const next = coveringPolicy(jurisdiction, after);
    if (subject.policyId !== candidate.id && next?.id !== candidate.id) continue;
    if (!next) {
      bump('loseCoverage');
      continue;
    }
    if (next.homeRegion !== subject.homeRegion) bump('changeHomeRegion');
    if (!next.storageRegions.includes(region)) bump('leaveRegion');
    const previous = policyBefore(subject.policyId);
    if (previous && losesReleasedClaims(previous, next)) bump('loseReleasedClaims');
  }
  return { region, ...total, byJurisdiction: Object.fromEntries(byJurisdiction) };
}
