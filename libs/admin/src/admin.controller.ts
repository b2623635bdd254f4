import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Post,
  Put,
  Req,
  Res,
  UseGuards,
} from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { AdminAuthGuard, RequireScope, type AdminPrincipal } from './admin-auth.guard';
import { AdminService, type Upserted } from './admin.service';
import { ClientDto, RegionDto, ResourceDto } from './dto/admin.dto';

type AuthedRequest = Request & { principal: AdminPrincipal };

function answer(res: Response, result: Upserted<unknown>) {
  res.status(result.created ? 201 : 200).json(result.body);
}

/** Thin: each route is one use-case call. Scope `meridian:admin` on every route. */
@ApiTags('admin')
@ApiBearerAuth()
@Controller('admin')
@UseGuards(AdminAuthGuard)
@RequireScope('meridian:admin')
export class AdminController {
  constructor(private readonly admin: AdminService) {}

  @Get('regions')
  listRegions() {
    return this.admin.listRegions();
  }

  @Get('regions/:id')
  getRegion(@Param('id') id: string) {
    return this.admin.getRegion(id);
  }

  @Put('regions/:id')
  async putRegion(
    @Req() req: AuthedRequest,
    @Res() res: Response,
    @Param('id') id: string,
    @Body() dto: RegionDto,
  ) {
    answer(res, await this.admin.putRegion(req.principal.actor, id, dto));
  }

  @Get('resources')
  listResources() {
    return this.admin.listResources();
  }

  @Get('resources/:id')
  getResource(@Param('id') id: string) {
    return this.admin.getResource(id);
  }

  @Put('resources/:id')
  async putResource(
    @Req() req: AuthedRequest,
    @Res() res: Response,
    @Param('id') id: string,
    @Body() dto: ResourceDto,
  ) {
    answer(res, await this.admin.putResource(req.principal.actor, id, dto));
  }

  @Delete('resources/:id')
  @HttpCode(204)
  async deleteResource(@Req() req: AuthedRequest, @Param('id') id: string) {
    await this.admin.deleteResource(req.principal.actor, id);
  }

  @Get('clients')
  listClients() {
    return this.admin.listClients();
  }

  @Get('clients/:id')
  getClient(@Param('id') id: string) {
    return this.admin.getClient(id);
  }

  @Put('clients/:id')
  async putClient(
    @Req() req: AuthedRequest,
    @Res() res: Response,
    @Param('id') id: string,
    @Body() dto: ClientDto,
  ) {
    answer(res, await this.admin.putClient(req.principal.actor, id, dto));
  }

  @Delete('clients/:id')
  @HttpCode(204)
  async deleteClient(@Req() req: AuthedRequest, @Param('id') id: string) {
    await this.admin.deleteClient(req.principal.actor, id);
  }

  @Get('keys')
  listKeys() {
    return this.admin.listKeys();
  }

  @Post('keys/rotate')
  @HttpCode(200)
  rotateKeys(@Req() req: AuthedRequest) {
    return this.admin.rotateKeys(req.principal.actor);
  }
}
