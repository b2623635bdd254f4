// A bare oidc-provider issuing ES256-signed RFC 9068 JWT access tokens by
// client_credentials (client_secret_basic): the peer the Meridian broker is compared with in
// the benchmark suite (bench/run.mjs: client_credentials, introspection, jwks). For the
// introspection peer it also issues opaque access tokens for a second resource
// (BENCH_OPAQUE_AUDIENCE), kept in its in-memory adapter and introspected from there.
//
// Runs in its own process so its CPU and RSS are separate from the load
// generator. Served with node:http directly (no express), in-memory adapter.
//
// Configuration (environment):
//   BENCH_CLIENT_ID      client_id of the benchmark client (default bench-client)
//   BENCH_CLIENT_SECRET  its secret (required)
//   BENCH_AUDIENCE       resource indicator / audience (default https://api.bench.local)
//   BENCH_OPAQUE_AUDIENCE  resource whose access tokens are opaque (default https://opaque.bench.local)
//   BENCH_PORT           listen port on 127.0.0.1 (default 0 = any free port)
//
// When ready it sends { type: 'ready', port, issuer, pid } over the IPC channel
// (when started with one) and prints the same as one JSON line on stdout.
import http from 'node:http';
import crypto from 'node:crypto';
import { generateKeyPair, exportJWK, calculateJwkThumbprint } from 'jose';
import Provider from 'oidc-provider';

const clientId = process.env.BENCH_CLIENT_ID || 'bench-client';
const clientSecret = process.env.BENCH_CLIENT_SECRET;
const audience = process.env.BENCH_AUDIENCE || 'https://api.bench.local';
const opaqueAudience = process.env.BENCH_OPAQUE_AUDIENCE || 'https://opaque.bench.local';
const wantedPort = Number(process.env.BENCH_PORT || 0);

if (!clientSecret) {
  console.error('bare-provider: BENCH_CLIENT_SECRET is required');
  process.exit(2);
}

// Listen first (port 0 = pick a free one) so the issuer can carry the real port.
const server = http.createServer();
server.keepAliveTimeout = 65_000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(wantedPort, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const jwk = await exportJWK(privateKey);
jwk.alg = 'ES256';
jwk.use = 'sig';
jwk.kid = await calculateJwkThumbprint(jwk);

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // No client `scope` metadata: it would have to be listed in the provider's
      // `scopes` too; the allowed scopes come from the resource server below.
    },
  ],
  jwks: { keys: [jwk] },
  // The keystore holds only an ES256 key; with the default (RS256) every client
  // fails validation at first use with invalid_client_metadata.
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  // Only to silence the "default cookie keys" warning; cookies are not used here.
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) =>
        resourceIndicator === opaqueAudience
          ? {
              scope: 'read write',
              audience: opaqueAudience,
              accessTokenTTL: 3600,
              accessTokenFormat: 'opaque',
            }
          : {
              scope: 'read write',
              audience,
              accessTokenTTL: 3600,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'ES256' } },
            },
    },
  },
});

// Surface server-side errors (they would otherwise only show up as 5xx counts).
provider.on('server_error', (ctx, err) => {
  console.error('bare-provider server_error:', err);
});

server.on('request', provider.callback());

const ready = { type: 'ready', port, issuer, pid: process.pid };
if (process.send) process.send(ready);
console.log(JSON.stringify(ready));

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// Parent gone (IPC closed): do not linger.
process.on('disconnect', shutdown);
