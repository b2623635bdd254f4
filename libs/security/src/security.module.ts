import {
  Body,
  type CanActivate,
  Controller,
  type ExecutionContext,
  HttpCode,
  Inject,
  Module,
  Post,
  Req,
  UnauthorizedException,
  UseGuards,
  type DynamicModule,
  Injectable,
} from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request } from 'express';
import { BearerError } from '@meridian/admin';
import { SecurityReportDto } from './security-events.dto';
import type { SecurityRuntime } from './security.runtime';

export const SECURITY_RUNTIME = Symbol('SECURITY_RUNTIME');

type ReporterRequest = Request & { reporter?: string };

/** Authentication before validation: an unauthenticated caller learns nothing about the body. */
@Injectable()
export class SecurityReporterGuard implements CanActivate {
  constructor(@Inject(SECURITY_RUNTIME) private readonly security: () => SecurityRuntime) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<ReporterRequest>();
    const reporter = await this.security().authenticateReporter(req.headers.authorization);
    if (!reporter)
      throw new UnauthorizedException(
        new BearerError(
          401,
          'invalid_token',
          'a client_credentials token for urn:meridian:security-events with scope meridian:security:report is required',
        ),
      );
    req.reporter = reporter;
    return true;
  }
}

/**
 * Sidecars report what they refused (residency violations, invalid-signature and unknown-issuer
 * tokens) to their region's broker. The caller authenticates with a client_credentials token of
 * this broker for the audience urn:meridian:security-events with scope meridian:security:report.
 */
@ApiExcludeController()
@Controller('security')
export class SecurityEventsController {
  constructor(@Inject(SECURITY_RUNTIME) private readonly security: () => SecurityRuntime) {}

  @Post('events')
  @HttpCode(202)
  @UseGuards(SecurityReporterGuard)
  async report(@Req() req: ReporterRequest, @Body() body: SecurityReportDto) {
    return this.security().report(req.reporter!, body);
  }
}

@Module({})
export class SecurityModule {
  static register(security: () => SecurityRuntime): DynamicModule {
    return {
      module: SecurityModule,
      controllers: [SecurityEventsController],
      providers: [{ provide: SECURITY_RUNTIME, useValue: security }, SecurityReporterGuard],
    };
  }
}
