/**
 * A demo upstream identity provider: a real OpenID Provider (oidc-provider) with a real login
 * form and a handful of demo users, standing in for a national eID or a global IdP. The local
 * stack runs three of them; the brokers federate to them exactly as to a production IdP.
 */
import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import Provider, { type Adapter, type AdapterPayload, type ClientMetadata, type JWK } from 'oidc-provider';
import { esc, page, readForm, send, sendCss } from './html';

export interface DemoUser {
  username: string;
  password: string;
  /** Claims released to the broker: email, name, country, address … */
  claims: Record<string, unknown>;
}

export interface DemoIdpOptions {
  /** Short name, also in cookie names (several IdPs share the host 127.0.0.1). */
  id: string;
  displayName: string;
  port: number;
  users: DemoUser[];
  clients: ClientMetadata[];
}

/** oidc-provider storage in memory, one per IdP (its own MemoryAdapter is process-wide). */
function memoryAdapter(): (model: string) => Adapter {
  const rows = new Map<string, { payload: AdapterPayload; expiresAt?: number }>();
  return (model: string) => {
    const key = (id: string) => `${model}:${id}`;
    const read = (id: string) => {
      const row = rows.get(key(id));
      if (!row) return undefined;
      if (row.expiresAt !== undefined && row.expiresAt <= Date.now()) {
        rows.delete(key(id));
        return undefined;
      }
      return structuredClone(row.payload);
    };
    return {
      upsert: async (id, payload, expiresIn) => {
        rows.set(key(id), {
          payload: structuredClone(payload),
          expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined,
        });
      },
      find: async (id) => read(id),
      findByUid: async (uid) => {
        for (const [k, row] of rows)
          if (k.startsWith(`${model}:`) && row.payload.uid === uid) return read(k.slice(model.length + 1));
        return undefined;
      },
      findByUserCode: async () => undefined,
      consume: async (id) => {
        const row = rows.get(key(id));
        if (row) row.payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        rows.delete(key(id));
      },
      revokeByGrantId: async (grantId) => {
        for (const [k, row] of rows) if (row.payload.grantId === grantId) rows.delete(k);
      },
    };
  };
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface RunningDemoIdp {
  issuer: string;
  close(): Promise<void>;
}

export async function startDemoIdp(o: DemoIdpOptions): Promise<RunningDemoIdp> {
  const issuer = `http://127.0.0.1:${o.port}`;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signingKey = {
    ...privateKey.export({ format: 'jwk' }),
    kid: `${o.id}-${randomBytes(4).toString('hex')}`,
    alg: 'ES256',
    use: 'sig',
  } as JWK;
  const bySub = new Map(o.users.map((u) => [`${o.id}-${u.username}`, u]));
  const byName = new Map(o.users.map((u) => [u.username, u]));

  const provider = new Provider(issuer, {
    adapter: memoryAdapter(),
    clients: o.clients,
    jwks: { keys: [signingKey] },
    cookies: {
      names: {
        session: `_${o.id}_session`,
        interaction: `_${o.id}_interaction`,
        resume: `_${o.id}_resume`,
      },
      keys: [randomBytes(32).toString('base64url')],
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    scopes: ['openid', 'email', 'profile', 'address'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'locale', 'country', 'groups'],
      address: ['address'],
    },
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    async findAccount(_ctx, sub) {
      const user = bySub.get(sub);
      return user ? { accountId: sub, claims: () => ({ ...user.claims, sub }) } : undefined;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // The brokers are first-party clients: no consent page, a grant for what they ask.
    async loadExistingGrant(ctx) {
      const accountId = ctx.oidc.session?.accountId;
      const client = ctx.oidc.client;
      if (!accountId || !client) return undefined;
      const grant = new ctx.oidc.provider.Grant({ accountId, clientId: client.clientId });
      grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
      await grant.save();
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.set('content-security-policy', "default-src 'none'; style-src 'self'");
      ctx.body = page(
        `${o.displayName}: sign-in error`,
        `<p class="error" role="alert">${esc(out.error)}: ${esc(out.error_description)}</p>`,
      );
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // A confirmation button, not a self-submitting script (strict CSP).
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = page(
            `Sign out of ${o.displayName}?`,
            `${form}<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`,
          );
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page(`Signed out of ${o.displayName}`, '<p>You can close this window.</p>');
        },
      },
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 8 * 3600,
    },
  });

  const loginForm = (uid: string, client: string | undefined, username = '', error = '') =>
    page(
      `Sign in to ${o.displayName}`,
      `<p class="note">A demo identity provider at ${esc(issuer)}${client ? `, signing you in to <strong>${esc(client)}</strong>` : ''}.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required value="${esc(username)}">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<p><button type="submit">Sign in</button> <button type="submit" name="cancel" value="1" class="secondary" formnovalidate>Cancel</button></p>
</form>
<h2>Demo users</h2>
<table><thead><tr><th scope="col">Username</th><th scope="col">Password</th><th scope="col">Country</th></tr></thead><tbody>
${o.users.map((u) => `<tr><td>${esc(u.username)}</td><td>${esc(u.password)}</td><td>${esc(u.claims.country ?? (u.claims.address as { country?: string } | undefined)?.country ?? '—')}</td></tr>`).join('\n')}
</tbody></table>`,
      `<strong>${esc(o.displayName)}</strong> (demo IdP)`,
    );

  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string, action?: string) {
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      send(
        res,
        400,
        page('Sign-in expired', '<p class="error" role="alert">Start again from the application.</p>'),
      );
      return;
    }
    if (details.uid !== uid) {
      send(
        res,
        400,
        page('Sign-in expired', '<p class="error" role="alert">Start again from the application.</p>'),
      );
      return;
    }
    const client = details.params.client_id as string | undefined;
    const finish = (result: Parameters<Provider['interactionFinished']>[2]) =>
      provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    if (req.method === 'GET' && action === undefined) {
      send(res, 200, loginForm(uid, client, (details.params.login_hint as string | undefined) ?? ''));
      return;
    }
    if (req.method !== 'POST' || action !== 'login') {
      send(res, 405, page('Not allowed', '<p>Use the sign-in form.</p>'));
      return;
    }
    const form = await readForm(req);
    if (form.get('cancel')) {
      await finish({ error: 'access_denied', error_description: 'The user cancelled the sign-in.' });
      return;
    }
    const username = form.get('username') ?? '';
    const user = byName.get(username);
    if (!user || !sameSecret(user.password, form.get('password') ?? '')) {
      send(res, 200, loginForm(uid, client, username, 'Wrong username or password.'));
      return;
    }
    await finish({ login: { accountId: `${o.id}-${user.username}` } });
  }

  const callback = provider.callback();
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    if (path === '/demo.css') return sendCss(res);
    const m = /^\/interaction\/([\w-]+)(?:\/(\w+))?$/.exec(path);
    if (m) {
      interaction(req, res, m[1]!, m[2]).catch(() => {
        if (!res.headersSent)
          send(res, 400, page('Sign-in failed', '<p class="error" role="alert">Start again.</p>'));
        else res.end();
      });
      return;
    }
    if (path === '/') {
      send(
        res,
        200,
        page(
          o.displayName,
          `<p>A demo OpenID Provider. Discovery: <a href="/.well-known/openid-configuration">/.well-known/openid-configuration</a></p>`,
        ),
      );
      return;
    }
    void callback(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', () => resolve());
  });
  return {
    issuer,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
