/**
 * `MeridianAuthGuard` — the NestJS adapter: reads the credentials, calls the verifier with the
 * route's requirements, and maps a refusal to its HTTP answer (the one place that does).
 */
import { HttpException, Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { X509Certificate } from 'node:crypto';
import { readCredentials } from './authorization-header';
import { VerifierError, verifierErrorResponse } from './errors';
import type { VerifyOptions } from './types';
import type { Verifier } from './verifier';
import { INTROSPECT, PROCESSING_REGION, REQUIRED_SCOPES } from './verifier.decorators';
import {
  MERIDIAN_VERIFIER,
  MERIDIAN_VERIFIER_OPTIONS,
  type MeridianRequest,
  type MeridianVerifierModuleOptions,
} from './verifier.providers';

interface HeaderSink {
  setHeader?: (name: string, value: string) => unknown;
  header?: (name: string, value: string) => unknown;
}

interface PeerSocket {
  getPeerCertificate?: (detailed?: boolean) => { raw?: Buffer } | null;
}

/**
 * Protects a controller or route: 401 with `WWW-Authenticate: Bearer error="invalid_token"` for
 * a missing or invalid token, 403 `insufficient_scope` for missing scopes or residency, 503
 * while no trust bundle was ever loaded. On success `req.meridian` is the {@link VerifiedToken}.
 * Needs `MeridianVerifierModule.forRoot(...)`.
 *
 * @example
 * ```ts
 * import { Controller, Get, UseGuards } from '@nestjs/common';
 * import { MeridianAuthGuard, MeridianToken, RequireScopes } from '@meridian/verifier/nest';
 * import type { VerifiedToken } from '@meridian/verifier';
 *
 * @Controller('orders')
 * @UseGuards(MeridianAuthGuard)
 * export class OrdersController {
 *   @Get()
 *   @RequireScopes('orders:read')
 *   list(@MeridianToken() token: VerifiedToken) {
 *     return { for: token.sub };
 *   }
 * }
 * ```
 */
@Injectable()
export class MeridianAuthGuard implements CanActivate {
  constructor(
    @Inject(MERIDIAN_VERIFIER) private readonly verifier: Verifier,
    @Inject(MERIDIAN_VERIFIER_OPTIONS) private readonly options: MeridianVerifierModuleOptions,
    @Inject(Reflector) private readonly reflector: Reflector,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    // HTTP only; anything else (RPC, WebSocket) is not let through by this guard.
    if (context.getType() !== 'http') return false;
    const http = context.switchToHttp();
    const req = http.getRequest<MeridianRequest>();
    const targets = [context.getHandler(), context.getClass()];
    // Class scopes, then the handler's: both apply.
    const requiredScopes = [
      ...new Set(
        this.reflector.getAllAndMerge<string[]>(REQUIRED_SCOPES, [
          context.getClass(),
          context.getHandler(),
        ]) ?? [],
      ),
    ];
    const regionMark = this.reflector.getAllAndOverride<string | true | undefined>(
      PROCESSING_REGION,
      targets,
    );
    const introspect = this.reflector.getAllAndOverride<boolean | undefined>(INTROSPECT, targets) === true;
    let region: string | undefined;
    if (regionMark !== undefined) {
      region = regionMark === true ? this.options.region : regionMark;
      // A configuration mistake, not a client's: fail closed with a 500 that names the fix.
      if (!region)
        throw new Error('@RequireProcessingRegion() needs MeridianVerifierModule.forRoot({ region })');
    }
    try {
      const creds = readCredentials(req.headers.authorization, req.headers.dpop);
      const opts: VerifyOptions = { requiredScopes, introspect };
      if (region !== undefined) opts.region = region;
      const certificate = this.clientCertificate(req);
      if (certificate) opts.clientCertificate = certificate;
      if (creds?.scheme === 'DPoP') {
        opts.dpop = { proof: creds.proof ?? '', method: req.method, url: this.requestUrl(req) };
      }
      req.meridian = await this.verifier.verify(creds?.token, opts);
      return true;
    } catch (err) {
      if (!(err instanceof VerifierError)) throw err;
      const { status, headers, body } = verifierErrorResponse(err);
      const res = http.getResponse<HeaderSink>();
      for (const [name, value] of Object.entries(headers)) {
        if (typeof res.setHeader === 'function') res.setHeader(name, value);
        else res.header?.(name, value);
      }
      throw new HttpException({ statusCode: status, ...body }, status, { cause: err });
    }
  }

  private clientCertificate(req: MeridianRequest): X509Certificate | Buffer | undefined {
    if (this.options.clientCertificate) return this.options.clientCertificate(req);
    const socket = req.socket as PeerSocket | undefined;
    const peer = typeof socket?.getPeerCertificate === 'function' ? socket.getPeerCertificate(false) : null;
    return peer?.raw && peer.raw.length > 0 ? peer.raw : undefined;
  }

  private requestUrl(req: MeridianRequest): string {
    const path = req.originalUrl ?? req.url;
    if (this.options.publicUrl) return new URL(path, this.options.publicUrl).toString();
    const host = req.headers.host;
    return `${req.protocol ?? 'http'}://${Array.isArray(host) ? host[0] : host}${path}`;
  }
}
