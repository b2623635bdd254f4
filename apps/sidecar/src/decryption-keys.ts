/**
 * The service's private keys for access tokens encrypted to it (RFC 9068 §7: a nested JWT,
 * JWE around the signed token). Read from SIDECAR_DECRYPTION_KEYS_FILE and reloaded when the
 * file changes (cert-manager / Kubernetes secret rotation), without a restart; a broken new
 * file is reported and the keys in use are kept.
 */
import { readFileSync, statSync, unwatchFile, watchFile } from 'node:fs';
import type { JWK } from 'jose';
import type { Logger } from 'pino';

export type ParsedKeys = { ok: true; keys: JWK[] } | { ok: false; errors: string[] };

const PRIVATE_KTY = new Set(['EC', 'RSA', 'OKP']);

/**
 * Validates the key file's content: a JWK Set `{ "keys": [...] }`, an array of JWKs, or one JWK.
 * Every key must be private (`d`) and asymmetric: `dir` with a shared secret is refused
 * anyway (RFC 8725 §3.2), so an `oct` key here is a mistake.
 */
export function parseDecryptionKeys(text: string): ParsedKeys {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, errors: [`is not JSON (${(err as Error).message})`] };
  }
  const list: unknown = Array.isArray(json)
    ? json
    : typeof json === 'object' && json !== null && 'keys' in json
      ? (json as { keys: unknown }).keys
      : [json];
  if (!Array.isArray(list) || list.length === 0) {
    return { ok: false, errors: ['must hold a JWK Set { "keys": [...] } with at least one private key'] };
  }
  const errors: string[] = [];
  list.forEach((k: unknown, i) => {
    const jwk = k as JWK;
    if (typeof k !== 'object' || k === null || typeof jwk.kty !== 'string') {
      errors.push(`key ${i + 1} is not a JWK`);
    } else if (!PRIVATE_KTY.has(jwk.kty)) {
      errors.push(`key ${i + 1} has kty "${jwk.kty}": only EC, RSA or OKP private keys decrypt tokens`);
    } else if (typeof jwk.d !== 'string') {
      errors.push(
        `key ${i + 1}${jwk.kid ? ` (kid "${jwk.kid}")` : ''} is a public key: the private key ("d") is needed`,
      );
    }
  });
  return errors.length ? { ok: false, errors } : { ok: true, keys: list as JWK[] };
}

export interface DecryptionKeySource {
  /** The keys in use (handed to the verifier, which asks on every decryption). */
  keys(): JWK[];
  close(): void;
}

/** Watches `path` (polling its mtime, which survives symlink swaps) and reloads on change. */
export function watchDecryptionKeys(
  path: string,
  initial: JWK[],
  log: Logger,
  intervalMs = 2000,
): DecryptionKeySource {
  let current = initial;
  const describe = (keys: JWK[]) => keys.map((k) => k.kid ?? `${k.kty}`);
  const reload = () => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      log.error(
        { file: path, code: (err as NodeJS.ErrnoException).code },
        'decryption keys unreadable: keeping the keys in use',
      );
      return;
    }
    const parsed = parseDecryptionKeys(text);
    if (!parsed.ok) {
      log.error({ file: path, errors: parsed.errors }, 'decryption keys invalid: keeping the keys in use');
      return;
    }
    current = parsed.keys;
    log.info({ file: path, kids: describe(current) }, 'decryption keys reloaded');
  };
  let lastMtime = safeMtime(path);
  watchFile(path, { interval: intervalMs, persistent: false }, (stat) => {
    if (stat.mtimeMs === lastMtime) return;
    lastMtime = stat.mtimeMs;
    reload();
  });
  return {
    keys: () => current,
    close: () => unwatchFile(path),
  };
}

function safeMtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
