/**
 * Injection tokens and options of the NestJS adapter (kept apart from the guard and the module
 * so neither imports the other).
 */
import type { X509Certificate } from 'node:crypto';
import type { VerifiedToken } from './types';
import type { Verifier } from './verifier';
import type { VerifierOptions } from './types';

/**
 * Injection token of the module's {@link Verifier}.
 *
 * @example
 * ```ts
 * import { Inject, Injectable } from '@nestjs/common';
 * import { MERIDIAN_VERIFIER } from '@meridian/verifier/nest';
 * import type { Verifier } from '@meridian/verifier';
 *
 * @Injectable()
 * export class ReadinessService {
 *   constructor(@Inject(MERIDIAN_VERIFIER) private readonly verifier: Verifier) {}
 *   ready() { return this.verifier.bundleStatus().loaded; }
 * }
 * ```
 */
export const MERIDIAN_VERIFIER = Symbol('MERIDIAN_VERIFIER');

/**
 * Injection token of the {@link MeridianVerifierModuleOptions} given to `forRoot`.
 *
 * @example
 * ```ts
 * constructor(@Inject(MERIDIAN_VERIFIER_OPTIONS) private readonly options: MeridianVerifierModuleOptions) {}
 * ```
 */
export const MERIDIAN_VERIFIER_OPTIONS = Symbol('MERIDIAN_VERIFIER_OPTIONS');

/**
 * The request as the guard leaves it: `meridian` is the verified token.
 *
 * @example
 * ```ts
 * import { Get, Req } from '@nestjs/common';
 * import type { MeridianRequest } from '@meridian/verifier/nest';
 *
 * @Get('me')
 * me(@Req() req: MeridianRequest) {
 *   return { sub: req.meridian?.sub };
 * }
 * ```
 */
export interface MeridianRequest {
  meridian?: VerifiedToken;
  headers: Record<string, string | string[] | undefined>;
  method: string;
  url: string;
  originalUrl?: string;
  protocol?: string;
  socket?: unknown;
}

/**
 * What the Nest adapter adds to {@link VerifierOptions} (or to a ready-made `verifier`).
 *
 * @example
 * ```ts
 * MeridianVerifierModule.forRoot({
 *   trustBundleUrl: 'https://eu.id.example.com/.well-known/meridian/trust-bundle',
 *   audience: 'https://orders.example.com',
 *   region: 'eu',
 *   publicUrl: 'https://orders.example.com',
 * });
 * ```
 */
export interface MeridianNestOptions {
  /** This service's region, for `@RequireProcessingRegion()` (residency.processing). */
  region?: string;
  /**
   * The origin clients call this service at (e.g. `https://orders.example.com`): DPoP `htu` is
   * checked against it plus the request path. Without it the request's own Host header and
   * protocol are used, which a proxy in front may have changed.
   */
  publicUrl?: string;
  /**
   * The client certificate of a request, when TLS ends before this process (a trusted proxy's
   * header). Default: the peer certificate of the request's own TLS socket, if any.
   */
  clientCertificate?: (req: MeridianRequest) => X509Certificate | Buffer | undefined;
}

/**
 * Options of `MeridianVerifierModule.forRoot`: verifier options (or an existing verifier) plus
 * {@link MeridianNestOptions}.
 *
 * @example
 * ```ts
 * const options: MeridianVerifierModuleOptions = { verifier: createVerifier({ ... }), region: 'eu' };
 * ```
 */
export type MeridianVerifierModuleOptions = (VerifierOptions | { verifier: Verifier }) & MeridianNestOptions;
