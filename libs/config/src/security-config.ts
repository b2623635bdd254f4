/**
 * Abuse limits, load shedding and anomaly detection (issue 6): their part of the broker's
 * configuration. Pure, like the rest of the schema: every rule is a plain function, every
 * problem one line that starts with the variable's name.
 */
import { isIP } from 'node:net';

/** At most `limit` events per `periodSeconds` (a token bucket of `limit`, refilled over the period). */
export interface Rate {
  limit: number;
  periodSeconds: number;
}

/** Which endpoint a request limit guards, and by what key. */
export type LimitedRoute = 'token' | 'authorization' | 'login' | 'admin';
export type LimitKeyKind = 'client' | 'source';

export interface RateLimitConfig {
  /** `undefined`: no limit on that route and key. */
  token: { client?: Rate; source?: Rate };
  authorization: { client?: Rate; source?: Rate };
  login: { source?: Rate };
  admin: { client?: Rate; source?: Rate };
  /**
   * Most units a replica reserves from the shared store in one call (1: every request asks the
   * database). A key's reservation is also at most 1/50 of its limit, so a small limit is exact.
   */
  batch: number;
}

export interface LockoutConfig {
  /** Failed client authentications of one client that lock it out; undefined: never. */
  clientFailures?: Rate;
  /** Failed client authentications from one source address that lock it out; undefined: never. */
  sourceFailures?: Rate;
  /** First lockout; each further one within `maxSeconds` of the last doubles, up to `maxSeconds`. */
  seconds: number;
  maxSeconds: number;
}

/** Thresholds of the detectors that alert (audit entry, counter, webhook) without locking anyone out. */
export interface DetectorConfig {
  refreshTokenReuse?: Rate;
  codeReplay?: Rate;
  residencyViolation?: Rate;
  sidecarTokenFailures?: Rate;
  upstreamIdTokenFailures?: Rate;
  /** Impossible travel between regions: off when undefined or when no region has a location. */
  travel?: { maxKmh: number; locations: Record<string, { lat: number; lon: number }> };
}

export interface LoadSheddingConfig {
  /** Requests in progress above which new ones get 503 (0: off). */
  maxInFlight: number;
  /** Event-loop delay above which new requests get 503 (0: off). */
  maxEventLoopDelayMs: number;
}

export interface SecurityConfig {
  rateLimits: RateLimitConfig;
  lockout: LockoutConfig;
  detectors: DetectorConfig;
  shedding: LoadSheddingConfig;
  /** Signed alert webhook (HMAC-SHA256); undefined: alerts go to the audit trail and metrics only. */
  webhook?: { url: string; secret: string };
}

export const SECURITY_SENSITIVE_VARIABLES = ['MERIDIAN_SECURITY_WEBHOOK_SECRET'] as const;

const RATE_RE = /^(\d{1,9})\s*\/\s*(\d{1,7})$/;

/** `"10/60"` → 10 per 60 s; `"off"` → undefined. */
export function parseRate(value: string): Rate | 'off' | undefined {
  if (value.toLowerCase() === 'off') return 'off';
  const m = RATE_RE.exec(value);
  if (!m) return undefined;
  const limit = Number(m[1]);
  const periodSeconds = Number(m[2]);
  if (limit < 1 || periodSeconds < 1 || periodSeconds > 86_400) return undefined;
  return { limit, periodSeconds };
}

function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** `eu=50.11,8.68;us=38.90,-77.04` → locations by region id. */
export function parseRegionLocations(
  value: string,
): Record<string, { lat: number; lon: number }> | undefined {
  const out: Record<string, { lat: number; lon: number }> = {};
  for (const part of value.split(';').map((s) => s.trim())) {
    if (!part) continue;
    const m = /^([a-z][a-z0-9-]{0,31})\s*=\s*(-?\d{1,3}(?:\.\d+)?)\s*,\s*(-?\d{1,3}(?:\.\d+)?)$/.exec(part);
    if (!m) return undefined;
    const lat = Number(m[2]);
    const lon = Number(m[3]);
    if (Math.abs(lat) > 90 || Math.abs(lon) > 180 || m[1]! in out) return undefined;
    out[m[1]!] = { lat, lon };
  }
  return Object.keys(out).length ? out : undefined;
}

type Get = (name: string) => string | undefined;

/** Validates the security variables; problems are appended to `errors`, one line each. */
export function parseSecurityEnv(get: Get, errors: string[], production: boolean): SecurityConfig {
  const rate = (name: string, fallback: Rate | undefined, what: string): Rate | undefined => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    const parsed = parseRate(raw);
    if (parsed === undefined) {
      errors.push(`${name} must be <count>/<seconds> (e.g. 10/60: ${what}) or off`);
      return fallback;
    }
    return parsed === 'off' ? undefined : parsed;
  };
  const whole = (name: string, fallback: number, min: number, max: number, what: string): number => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= min && n <= max)) {
      errors.push(`${name} must be a whole number ${min}-${max}: ${what}`);
      return fallback;
    }
    return n;
  };
  const per = (limit: number, periodSeconds: number): Rate => ({ limit, periodSeconds });

  const rateLimits: RateLimitConfig = {
    token: {
      client: rate('MERIDIAN_RATE_LIMIT_TOKEN_CLIENT', per(6000, 60), 'token requests per client'),
      source: rate('MERIDIAN_RATE_LIMIT_TOKEN_SOURCE', per(6000, 60), 'token requests per source address'),
    },
    authorization: {
      client: rate(
        'MERIDIAN_RATE_LIMIT_AUTHORIZATION_CLIENT',
        per(6000, 60),
        'authorization requests per client_id',
      ),
      source: rate(
        'MERIDIAN_RATE_LIMIT_AUTHORIZATION_SOURCE',
        per(600, 60),
        'authorization requests per source address',
      ),
    },
    login: {
      source: rate(
        'MERIDIAN_RATE_LIMIT_LOGIN_SOURCE',
        per(1200, 60),
        'login page and federation callback requests per source address',
      ),
    },
    admin: {
      client: rate(
        'MERIDIAN_RATE_LIMIT_ADMIN_CLIENT',
        per(600, 60),
        'admin, compliance, privacy and audit API requests per token principal',
      ),
      source: rate(
        'MERIDIAN_RATE_LIMIT_ADMIN_SOURCE',
        per(1200, 60),
        'admin, compliance, privacy and audit API requests per source address',
      ),
    },
    batch: whole(
      'MERIDIAN_RATE_LIMIT_BATCH',
      64,
      1,
      10_000,
      'most requests a replica reserves per database call (1 = every request asks the database)',
    ),
  };

  const lockout: LockoutConfig = {
    clientFailures: rate(
      'MERIDIAN_LOCKOUT_CLIENT_FAILURES',
      per(10, 60),
      'failed client authentications of one client before it is locked out',
    ),
    sourceFailures: rate(
      'MERIDIAN_LOCKOUT_SOURCE_FAILURES',
      per(50, 60),
      'failed client authentications from one source address before it is locked out',
    ),
    seconds: whole('MERIDIAN_LOCKOUT_SECONDS', 60, 1, 86_400, 'length of the first lockout in seconds'),
    maxSeconds: whole(
      'MERIDIAN_LOCKOUT_MAX_SECONDS',
      3600,
      1,
      7 * 86_400,
      'longest lockout in seconds (each repeated lockout doubles up to it)',
    ),
  };
  if (lockout.maxSeconds < lockout.seconds)
    errors.push('MERIDIAN_LOCKOUT_MAX_SECONDS must be at least MERIDIAN_LOCKOUT_SECONDS');

  const detectors: DetectorConfig = {
    refreshTokenReuse: rate(
      'MERIDIAN_DETECT_REFRESH_TOKEN_REUSE',
      per(1, 60),
      'refresh-token reuses per client that raise an alert',
    ),
    codeReplay: rate(
      'MERIDIAN_DETECT_CODE_REPLAY',
      per(1, 60),
      'authorization-code replays per client that raise an alert',
    ),
    residencyViolation: rate(
      'MERIDIAN_DETECT_RESIDENCY_VIOLATION',
      per(1, 60),
      'tokens presented outside their residency.processing, per client, that raise an alert',
    ),
    sidecarTokenFailures: rate(
      'MERIDIAN_DETECT_SIDECAR_TOKEN_FAILURES',
      per(50, 60),
      'invalid-signature or unknown-issuer tokens per reporting sidecar that raise an alert',
    ),
    upstreamIdTokenFailures: rate(
      'MERIDIAN_DETECT_UPSTREAM_ID_TOKEN_FAILURES',
      per(3, 300),
      'upstream ID tokens failing validation per federation that raise an alert',
    ),
  };
  const maxKmh = whole(
    'MERIDIAN_TRAVEL_MAX_KMH',
    1000,
    0,
    100_000,
    'fastest plausible travel between two logins of one person (0 = off)',
  );
  const locationsRaw = get('MERIDIAN_REGION_LOCATIONS');
  if (locationsRaw !== undefined) {
    const locations = parseRegionLocations(locationsRaw);
    if (!locations)
      errors.push(
        'MERIDIAN_REGION_LOCATIONS must be <region>=<latitude>,<longitude> pairs separated by ";", e.g. eu=50.11,8.68;us=38.90,-77.04',
      );
    else if (maxKmh > 0) detectors.travel = { maxKmh, locations };
  }

  const shedding: LoadSheddingConfig = {
    maxInFlight: whole(
      'MERIDIAN_SHED_MAX_IN_FLIGHT',
      512,
      0,
      1_000_000,
      'requests in progress above which new ones get 503 (0 = off)',
    ),
    maxEventLoopDelayMs: whole(
      'MERIDIAN_SHED_MAX_EVENT_LOOP_DELAY_MS',
      200,
      0,
      60_000,
      'event-loop delay in ms above which new requests get 503 (0 = off)',
    ),
  };

  let webhook: SecurityConfig['webhook'];
  const hookUrl = get('MERIDIAN_SECURITY_WEBHOOK_URL');
  const hookSecret = get('MERIDIAN_SECURITY_WEBHOOK_SECRET');
  if (hookUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(hookUrl);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password)
      errors.push('MERIDIAN_SECURITY_WEBHOOK_URL must be an https:// URL without credentials');
    else if (url.protocol === 'http:' && (production || !isLoopbackHost(url.hostname)))
      errors.push(
        'MERIDIAN_SECURITY_WEBHOOK_URL must use https (http only for loopback, never in production)',
      );
    if (hookSecret === undefined)
      errors.push(
        'MERIDIAN_SECURITY_WEBHOOK_SECRET is required with MERIDIAN_SECURITY_WEBHOOK_URL: at least 32 characters (openssl rand -base64 32)',
      );
    else if (hookSecret.length < 32)
      errors.push(
        'MERIDIAN_SECURITY_WEBHOOK_SECRET must be at least 32 characters (openssl rand -base64 32)',
      );
    if (url && hookSecret && hookSecret.length >= 32) webhook = { url: hookUrl, secret: hookSecret };
  } else if (hookSecret !== undefined) {
    errors.push(
      'MERIDIAN_SECURITY_WEBHOOK_SECRET is set without MERIDIAN_SECURITY_WEBHOOK_URL: set both or neither',
    );
  }

  return { rateLimits, lockout, detectors, shedding, webhook };
}
