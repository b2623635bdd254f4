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
  /** The person the token is about (a console sign-in); absent for a client acting for itself. */
  sub?: string;
  /** Who the audit trail names: the person when there is one, else the client. */
  actor: string;
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
 * (signature, expiry, revocation; for a person also their grant) — checked with the same code
 * introspection uses. A token about a person carries admin scopes only when the role mapping
 * granted them at sign-in; delegated tokens (`act`, RFC 8693) are never accepted.
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
    if (payload.act !== undefined)
      throw new UnauthorizedException(
        new BearerError(401, 'invalid_token', 'delegated (exchanged) tokens are not accepted here'),
      );
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
    if (!scopes.includes(required)) {
      throw new ForbiddenException(
        new BearerError(403, 'insufficient_scope', `this call needs scope ${required}`, required),
      );
    }
    const clientId = String(payload.client_id);
    const sub = payload.sub !== clientId ? String(payload.sub) : undefined;
    req.principal = { clientId, scopes, ...(sub ? { sub } : {}), actor: sub ?? clientId };
    return true;
  }
}
