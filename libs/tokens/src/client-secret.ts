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
