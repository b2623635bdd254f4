/**
 * The broker's configuration: one schema, validated once at boot. Pure — no Nest, no I/O —
 * so every rule is tested as a plain function and the process can fail before it opens a socket.
 */
import { hkdfSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseConsoleRoles, type ConsoleRoleMapping } from './console-roles';
import {
  KEY_PROVIDER_SENSITIVE_VARIABLES,
  parseKeyProviderEnv,
  type SigningKeyProviderConfig,
} from './key-provider-config';
import { SECURITY_SENSITIVE_VARIABLES, parseSecurityEnv, type SecurityConfig } from './security-config';
import { parseProxyEntry } from './trusted-proxies';

export type SigningAlg = 'ES256' | 'RS256' | 'PS256' | 'EdDSA';
export const SIGNING_ALGS: readonly SigningAlg[] = ['ES256', 'RS256', 'PS256', 'EdDSA'];
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface BrokerConfig {
  nodeEnv: string;
  region: string;
  /** Normalised issuer: no trailing slash. */
  issuer: string;
  port: number;
  host: string;
  /** Undefined when the embedded PostgreSQL serves. */
  controlDatabaseUrl?: string;
  regionDatabaseUrl?: string;
  dataDir: string;
  kek: Buffer;
  /** Previous KEK, accepted for unwrapping while a KEK rotation is in progress. */
  kekPrevious?: Buffer;
  /**
   * Shared by every region: keys the pseudonymous subject locator and the link table, so each
   * region computes the same pseudonym for the same upstream identity.
   */
  locatorPepper: Buffer;
  adminClientId: string;
  adminClientSecret: string;
  jurisdiction: string;
  signingAlg: SigningAlg;
  keyRotationIntervalSeconds: number;
  keyRefreshIntervalSeconds: number;
  shutdownGraceMs: number;
  upstreamTimeoutMs: number;
  retentionIntervalSeconds: number;
  /**
   * Clients kept in memory (metadata and oidc-provider's Client instance, about 6 KB of memory each),
   * kept fresh by the control plane's change feed.
   */
  clientCacheSize: number;
  /** Optional HTTPS listener for mutual-TLS clients (RFC 8705). */
  tls?: { port: number; certFile: string; keyFile: string; clientCaFile?: string };
  /** Proxies whose client-certificate header is believed; everyone else's is dropped. */
  trustedProxies: string[];
  clientCertHeader: string;
  logLevel: LogLevel;
  /** Who holds `meridian:admin` / `meridian:compliance` when signing in as a person (console). */
  consoleRoles: ConsoleRoleMapping;
  /** How long a console sign-in lasts at most. */
  consoleSessionSeconds: number;
  /**
   * Where the console reaches this broker's own API and token endpoint; undefined: this
   * process's own listener on loopback.
   */
  consoleApiUrl?: string;
  /** Where signing keys are generated and used: sealed under the KEK, or inside a PKCS#11 token. */
  signingKeyProvider: SigningKeyProviderConfig;
  /** Abuse limits, load shedding, anomaly detectors and their alert webhook (security-config.ts). */
  security: SecurityConfig;
}

export interface ConfigWarning {
  variable: string;
  message: string;
}

export type ConfigResult =
  { ok: true; config: BrokerConfig; warnings: ConfigWarning[] } | { ok: false; errors: string[] };

/** Variables whose values must never reach a log line. */
export const SENSITIVE_VARIABLES = new Set([
  'MERIDIAN_KEK',
  'MERIDIAN_LOCATOR_PEPPER',
  'MERIDIAN_KEK_PREVIOUS',
  'MERIDIAN_ADMIN_CLIENT_SECRET',
  'CONTROL_DATABASE_URL',
  'REGION_DATABASE_URL',
  ...KEY_PROVIDER_SENSITIVE_VARIABLES,
  ...SECURITY_SENSITIVE_VARIABLES,
]);

const REGION_RE = /^[a-z][a-z0-9-]{0,31}$/;
// ISO 3166-1 alpha-2, or a supranational code such as EU. XX is ISO's user-assigned "unknown".
const JURISDICTION_RE = /^[A-Z]{2}$/;
const CLIENT_ID_RE = /^[A-Za-z0-9._~:-]{1,128}$/;
const MIN_SECRET_LENGTH = 32;

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

function decodeKek(value: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) && !/^[A-Za-z0-9_-]+$/.test(value)) return undefined;
  const buf = Buffer.from(value, value.includes('-') || value.includes('_') ? 'base64url' : 'base64');
  return buf.length === 32 ? buf : undefined;
}

function isPostgresUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && url.hostname !== '';
  } catch {
    return false;
  }
}

function positiveInt(
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined || value === '') return fallback;
  if (!/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return n >= min && n <= max ? n : undefined;
}

/**
 * Validates the environment. Every problem is collected (one line per variable) so an operator
 * fixes them all in one go instead of one restart per mistake.
 */
export function validateBrokerEnv(
  env: Record<string, string | undefined>,
  cwd = process.cwd(),
): ConfigResult {
  const errors: string[] = [];
  const warnings: ConfigWarning[] = [];
  const nodeEnv = env.NODE_ENV ?? 'development';
  const production = nodeEnv === 'production';
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };

  const region = get('MERIDIAN_REGION');
  if (!region) errors.push('MERIDIAN_REGION is required: the id of the region this broker serves, e.g. eu');
  else if (!REGION_RE.test(region))
    errors.push('MERIDIAN_REGION must be a lowercase id (letters, digits, -; at most 32), e.g. eu');

  let issuer = get('MERIDIAN_ISSUER');
  if (!issuer)
    errors.push('MERIDIAN_ISSUER is required: the public URL of this broker, e.g. https://eu.id.example.com');
  else {
    let url: URL | undefined;
    try {
      url = new URL(issuer);
    } catch {
      errors.push('MERIDIAN_ISSUER must be an absolute URL, e.g. https://eu.id.example.com');
    }
    if (url) {
      // RFC 8414 §2: no query or fragment component at all — an empty `?` or `#` is one too.
      if (issuer.includes('?') || issuer.includes('#') || url.username || url.password) {
        errors.push('MERIDIAN_ISSUER must not carry a query, fragment or credentials');
      } else if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
        errors.push('MERIDIAN_ISSUER must use https (http is allowed only for loopback hosts)');
      } else if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        errors.push('MERIDIAN_ISSUER must use https');
      } else if (production && url.protocol === 'http:') {
        errors.push('MERIDIAN_ISSUER must use https when NODE_ENV=production');
      }
      issuer = issuer.replace(/\/+$/, '');
    }
  }

  const port = positiveInt(get('PORT'), 3000, 0, 65535);
  if (port === undefined) errors.push('PORT must be a TCP port number (0-65535)');

  const controlDatabaseUrl = get('CONTROL_DATABASE_URL');
  const regionDatabaseUrl = get('REGION_DATABASE_URL');
  if (controlDatabaseUrl && !isPostgresUrl(controlDatabaseUrl))
    errors.push('CONTROL_DATABASE_URL must be a postgres:// URL');
  if (regionDatabaseUrl && !isPostgresUrl(regionDatabaseUrl))
    errors.push('REGION_DATABASE_URL must be a postgres:// URL');
  if (!!controlDatabaseUrl !== !!regionDatabaseUrl) {
    errors.push(
      `${controlDatabaseUrl ? 'REGION_DATABASE_URL' : 'CONTROL_DATABASE_URL'} must be set too: set both database URLs, or neither for the embedded development database`,
    );
  } else if (!controlDatabaseUrl) {
    if (production)
      errors.push(
        'CONTROL_DATABASE_URL and REGION_DATABASE_URL are required when NODE_ENV=production (the embedded database is for development)',
      );
    else
      warnings.push({
        variable: 'CONTROL_DATABASE_URL',
        message:
          'no database URLs set: using the embedded development PostgreSQL under .meridian/ (refused when NODE_ENV=production)',
      });
  } else if (controlDatabaseUrl === regionDatabaseUrl) {
    errors.push(
      'REGION_DATABASE_URL must name a different database than CONTROL_DATABASE_URL (personal data never goes to the control plane)',
    );
  }

  const kekRaw = get('MERIDIAN_KEK');
  let kek: Buffer | undefined;
  if (!kekRaw) errors.push('MERIDIAN_KEK is required: base64 of 32 random bytes (openssl rand -base64 32)');
  else {
    kek = decodeKek(kekRaw);
    if (!kek) errors.push('MERIDIAN_KEK must be base64 of 32 bytes (openssl rand -base64 32)');
  }
  const kekPrevRaw = get('MERIDIAN_KEK_PREVIOUS');
  let kekPrevious: Buffer | undefined;
  if (kekPrevRaw) {
    kekPrevious = decodeKek(kekPrevRaw);
    if (!kekPrevious) errors.push('MERIDIAN_KEK_PREVIOUS must be base64 of 32 bytes');
  }

  const pepperRaw = get('MERIDIAN_LOCATOR_PEPPER');
  let locatorPepper: Buffer | undefined;
  if (pepperRaw) {
    locatorPepper = /^[A-Za-z0-9+/_-]+={0,2}$/.test(pepperRaw) ? Buffer.from(pepperRaw, 'base64') : undefined;
    if (!locatorPepper || locatorPepper.length < 32)
      errors.push(
        'MERIDIAN_LOCATOR_PEPPER must be base64 of at least 32 random bytes, the same in every region',
      );
  } else if (production) {
    errors.push(
      'MERIDIAN_LOCATOR_PEPPER is required when NODE_ENV=production: base64 of 32 random bytes, the same in every region',
    );
  } else if (kek) {
    // Development only: regions of one local stack share the KEK, so a pepper derived from it is
    // shared too. Production regions have their own KEKs and must set the pepper.
    locatorPepper = Buffer.from(hkdfSync('sha256', kek, 'meridian', 'locator-pepper', 32));
    warnings.push({
      variable: 'MERIDIAN_LOCATOR_PEPPER',
      message:
        'not set: derived from MERIDIAN_KEK (development only; every region must share the same pepper)',
    });
  }

  const adminClientId = get('MERIDIAN_ADMIN_CLIENT_ID');
  if (!adminClientId)
    errors.push('MERIDIAN_ADMIN_CLIENT_ID is required: the client id of the bootstrap admin client');
  else if (!CLIENT_ID_RE.test(adminClientId))
    errors.push('MERIDIAN_ADMIN_CLIENT_ID must be 1-128 characters of A-Z a-z 0-9 . _ ~ : -');
  const adminClientSecret = get('MERIDIAN_ADMIN_CLIENT_SECRET');
  if (!adminClientSecret)
    errors.push('MERIDIAN_ADMIN_CLIENT_SECRET is required: the bootstrap admin client secret');
  else if (adminClientSecret.length < MIN_SECRET_LENGTH)
    errors.push(
      `MERIDIAN_ADMIN_CLIENT_SECRET must be at least ${MIN_SECRET_LENGTH} characters (openssl rand -base64 32)`,
    );

  let jurisdiction = get('MERIDIAN_JURISDICTION');
  if (jurisdiction && !JURISDICTION_RE.test(jurisdiction))
    errors.push('MERIDIAN_JURISDICTION must be an ISO 3166-1 alpha-2 code or EU, e.g. DE');
  if (!jurisdiction) {
    if (production) errors.push('MERIDIAN_JURISDICTION is required when NODE_ENV=production, e.g. EU');
    else
      warnings.push({
        variable: 'MERIDIAN_JURISDICTION',
        message: 'not set: tokens about no person carry jurisdiction XX (unknown)',
      });
    jurisdiction = 'XX';
  }

  const signingAlg = (get('MERIDIAN_SIGNING_ALG') ?? 'ES256') as SigningAlg;
  if (!SIGNING_ALGS.includes(signingAlg))
    errors.push(`MERIDIAN_SIGNING_ALG must be one of ${SIGNING_ALGS.join(', ')}`);

  const keyRotationIntervalSeconds = positiveInt(
    get('MERIDIAN_KEY_ROTATION_INTERVAL_SECONDS'),
    30 * 86400,
    0,
    10 * 365 * 86400,
  );
  if (keyRotationIntervalSeconds === undefined)
    errors.push(
      'MERIDIAN_KEY_ROTATION_INTERVAL_SECONDS must be a whole number of seconds (0 turns scheduled rotation off)',
    );
  else if (keyRotationIntervalSeconds !== 0 && keyRotationIntervalSeconds < 3600 + 120)
    errors.push(
      'MERIDIAN_KEY_ROTATION_INTERVAL_SECONDS must be 0 or at least 3720 (longer than the longest token lifetime)',
    );

  const keyRefreshIntervalSeconds = positiveInt(get('MERIDIAN_KEY_REFRESH_SECONDS'), 30, 1, 3600);
  if (keyRefreshIntervalSeconds === undefined) errors.push('MERIDIAN_KEY_REFRESH_SECONDS must be 1-3600');

  const shutdownGraceMs = positiveInt(get('MERIDIAN_SHUTDOWN_GRACE_MS'), 10_000, 0, 600_000);
  if (shutdownGraceMs === undefined) errors.push('MERIDIAN_SHUTDOWN_GRACE_MS must be 0-600000');

  const upstreamTimeoutMs = positiveInt(get('MERIDIAN_UPSTREAM_TIMEOUT_MS'), 10_000, 100, 120_000);
  if (upstreamTimeoutMs === undefined) errors.push('MERIDIAN_UPSTREAM_TIMEOUT_MS must be 100-120000');

  const retentionIntervalSeconds = positiveInt(
    get('MERIDIAN_RETENTION_INTERVAL_SECONDS'),
    3600,
    0,
    7 * 86400,
  );
  if (retentionIntervalSeconds === undefined)
    errors.push('MERIDIAN_RETENTION_INTERVAL_SECONDS must be 0-604800 (0 turns the retention job off)');

  const clientCacheSize = positiveInt(get('MERIDIAN_CLIENT_CACHE_SIZE'), 20_000, 100, 10_000_000);
  if (clientCacheSize === undefined) errors.push('MERIDIAN_CLIENT_CACHE_SIZE must be 100-10000000');

  let tls: BrokerConfig['tls'];
  const tlsPortRaw = get('MERIDIAN_TLS_PORT');
  if (tlsPortRaw) {
    const tlsPort = positiveInt(tlsPortRaw, 0, 0, 65535);
    const certFile = get('MERIDIAN_TLS_CERT_FILE');
    const keyFile = get('MERIDIAN_TLS_KEY_FILE');
    if (tlsPort === undefined) errors.push('MERIDIAN_TLS_PORT must be a TCP port number (0-65535)');
    if (!certFile)
      errors.push('MERIDIAN_TLS_CERT_FILE is required with MERIDIAN_TLS_PORT: the PEM server certificate');
    else if (!existsSync(certFile)) errors.push('MERIDIAN_TLS_CERT_FILE must name a readable PEM file');
    if (!keyFile)
      errors.push('MERIDIAN_TLS_KEY_FILE is required with MERIDIAN_TLS_PORT: the PEM private key');
    else if (!existsSync(keyFile)) errors.push('MERIDIAN_TLS_KEY_FILE must name a readable PEM file');
    const clientCaFile = get('MERIDIAN_TLS_CLIENT_CA_FILE');
    if (clientCaFile && !existsSync(clientCaFile))
      errors.push('MERIDIAN_TLS_CLIENT_CA_FILE must name a readable PEM file');
    if (tlsPort !== undefined && certFile && keyFile)
      tls = { port: tlsPort, certFile, keyFile, clientCaFile };
  }
  const trustedProxies = (get('MERIDIAN_TRUSTED_PROXIES') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const badProxy = trustedProxies.find((p) => parseProxyEntry(p) === undefined);
  if (badProxy !== undefined)
    errors.push(
      `MERIDIAN_TRUSTED_PROXIES must be a comma-separated list of IP addresses or CIDR ranges (e.g. 10.0.0.0/8, fd00::/8); "${badProxy.slice(0, 60)}" is neither`,
    );
  const clientCertHeader = (get('MERIDIAN_CLIENT_CERT_HEADER') ?? 'x-client-cert').toLowerCase();
  if (!/^[a-z0-9-]{1,64}$/.test(clientCertHeader))
    errors.push('MERIDIAN_CLIENT_CERT_HEADER must be a header name');

  const logLevel = (get('LOG_LEVEL') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) errors.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);

  const consoleRoles = parseConsoleRoles(get('MERIDIAN_CONSOLE_ROLES'));
  if (!consoleRoles.ok) errors.push(`MERIDIAN_CONSOLE_ROLES ${consoleRoles.message}`);
  const consoleSessionSeconds = positiveInt(get('MERIDIAN_CONSOLE_SESSION_SECONDS'), 8 * 3600, 300, 86400);
  if (consoleSessionSeconds === undefined)
    errors.push('MERIDIAN_CONSOLE_SESSION_SECONDS must be 300-86400 (seconds a console sign-in lasts)');
  let consoleApiUrl = get('MERIDIAN_CONSOLE_API_URL');
  if (consoleApiUrl) {
    let url: URL | undefined;
    try {
      url = new URL(consoleApiUrl);
    } catch {
      // reported below
    }
    if (
      !url ||
      (url.protocol !== 'http:' && url.protocol !== 'https:') ||
      consoleApiUrl.includes('?') ||
      consoleApiUrl.includes('#') ||
      url.username ||
      url.password
    )
      errors.push(
        'MERIDIAN_CONSOLE_API_URL must be an http(s) URL without query or credentials: where the console reaches this broker, e.g. http://127.0.0.1:8080',
      );
    else consoleApiUrl = consoleApiUrl.replace(/\/+$/, '');
  }

  const security = parseSecurityEnv(get, errors, production);

  const signingKeyProvider = parseKeyProviderEnv(get, errors, signingAlg);

  const host = get('HOST') ?? '0.0.0.0';
  if (isIP(host) === 0 && host !== 'localhost')
    errors.push('HOST must be an IP address to listen on, e.g. 0.0.0.0');

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    warnings,
    config: {
      nodeEnv,
      region: region!,
      issuer: issuer!,
      port: port!,
      host,
      controlDatabaseUrl,
      regionDatabaseUrl,
      dataDir: get('MERIDIAN_DATA_DIR') ?? `${cwd}/.meridian`,
      kek: kek!,
      kekPrevious,
      locatorPepper: locatorPepper!,
      adminClientId: adminClientId!,
      adminClientSecret: adminClientSecret!,
      jurisdiction,
      signingAlg,
      keyRotationIntervalSeconds: keyRotationIntervalSeconds!,
      keyRefreshIntervalSeconds: keyRefreshIntervalSeconds!,
      shutdownGraceMs: shutdownGraceMs!,
      upstreamTimeoutMs: upstreamTimeoutMs!,
      retentionIntervalSeconds: retentionIntervalSeconds!,
      clientCacheSize: clientCacheSize!,
      tls,
      trustedProxies,
      clientCertHeader,
      logLevel,
      consoleRoles: consoleRoles.ok ? consoleRoles.mapping : {},
      consoleSessionSeconds: consoleSessionSeconds!,
      consoleApiUrl,
      signingKeyProvider,
      security,
    },
  };
}
