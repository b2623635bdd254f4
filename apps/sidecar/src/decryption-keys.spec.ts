import { describe, expect, it } from 'vitest';
import { parseDecryptionKeys } from './decryption-keys';

const ec = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd', kid: 'k1' };

describe('parseDecryptionKeys', () => {
  it('accepts a JWK Set, an array or a single private JWK', () => {
    expect(parseDecryptionKeys(JSON.stringify({ keys: [ec] }))).toEqual({ ok: true, keys: [ec] });
    expect(parseDecryptionKeys(JSON.stringify([ec]))).toEqual({ ok: true, keys: [ec] });
    expect(parseDecryptionKeys(JSON.stringify(ec))).toEqual({ ok: true, keys: [ec] });
  });

  it('refuses public keys, symmetric keys, empty sets and non-JSON', () => {
    const { d: _d, ...pub } = ec;
    expect(parseDecryptionKeys(JSON.stringify({ keys: [pub, { kty: 'oct', k: 'c2VjcmV0' }] }))).toEqual({
      ok: false,
      errors: [
        'key 1 (kid "k1") is a public key: the private key ("d") is needed',
        'key 2 has kty "oct": only EC, RSA or OKP private keys decrypt tokens',
      ],
    });
    expect(parseDecryptionKeys('{"keys":[]}').ok).toBe(false);
    expect(parseDecryptionKeys('nope')).toMatchObject({
      ok: false,
      errors: [expect.stringMatching(/^is not JSON/)],
    });
  });
});
