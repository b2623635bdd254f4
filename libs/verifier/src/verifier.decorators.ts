/**
 * Route metadata for {@link MeridianAuthGuard}: required scopes, residency, live checks; and a
 * parameter decorator for the verified token.
 */
import { createParamDecorator, SetMetadata, type ExecutionContext } from '@nestjs/common';
import type { MeridianRequest } from './verifier.providers';

/**
 * Metadata keys the guard reads.
 *
 * @internal
 * @example
 * ```ts
 * reflector.getAllAndMerge<string[]>(REQUIRED_SCOPES, [ctx.getClass(), ctx.getHandler()]);
 * ```
 */
export const REQUIRED_SCOPES = 'meridian:required-scopes';
/** @internal @example `reflector.getAllAndOverride(PROCESSING_REGION, targets)` */
export const PROCESSING_REGION = 'meridian:processing-region';
/** @internal @example `reflector.getAllAndOverride(INTROSPECT, targets)` */
export const INTROSPECT = 'meridian:introspect';

/**
 * Every listed scope must be in the token (else 403 `insufficient_scope`). On a class and a
 * method, both lists apply.
 *
 * @example
 * ```ts
 * @UseGuards(MeridianAuthGuard)
 * @RequireScopes('orders:read')
 * @Controller('orders')
 * export class OrdersController {
 *   @Post()
 *   @RequireScopes('orders:write')
 *   create() {}
 * }
 * ```
 */
export const RequireScopes = (...scopes: string[]) => SetMetadata(REQUIRED_SCOPES, scopes);

/**
 * For routes that handle personal data: the subject's `residency.processing` must include this
 * service's region (the module's `region`, or the one given). Refused with 403 and code
 * `ERR_RESIDENCY_PROCESSING`.
 *
 * @example
 * ```ts
 * @Get('customers/:id')
 * @RequireProcessingRegion()
 * customer(@Param('id') id: string) {}
 * ```
 */
export const RequireProcessingRegion = (region?: string) => SetMetadata(PROCESSING_REGION, region ?? true);

/**
 * For revocation-sensitive routes: also ask the broker (RFC 7662) whether the token is still
 * active; needs the `introspection` option. Answers are cached for `introspection.cacheTtlMs`.
 *
 * @example
 * ```ts
 * @Delete('account')
 * @RequireActiveToken()
 * closeAccount() {}
 * ```
 */
export const RequireActiveToken = () => SetMetadata(INTROSPECT, true);

/**
 * The verified token of the request (`req.meridian`).
 *
 * @example
 * ```ts
 * @Get('me')
 * me(@MeridianToken() token: VerifiedToken) {
 *   return { sub: token.sub, scope: token.scope };
 * }
 * ```
 */
export const MeridianToken = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext) => ctx.switchToHttp().getRequest<MeridianRequest>().meridian,
);
