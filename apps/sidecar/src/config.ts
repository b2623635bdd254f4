/**
 * The sidecar's configuration: validated once at start, every problem collected, one line per
 * variable. Pure apart from reading the routes file, which goes through an injected reader so
 * the rules are testable as plain functions.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { JWK } from 'jose';
import { parseDecryptionKeys } from './decryption-keys';
import { parseRoutes, type RouteRule } from './routes';
import type { SecurityReportConfig } from '@meridian/verifier';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface SidecarConfig {
  port: number;
  host: string;
  /** The protected service: origin plus an optional base path (no trailing slash). */
  upstream: URL;
  audience: string;
  trustBundleUrl: string;
  /** Scopes every request needs (SIDECAR_REQUIRED_SCOPES). */
  requiredScopes: readonly string[];
  /** This service's region: it must be in the token's `residency.processing`. */
  region: string | undefined;
  routes: readonly RouteRule[];
  routesFile: string | undefined;
  /** Path prefix of the Envoy ext_authz check endpoint; undefined when turned off. */
  extAuthzPrefix: string | undefined;
  /** The origin clients use to reach this service (DPoP `htu`), e.g. https://orders.example.com. */
  publicUrl: string | undefined;
  /** Private keys for tokens encrypted to this service, and the file they come from (reloaded). */
  decryptionKeys: JWK[] | undefined;
  decryptionKeysFile: string | undefined;
  /**
   * Inbound TLS terminated by the sidecar itself (files re-read when they change), with client
   * certificates requested for certificate-bound tokens (RFC 8705 §3); undefined: plain HTTP.
   */
  tls: SidecarTlsConfig | undefined;
  upstreamTimeoutMs: number;
  bundleRefreshCooldownMs: number;
  /** Leeway for `exp`, `nbf`, `iat` (RFC 9068 §4). */
  clockToleranceSeconds: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  /** Security events reported to the broker (SIDECAR_REPORT_*); undefined: not reported. */
  report: SecurityReportConfig | undefined;
}

export interface SidecarTlsConfig {
  certFile: string;
  keyFile: string;
  /**
   * CA bundle client certificates must chain to; when set, a connection without such a
   * certificate is refused during the handshake. Without it any client certificate is accepted
   * at the TLS layer and only its thumbprint matters (`cnf.x5t#S256`, RFC 8705 §3 — also what
   * `self_signed_tls_client_auth` clients present).
   */
  clientCaFile: string | undefined;
}

export type SidecarConfigResult = { ok: true; config: SidecarConfig } | { ok: false; errors: string[] };

export interface ConfigIo {
  /** Reads the routes and key files (default: fs.readFileSync as UTF-8). */
  readFile?: (path: string) => string;
}

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
const REGION_RE = /^[a-z][a-z0-9-]{0,31}$/;

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

function wholeNumber(
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return n >= min && n <= max ? n : undefined;
}

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/**
 * Validates the environment of one sidecar. Every problem is reported (each line starts with
 * the variable's name), so an operator fixes them all in one restart.
 */
export function validateSidecarEnv(
  env: Record<string, string | undefined>,
  io: ConfigIo = {},
): SidecarConfigResult {
  const errors: string[] = [];
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };

  const portRaw = get('PORT');
  let port: number | undefined;
  if (portRaw === undefined) errors.push('PORT is required: the port the sidecar listens on, e.g. 8080');
  else {
    port = wholeNumber(portRaw, 0, 0, 65535);
    if (port === undefined)
      errors.push(`PORT must be a whole number 0-65535 (0: any free port), got "${portRaw}"`);
  }

  const host = get('HOST') ?? '0.0.0.0';
  if (isIP(host) === 0 && host !== 'localhost')
    errors.push('HOST must be an IP address to listen on, e.g. 0.0.0.0');

  const upstreamRaw = get('SIDECAR_UPSTREAM');
  let upstream: URL | undefined;
  if (upstreamRaw === undefined) {
    errors.push('SIDECAR_UPSTREAM is required: the URL of the protected service, e.g. http://127.0.0.1:3000');
  } else {
    upstream = parseUrl(upstreamRaw);
    if (!upstream || (upstream.protocol !== 'http:' && upstream.protocol !== 'https:')) {
      errors.push(`SIDECAR_UPSTREAM must be an http:// or https:// URL, e.g. http://127.0.0.1:3000`);
      upstream = undefined;
    } else if (upstream.username || upstream.password || upstream.search || upstream.hash) {
      errors.push(
        'SIDECAR_UPSTREAM must not carry credentials, a query or a fragment: only origin and base path',
      );
      upstream = undefined;
    } else {
      upstream.pathname = upstream.pathname.replace(/\/+$/, '');
    }
  }

  const audience = get('SIDECAR_AUDIENCE');
  if (audience === undefined) {
    errors.push(
      'SIDECAR_AUDIENCE is required: the audience (RFC 8707 resource) the service is registered with at the broker, e.g. https://orders.example.com',
    );
  }

  const bundleRaw = get('SIDECAR_TRUST_BUNDLE_URL');
  if (bundleRaw === undefined) {
    errors.push(
      "SIDECAR_TRUST_BUNDLE_URL is required: a broker's trust bundle, e.g. https://eu.id.example.com/.well-known/meridian/trust-bundle",
    );
  } else {
    const url = parseUrl(bundleRaw);
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
      errors.push('SIDECAR_TRUST_BUNDLE_URL must be an https:// URL (http:// only on loopback)');
    } else if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
      errors.push(
        'SIDECAR_TRUST_BUNDLE_URL must be https: keys fetched in clear text can be swapped on the way (http:// is allowed only on loopback)',
      );
    }
  }

  const requiredScopes = (get('SIDECAR_REQUIRED_SCOPES') ?? '').split(/ +/).filter(Boolean);
  const badScopes = requiredScopes.filter((s) => !SCOPE_TOKEN.test(s));
  if (badScopes.length) {
    errors.push(
      `SIDECAR_REQUIRED_SCOPES must be scopes separated by single spaces (RFC 6749 §3.3); invalid: ${JSON.stringify(badScopes)}`,
    );
  }

  const region = get('SIDECAR_REGION');
  if (region !== undefined && !REGION_RE.test(region)) {
    errors.push('SIDECAR_REGION must be a region id as the broker names it (lower case, e.g. eu), or unset');
  }

  const routesFile = get('SIDECAR_ROUTES_FILE');
  let routes: RouteRule[] = [];
  if (routesFile !== undefined) {
    const read = io.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
    let text: string | undefined;
    try {
      text = read(routesFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      errors.push(`SIDECAR_ROUTES_FILE cannot be read (${code ?? 'error'}): ${routesFile}`);
    }
    if (text !== undefined) {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        errors.push(`SIDECAR_ROUTES_FILE is not JSON (${(err as Error).message}): ${routesFile}`);
      }
      if (json !== undefined) {
        const parsed = parseRoutes(json);
        if (parsed.ok) routes = parsed.routes;
        else for (const e of parsed.errors) errors.push(`SIDECAR_ROUTES_FILE ${routesFile}: ${e}`);
      }
    }
  }

  const decryptionKeysFile = get('SIDECAR_DECRYPTION_KEYS_FILE');
  let decryptionKeys: JWK[] | undefined;
  if (decryptionKeysFile !== undefined) {
    const read = io.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
    let text: string | undefined;
    try {
      text = read(decryptionKeysFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      errors.push(`SIDECAR_DECRYPTION_KEYS_FILE cannot be read (${code ?? 'error'}): ${decryptionKeysFile}`);
    }
    if (text !== undefined) {
      const parsed = parseDecryptionKeys(text);
      if (parsed.ok) decryptionKeys = parsed.keys;
      else
        for (const e of parsed.errors)
          errors.push(`SIDECAR_DECRYPTION_KEYS_FILE ${decryptionKeysFile}: ${e}`);
    }
  }

  const tlsCert = get('SIDECAR_TLS_CERT_FILE');
  const tlsKey = get('SIDECAR_TLS_KEY_FILE');
  const tlsCa = get('SIDECAR_TLS_CLIENT_CA_FILE');
  let tls: SidecarTlsConfig | undefined;
  if (tlsCert !== undefined || tlsKey !== undefined || tlsCa !== undefined) {
    const read = io.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
    const readable = (name: string, file: string | undefined, what: string) => {
      if (file === undefined) {
        errors.push(`${name} is required when the sidecar terminates TLS: ${what}`);
        return false;
      }
      try {
        read(file);
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        errors.push(`${name} cannot be read (${code ?? 'error'}): ${file}`);
        return false;
      }
    };
    const certOk = readable('SIDECAR_TLS_CERT_FILE', tlsCert, 'the PEM certificate chain to serve');
    const keyOk = readable('SIDECAR_TLS_KEY_FILE', tlsKey, 'the PEM private key of that certificate');
    const caOk = tlsCa === undefined || readable('SIDECAR_TLS_CLIENT_CA_FILE', tlsCa, '');
    if (certOk && keyOk && caOk) tls = { certFile: tlsCert!, keyFile: tlsKey!, clientCaFile: tlsCa };
  }

  let extAuthzPrefix: string | undefined = get('SIDECAR_EXT_AUTHZ_PREFIX') ?? '/ext-authz';
  if (extAuthzPrefix === 'off') extAuthzPrefix = undefined;
  else if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*[^/]$/.test(extAuthzPrefix) || extAuthzPrefix.includes('//')) {
    errors.push('SIDECAR_EXT_AUTHZ_PREFIX must be a path such as /ext-authz (no trailing slash), or "off"');
  }

  const publicRaw = get('SIDECAR_PUBLIC_URL');
  let publicUrl: string | undefined;
  if (publicRaw !== undefined) {
    const url = parseUrl(publicRaw);
    if (
      !url ||
      (url.protocol !== 'http:' && url.protocol !== 'https:') ||
      url.username ||
      url.password ||
      url.search ||
      url.hash ||
      url.pathname !== '/'
    ) {
      errors.push(
        'SIDECAR_PUBLIC_URL must be the origin clients call, e.g. https://orders.example.com (no path): DPoP proofs name it',
      );
    } else publicUrl = url.origin;
  }

  const upstreamTimeoutMs = wholeNumber(get('SIDECAR_UPSTREAM_TIMEOUT_MS'), 30_000, 100, 600_000);
  if (upstreamTimeoutMs === undefined) {
    errors.push('SIDECAR_UPSTREAM_TIMEOUT_MS must be 100-600000: how long the upstream may stay silent');
  }
  const bundleRefreshCooldownMs = wholeNumber(
    get('SIDECAR_BUNDLE_REFRESH_COOLDOWN_MS'),
    30_000,
    0,
    3_600_000,
  );
  if (bundleRefreshCooldownMs === undefined) {
    errors.push(
      'SIDECAR_BUNDLE_REFRESH_COOLDOWN_MS must be 0-3600000: minimum time between two trust bundle fetches',
    );
  }
  const clockToleranceSeconds = wholeNumber(get('SIDECAR_CLOCK_TOLERANCE_SECONDS'), 30, 0, 300);
  if (clockToleranceSeconds === undefined) {
    errors.push(
      'SIDECAR_CLOCK_TOLERANCE_SECONDS must be 0-300: leeway for token exp/nbf/iat against this clock',
    );
  }
  const shutdownGraceMs = wholeNumber(get('SIDECAR_SHUTDOWN_GRACE_MS'), 10_000, 0, 600_000);
  if (shutdownGraceMs === undefined) {
    errors.push(
      'SIDECAR_SHUTDOWN_GRACE_MS must be 0-600000: how long in-flight requests may finish on SIGTERM',
    );
  }

  const logLevel = (get('LOG_LEVEL') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) errors.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);

  let report: SecurityReportConfig | undefined;
  const reportUrl = get('SIDECAR_REPORT_URL');
  const reportClientId = get('SIDECAR_REPORT_CLIENT_ID');
  const reportSecret = get('SIDECAR_REPORT_CLIENT_SECRET');
  const reportIntervalMs = wholeNumber(get('SIDECAR_REPORT_INTERVAL_MS'), 5000, 100, 600_000);
  if (reportIntervalMs === undefined)
    errors.push('SIDECAR_REPORT_INTERVAL_MS must be 100-600000: how often pending security events are sent');
  if (reportUrl !== undefined) {
    const url = parseUrl(reportUrl);
    if (
      !url ||
      !/\/security\/events$/.test(url.pathname) ||
      url.search ||
      url.hash ||
      url.username ||
      url.password
    )
      errors.push(
        "SIDECAR_REPORT_URL must be the broker's security events endpoint, e.g. https://eu.id.example.com/security/events",
      );
    else if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname)))
      errors.push('SIDECAR_REPORT_URL must be https (http:// is allowed only on loopback)');
    if (reportClientId === undefined)
      errors.push(
        'SIDECAR_REPORT_CLIENT_ID is required with SIDECAR_REPORT_URL: a client_credentials client of the broker registered for urn:meridian:security-events',
      );
    if (reportSecret === undefined)
      errors.push("SIDECAR_REPORT_CLIENT_SECRET is required with SIDECAR_REPORT_URL: that client's secret");
    if (url && reportClientId && reportSecret && reportIntervalMs !== undefined)
      report = {
        url: reportUrl,
        clientId: reportClientId,
        clientSecret: reportSecret,
        intervalMs: reportIntervalMs,
      };
  } else if (reportClientId !== undefined || reportSecret !== undefined) {
    errors.push(
      'SIDECAR_REPORT_URL is required with SIDECAR_REPORT_CLIENT_ID/SECRET: where to send security events',
    );
  }

  if (errors.length) return { ok: false, errors };
  return {
    ok: true,
    config: {
      port: port!,
      host,
      upstream: upstream!,
      audience: audience!,
      trustBundleUrl: bundleRaw!,
      requiredScopes,
      region,
      routes,
      routesFile,
      extAuthzPrefix,
      publicUrl,
      decryptionKeys,
      decryptionKeysFile,
      tls,
      upstreamTimeoutMs: upstreamTimeoutMs!,
      bundleRefreshCooldownMs: bundleRefreshCooldownMs!,
      clockToleranceSeconds: clockToleranceSeconds!,
      shutdownGraceMs: shutdownGraceMs!,
      logLevel,
      report,
    },
  };
}
