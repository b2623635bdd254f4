/**
 * What a service tells its broker (issue 6) — through the auth sidecar (SIDECAR_REPORT_*) or the
 * verifier SDK (the `report` option): tokens presented here although this service's region is
 * not in their `residency.processing`, and tokens refused for an invalid signature or an unknown
 * issuer. Counted in memory and sent in one batch per interval to the broker's
 * POST /security/events, authenticated with a client_credentials token of that broker
 * (audience urn:meridian:security-events, scope meridian:security:report). Reporting never
 * delays or changes an answer to a client; a report that cannot be sent is kept (bounded) for
 * the next interval.
 */
import { decodeJwt } from 'jose';

/** Where a report that could not be sent is told (pino's `warn` fits). */
export interface ReportLogger {
  warn(obj: object, msg: string): void;
}

export const SECURITY_EVENTS_AUDIENCE = 'urn:meridian:security-events';
export const SECURITY_REPORT_SCOPE = 'meridian:security:report';

export interface SecurityReportConfig {
  /** `<broker issuer>/security/events`. */
  url: string;
  clientId: string;
  clientSecret: string;
  intervalMs: number;
}

/** One event of a report, as POST /security/events takes it (the broker's libs/security reads the same type). */
export interface ReportedSecurityEvent {
  type: 'residency_violation' | 'token_rejected';
  count: number;
  code?: string;
  client_id?: string;
  sub?: string;
  token_region?: string;
  processing?: string[];
  issuer?: string;
}

/** Refusal codes worth reporting, beyond residency. */
const REPORTED_REJECTIONS = new Set(['ERR_TOKEN_SIGNATURE', 'ERR_TOKEN_ISSUER']);
const MAX_KEYS = 1000;
const TIMEOUT_MS = 5000;

export class SecurityReporter {
  private pending = new Map<string, ReportedSecurityEvent>();
  private timer?: NodeJS.Timeout;
  private token?: { value: string; until: number };
  private tokenEndpoint?: string;
  private sending?: Promise<void>;
  sent = 0;
  failures = 0;

  constructor(
    private readonly config: SecurityReportConfig,
    private readonly service: { audience: string; region?: string },
    private readonly logger: ReportLogger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.config.intervalMs);
    this.timer.unref();
  }

  /**
   * Called for every refused request with the refusal's code and a way to the token presented
   * (asked for only on a residency refusal, when the token passed every other check and its
   * claims can be named); cheap, never throws.
   */
  refused(reason: string, token: () => string | undefined): void {
    try {
      if (reason === 'ERR_RESIDENCY_PROCESSING') this.residency(token());
      else if (REPORTED_REJECTIONS.has(reason))
        this.add(`rej:${reason}`, { type: 'token_rejected', count: 1, code: reason });
    } catch {
      // reporting never affects the request
    }
  }

  /** The token passed every check but residency: its claims are trustworthy enough to name. */
  private residency(token: string | undefined): void {
    let claims: Record<string, unknown> = {};
    try {
      if (token) claims = decodeJwt(token) as Record<string, unknown>;
    } catch {
      // an encrypted token: reported without its claims
    }
    const residency = claims.residency as { region?: unknown; processing?: unknown } | undefined;
    const str = (v: unknown) => (typeof v === 'string' && v.length <= 200 ? v : undefined);
    const clientId = str(claims.client_id);
    const sub = str(claims.sub);
    const tokenRegion = typeof residency?.region === 'string' ? residency.region : undefined;
    const processing = Array.isArray(residency?.processing)
      ? residency.processing.filter((r): r is string => typeof r === 'string').slice(0, 32)
      : undefined;
    this.add(`res:${clientId ?? ''}:${sub ?? ''}:${tokenRegion ?? ''}`, {
      type: 'residency_violation',
      count: 1,
      ...(clientId ? { client_id: clientId } : {}),
      ...(sub ? { sub } : {}),
      ...(tokenRegion && /^[a-z][a-z0-9-]{0,31}$/.test(tokenRegion) ? { token_region: tokenRegion } : {}),
      ...(processing ? { processing: processing.filter((r) => /^[a-z][a-z0-9-]{0,31}$/.test(r)) } : {}),
    });
  }

  private add(key: string, event: ReportedSecurityEvent): void {
    const existing = this.pending.get(key);
    if (existing) existing.count = Math.min(existing.count + event.count, 1_000_000);
    else if (this.pending.size < MAX_KEYS) this.pending.set(key, event);
  }

  /** Sends what is pending (one request), unless a send is already running. */
  flush(): Promise<void> {
    if (this.sending || this.pending.size === 0) return this.sending ?? Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    this.sending = this.send([...batch.values()])
      .then(
        () => {
          this.sent++;
        },
        (err: unknown) => {
          this.failures++;
          this.logger.warn(
            { err: { message: (err as Error).message } },
            'security report not delivered; kept for the next one',
          );
          for (const [key, e] of batch) this.add(key, e);
        },
      )
      .finally(() => {
        this.sending = undefined;
      });
    return this.sending;
  }

  private async send(events: ReportedSecurityEvent[]): Promise<void> {
    const body = JSON.stringify({
      audience: this.service.audience,
      ...(this.service.region ? { region: this.service.region } : {}),
      events,
    });
    let res = await this.post(body, await this.accessToken());
    if (res.status === 401) {
      // The broker may have rotated keys or revoked the token: one fresh token, one retry.
      this.token = undefined;
      res = await this.post(body, await this.accessToken());
    }
    if (res.status !== 202) throw new Error(`the broker answered ${res.status}`);
  }

  private async post(body: string, token: string): Promise<Response> {
    const res = await fetch(this.config.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    await res.arrayBuffer().catch(() => undefined);
    return res;
  }

  private async accessToken(): Promise<string> {
    if (this.token && this.token.until > Date.now()) return this.token.value;
    const endpoint = await this.discoverTokenEndpoint();
    const basic = Buffer.from(
      `${encodeURIComponent(this.config.clientId)}:${encodeURIComponent(this.config.clientSecret)}`,
    ).toString('base64');
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        resource: SECURITY_EVENTS_AUDIENCE,
        scope: SECURITY_REPORT_SCOPE,
      }),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const json = (await res.json().catch(() => ({}))) as { access_token?: string; expires_in?: number };
    if (res.status !== 200 || !json.access_token)
      throw new Error(`no report token from the broker (${res.status})`);
    const ttl = Math.max(10, (json.expires_in ?? 60) - 30);
    this.token = { value: json.access_token, until: Date.now() + ttl * 1000 };
    return json.access_token;
  }

  /** The broker's token endpoint, from its discovery document (the issuer is the report URL's base). */
  private async discoverTokenEndpoint(): Promise<string> {
    if (this.tokenEndpoint) return this.tokenEndpoint;
    const issuer = this.config.url.replace(/\/security\/events$/, '');
    const res = await fetch(`${issuer}/.well-known/openid-configuration`, {
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const json = (await res.json().catch(() => ({}))) as { token_endpoint?: string; issuer?: string };
    if (res.status !== 200 || typeof json.token_endpoint !== 'string')
      throw new Error(`no discovery document at ${issuer} (${res.status})`);
    this.tokenEndpoint = json.token_endpoint;
    return this.tokenEndpoint;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush().catch(() => undefined);
  }
}
