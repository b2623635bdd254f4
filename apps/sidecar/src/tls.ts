/**
 * Inbound TLS terminated by the sidecar: certificate and key re-read when their files change
 * (cert-manager or a SPIFFE agent rewrites them in place or swaps a symlink), applied to new
 * connections without a restart. A half-written or mismatched pair is refused and the pair in
 * use stays.
 */
import { readFileSync, statSync, unwatchFile, watchFile } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { createSecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { SidecarTlsConfig } from './config';

/** Reads the files; throws (naming the file) when the pair does not form a usable context. */
export function readTlsOptions(tls: SidecarTlsConfig): SecureContextOptions {
  const options: SecureContextOptions = {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    minVersion: 'TLSv1.2',
  };
  if (tls.clientCaFile) options.ca = readFileSync(tls.clientCaFile);
  try {
    // Validates cert/key together (a key that does not match the certificate throws here).
    createSecureContext(options);
  } catch (err) {
    throw new Error(
      `SIDECAR_TLS_CERT_FILE/SIDECAR_TLS_KEY_FILE (${tls.certFile}, ${tls.keyFile}) do not form a usable TLS pair: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return options;
}

/** The options of the listener itself: client certificates requested, required with a CA. */
export function listenerTlsOptions(tls: SidecarTlsConfig): SecureContextOptions & {
  requestCert: boolean;
  rejectUnauthorized: boolean;
} {
  return { ...readTlsOptions(tls), requestCert: true, rejectUnauthorized: tls.clientCaFile !== undefined };
}

/** The DER of the client certificate of this TLS connection, if one was presented. */
export function peerCertificate(socket: unknown): Buffer | undefined {
  const tlsSocket = socket as Partial<TLSSocket>;
  if (typeof tlsSocket.getPeerCertificate !== 'function') return undefined;
  const cert = tlsSocket.getPeerCertificate(false);
  return cert && cert.raw && cert.raw.length > 0 ? cert.raw : undefined;
}

export interface TlsWatch {
  close(): void;
  /** How many times a new pair was applied (for tests and logs). */
  reloads(): number;
}

export function watchTlsFiles(
  server: HttpsServer,
  tls: SidecarTlsConfig,
  log: Logger,
  intervalMs = 1000,
): TlsWatch {
  const files = [tls.certFile, tls.keyFile, ...(tls.clientCaFile ? [tls.clientCaFile] : [])];
  const mtimes = new Map(files.map((f) => [f, mtime(f)]));
  let count = 0;
  const reload = () => {
    let options: SecureContextOptions;
    try {
      options = readTlsOptions(tls);
    } catch (err) {
      // Typical mid-rotation (the certificate written, the key not yet): the next change retries.
      log.error({ err: { message: (err as Error).message } }, 'TLS files unusable: keeping the pair in use');
      return;
    }
    server.setSecureContext(options);
    count++;
    log.info({ certFile: tls.certFile }, 'TLS certificate reloaded');
  };
  for (const file of files) {
    watchFile(file, { interval: intervalMs, persistent: false }, (stat) => {
      if (stat.mtimeMs === mtimes.get(file)) return;
      mtimes.set(file, stat.mtimeMs);
      reload();
    });
  }
  return {
    close: () => files.forEach((f) => unwatchFile(f)),
    reloads: () => count,
  };
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
