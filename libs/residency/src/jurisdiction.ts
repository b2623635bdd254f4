/**
 * Jurisdictions: ISO 3166-1 alpha-2 country codes, plus `EU` (an ISO 3166-1 "exceptionally
 * reserved" code) for the European Union as a whole.
 *
 * Only alpha-2 is accepted, from federations and from claims alike. Alpha-3 codes (`DEU`) and
 * country names (`Germany`) are refused rather than translated: OIDC Core §5.1.1 defines
 * `address.country` as a free-form "country name component", so an upstream that sends names must
 * be fixed (or mapped to a claim that carries the code) — guessing a jurisdiction from free text
 * would be guessing where a person's data may live. The format is checked, not the assignment:
 * user-assigned codes such as `XK` (Kosovo, in wide use) pass.
 */
import type { ResidencyPolicy } from './policy';

/** The 27 member states of the European Union, ISO 3166-1 alpha-2 (Greece is `GR`, not `EL`). */
export const EU_MEMBER_STATES = [
  'AT',
  'BE',
  'BG',
  'CY',
  'CZ',
  'DE',
  'DK',
  'EE',
  'ES',
  'FI',
  'FR',
  'GR',
  'HR',
  'HU',
  'IE',
  'IT',
  'LT',
  'LU',
  'LV',
  'MT',
  'NL',
  'PL',
  'PT',
  'RO',
  'SE',
  'SI',
  'SK',
] as const;

export type EuMemberState = (typeof EU_MEMBER_STATES)[number];

/** The jurisdiction that stands for the whole European Union. */
export const EU = 'EU';

const EU_SET: ReadonlySet<string> = new Set(EU_MEMBER_STATES);
const ALPHA_2 = /^[A-Z]{2}$/;

export function isEuMemberState(code: string): code is EuMemberState {
  return EU_SET.has(code);
}

/** Trimmed and upper-cased; `undefined` unless it is two letters (which includes `EU`). */
export function normaliseJurisdiction(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const code = value.trim().toUpperCase();
  return ALPHA_2.test(code) ? code : undefined;
}

/** A person's country from claims: a two-letter code that is not `EU` (a union, not a country). */
function countryCode(value: unknown): string | undefined {
  const code = normaliseJurisdiction(value);
  return code === EU ? undefined : code;
}

/**
 * The subject's jurisdiction from upstream (or mapped) claims: `country`, else
 * `address.country` (OIDC Core §5.1.1, the `address` claim is an object). When both carry a valid
 * code and they differ, the answer is `undefined`: the claims contradict each other and picking one
 * would be a guess about where the person's data may live.
 */
export function jurisdictionFromClaims(claims: Record<string, unknown>): string | undefined {
  const top = Object.hasOwn(claims, 'country') ? countryCode(claims.country) : undefined;
  const address = Object.hasOwn(claims, 'address') ? claims.address : undefined;
  const nested =
    address !== null &&
    typeof address === 'object' &&
    !Array.isArray(address) &&
    Object.hasOwn(address, 'country')
      ? countryCode((address as Record<string, unknown>).country)
      : undefined;
  if (top !== undefined && nested !== undefined && top !== nested) return undefined;
  return top ?? nested;
}

/** How a jurisdiction is covered by a set of policies. */
export type Coverage =
  | { kind: 'none' }
  | { kind: 'exact' | 'eu'; policy: ResidencyPolicy }
  | { kind: 'ambiguous'; policyIds: string[] };

function lists(policy: ResidencyPolicy, code: string): boolean {
  return policy.appliesTo.jurisdictions.some((j) => normaliseJurisdiction(j) === code);
}

/**
 * Which policy covers a jurisdiction: the one listing it exactly; else, for an EU member state,
 * the one listing `EU`. An exact listing wins over `EU`. Two policies at the same precedence are
 * `ambiguous` (fail closed) — `validatePolicy` refuses such overlaps, so this only happens with a
 * policy set that did not go through it.
 */
export function coverage(jurisdiction: string, policies: readonly ResidencyPolicy[]): Coverage {
  const code = normaliseJurisdiction(jurisdiction);
  if (code === undefined) return { kind: 'none' };
  const pick = (kind: 'exact' | 'eu', found: ResidencyPolicy[]): Coverage | undefined => {
    if (found.length === 1) return { kind, policy: found[0]! };
    if (found.length > 1) return { kind: 'ambiguous', policyIds: found.map((p) => p.id).sort() };
    return undefined;
  };
  const exact = pick(
    'exact',
    policies.filter((p) => lists(p, code)),
  );
  if (exact) return exact;
  if (isEuMemberState(code)) {
    const eu = pick(
      'eu',
      policies.filter((p) => lists(p, EU)),
    );
    if (eu) return eu;
  }
  return { kind: 'none' };
}

/** The covering policy (see {@link coverage}); `undefined` when none covers it or it is ambiguous. */
export function coveringPolicy(
  jurisdiction: string,
  policies: readonly ResidencyPolicy[],
): ResidencyPolicy | undefined {
  const c = coverage(jurisdiction, policies);
  return c.kind === 'exact' || c.kind === 'eu' ? c.policy : undefined;
}

/** Whether two jurisdiction codes cover a common person: equal, or `EU` and a member state. */
export function jurisdictionsOverlap(a: string, b: string): boolean {
  return a === b || (a === EU && isEuMemberState(b)) || (b === EU && isEuMemberState(a));
}
