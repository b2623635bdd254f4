/** Pure claim building: no Nest, no database. */

export interface Residency {
  region: string;
  jurisdiction: string;
  /** `<policy id>@<version>` that decided where the subject's data lives. */
  policy: string;
  processing: string[];
}

export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 300;
export const MAX_ACCESS_TOKEN_TTL_SECONDS = 3600;

/**
 * A token about no person (client_credentials) carries the issuing region and its
 * jurisdiction; no policy decided anything about a subject, hence `none`.
 */
export function clientResidency(region: string, jurisdiction: string): Residency {
  return { region, jurisdiction, policy: 'none', processing: [region] };
}

export function isResidency(value: unknown): value is Residency {
  if (!value || typeof value !== 'object') return false;
  const r = value as Record<string, unknown>;
  return (
    typeof r.region === 'string' &&
    typeof r.jurisdiction === 'string' &&
    typeof r.policy === 'string' &&
    Array.isArray(r.processing) &&
    r.processing.every((p) => typeof p === 'string')
  );
}

/** Lifetime of an access token for a resource: its own TTL, default 300 s, never above an hour. */
export function accessTokenTtl(resourceTtlSeconds: number | undefined): number {
  const ttl = resourceTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  return Math.max(1, Math.min(ttl, MAX_ACCESS_TOKEN_TTL_SECONDS));
}

/** Scopes granted for a resource: what was asked, limited to what the resource accepts. */
export function grantableScopes(requested: Iterable<string>, resourceScopes: readonly string[]): string[] {
  const allowed = new Set(resourceScopes);
  return [...new Set(requested)].filter((s) => allowed.has(s));
}
