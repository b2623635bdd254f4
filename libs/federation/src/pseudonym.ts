import { createHmac, randomBytes } from 'node:crypto';

/**
 * Keyed pseudonyms. Every region holds the same pepper, so every region derives the same
 * pseudonym for the same input; without the pepper a pseudonym reveals nothing.
 */
export function pseudonym(pepper: Buffer, kind: 'link' | 'sub' | 'log', ...parts: string[]): string {
  const mac = createHmac('sha256', pepper);
  mac.update(kind);
  for (const p of parts) mac.update('\0').update(p);
  return `${kind}_${mac.digest('base64url')}`;
}

/** A new subject identifier: random, so it says nothing about the person or the IdP. */
export function newSubjectId(): string {
  return `m${randomBytes(18).toString('base64url')}`;
}
