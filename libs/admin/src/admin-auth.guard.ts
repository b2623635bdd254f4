import {
  CanActivate,
  ExecutionContext,
  ForbiddenException,
  Inject,
  Injectable,
  SetMetadata,
  UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { ADMIN_AUDIENCE, type AdminScope } from '@meridian/tokens';
import { ADMIN_DEPS, type AdminDeps } from './admin-deps';

const SCOPE_KEY = 'meridian:required-scope';

/** The scope a route needs (`meridian:admin` or `meridian:compliance`). */
export const RequireScope = (scope: AdminScope) => SetMetadata(SCOPE_KEY, scope);

export interface AdminPrincipal {
  clientId: string;
  scopes: string[];
}

export class BearerError {
  constructor(
    readonly status: 401 | 403,
    readonly error: 'invalid_token' | 'insufficient_scope',
    readonly description: string,
    readonly scope?: string,
  ) {}
}

/**
 * RFC 6750: no or invalid token → 401 `invalid_token`; valid token without the scope → 403
 * `insufficient_scope`. Tokens must be this broker's own, for the admin audience, live
 * (signature, expiry, revocation) — checked with the same code introspection uses.
 */
@Injectable()
export class AdminAuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    @Inject(ADMIN_DEPS) private readonly deps: AdminDeps,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const required = this.reflector.getAllAndOverride<AdminScope | undefined>(SCOPE_KEY, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (!required) throw new Error('admin route without RequireScope');
    const req = context.switchToHttp().getRequest<Request & { principal?: AdminPrincipal }>();
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header) : null;
    if (!match)
      throw new UnauthorizedException(new BearerError(401, 'invalid_token', 'a bearer token is required'));
    const payload = await this.deps.tokenStatus.verify(match[1]!, { audience: ADMIN_AUDIENCE });
    if (!payload)
      throw new UnauthorizedException(
        new BearerError(401, 'invalid_token', 'the token is invalid, expired or revoked'),
      );
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
    if (!scopes.includes(required)) {
      throw new ForbiddenException(
        new BearerError(403, 'insufficient_scope', `this call needs scope ${required}`, required),
      );
    }
    req.principal = { clientId: String(payload.client_id), scopes };
    return true;
  }
}
