/**
 * A real upstream OpenID Provider for tests: oidc-provider (the same OP engine Meridian runs) on
 * loopback, with a real login form, SSO, and faults injected at the protocol level — an upstream
 * that misbehaves on the wire, not a mock of one.
 *
 * Several of these share the host 127.0.0.1 with the brokers, and browsers keep cookies per host
 * name (not per port), so every cookie this IdP sets carries its port in its name.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CompactSign, decodeJwt, decodeProtectedHeader } from 'jose';
import Provider, {
  interactionPolicy,
  type Adapter,
  type AdapterPayload,
  type ClientMetadata,
  type Configuration,
  type JWK,
  type KoaContextWithOIDC,
} from 'oidc-provider';

export interface UpstreamUser {
  username: string;
  password: string;
  /** Claims about the user, e.g. `{ email, name, given_name, country, address: { country } }`. */
  claims: Record<string, unknown>;
}

export type UpstreamFault =
  | undefined
  | 'none'
  /** The authorization request is answered with `error=server_error` (readable description). */
  | 'error'
  /** The authorization request is answered with `error=access_denied`, as if the user cancelled. */
  | 'access_denied'
  /** The ID token from the token endpoint is signed with a key that is not in the JWKS (same kid). */
  | 'bad-signature'
  /** The ID token's `aud` names another client (validly signed). */
  | 'wrong-aud'
  /** The ID token's `iss` is another issuer (validly signed). */
  | 'wrong-iss'
  /** The authorization response carries the `iss` of another IdP (RFC 9207 mix-up). */
  | 'mixup-iss'
  /** The token endpoint answers after 30 s. */
  | 'slow-token';

export interface FaultOptions {
  /** The issuer `wrong-iss` and `mixup-iss` put in place of this one (default: an `.invalid` URL). */
  foreignIssuer?: string;
}

export interface UpstreamIdpOptions {
  /** Listen port on 127.0.0.1; a free one when omitted. */
  port?: number;
  users: UpstreamUser[];
  clients?: ClientMetadata[];
  fault?: UpstreamFault;
  /** PKCE on every authorization request (default true, RFC 9700 §2.1.1). */
  requirePkce?: boolean;
}

export interface UpstreamIdp {
  /** The issuer identifier, `http://127.0.0.1:<port>` (no trailing slash). */
  issuer: string;
  /** Base URL, the same as the issuer. */
  url: string;
  provider: Provider;
  /** Registers a client, or replaces the one with the same client_id. Validated by oidc-provider. */
  addClient(metadata: ClientMetadata): Promise<void>;
  removeClient(clientId: string): void;
  setFault(fault: UpstreamFault, opts?: FaultOptions): void;
  /** How many times a user submitted the login form with the right password. */
  loginCount(): number;
  /** How many RP-initiated logouts ended a session here. */
  logoutCount(): number;
  /** The `sub` this IdP gives a user: `u-<username>`. */
  subOf(username: string): string;
  stop(): Promise<void>;
}

const TOKEN_PATH = '/token';
const INTERACTION_PREFIX = '/interaction/';
const DEFAULT_FOREIGN_ISSUER = 'https://other-idp.invalid';
const SLOW_TOKEN_MS = 30_000;

/**
 * oidc-provider storage in memory, one instance per IdP. oidc-provider's own MemoryAdapter keeps
 * one module-wide store, so two IdPs in one process would see each other's clients (two IdPs may
 * well both know a client `meridian-eu`).
 */
class MemoryStore {
  private readonly rows = new Map<string, { payload: AdapterPayload; expiresAt?: number }>();

  adapterFor(model: string): Adapter {
    const key = (id: string) => `${model}:${id}`;
    const read = (id: string): AdapterPayload | undefined => {
      const row = this.rows.get(key(id));
      if (!row) return undefined;
      if (row.expiresAt !== undefined && row.expiresAt <= Date.now()) {
        this.rows.delete(key(id));
        return undefined;
      }
      return row.payload;
    };
    const findBy = (field: 'uid' | 'userCode', value: string) => {
      for (const [k, row] of this.rows) {
        if (k.startsWith(`${model}:`) && row.payload[field] === value) {
          const payload = read(k.slice(model.length + 1));
          return payload && structuredClone(payload);
        }
      }
      return undefined;
    };
    return {
      upsert: async (id, payload, expiresIn) => {
        this.rows.set(key(id), {
          payload: structuredClone(payload),
          expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined,
        });
      },
      find: async (id) => {
        const payload = read(id);
        return payload && structuredClone(payload);
      },
      findByUid: async (uid) => findBy('uid', uid),
      findByUserCode: async (userCode) => findBy('userCode', userCode),
      consume: async (id) => {
        const payload = read(id);
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        this.rows.delete(key(id));
      },
      revokeByGrantId: async (grantId) => {
        for (const [k, row] of this.rows) {
          if (row.payload.grantId === grantId) this.rows.delete(k);
        }
      },
    };
  }

  setClient(metadata: ClientMetadata): void {
    this.rows.set(`Client:${metadata.client_id}`, { payload: structuredClone(metadata) as AdapterPayload });
  }

  deleteClient(clientId: string): void {
    this.rows.delete(`Client:${clientId}`);
  }
}

function es256Key(kid: string): { privateJwk: JWK; privateKey: KeyObject } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' } as JWK;
  return { privateJwk, privateKey: createPrivateKey({ key: privateJwk as never, format: 'jwk' }) };
}

/** The same JWS, header unchanged (kid included), payload possibly changed, signed with `key`. */
async function resign(
  jws: string,
  key: KeyObject,
  change: (payload: Record<string, unknown>) => void = () => {},
): Promise<string> {
  const header = decodeProtectedHeader(jws);
  const payload = { ...decodeJwt(jws) } as Record<string, unknown>;
  change(payload);
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header as { alg: string })
    .sign(key);
}

function escapeHtml(value: unknown): string {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
${body}
</body>
</html>`;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res: ServerResponse, status: number, html: string): void {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(html);
}

export async function startUpstreamIdp(opts: UpstreamIdpOptions): Promise<UpstreamIdp> {
  // Listen first, then build the provider for the port actually bound: no free-port race.
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  const store = new MemoryStore();
  const signing = es256Key(`up-${port}-${randomBytes(4).toString('hex')}`);
  // Same kid as the real key: a verifier picks the published key and the signature fails.
  const foreign = es256Key(signing.privateJwk.kid as string);
  const usersBySub = new Map(opts.users.map((u) => [`u-${u.username}`, u]));
  const usersByName = new Map(opts.users.map((u) => [u.username, u]));

  let fault: UpstreamFault = opts.fault;
  let foreignIssuer = DEFAULT_FOREIGN_ISSUER;
  let logins = 0;
  let logouts = 0;
  const slowTimers = new Set<NodeJS.Timeout>();

  const faultPrompt = new interactionPolicy.Prompt(
    { name: 'upstream_fault', requestable: false },
    new interactionPolicy.Check(
      'fault_injected',
      'the test IdP is set to fail the authorization request',
      () => fault === 'error' || fault === 'access_denied',
    ),
  );
  const policy = interactionPolicy.base();
  policy.add(faultPrompt, 0);

  const configuration: Configuration = {
    adapter: (name: string) => store.adapterFor(name),
    jwks: { keys: [signing.privateJwk] },
    cookies: {
      names: {
        session: `_up${port}_session`,
        interaction: `_up${port}_interaction`,
        resume: `_up${port}_interaction_resume`,
      },
      keys: [randomBytes(32).toString('base64url')],
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    routes: { token: TOKEN_PATH },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'address'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'locale', 'country'],
      address: ['address'],
    },
    // The ID token carries every claim its scopes grant: a broker need not call userinfo.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => opts.requirePkce ?? true },
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    async findAccount(_ctx, sub) {
      const user = usersBySub.get(sub);
      if (!user) return undefined;
      return { accountId: sub, claims: () => ({ ...user.claims, sub }) };
    },
    interactions: {
      policy,
      url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}`,
    },
    // Every client is first-party: once a user has a session here, any client gets a grant for
    // what it asks without a consent page, so a second login (any client) is silent.
    async loadExistingGrant(ctx) {
      const accountId = ctx.oidc.session?.accountId;
      const client = ctx.oidc.client;
      if (!accountId || !client) return undefined;
      const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session?.grantIdFor(client.clientId);
      const existing = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      const grant =
        existing && existing.accountId === accountId
          ? existing
          : new ctx.oidc.provider.Grant({ accountId, clientId: client.clientId });
      const scopes = [...ctx.oidc.requestParamOIDCScopes];
      if (scopes.length) grant.addOIDCScope(scopes.join(' '));
      const claims = [...ctx.oidc.requestParamClaims];
      if (claims.length) grant.addOIDCClaims(claims);
      await grant.save();
      return grant;
    },
    // oidc-provider refuses to fetch from loopback (SSRF guard via its own undici dispatcher);
    // clients' jwks_uri here are brokers on 127.0.0.1.
    fetch: (input, init) => {
      const { dispatcher: _dispatcher, ...rest } = (init ?? {}) as RequestInit & { dispatcher?: unknown };
      return globalThis.fetch(input, rest);
    },
    clientBasedCORS: () => true,
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page(
        'Sign-in error',
        `<h1>Sign-in error</h1>\n${Object.entries(out)
          .map(
            ([k, v]) =>
              `<p><strong>${escapeHtml(k)}</strong>: <span class="${escapeHtml(k)}">${escapeHtml(v)}</span></p>`,
          )
          .join('\n')}`,
      );
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // Confirmed without asking: the confirmation page submits itself (hidden inputs only).
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = page(
            'Signing out',
            `${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}
<script>document.forms[0].submit()</script>`,
          );
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<h1>Signed out</h1>');
        },
      },
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      ClientCredentials: 600,
      IdToken: 3600,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 14 * 86400,
      RefreshToken: 14 * 86400,
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.on('end_session.success', () => {
    logouts += 1;
  });

  provider.use(async (ctx, next) => {
    if (fault === 'slow-token' && ctx.method === 'POST' && ctx.path === TOKEN_PATH) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          slowTimers.delete(timer);
          resolve();
        }, SLOW_TOKEN_MS);
        slowTimers.add(timer);
      });
    }
    await next();
    const oidcCtx = ctx as unknown as KoaContextWithOIDC;
    const route = oidcCtx.oidc?.route;
    if (route === 'token') await tamperIdToken(ctx);
    if ((route === 'authorization' || route === 'resume') && fault === 'mixup-iss') mixUpIss(oidcCtx);
  });

  async function tamperIdToken(ctx: { body: unknown }): Promise<void> {
    const body = ctx.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || typeof body.id_token !== 'string') return;
    const idToken = body.id_token;
    let tampered: string | undefined;
    if (fault === 'bad-signature') tampered = await resign(idToken, foreign.privateKey);
    if (fault === 'wrong-aud') {
      tampered = await resign(idToken, signing.privateKey, (p) => {
        p.aud = 'another-client';
        delete p.azp;
      });
    }
    if (fault === 'wrong-iss') {
      tampered = await resign(idToken, signing.privateKey, (p) => {
        p.iss = foreignIssuer;
      });
    }
    if (tampered) ctx.body = { ...body, id_token: tampered };
  }

  // RFC 9207: rewrite the `iss` of the authorization response, whatever the response mode.
  function mixUpIss(ctx: KoaContextWithOIDC): void {
    const location = ctx.response.get('location');
    if (location) {
      const url = new URL(location, issuer);
      if (url.searchParams.has('iss')) {
        url.searchParams.set('iss', foreignIssuer);
        ctx.response.set('location', url.href);
      }
      return;
    }
    if (typeof ctx.body === 'string' && ctx.body.includes('name="iss"')) {
      ctx.body = ctx.body.replace(/(name="iss" value=")[^"]*(")/, `$1${escapeHtml(foreignIssuer)}$2`);
    }
  }

  function loginForm(uid: string, opts: { clientId?: string; username?: string; error?: string }): string {
    return page(
      `Sign in — ${issuer}`,
      `<h1>Sign in to ${escapeHtml(issuer)}</h1>
${opts.clientId ? `<p>to continue to <span class="client">${escapeHtml(opts.clientId)}</span></p>` : ''}
${opts.error ? `<p class="error" role="alert">${escapeHtml(opts.error)}</p>` : ''}
<form method="post" action="${INTERACTION_PREFIX}${escapeHtml(uid)}/login">
  <label>Username <input type="text" name="username" value="${escapeHtml(opts.username ?? '')}" autofocus></label>
  <label>Password <input type="password" name="password"></label>
  <button type="submit" name="action" value="login">Sign in</button>
  <button type="submit" name="cancel" value="1">Cancel</button>
</form>`,
    );
  }

  async function interaction(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const [uid, action] = path.slice(INTERACTION_PREFIX.length).split('/');
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      send(
        res,
        400,
        page(
          'Sign-in expired',
          `<h1>Sign-in expired</h1><p class="error">${escapeHtml((err as Error).message)}</p>`,
        ),
      );
      return;
    }
    if (details.uid !== uid) {
      send(
        res,
        400,
        page('Sign-in expired', '<h1>Sign-in expired</h1><p class="error">interaction mismatch</p>'),
      );
      return;
    }
    const clientId = details.params.client_id as string | undefined;
    const finish = (result: Parameters<Provider['interactionFinished']>[2]) =>
      provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });

    if (details.prompt.name === 'upstream_fault') {
      if (fault === 'access_denied') {
        await finish({ error: 'access_denied', error_description: 'The user cancelled the sign-in.' });
      } else {
        await finish({
          error: 'server_error',
          error_description: 'The identity provider is temporarily unavailable. Try again later.',
        });
      }
      return;
    }

    if (details.prompt.name === 'consent') {
      // Not reached while loadExistingGrant grants everything; kept for completeness.
      const grant = new provider.Grant({ accountId: details.session!.accountId, clientId: clientId! });
      grant.addOIDCScope(String(details.params.scope ?? 'openid'));
      await finish({ consent: { grantId: await grant.save() } });
      return;
    }

    if (req.method === 'GET' && action === undefined) {
      send(res, 200, loginForm(uid, { clientId, username: details.params.login_hint as string | undefined }));
      return;
    }
    if (req.method !== 'POST' || action !== 'login') {
      send(res, 405, page('Not allowed', '<h1>Not allowed</h1>'));
      return;
    }

    const form = await readForm(req);
    if (form.get('cancel')) {
      await finish({ error: 'access_denied', error_description: 'The user cancelled the sign-in.' });
      return;
    }
    const username = form.get('username') ?? '';
    const user = usersByName.get(username);
    if (!user || user.password !== (form.get('password') ?? '')) {
      send(res, 200, loginForm(uid, { clientId, username, error: 'Invalid username or password.' }));
      return;
    }
    logins += 1;
    // The grant is made by loadExistingGrant when the authorization request resumes.
    await finish({ login: { accountId: `u-${user.username}` } });
  }

  const callback = provider.callback();
  handler = (req, res) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    if (path.startsWith(INTERACTION_PREFIX)) {
      interaction(req, res, path).catch((err: unknown) => {
        if (!res.headersSent)
          send(res, 500, page('Error', `<h1>Error</h1><p>${escapeHtml(String(err))}</p>`));
        else res.end();
      });
      return;
    }
    void callback(req, res);
  };

  const addClient = async (metadata: ClientMetadata) => {
    await provider.Client.validate(metadata);
    store.setClient(metadata);
  };
  for (const client of opts.clients ?? []) await addClient(client);

  return {
    issuer,
    url: issuer,
    provider,
    addClient,
    removeClient: (clientId) => store.deleteClient(clientId),
    setFault(next, faultOpts) {
      fault = next;
      foreignIssuer = faultOpts?.foreignIssuer ?? DEFAULT_FOREIGN_ISSUER;
    },
    loginCount: () => logins,
    logoutCount: () => logouts,
    subOf: (username) => `u-${username}`,
    async stop() {
      for (const timer of slowTimers) clearTimeout(timer);
      slowTimers.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
