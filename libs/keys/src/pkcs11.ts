/**
 * Signing keys held by a PKCS#11 token (an HSM, or SoftHSM2 in development and tests). The
 * private key is generated inside the token as sensitive and non-extractable and never leaves
 * it: signing is a C_Sign call on the token. Only ES256 (P-256): CKM_ECDSA signs the SHA-256
 * digest computed here (the digest is not secret), and its output — r and s as two 32-byte
 * big-endian integers (PKCS#11 v2.40 §2.3.1) — is already the JWS form (RFC 7518 §3.4).
 *
 * The binding is pkcs11js (native, built at install; an optional dependency): it is loaded only
 * when a region is configured for PKCS#11.
 */
import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';

type Pkcs11Binding = typeof import('pkcs11js');
type Handle = Buffer;

/** DER of the P-256 curve OID 1.2.840.10045.3.1.7 (CKA_EC_PARAMS). */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
const COORDINATE_BYTES = 32;

export class Pkcs11KeyError extends Error {
  readonly code = 'ERR_PKCS11';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Pkcs11KeyError';
  }
}

export interface Pkcs11Options {
  /** Path of the token's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  module: string;
  /** The token (CKA_LABEL of the token, as `softhsm2-util --init-token --label` sets it). */
  tokenLabel: string;
  /** The user PIN. */
  pin: string;
}

/** A key in the token: where to find it and what verifiers need. */
export interface Pkcs11KeyRef {
  kid: string;
  /** CKA_LABEL of the key pair's objects in the token. */
  label: string;
  publicJwk: JWK;
}

function loadBinding(): Pkcs11Binding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- optional native dependency, loaded only when configured
    return require('pkcs11js') as Pkcs11Binding;
  } catch (err) {
    throw new Pkcs11KeyError(
      'the PKCS#11 binding (npm package pkcs11js) is not installed or was not built: run npm ci on a machine with a C++ toolchain (g++, make, python3)',
      { cause: err },
    );
  }
}

/** CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some tokens omit the wrapper). */
function ecPoint(value: Buffer): { x: Buffer; y: Buffer } {
  let point = value;
  if (value[0] === 0x04 && value[1] === value.length - 2 && value[2] === 0x04) point = value.subarray(2);
  else if (value[0] === 0x04 && value[1] === 0x81 && value[2] === value.length - 3) point = value.subarray(3);
  if (point.length !== 1 + 2 * COORDINATE_BYTES || point[0] !== 0x04)
    throw new Pkcs11KeyError('the token returned an EC point that is not an uncompressed P-256 point');
  return {
    x: point.subarray(1, 1 + COORDINATE_BYTES),
    y: point.subarray(1 + COORDINATE_BYTES),
  };
}

/** A DER ECDSA-Sig-Value (what a non-conforming token might return) → r || s. */
export function derToJoseSignature(der: Buffer): Buffer {
  const fail = () => new Pkcs11KeyError('the token returned a malformed ECDSA signature');
  if (der[0] !== 0x30) throw fail();
  let offset = der[1]! & 0x80 ? 2 + (der[1]! & 0x7f) : 2;
  const out = Buffer.alloc(2 * COORDINATE_BYTES);
  for (let i = 0; i < 2; i++) {
    if (der[offset] !== 0x02) throw fail();
    const length = der[offset + 1]!;
    let int = der.subarray(offset + 2, offset + 2 + length);
    while (int.length > COORDINATE_BYTES && int[0] === 0) int = int.subarray(1);
    if (int.length > COORDINATE_BYTES) throw fail();
    int.copy(out, (i + 1) * COORDINATE_BYTES - int.length);
    offset += 2 + length;
  }
  return out;
}

/**
 * One session with one token, logged in as the user. pkcs11js's synchronous calls run on the
 * event loop thread, so two signatures never interleave their C_SignInit/C_Sign on the session.
 */
export class Pkcs11KeyProvider {
  private readonly handles = new Map<string, Handle>();
  private closed = false;

  private constructor(
    private readonly binding: Pkcs11Binding,
    private readonly lib: InstanceType<Pkcs11Binding['PKCS11']>,
    private readonly session: Handle,
    readonly tokenLabel: string,
  ) {}

  static open(opts: Pkcs11Options): Pkcs11KeyProvider {
    const binding = loadBinding();
    const lib = new binding.PKCS11();
    try {
      lib.load(opts.module);
    } catch (err) {
      throw new Pkcs11KeyError(
        `MERIDIAN_PKCS11_MODULE: cannot load ${opts.module} (${(err as Error).message})`,
        {
          cause: err,
        },
      );
    }
    try {
      lib.C_Initialize();
    } catch (err) {
      // Another user of the module in this process initialised it already.
      if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test((err as Error).message)) throw err;
    }
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === opts.tokenLabel);
    if (!slot) {
      lib.C_Finalize();
      throw new Pkcs11KeyError(
        `MERIDIAN_PKCS11_TOKEN_LABEL: no token labelled "${opts.tokenLabel}" in ${opts.module}`,
      );
    }
    const session = lib.C_OpenSession(slot, binding.CKF_SERIAL_SESSION | binding.CKF_RW_SESSION);
    try {
      lib.C_Login(session, binding.CKU_USER, opts.pin);
    } catch (err) {
      if (!/CKR_USER_ALREADY_LOGGED_IN/.test((err as Error).message)) {
        lib.C_CloseSession(session);
        lib.C_Finalize();
        throw new Pkcs11KeyError(
          `MERIDIAN_PKCS11_PIN: the token "${opts.tokenLabel}" refused the login (${(err as Error).message})`,
          { cause: err },
        );
      }
    }
    return new Pkcs11KeyProvider(binding, lib, session, opts.tokenLabel);
  }

  /**
   * Generates a P-256 key pair inside the token: the private half sensitive, non-extractable,
   * usable only to sign. Its objects are labelled `<labelPrefix><kid>`.
   */
  async generateEs256(labelPrefix: string): Promise<Pkcs11KeyRef> {
    const b = this.binding;
    const id = randomBytes(16);
    const tempLabel = `${labelPrefix}pending-${id.toString('hex')}`;
    const common = [
      { type: b.CKA_TOKEN, value: true },
      { type: b.CKA_ID, value: id },
      { type: b.CKA_LABEL, value: tempLabel },
    ];
    const { publicKey, privateKey } = this.lib.C_GenerateKeyPair(
      this.session,
      { mechanism: b.CKM_EC_KEY_PAIR_GEN },
      [...common, { type: b.CKA_EC_PARAMS, value: P256_PARAMS }, { type: b.CKA_VERIFY, value: true }],
      [
        ...common,
        { type: b.CKA_PRIVATE, value: true },
        { type: b.CKA_SENSITIVE, value: true },
        { type: b.CKA_EXTRACTABLE, value: false },
        { type: b.CKA_SIGN, value: true },
        { type: b.CKA_DERIVE, value: false },
      ],
    );
    const publicJwk = this.jwkOf(publicKey);
    const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
    const label = `${labelPrefix}${kid}`;
    for (const handle of [publicKey, privateKey])
      this.lib.C_SetAttributeValue(this.session, handle, [{ type: b.CKA_LABEL, value: label }]);
    this.handles.set(label, privateKey);
    return { kid, label, publicJwk: { ...publicJwk, kid, alg: 'ES256', use: 'sig' } };
  }

  /** The public JWK of the key pair labelled `label`, read from the token. */
  publicJwk(label: string): JWK {
    return this.jwkOf(this.find(label, this.binding.CKO_PUBLIC_KEY));
  }

  /** Signs `data` with ES256 inside the token; the JWS signature (r || s). */
  sign(label: string, data: Uint8Array): Uint8Array {
    if (this.closed) throw new Pkcs11KeyError('the PKCS#11 session is closed');
    const key = this.privateKey(label);
    const digest = createHash('sha256').update(data).digest();
    this.lib.C_SignInit(this.session, { mechanism: this.binding.CKM_ECDSA }, key);
    const signature = this.lib.C_Sign(this.session, digest, Buffer.alloc(2 * COORDINATE_BYTES + 16));
    return signature.length === 2 * COORDINATE_BYTES ? signature : derToJoseSignature(signature);
  }

  /** What the token says about the private key's protection (for checks and tests). */
  protection(label: string): { sensitive: boolean; extractable: boolean; alwaysSensitive: boolean } {
    const b = this.binding;
    const attrs = this.lib.C_GetAttributeValue(this.session, this.privateKey(label), [
      { type: b.CKA_SENSITIVE },
      { type: b.CKA_EXTRACTABLE },
      { type: b.CKA_ALWAYS_SENSITIVE },
    ]);
    const flag = (i: number) => (attrs[i]!.value as Buffer)[0] === 1;
    return { sensitive: flag(0), extractable: flag(1), alwaysSensitive: flag(2) };
  }

  /** Tries to read the private value out of the token; the token's refusal, as its error name. */
  tryExport(label: string): string {
    try {
      this.lib.C_GetAttributeValue(this.session, this.privateKey(label), [{ type: this.binding.CKA_VALUE }]);
      return 'exported';
    } catch (err) {
      return /CKR_[A-Z_]+/.exec((err as Error).message)?.[0] ?? (err as Error).message;
    }
  }

  /** Removes a key pair from the token (a retired key whose tokens have all expired). */
  destroy(label: string): void {
    for (const cls of [this.binding.CKO_PRIVATE_KEY, this.binding.CKO_PUBLIC_KEY]) {
      const handle = this.findOptional(label, cls);
      if (handle) this.lib.C_DestroyObject(this.session, handle);
    }
    this.handles.delete(label);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.lib.C_Logout(this.session);
      this.lib.C_CloseSession(this.session);
    } finally {
      this.lib.C_Finalize();
    }
  }

  private privateKey(label: string): Handle {
    let handle = this.handles.get(label);
    if (!handle) {
      handle = this.find(label, this.binding.CKO_PRIVATE_KEY);
      this.handles.set(label, handle);
    }
    return handle;
  }

  private find(label: string, cls: number): Handle {
    const handle = this.findOptional(label, cls);
    if (!handle) throw new Pkcs11KeyError(`the token "${this.tokenLabel}" holds no key labelled ${label}`);
    return handle;
  }

  private findOptional(label: string, cls: number): Handle | undefined {
    this.lib.C_FindObjectsInit(this.session, [
      { type: this.binding.CKA_CLASS, value: cls },
      { type: this.binding.CKA_LABEL, value: label },
    ]);
    try {
      return this.lib.C_FindObjects(this.session, 1)[0];
    } finally {
      this.lib.C_FindObjectsFinal(this.session);
    }
  }

  private jwkOf(publicKey: Handle): JWK {
    const [attr] = this.lib.C_GetAttributeValue(this.session, publicKey, [
      { type: this.binding.CKA_EC_POINT },
    ]);
    const { x, y } = ecPoint(attr!.value as Buffer);
    return { kty: 'EC', crv: 'P-256', x: x.toString('base64url'), y: y.toString('base64url') };
  }
}
