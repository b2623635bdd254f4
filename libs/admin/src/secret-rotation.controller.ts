import { Body, Controller, Delete, Get, HttpCode, Param, Post, Req, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Request } from 'express';
import { AdminAuthGuard, RequireScope, type AdminPrincipal } from './admin-auth.guard';
import { ClientSecretRotationDto, FederationSecretRotationDto } from './dto/secret-rotation.dto';
import { SecretRotationService } from './secret-rotation.service';

type AuthedRequest = Request & { principal: AdminPrincipal };

/** Client and upstream federation secret rotation, scope `meridian:admin`. */
@ApiTags('admin')
@ApiBearerAuth()
@Controller('admin')
@UseGuards(AdminAuthGuard)
@RequireScope('meridian:admin')
export class SecretRotationController {
  constructor(private readonly secrets: SecretRotationService) {}

  @Post('clients/:id/secret')
  @HttpCode(200)
  rotateClientSecret(
    @Req() req: AuthedRequest,
    @Param('id') id: string,
    @Body() dto: ClientSecretRotationDto,
  ) {
    return this.secrets.rotateClientSecret(req.principal.actor, id, dto);
  }

  @Delete('clients/:id/secret/previous')
  @HttpCode(204)
  async revokePreviousClientSecret(@Req() req: AuthedRequest, @Param('id') id: string) {
    await this.secrets.revokePreviousClientSecret(req.principal.actor, id);
  }

  @Get('federations/:id/secret')
  federationSecrets(@Param('id') id: string) {
    return this.secrets.federationSecrets(id);
  }

  @Post('federations/:id/secret')
  @HttpCode(200)
  rotateFederationSecret(
    @Req() req: AuthedRequest,
    @Param('id') id: string,
    @Body() dto: FederationSecretRotationDto,
  ) {
    return this.secrets.rotateFederationSecret(req.principal.actor, id, dto);
  }

  @Post('federations/:id/secret/promote')
  @HttpCode(200)
  promoteFederationSecret(@Req() req: AuthedRequest, @Param('id') id: string) {
    return this.secrets.promoteFederationSecret(req.principal.actor, id);
  }
}
