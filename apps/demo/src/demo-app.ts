/**
 * The demo app: a small web app registered at one regional broker. It signs a person in (OIDC
 * authorization code + PKCE, openid-client), shows the ID token and access token claims with the
 * `residency` block highlighted, and calls the demo services through their sidecars with an
 * access token for each — showing what each service received, or why it was refused.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { esc, page, send, sendCss } from './html';

export interface DemoService {
  name: string;
  region: string;
  /** Where the app calls it: the sidecar in front of it. */
  url: string;
  audience: string;
}

export interface DemoAppOptions {
  port: number;
  /** The broker the app is registered at. */
  issuer: string;
  clientId: string;
  clientSecret: string;
  services: DemoService[];
  scope: string;
}

interface Transaction {
  state: string;
  nonce: string;
  verifier: string;
  expires: number;
}

interface Session {
  idToken: string;
  idClaims: Record<string, unknown>;
  tokens: { service: DemoService; accessToken?: string; error?: string }[];
  expires: number;
}

const COOKIE = 'demo_app_sid';
const TX_COOKIE = 'demo_app_tx';

function cookies(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function claimsTable(claims: Record<string, unknown>): string {
  const rows = Object.entries(claims)
    .filter(([k]) => k !== 'residency')
    .map(
      ([k, v]) =>
        `<tr><th scope="row">${esc(k)}</th><td><code>${esc(typeof v === 'string' ? v : JSON.stringify(v))}</code></td></tr>`,
    )
    .join('\n');
  const residency = claims.residency
    ? `<div class="residency"><strong>residency</strong><pre tabindex="0">${esc(JSON.stringify(claims.residency, null, 2))}</pre></div>`
    : '';
  return `${residency}<table><tbody>${rows}</tbody></table>`;
}

/** An OAuth error as the broker named it (openid-client keeps `error` and its description). */
function describe(err: unknown): string {
  const e = err as { error?: string; error_description?: string; message?: string };
  return e.error ? `${e.error}: ${e.error_description ?? ''}` : String(e.message ?? err);
}

export interface RunningDemoApp {
  url: string;
  close(): Promise<void>;
}

export async function startDemoApp(o: DemoAppOptions): Promise<RunningDemoApp> {
  const base = `http://127.0.0.1:${o.port}`;
  const redirectUri = `${base}/callback`;
  let config: oidc.Configuration | undefined;
  const configuration = async () => {
    config ??= await oidc.discovery(
      new URL(o.issuer),
      o.clientId,
      undefined,
      oidc.ClientSecretBasic(o.clientSecret),
      {
        execute: [oidc.allowInsecureRequests], // loopback demo over http
      },
    );
    return config;
  };
  const transactions = new Map<string, Transaction>();
  const sessions = new Map<string, Session>();
  const header = `<strong>Demo app</strong> — registered at the broker <code>${esc(o.issuer)}</code>`;

  const sweep = () => {
    const now = Date.now();
    for (const [k, t] of transactions) if (t.expires < now) transactions.delete(k);
    for (const [k, s] of sessions) if (s.expires < now) sessions.delete(k);
  };

  async function callService(service: DemoService, token: string | undefined) {
    if (!token) return { status: 0, body: 'no access token for this service' };
    try {
      const res = await fetch(`${service.url}/orders`, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: shown as text
      }
      return { status: res.status, body };
    } catch (err) {
      return { status: 0, body: `unreachable: ${(err as Error).message}` };
    }
  }

  async function home(req: IncomingMessage, res: ServerResponse) {
    const sid = cookies(req)[COOKIE];
    const session = sid ? sessions.get(sid) : undefined;
    if (!session) {
      send(
        res,
        200,
        page(
          'Meridian demo app',
          `<p>This app is registered at the broker of region <strong>us</strong>. Sign in with any demo identity provider: a person whose jurisdiction keeps their data in another region is handed to that region's broker, and only what the residency policy releases comes back here.</p>
<p><a class="button" href="/login">Sign in with Meridian</a></p>`,
          header,
        ),
      );
      return;
    }
    const calls = await Promise.all(session.tokens.map((t) => callService(t.service, t.accessToken)));
    const sections = session.tokens
      .map((t, i) => {
        const call = calls[i]!;
        const claims = t.accessToken ? decodeJwt(t.accessToken) : undefined;
        const verdict =
          call.status >= 200 && call.status < 300
            ? `<span class="ok">${call.status} allowed</span>`
            : `<span class="refused">${call.status || 'no answer'} refused</span>`;
        return `<h2>Service <code>${esc(t.service.name)}</code> (region ${esc(t.service.region)}, behind the sidecar)</h2>
${t.error ? `<p class="error">No token: ${esc(t.error)}</p>` : ''}
<p>Call with its access token: ${verdict}</p>
<h3>What the service answered</h3><pre tabindex="0">${esc(JSON.stringify(call.body, null, 2))}</pre>
${claims ? `<details><summary>Access token claims (aud ${esc(t.service.audience)})</summary>${claimsTable(claims as Record<string, unknown>)}</details>` : ''}`;
      })
      .join('\n');
    send(
      res,
      200,
      page(
        'Signed in',
        `<form method="post" action="/logout"><button type="submit" class="secondary">Sign out</button></form>
<h2>ID token claims</h2>${claimsTable(session.idClaims)}
${sections}`,
        header,
      ),
    );
  }

  async function login(res: ServerResponse) {
    const cfg = await configuration();
    const tx: Transaction = {
      state: oidc.randomState(),
      nonce: oidc.randomNonce(),
      verifier: oidc.randomPKCECodeVerifier(),
      expires: Date.now() + 10 * 60_000,
    };
    const id = randomBytes(16).toString('base64url');
    transactions.set(id, tx);
    const params = new URLSearchParams({
      redirect_uri: redirectUri,
      scope: o.scope,
      prompt: 'consent',
      state: tx.state,
      nonce: tx.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(tx.verifier),
      code_challenge_method: 'S256',
    });
    // RFC 8707 §2.1: every service the app will call; each token names one of them (§2.2).
    for (const service of o.services) params.append('resource', service.audience);
    const url = oidc.buildAuthorizationUrl(cfg, params);
    res.writeHead(302, {
      location: url.href,
      'set-cookie': `${TX_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600`,
    });
    res.end();
  }

  async function callback(req: IncomingMessage, res: ServerResponse, url: URL) {
    const txId = cookies(req)[TX_COOKIE];
    const tx = txId ? transactions.get(txId) : undefined;
    if (txId) transactions.delete(txId);
    const error = url.searchParams.get('error');
    if (error) {
      send(
        res,
        400,
        page(
          'Sign-in refused',
          `<p class="error" role="alert"><strong>${esc(error)}</strong>: ${esc(url.searchParams.get('error_description'))}</p><p><a href="/">Back</a></p>`,
          header,
        ),
      );
      return;
    }
    if (!tx) {
      send(
        res,
        400,
        page(
          'Sign-in expired',
          '<p class="error" role="alert">Start again.</p><p><a href="/login">Sign in</a></p>',
          header,
        ),
      );
      return;
    }
    const cfg = await configuration();
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(
        cfg,
        url,
        {
          pkceCodeVerifier: tx.verifier,
          expectedState: tx.state,
          expectedNonce: tx.nonce,
          idTokenExpected: true,
        },
        { resource: o.services[0]!.audience },
      );
    } catch (err) {
      send(
        res,
        400,
        page('Sign-in failed', `<p class="error" role="alert">${esc(describe(err))}</p>`, header),
      );
      return;
    }
    const session: Session = {
      idToken: tokens.id_token!,
      idClaims: { ...(tokens.claims() ?? {}) },
      tokens: [{ service: o.services[0]!, accessToken: tokens.access_token }],
      expires: Date.now() + 3600_000,
    };
    // RFC 8707 §2.2: one access token per audience, from the refresh token.
    let refresh = tokens.refresh_token;
    for (const service of o.services.slice(1)) {
      if (!refresh) {
        session.tokens.push({ service, error: 'no refresh token was issued' });
        continue;
      }
      try {
        const more = await oidc.refreshTokenGrant(cfg, refresh, { resource: service.audience });
        refresh = more.refresh_token ?? refresh;
        session.tokens.push({ service, accessToken: more.access_token });
      } catch (err) {
        session.tokens.push({ service, error: describe(err) });
      }
    }
    const sid = randomBytes(24).toString('base64url');
    sessions.set(sid, session);
    res.writeHead(302, {
      location: '/',
      'set-cookie': [
        `${COOKIE}=${sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600`,
        `${TX_COOKIE}=; Path=/; Max-Age=0`,
      ],
    });
    res.end();
  }

  async function logout(req: IncomingMessage, res: ServerResponse) {
    const sid = cookies(req)[COOKIE];
    const session = sid ? sessions.get(sid) : undefined;
    if (sid) sessions.delete(sid);
    const clear = `${COOKIE}=; Path=/; Max-Age=0`;
    if (!session) {
      res.writeHead(303, { location: '/', 'set-cookie': clear });
      res.end();
      return;
    }
    const url = oidc.buildEndSessionUrl(await configuration(), {
      id_token_hint: session.idToken,
      post_logout_redirect_uri: `${base}/`,
    });
    res.writeHead(303, { location: url.href, 'set-cookie': clear });
    res.end();
  }

  const timer = setInterval(sweep, 60_000);
  timer.unref();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', base);
    const route = `${req.method} ${url.pathname}`;
    const done = (p: Promise<void>) =>
      p.catch((err: unknown) => {
        if (!res.headersSent)
          send(
            res,
            502,
            page(
              'The broker could not be reached',
              `<p class="error" role="alert">${esc((err as Error).message)}</p>`,
              header,
            ),
          );
        else res.end();
      });
    if (route === 'GET /demo.css') return sendCss(res);
    if (route === 'GET /') return void done(home(req, res));
    if (route === 'GET /login') return void done(login(res));
    if (route === 'GET /callback') return void done(callback(req, res, url));
    if (route === 'POST /logout') return void done(logout(req, res));
    send(res, 404, page('Not found', '<p><a href="/">Home</a></p>', header));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', () => resolve());
  });
  return {
    url: base,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
