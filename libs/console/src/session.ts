/**
 * The console's server-side sessions. The browser holds only a random session id, signed
 * (HMAC-SHA256) in an HttpOnly, SameSite=Lax cookie; the session itself — the person's tokens —
 * lives in the region database, sealed under the KEK and keyed by a hash of the id, so neither a
 * database reader nor a cookie thief without the key gets a usable session from the other half.
 * POST forms carry a CSRF token derived from the session id.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { open, seal } from '@meridian/keys';
import type { RegionDatabase } from '@meridian/persistence';

const MODEL = 'ConsoleSession';

export interface ConsoleSession {
  sub: string;
  /** Admin-audience scopes the broker granted at sign-in (`meridian:admin`, `meridian:compliance`). */
  scopes: string[];
  accessToken: string;
  /** Epoch seconds. */
  accessTokenExpiresAt: number;
  refreshToken?: string;
  idToken?: string;
  /** Epoch seconds. */
  createdAt: number;
  expiresAt: number;
}

/** Keys derived from the KEK: every replica of a region derives the same ones. */
export interface ConsoleKeys {
  cookie: Buffer;
  csrf: Buffer;
  review: Buffer;
  login: Buffer;
  seal: Buffer;
}

export function deriveConsoleKeys(kek: Buffer, region: string): ConsoleKeys {
  const derive = (purpose: string) =>
    Buffer.from(hkdfSync('sha256', kek, 'meridian-console', `${purpose}:${region}`, 32));
  return {
    cookie: derive('session-cookie'),
    csrf: derive('csrf'),
    review: derive('policy-review'),
    login: derive('login-state'),
    seal: derive('session-seal'),
  };
}

function mac(key: Buffer, ...parts: string[]): Buffer {
  return createHmac('sha256', key).update(parts.join('\0')).digest();
}

function equalMac(expected: Buffer, given: string): boolean {
  const buf = Buffer.from(given, 'base64url');
  return buf.length === expected.length && timingSafeEqual(buf, expected);
}

/** `<id>.<mac>`: the cookie value for a new session id. */
export function signSessionId(keys: ConsoleKeys, sid: string): string {
  return `${sid}.${mac(keys.cookie, 'sid', sid).toString('base64url')}`;
}

/** The session id of a cookie value, or undefined when it is not one this broker signed. */
export function verifySessionCookie(keys: ConsoleKeys, value: string | undefined): string | undefined {
  if (!value || value.length > 200) return undefined;
  const [sid, given, extra] = value.split('.');
  if (!sid || !given || extra !== undefined || !/^[A-Za-z0-9_-]{43}$/.test(sid)) return undefined;
  return equalMac(mac(keys.cookie, 'sid', sid), given) ? sid : undefined;
}

export function csrfToken(keys: ConsoleKeys, sid: string): string {
  return mac(keys.csrf, 'csrf', sid).toString('base64url');
}

export function checkCsrf(keys: ConsoleKeys, sid: string, given: unknown): boolean {
  return typeof given === 'string' && given.length < 100 && equalMac(mac(keys.csrf, 'csrf', sid), given);
}

/** Binds a reviewed (dry-run) policy document to the session that reviewed it. */
export function reviewToken(keys: ConsoleKeys, sid: string, policyId: string, document: string): string {
  const digest = createHash('sha256').update(document).digest('base64url');
  return mac(keys.review, sid, policyId, digest).toString('base64url');
}

export function checkReview(
  keys: ConsoleKeys,
  sid: string,
  policyId: string,
  document: string,
  given: unknown,
): boolean {
  if (typeof given !== 'string' || given.length > 100) return false;
  const digest = createHash('sha256').update(document).digest('base64url');
  return equalMac(mac(keys.review, sid, policyId, digest), given);
}

/** The state of a sign-in in progress, sealed into a short-lived cookie. */
export interface LoginState {
  state: string;
  nonce: string;
  codeVerifier: string;
  /** A console path to return to. */
  returnTo: string;
  /** Epoch seconds. */
  exp: number;
}

export function sealLoginState(keys: ConsoleKeys, state: LoginState): string {
  return seal(keys.login, Buffer.from(JSON.stringify(state)), 'console-login').toString('base64url');
}

export function openLoginState(keys: ConsoleKeys, value: string | undefined): LoginState | undefined {
  if (!value || value.length > 4096) return undefined;
  try {
    const state = JSON.parse(
      open(keys.login, Buffer.from(value, 'base64url'), 'console-login').toString('utf8'),
    ) as LoginState;
    return typeof state.state === 'string' && state.exp > Date.now() / 1000 ? state : undefined;
  } catch {
    return undefined;
  }
}

export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

function rowId(sid: string): string {
  return createHash('sha256').update(`console-session\0${sid}`).digest('base64url');
}

/** Sessions in the region database (`oidc_payload`, model `ConsoleSession`), sealed. */
export class ConsoleSessionStore {
  constructor(
    private readonly db: RegionDatabase,
    private readonly keys: ConsoleKeys,
  ) {}

  private sealed(id: string, session: ConsoleSession): { sealed: string } {
    return {
      sealed: seal(this.keys.seal, Buffer.from(JSON.stringify(session)), `console-session:${id}`).toString(
        'base64',
      ),
    };
  }

  private opened(id: string, payload: unknown): ConsoleSession | undefined {
    const sealed = (payload as { sealed?: unknown } | undefined)?.sealed;
    if (typeof sealed !== 'string') return undefined;
    try {
      const session = JSON.parse(
        open(this.keys.seal, Buffer.from(sealed, 'base64'), `console-session:${id}`).toString('utf8'),
      ) as ConsoleSession;
      return session.expiresAt > Date.now() / 1000 ? session : undefined;
    } catch {
      return undefined;
    }
  }

  async save(sid: string, session: ConsoleSession): Promise<void> {
    const id = rowId(sid);
    const ttl = Math.max(1, session.expiresAt - Math.floor(Date.now() / 1000));
    await this.db.query(
      `insert into oidc_payload (model, id, payload, expires_at) values ($1, $2, $3, now() + make_interval(secs => $4::int))
       on conflict (model, id) do update set payload = excluded.payload, expires_at = excluded.expires_at`,
      [MODEL, id, this.sealed(id, session), ttl],
    );
  }

  async find(sid: string): Promise<ConsoleSession | undefined> {
    const id = rowId(sid);
    const [row] = await this.db.query<{ payload: unknown }>(
      `select payload from oidc_payload where model = $1 and id = $2 and (expires_at is null or expires_at > now())`,
      [MODEL, id],
    );
    return row ? this.opened(id, row.payload) : undefined;
  }

  async destroy(sid: string): Promise<void> {
    await this.db.query('delete from oidc_payload where model = $1 and id = $2', [MODEL, rowId(sid)]);
  }

  /**
   * Runs `update` on the session with its row locked: two requests refreshing the same rotating
   * refresh token at once would otherwise look like token reuse and revoke the whole grant.
   */
  async update(
    sid: string,
    update: (current: ConsoleSession) => Promise<ConsoleSession | undefined>,
  ): Promise<ConsoleSession | undefined> {
    const id = rowId(sid);
    return this.db.dataSource.transaction(async (tx) => {
      const rows: { payload: unknown }[] = await tx.query(
        `select payload from oidc_payload where model = $1 and id = $2 and (expires_at is null or expires_at > now()) for update`,
        [MODEL, id],
      );
      const current = rows[0] ? this.opened(id, rows[0].payload) : undefined;
      if (!current) return undefined;
      const next = await update(current);
      if (!next) {
        await tx.query('delete from oidc_payload where model = $1 and id = $2', [MODEL, id]);
        return undefined;
      }
      if (next !== current)
        await tx.query('update oidc_payload set payload = $3 where model = $1 and id = $2', [
          MODEL,
          id,
          this.sealed(id, next),
        ]);
      return next;
    });
  }
}
