/**
 * From upstream claims to Meridian's profile, and from the profile to what may be released.
 * Pure: no I/O, and nothing here reads an inherited property.
 */
import type { FieldError } from './errors';
import { CLAIM_NAME, FORBIDDEN_KEYS } from './policy';

/**
 * Profile claims that pass through when a federation has no `claimMapping`: the standard claims
 * of OIDC Core §5.1, plus `country` (not standard, but how global IdPs commonly state it and what
 * the engine reads a jurisdiction from).
 */
export const STANDARD_PROFILE_CLAIMS = [
  'name',
  'given_name',
  'family_name',
  'middle_name',
  'nickname',
  'preferred_username',
  'profile',
  'picture',
  'website',
  'email',
  'email_verified',
  'gender',
  'birthdate',
  'zoneinfo',
  'locale',
  'phone_number',
  'phone_number_verified',
  'address',
  'updated_at',
  'country',
] as const;

/**
 * Claims about the token or the protocol run, not about the person. They are never copied from an
 * upstream into a profile, in either direction of a mapping: Meridian issues its own (`sub` is
 * Meridian's pseudonymous subject, never the upstream's), and the upstream `sub` is kept only as
 * the account link.
 */
export const PROTOCOL_CLAIMS: ReadonlySet<string> = new Set([
  'iss',
  'sub',
  'aud',
  'exp',
  'nbf',
  'iat',
  'jti',
  'auth_time',
  'nonce',
  'acr',
  'amr',
  'azp',
  'at_hash',
  'c_hash',
  's_hash',
  'sid',
  'cnf',
  'client_id',
  'scope',
  'events',
  'sub_jwk',
  'typ',
  'residency',
  '_claim_names',
  '_claim_sources',
]);

const MAX_PATH_LENGTH = 256;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * The value at a dot path (`address.country`). A key that itself contains dots (`urn:oid:2.5.4.3`,
 * claim URIs) is tried as a whole first. Only own properties are followed.
 */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(claims, path) && !FORBIDDEN_KEYS.has(path)) return claims[path];
  let current: unknown = claims;
  for (const segment of path.split('.')) {
    if (!isObject(current) || FORBIDDEN_KEYS.has(segment) || !Object.hasOwn(current, segment))
      return undefined;
    current = current[segment];
  }
  return current;
}

/** Problems with a federation's `claimMapping` (profile claim name → upstream dot path). */
export function validateClaimMapping(mapping: unknown, field = 'claimMapping'): FieldError[] {
  if (mapping === undefined) return [];
  if (!isObject(mapping)) {
    return [{ field, message: 'must be an object mapping profile claim names to upstream claim paths' }];
  }
  const errors: FieldError[] = [];
  for (const [target, source] of Object.entries(mapping)) {
    const at = `${field}.${target}`;
    if (FORBIDDEN_KEYS.has(target) || !CLAIM_NAME.test(target)) {
      errors.push({
        field: at,
        message: `"${target}" is not a claim name (a letter, then letters, digits, "_" or ".")`,
      });
    } else if (PROTOCOL_CLAIMS.has(target)) {
      errors.push({
        field: at,
        message: `"${target}" is issued by Meridian and cannot be mapped from an upstream`,
      });
    }
    if (typeof source !== 'string' || source.length === 0 || source.length > MAX_PATH_LENGTH) {
      errors.push({
        field: at,
        message: `must be an upstream claim path of 1 to ${MAX_PATH_LENGTH} characters`,
      });
      continue;
    }
    const segments = source.split('.');
    if (segments.some((s) => s.length === 0 || FORBIDDEN_KEYS.has(s))) {
      errors.push({
        field: at,
        message: `"${source}" is not a claim path (dot-separated names, none empty)`,
      });
    } else if (PROTOCOL_CLAIMS.has(segments[0]!)) {
      errors.push({
        field: at,
        message: `"${source}" is a protocol claim of the upstream; it is not part of the person's profile`,
      });
    }
  }
  return errors;
}

function usable(value: unknown): boolean {
  // OIDC Core §5.3.2: a claim without a value is omitted, not sent as null.
  return value !== undefined && value !== null;
}

/**
 * Upstream claims → Meridian profile claims.
 *
 * - No mapping (or an empty one): the standard claims of {@link STANDARD_PROFILE_CLAIMS} pass
 *   through under their own names; anything else is dropped.
 * - A mapping: exactly the mapped claims, nothing else (data minimisation — a national IdP's
 *   extra claims are not stored unless an admin asked for them). Map a standard claim to itself
 *   to keep it (`{"email": "email"}`).
 *
 * Missing, `undefined` and `null` values are left out. Protocol claims (`sub`, `iss`, `nonce`, …)
 * are never copied, whatever the mapping says.
 */
export function mapClaims(
  upstream: Record<string, unknown>,
  mapping: Record<string, string> | undefined,
): Record<string, unknown> {
  const profile: Record<string, unknown> = {};
  const entries: [string, string][] =
    mapping && Object.keys(mapping).length > 0
      ? Object.entries(mapping)
      : STANDARD_PROFILE_CLAIMS.map((name) => [name, name]);
  for (const [target, source] of entries) {
    if (typeof source !== 'string' || FORBIDDEN_KEYS.has(target) || !CLAIM_NAME.test(target)) continue;
    if (PROTOCOL_CLAIMS.has(target) || PROTOCOL_CLAIMS.has(source.split('.')[0]!)) continue;
    const value = claimAt(upstream, source);
    if (usable(value)) profile[target] = value;
  }
  return profile;
}

/**
 * Only the claims named in `allowed`, each whole (`address` is released or not as one claim).
 * Values are not copied deeply.
 */
export function filterClaims(
  claims: Record<string, unknown>,
  allowed: readonly string[],
): Record<string, unknown> {
  const released: Record<string, unknown> = {};
  for (const name of new Set(allowed)) {
    if (FORBIDDEN_KEYS.has(name) || !Object.hasOwn(claims, name)) continue;
    const value = claims[name];
    if (value !== undefined) released[name] = value;
  }
  return released;
}
