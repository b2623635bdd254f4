/**
 * Envelope encryption for secrets at rest: each secret gets its own random data key (DEK),
 * the secret is sealed with AES-256-GCM under the DEK, and the DEK is wrapped with AES-256-GCM
 * under the key-encryption key (KEK). Rotating the KEK then means re-wrapping small DEKs,
 * never re-encrypting the secrets themselves. The additional authenticated data binds a
 * ciphertext to the row it belongs to, so a sealed key cannot be swapped onto another kid.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class EnvelopeError extends Error {
  readonly code = 'ERR_KEK_MISMATCH';
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeError';
  }
}

function gcmSeal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ct]);
}

function gcmOpen(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  const iv = sealed.subarray(0, IV_BYTES);
  const tag = sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES);
  const ct = sealed.subarray(IV_BYTES + TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ct), decipher.final()]);
}

/** A short, non-secret fingerprint of a KEK, stored next to what it wrapped to name it in errors. */
export function kekId(kek: Buffer): string {
  return createHash('sha256').update('meridian-kek-id').update(kek).digest('base64url').slice(0, 16);
}

/**
 * Layout: version(1) | wrappedDekLength(2) | wrappedDek | sealedPayload.
 */
export function seal(kek: Buffer, plaintext: Buffer, context: string): Buffer {
  if (kek.length !== 32) throw new TypeError('KEK must be 32 bytes');
  const aad = Buffer.from(`meridian:v${VERSION}:${context}`);
  const dek = randomBytes(32);
  try {
    const wrapped = gcmSeal(kek, dek, aad);
    const payload = gcmSeal(dek, plaintext, aad);
    const header = Buffer.alloc(3);
    header.writeUInt8(VERSION, 0);
    header.writeUInt16BE(wrapped.length, 1);
    return Buffer.concat([header, wrapped, payload]);
  } finally {
    dek.fill(0);
  }
}

export function open(kek: Buffer, sealed: Buffer, context: string): Buffer {
  if (sealed.length < 3 || sealed.readUInt8(0) !== VERSION)
    throw new EnvelopeError('unknown envelope version');
  const wrappedLength = sealed.readUInt16BE(1);
  const wrapped = sealed.subarray(3, 3 + wrappedLength);
  const payload = sealed.subarray(3 + wrappedLength);
  const aad = Buffer.from(`meridian:v${VERSION}:${context}`);
  let dek: Buffer;
  try {
    dek = gcmOpen(kek, wrapped, aad);
  } catch {
    throw new EnvelopeError('the KEK does not unwrap this data key (wrong MERIDIAN_KEK?)');
  }
  try {
    return gcmOpen(dek, payload, aad);
  } catch {
    throw new EnvelopeError('sealed payload failed authentication');
  } finally {
    dek.fill(0);
  }
}

/**
 * Re-wraps the data key of `sealed` under `toKek`, leaving the sealed payload as it is: a KEK
 * change never decrypts the secret itself. The data key is unwrapped with whichever of `toKek`
 * and `fromKeks` opens it; `unchanged` when it is already wrapped under `toKek`.
 */
export function rewrap(
  sealed: Buffer,
  context: string,
  toKek: Buffer,
  fromKeks: Buffer[],
): { sealed: Buffer; unchanged: boolean } {
  if (toKek.length !== 32) throw new TypeError('KEK must be 32 bytes');
  if (sealed.length < 3 || sealed.readUInt8(0) !== VERSION)
    throw new EnvelopeError('unknown envelope version');
  const wrappedLength = sealed.readUInt16BE(1);
  const wrapped = sealed.subarray(3, 3 + wrappedLength);
  const payload = sealed.subarray(3 + wrappedLength);
  const aad = Buffer.from(`meridian:v${VERSION}:${context}`);
  let dek: Buffer | undefined;
  for (const [i, kek] of [toKek, ...fromKeks].entries()) {
    try {
      dek = gcmOpen(kek, wrapped, aad);
      if (i === 0) {
        dek.fill(0);
        return { sealed, unchanged: true };
      }
      break;
    } catch {
      // not this KEK
    }
  }
  if (!dek) throw new EnvelopeError('no configured KEK unwraps this data key');
  try {
    // The payload must still authenticate under the data key: never re-wrap a damaged row.
    gcmOpen(dek, payload, aad).fill(0);
    const rewrapped = gcmSeal(toKek, dek, aad);
    const header = Buffer.alloc(3);
    header.writeUInt8(VERSION, 0);
    header.writeUInt16BE(rewrapped.length, 1);
    return { sealed: Buffer.concat([header, rewrapped, payload]), unchanged: false };
  } catch {
    throw new EnvelopeError('sealed payload failed authentication');
  } finally {
    dek.fill(0);
  }
}
