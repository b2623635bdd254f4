/**
 * Where a region's signing keys live: generated in software and sealed under the KEK (default),
 * or generated and used inside a PKCS#11 token (an HSM), the private key never leaving it.
 * Pure: validated with the rest of the configuration before anything starts.
 */
import { existsSync } from 'node:fs';
import type { SigningAlg } from './config.schema';

export type SigningKeyProviderConfig =
  { kind: 'kek' } | { kind: 'pkcs11'; module: string; tokenLabel: string; pin: string };

export const KEY_PROVIDER_SENSITIVE_VARIABLES = ['MERIDIAN_PKCS11_PIN'];

export function parseKeyProviderEnv(
  get: (name: string) => string | undefined,
  errors: string[],
  signingAlg: SigningAlg,
): SigningKeyProviderConfig {
  const kind = get('MERIDIAN_SIGNING_KEY_PROVIDER') ?? 'kek';
  if (kind === 'kek') return { kind };
  if (kind !== 'pkcs11') {
    errors.push(
      'MERIDIAN_SIGNING_KEY_PROVIDER must be kek (keys sealed under MERIDIAN_KEK) or pkcs11 (keys in an HSM)',
    );
    return { kind: 'kek' };
  }
  const module = get('MERIDIAN_PKCS11_MODULE');
  const tokenLabel = get('MERIDIAN_PKCS11_TOKEN_LABEL');
  const pin = get('MERIDIAN_PKCS11_PIN');
  if (!module)
    errors.push(
      'MERIDIAN_PKCS11_MODULE is required with MERIDIAN_SIGNING_KEY_PROVIDER=pkcs11: the path of the token’s PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so',
    );
  else if (!existsSync(module))
    errors.push(`MERIDIAN_PKCS11_MODULE must name a readable file (${module} does not exist)`);
  if (!tokenLabel)
    errors.push(
      'MERIDIAN_PKCS11_TOKEN_LABEL is required with MERIDIAN_SIGNING_KEY_PROVIDER=pkcs11: the token’s label',
    );
  else if (tokenLabel.length > 32)
    errors.push('MERIDIAN_PKCS11_TOKEN_LABEL must be at most 32 characters (PKCS#11 token labels)');
  if (!pin)
    errors.push(
      'MERIDIAN_PKCS11_PIN is required with MERIDIAN_SIGNING_KEY_PROVIDER=pkcs11: the token’s user PIN',
    );
  if (signingAlg !== 'ES256')
    errors.push(
      'MERIDIAN_SIGNING_ALG must be ES256 with MERIDIAN_SIGNING_KEY_PROVIDER=pkcs11 (the token signs ECDSA P-256)',
    );
  if (!module || !tokenLabel || !pin) return { kind: 'kek' };
  return { kind: 'pkcs11', module, tokenLabel, pin };
}
