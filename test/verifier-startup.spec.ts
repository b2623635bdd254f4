/**
 * A service that starts before its broker: every token is refused until a trust bundle loads
 * (fail closed), and the first load is retried with a short backoff (1 s, 2 s, 4 s … up to the
 * cooldown) instead of once per cooldown.
 */
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { createVerifier } from '@meridian/verifier';

describe('trust bundle start-up', () => {
  it('refuses tokens before the first bundle, then loads it within seconds of the broker answering', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    let clock = 1_000_000;
    let brokerUp = false;
    let fetches = 0;
    const fakeFetch = (async () => {
      fetches++;
      if (!brokerUp) throw new TypeError('fetch failed');
      return new Response(
        JSON.stringify({ regions: [{ region: 'eu', issuer: 'https://eu.example', jwks: { keys: [jwk] } }] }),
        {
          headers: { 'content-type': 'application/json' },
        },
      );
    }) as typeof fetch;
    const verifier = createVerifier({
      trustBundleUrl: 'https://eu.example/.well-known/meridian/trust-bundle',
      audience: 'https://api.example',
      fetch: fakeFetch,
      now: () => clock,
      bundleRefreshCooldownMs: 30_000,
    });
    const token = await new SignJWT({ client_id: 'c', scope: 'read' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' })
      .setIssuer('https://eu.example')
      .setAudience('https://api.example')
      .setSubject('c')
      .setJti('j1')
      .setIssuedAt(Math.floor(clock / 1000))
      .setExpirationTime(Math.floor(clock / 1000) + 300)
      .sign(privateKey);
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: 'ERR_TRUST_UNAVAILABLE' });
    expect((await verifier.ready()).loaded).toBe(false);
    const afterFirst = fetches;
    clock += 500; // within the first backoff: no new fetch
    expect((await verifier.ready()).loaded).toBe(false);
    expect(fetches).toBe(afterFirst);
    brokerUp = true;
    clock += 1_000; // past the 1 s backoff, long before the 30 s cooldown
    expect((await verifier.ready()).loaded).toBe(true);
    expect(fetches).toBe(afterFirst + 1);
  });
});
