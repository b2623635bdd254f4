import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Post,
  Put,
  Query,
  Req,
  Res,
  UseGuards,
} from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { AdminAuthGuard, RequireScope, type AdminPrincipal } from './admin-auth.guard';
import { ComplianceService } from './compliance.service';
import { FederationDto } from './dto/federation.dto';

type AuthedRequest = Request & { principal: AdminPrincipal };

@ApiTags('admin')
@ApiBearerAuth()
@Controller('admin/federations')
@UseGuards(AdminAuthGuard)
@RequireScope('meridian:admin')
export class FederationsController {
  constructor(private readonly compliance: ComplianceService) {}

  @Get()
  list() {
    return this.compliance.listFederations();
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.compliance.getFederation(id);
  }

  @Put(':id')
  async put(
    @Req() req: AuthedRequest,
    @Res() res: Response,
    @Param('id') id: string,
    @Body() dto: FederationDto,
  ) {
    const result = await this.compliance.putFederation(req.principal.actor, id, dto);
    res.status(result.created ? 201 : 200).json(result.body);
  }

  @Delete(':id')
  @HttpCode(204)
  async delete(@Req() req: AuthedRequest, @Param('id') id: string) {
    await this.compliance.deleteFederation(req.principal.actor, id);
  }
}

/** Residency policies are documents validated by the residency engine, not by DTO classes. */
function asDocument(body: unknown): unknown {
  return body;
}

@ApiTags('compliance')
@ApiBearerAuth()
@Controller('compliance/policies')
@UseGuards(AdminAuthGuard)
@RequireScope('meridian:compliance')
export class PoliciesController {
  constructor(private readonly compliance: ComplianceService) {}

  @Get()
  list() {
    return this.compliance.listPolicies();
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.compliance.getPolicy(id);
  }

  @Put(':id')
  @ApiBody({ description: 'a residency policy document (CONTRACT.md)' })
  @HttpCode(201)
  put(@Req() req: AuthedRequest, @Param('id') id: string, @Body() body: unknown) {
    return this.compliance.putPolicy(req.principal.actor, id, asDocument(body));
  }

  @Post(':id/dry-run')
  @HttpCode(200)
  dryRun(@Req() req: AuthedRequest, @Param('id') id: string, @Body() body: unknown) {
    return this.compliance.dryRunPolicy(req.principal.actor, id, asDocument(body));
  }
}

@ApiTags('compliance')
@ApiBearerAuth()
@Controller('privacy/subjects')
@UseGuards(AdminAuthGuard)
@RequireScope('meridian:compliance')
export class PrivacyController {
  constructor(private readonly compliance: ComplianceService) {}

  @Get(':sub')
  export(@Req() req: AuthedRequest, @Param('sub') sub: string) {
    return this.compliance.exportSubject(req.principal.actor, sub);
  }

  @Delete(':sub')
  erase(@Req() req: AuthedRequest, @Param('sub') sub: string) {
    return this.compliance.eraseSubject(req.principal.actor, sub);
  }
}

@ApiTags('compliance')
@ApiBearerAuth()
@Controller('audit')
@UseGuards(AdminAuthGuard)
@RequireScope('meridian:compliance')
export class AuditController {
  constructor(private readonly compliance: ComplianceService) {}

  /** The hash chain of this region's trail: `ok`, counts, the head, the first broken link. */
  @Get('verify')
  verify() {
    return this.compliance.verifyAudit();
  }

  @Get('events')
  events(@Query() q: Record<string, string | undefined>) {
    return this.compliance.auditEvents({
      subject: typeof q.subject === 'string' ? q.subject : undefined,
      type: typeof q.type === 'string' ? q.type : undefined,
      since: typeof q.since === 'string' ? q.since : undefined,
      until: typeof q.until === 'string' ? q.until : undefined,
      limit: typeof q.limit === 'string' ? q.limit : undefined,
    });
  }
}
