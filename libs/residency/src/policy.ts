/**
 * Residency policies as data (CONTRACT.md, "Residency policy"): the document a compliance officer
 * writes, its validation, and the normalised form the engine decides with.
 */
import { ResidencyError, type FieldError } from './errors';
import { EU, jurisdictionsOverlap } from './jurisdiction';

/** The document as written (PUT /compliance/policies/{id}). */
export interface ResidencyPolicyDocument {
  appliesTo: { jurisdictions: string[] };
  /** Where the subject's profile lives; must be `storageRegions[0]`. */
  homeRegion: string;
  /** Where the subject's profile and logs may be stored, the home region first. */
  storageRegions: string[];
  /** Where services may process the subject's personal data; default `storageRegions`. */
  processingRegions?: string[];
  /** Which profile claims may leave the home region towards clients and services of a region. */
  release: { default: string[]; byRegion?: Record<string, string[]> };
  retention?: { auditDays?: number; inactiveProfileDays?: number };
  pseudonymiseForeignLogs?: boolean;
}

/** The document with every default filled in; what validation returns and what is stored. */
export interface ResidencyPolicyDocumentNormalised {
  appliesTo: { jurisdictions: string[] };
  homeRegion: string;
  storageRegions: string[];
  processingRegions: string[];
  release: { default: string[]; byRegion: Record<string, string[]> };
  retention: { auditDays: number; inactiveProfileDays: number };
  pseudonymiseForeignLogs: boolean;
}

/** One version of a policy. */
export interface ResidencyPolicy extends ResidencyPolicyDocumentNormalised {
  id: string;
  version: number;
}

export interface PolicyValidationContext {
  /** Ids of the registered regions. */
  knownRegions: readonly string[];
  /** Current versions of the other policies; one with the id being validated is ignored. */
  otherPolicies: readonly ResidencyPolicy[];
}

export type PolicyValidationResult =
  { ok: true; policy: ResidencyPolicyDocumentNormalised } | { ok: false; errors: FieldError[] };

export const DEFAULT_AUDIT_DAYS = 365;
export const DEFAULT_INACTIVE_PROFILE_DAYS = 730;
export const MIN_RETENTION_DAYS = 1;
export const MAX_RETENTION_DAYS = 36_500;

/**
 * Claims every policy must release to every region: the pseudonymous `sub` and the `residency`
 * claim are what a broker in another region needs to issue tokens at all (DESIGN.md, "at least
 * the pseudonymous `sub` and `residency`").
 */
export const ALWAYS_RELEASED_CLAIMS = ['sub', 'residency'] as const;

export const CLAIM_NAME = /^[a-z][a-z0-9_.]{0,63}$/i;
export const POLICY_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/i;

/** Keys that would reach `Object.prototype` if a consumer merged the document into an object. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const TOP_LEVEL_FIELDS = new Set([
  'appliesTo',
  'homeRegion',
  'storageRegions',
  'processingRegions',
  'release',
  'retention',
  'pseudonymiseForeignLogs',
]);
const MAX_DEPTH = 16;

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** An own property only: `doc.constructor` of a plain object must read as absent, not as `Object`. */
function own(obj: Obj, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function shown(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

function scanForbiddenKeys(value: unknown, path: string, depth: number, errors: FieldError[]): void {
  if (depth > MAX_DEPTH) {
    errors.push({ field: path, message: `is nested more than ${MAX_DEPTH} levels deep` });
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => scanForbiddenKeys(item, `${path}[${i}]`, depth + 1, errors));
  } else if (isObject(value)) {
    for (const key of Object.keys(value)) {
      const child = path ? `${path}.${key}` : key;
      if (FORBIDDEN_KEYS.has(key)) {
        errors.push({ field: child, message: `"${key}" is not allowed as a key anywhere in a policy` });
      } else {
        scanForbiddenKeys(value[key], child, depth + 1, errors);
      }
    }
  }
}

function refuseUnknownFields(
  obj: Obj,
  allowed: ReadonlySet<string>,
  path: string,
  errors: FieldError[],
): void {
  for (const key of Object.keys(obj)) {
    if (allowed.has(key) || FORBIDDEN_KEYS.has(key)) continue;
    errors.push({
      field: path ? `${path}.${key}` : key,
      message: `is not a field of ${path || 'a residency policy'}; allowed: ${[...allowed].join(', ')}`,
    });
  }
}

/**
 * A list of distinct strings, each checked by `check` (which returns a problem or `undefined`).
 * Returns the list when every item passed, else `undefined` (the problems are in `errors`).
 */
function stringList(
  value: unknown,
  field: string,
  what: string,
  check: (item: string) => string | undefined,
  errors: FieldError[],
  { nonEmpty }: { nonEmpty: boolean },
): string[] | undefined {
  if (!Array.isArray(value)) {
    errors.push({ field, message: `must be an array of ${what}, got ${shown(value)}` });
    return undefined;
  }
  if (nonEmpty && value.length === 0) {
    errors.push({ field, message: `must list at least one ${what.replace(/s$/, '')}` });
    return undefined;
  }
  const before = errors.length;
  const seen = new Set<string>();
  value.forEach((item, i) => {
    const at = `${field}[${i}]`;
    if (typeof item !== 'string') {
      errors.push({ field: at, message: `must be a string, got ${shown(item)}` });
      return;
    }
    const problem = check(item);
    if (problem) errors.push({ field: at, message: problem });
    else if (seen.has(item)) errors.push({ field: at, message: `"${item}" is listed twice` });
    seen.add(item);
  });
  return errors.length === before ? [...(value as string[])] : undefined;
}

function regionCheck(known: ReadonlySet<string>): (item: string) => string | undefined {
  return (item) =>
    known.has(item)
      ? undefined
      : `"${item}" is not a registered region (known: ${[...known].join(', ') || 'none'}); register it with PUT /admin/regions/{id} first`;
}

function claimCheck(item: string): string | undefined {
  return CLAIM_NAME.test(item)
    ? undefined
    : `"${item}" is not a claim name (a letter, then up to 63 letters, digits, "_" or ".")`;
}

function jurisdictionCheck(item: string): string | undefined {
  return /^[A-Z]{2}$/.test(item)
    ? undefined
    : `"${item}" is not an ISO 3166-1 alpha-2 code in upper case (e.g. "DE") or "EU"`;
}

function retentionDays(value: unknown, field: string, fallback: number, errors: FieldError[]): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < MIN_RETENTION_DAYS ||
    value > MAX_RETENTION_DAYS
  ) {
    errors.push({
      field,
      message: `must be a whole number of days from ${MIN_RETENTION_DAYS} to ${MAX_RETENTION_DAYS}, got ${shown(value)}`,
    });
    return fallback;
  }
  return value;
}

function overlapMessage(mine: string, theirs: string, otherId: string): string {
  if (mine === theirs)
    return `"${mine}" is already covered by policy "${otherId}"; a jurisdiction belongs to one policy`;
  if (mine === EU)
    return `"EU" overlaps policy "${otherId}", which lists the EU member state "${theirs}"; remove one of them`;
  return `"${mine}" is an EU member state and policy "${otherId}" lists "EU"; remove one of them`;
}

/**
 * Validates a policy document and fills in its defaults. Every problem is collected, each naming
 * its field; nothing is thrown. Besides shape: regions must be registered, the home region is
 * `storageRegions[0]` and one of `processingRegions`, `release.default` keeps `sub` and
 * `residency`, and no jurisdiction may be covered by another policy (`EU` overlaps each member
 * state).
 */
export function validatePolicy(
  id: string,
  doc: unknown,
  ctx: PolicyValidationContext,
): PolicyValidationResult {
  const errors: FieldError[] = [];
  const known = new Set(ctx.knownRegions);

  if (typeof id !== 'string' || !POLICY_ID.test(id)) {
    errors.push({
      field: 'id',
      message: `${shown(id)} is not a policy id (a letter or digit, then up to 63 letters, digits, ".", "_" or "-")`,
    });
  }
  if (!isObject(doc)) {
    errors.push({
      field: '(document)',
      message: `a residency policy must be a JSON object, got ${shown(doc)}`,
    });
    return { ok: false, errors };
  }

  scanForbiddenKeys(doc, '', 0, errors);
  refuseUnknownFields(doc, TOP_LEVEL_FIELDS, '', errors);

  // appliesTo
  let jurisdictions: string[] | undefined;
  const appliesTo = own(doc, 'appliesTo');
  if (!isObject(appliesTo)) {
    errors.push({
      field: 'appliesTo',
      message: `must be an object { "jurisdictions": [...] }, got ${shown(appliesTo)}`,
    });
  } else {
    refuseUnknownFields(appliesTo, new Set(['jurisdictions']), 'appliesTo', errors);
    jurisdictions = stringList(
      own(appliesTo, 'jurisdictions'),
      'appliesTo.jurisdictions',
      'jurisdictions',
      jurisdictionCheck,
      errors,
      { nonEmpty: true },
    );
  }

  // homeRegion and storageRegions
  const homeRegion = own(doc, 'homeRegion');
  let validHome: string | undefined;
  if (typeof homeRegion !== 'string') {
    errors.push({ field: 'homeRegion', message: `must be a region id, got ${shown(homeRegion)}` });
  } else {
    const problem = regionCheck(known)(homeRegion);
    if (problem) errors.push({ field: 'homeRegion', message: problem });
    else validHome = homeRegion;
  }
  const storageValue = own(doc, 'storageRegions');
  const storageRegions = stringList(storageValue, 'storageRegions', 'regions', regionCheck(known), errors, {
    nonEmpty: true,
  });
  if (
    validHome !== undefined &&
    Array.isArray(storageValue) &&
    storageValue.length > 0 &&
    storageValue[0] !== validHome
  ) {
    errors.push({
      field: 'storageRegions',
      message: storageValue.includes(validHome)
        ? `must list the home region "${validHome}" first`
        : `must include the home region "${validHome}", listed first`,
    });
  }

  // processingRegions
  const processingValue = own(doc, 'processingRegions');
  let processingRegions: string[] | undefined;
  if (processingValue !== undefined) {
    processingRegions = stringList(
      processingValue,
      'processingRegions',
      'regions',
      regionCheck(known),
      errors,
      {
        nonEmpty: true,
      },
    );
    if (processingRegions && validHome !== undefined && !processingRegions.includes(validHome)) {
      errors.push({
        field: 'processingRegions',
        message: `must include the home region "${validHome}": the region that stores a profile processes it`,
      });
    }
  }

  // release
  let releaseDefault: string[] | undefined;
  const byRegion: Record<string, string[]> = {};
  const release = own(doc, 'release');
  if (!isObject(release)) {
    errors.push({
      field: 'release',
      message: `must be an object { "default": ["sub", "residency", ...], "byRegion": {...} }, got ${shown(release)}`,
    });
  } else {
    refuseUnknownFields(release, new Set(['default', 'byRegion']), 'release', errors);
    releaseDefault = stringList(
      own(release, 'default'),
      'release.default',
      'claim names',
      claimCheck,
      errors,
      {
        nonEmpty: false,
      },
    );
    if (releaseDefault) {
      const missing = ALWAYS_RELEASED_CLAIMS.filter((c) => !releaseDefault!.includes(c));
      if (missing.length > 0) {
        errors.push({
          field: 'release.default',
          message: `must include ${missing.map((c) => `"${c}"`).join(' and ')}: a broker in another region cannot issue tokens without them`,
        });
      }
    }
    const byRegionValue = own(release, 'byRegion');
    if (byRegionValue !== undefined) {
      if (!isObject(byRegionValue)) {
        errors.push({
          field: 'release.byRegion',
          message: `must be an object mapping region ids to claim names, got ${shown(byRegionValue)}`,
        });
      } else {
        for (const region of Object.keys(byRegionValue)) {
          if (FORBIDDEN_KEYS.has(region)) continue;
          const field = `release.byRegion.${region}`;
          const problem = regionCheck(known)(region);
          if (problem) errors.push({ field, message: problem });
          const claims = stringList(byRegionValue[region], field, 'claim names', claimCheck, errors, {
            nonEmpty: false,
          });
          if (claims && !problem) byRegion[region] = claims;
        }
      }
    }
  }

  // retention
  let auditDays = DEFAULT_AUDIT_DAYS;
  let inactiveProfileDays = DEFAULT_INACTIVE_PROFILE_DAYS;
  const retention = own(doc, 'retention');
  if (retention !== undefined) {
    if (!isObject(retention)) {
      errors.push({
        field: 'retention',
        message: `must be an object { "auditDays": n, "inactiveProfileDays": n }, got ${shown(retention)}`,
      });
    } else {
      refuseUnknownFields(retention, new Set(['auditDays', 'inactiveProfileDays']), 'retention', errors);
      auditDays = retentionDays(
        own(retention, 'auditDays'),
        'retention.auditDays',
        DEFAULT_AUDIT_DAYS,
        errors,
      );
      inactiveProfileDays = retentionDays(
        own(retention, 'inactiveProfileDays'),
        'retention.inactiveProfileDays',
        DEFAULT_INACTIVE_PROFILE_DAYS,
        errors,
      );
    }
  }

  // pseudonymiseForeignLogs
  const pseudonymise = own(doc, 'pseudonymiseForeignLogs');
  if (pseudonymise !== undefined && typeof pseudonymise !== 'boolean') {
    errors.push({
      field: 'pseudonymiseForeignLogs',
      message: `must be true or false, got ${shown(pseudonymise)}`,
    });
  }

  // No person may fall under two policies.
  if (jurisdictions) {
    const others = [...ctx.otherPolicies].filter((p) => p.id !== id).sort((a, b) => a.id.localeCompare(b.id));
    jurisdictions.forEach((mine, i) => {
      for (const other of others) {
        const listed = other.appliesTo.jurisdictions;
        const theirs = listed.includes(mine) ? mine : listed.find((t) => jurisdictionsOverlap(mine, t));
        if (theirs !== undefined) {
          errors.push({
            field: `appliesTo.jurisdictions[${i}]`,
            message: overlapMessage(mine, theirs, other.id),
          });
        }
      }
    });
  }

  if (errors.length > 0 || !jurisdictions || !storageRegions || validHome === undefined || !releaseDefault) {
    return { ok: false, errors };
  }
  return {
    ok: true,
    policy: {
      appliesTo: { jurisdictions },
      homeRegion: validHome,
      storageRegions,
      processingRegions: processingRegions ?? [...storageRegions],
      release: { default: releaseDefault, byRegion },
      retention: { auditDays, inactiveProfileDays },
      pseudonymiseForeignLogs: typeof pseudonymise === 'boolean' ? pseudonymise : true,
    },
  };
}

/** {@link validatePolicy} that throws `ERR_RESIDENCY_POLICY_INVALID` and returns a versioned policy. */
export function parsePolicy(
  id: string,
  version: number,
  doc: unknown,
  ctx: PolicyValidationContext,
): ResidencyPolicy {
  const result = validatePolicy(id, doc, ctx);
  if (!result.ok) {
    const summary = result.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
    throw new ResidencyError(
      'ERR_RESIDENCY_POLICY_INVALID',
      `residency policy "${id}" is invalid: ${summary}`,
      result.errors,
    );
  }
  return { ...result.policy, id, version };
}

/** `<id>@<version>`, the form the `residency.policy` claim carries. */
export function policyRef(policy: Pick<ResidencyPolicy, 'id' | 'version'>): string {
  return `${policy.id}@${policy.version}`;
}
