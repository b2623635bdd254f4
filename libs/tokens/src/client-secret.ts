/**
 * Client secrets are high-entropy random strings, not passwords: a salted HMAC-SHA256 is as
 * strong as a password hash against them and costs microseconds instead of tens of
 * milliseconds per token request. Only the HMAC is stored.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const PREFIX = '$hmac-sha256$';
export const MIN_CLIENT_SECRET_LENGTH = 32;

export function hashClientSecret(secret: string): string {
  const salt = randomBytes(16);
  return `${PREFIX}${salt.toString('base64url')}$${mac(salt, secret).toString('base64url')}`;
}

export function isHashedClientSecret(stored: unknown): stored is string {
  return typeof stored === 'string' && stored.startsWith(PREFIX);
}

export function verifyClientSecret(stored: string, presented: string): boolean {
  if (!isHashedClientSecret(stored) || typeof presented !== 'string') return false;
  const [saltB64, macB64] = stored.slice(PREFIX.length).split('$');
  if (!saltB64 || !macB64) return false;
  const expected = Buffer.from(macB64, 'base64url');
  const actual = mac(Buffer.from(saltB64, 'base64url'), presented);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

function mac(salt: Buffer, secret: string): Buffer {
  return createHmac('sha256', salt).update(secret, 'utf8').digest();
}

/** Longest overlap of a rotated client secret: both are accepted at most this long. */
export const MAX_SECRET_OVERLAP_SECONDS = 30 * 86400;
/** Overlap when the admin names none: a day for every replica and deployment to pick it up. */
export const DEFAULT_SECRET_OVERLAP_SECONDS = 86400;

/** What a client's metadata holds about its secrets (hashes only). */
export interface StoredClientSecrets {
  /** `client_secret`: the current secret's hash. */
  current?: unknown;
  /** `previous_client_secret`: the secret before the last rotation, accepted until it expires. */
  previous?: unknown;
  /** `previous_client_secret_expires_at`: seconds since the epoch. */
  previousExpiresAt?: unknown;
}

/**
 * Which stored secret `presented` is: the current one, the previous one while its overlap lasts,
 * or neither. At most two secrets are ever valid at once; an expired previous one never is.
 */
export function matchClientSecret(
  stored: StoredClientSecrets,
  presented: string,
  nowSeconds: number,
): 'current' | 'previous' | undefined {
  if (typeof presented !== 'string') return undefined;
  if (typeof stored.current === 'string' && verifyClientSecret(stored.current, presented)) return 'current';
  if (
    typeof stored.previous === 'string' &&
    typeof stored.previousExpiresAt === 'number' &&
    nowSeconds < stored.previousExpiresAt &&
    verifyClientSecret(stored.previous, presented)
  )
    return 'previous';
  return undefined;
}

/** The previous secret's expiry when it is still accepted at `nowSeconds`, else undefined. */
export function previousSecretValidUntil(
  metadata: Record<string, unknown>,
  nowSeconds: number,
): number | undefined {
  const at = metadata.previous_client_secret_expires_at;
  return typeof metadata.previous_client_secret === 'string' && typeof at === 'number' && at > nowSeconds
    ? at
    : undefined;
}
