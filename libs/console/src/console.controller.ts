import { Controller, Get, Header, Param, Post, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { AdminPages } from './admin.pages';
import { CompliancePages } from './compliance.pages';
import { CONSOLE_CSS } from './console.css';
import { ConsoleService, type ConsoleAnswer, type ConsoleRequest, type PageHandler } from './console.service';
import { CONSOLE_CSP } from './views';

function cookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!(name in out)) out[name] = part.slice(eq + 1).trim();
  }
  return out;
}

function toRequest(req: Request): ConsoleRequest {
  const url = new URL(req.url, 'http://console.invalid');
  const header = (name: string) => {
    const v = req.headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  return {
    method: req.method,
    path: url.pathname.replace(/^\/console/, '').replace(/\/+$/, ''),
    query: url.searchParams,
    cookies: cookies(req.headers.cookie),
    body: req.body && typeof req.body === 'object' ? (req.body as Record<string, unknown>) : {},
    origin: header('origin'),
    secFetchSite: header('sec-fetch-site'),
  };
}

function send(res: Response, answer: ConsoleAnswer): void {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Referrer-Policy', 'same-origin');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  if (answer.cookies?.length) res.setHeader('Set-Cookie', answer.cookies);
  if (answer.location) {
    res.redirect(answer.status, answer.location);
    return;
  }
  if (answer.download) {
    const ascii = answer.download.filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
    res.setHeader(
      'Content-Disposition',
      `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(answer.download.filename)}`,
    );
    res.status(answer.status).type(answer.download.contentType).send(answer.download.body);
    return;
  }
  res
    .status(answer.status)
    .type('html')
    .send(answer.html?.value ?? '');
}

/** The console's routes: each is one page of AdminPages/CompliancePages, run through the pipeline. */
@ApiExcludeController()
@Controller('console')
export class ConsoleController {
  constructor(
    private readonly console: ConsoleService,
    private readonly admin: AdminPages,
    private readonly compliance: CompliancePages,
  ) {}

  private async run(req: Request, res: Response, handler: PageHandler): Promise<void> {
    send(res, await this.console.run(toRequest(req), handler));
  }

  @Get('static/console.css')
  @Header('Content-Type', 'text/css; charset=utf-8')
  @Header('Cache-Control', 'public, max-age=3600')
  css() {
    return CONSOLE_CSS;
  }

  @Get('login')
  async login(@Req() req: Request, @Res() res: Response) {
    send(res, await this.console.login(toRequest(req)));
  }

  @Get('callback')
  async callback(@Req() req: Request, @Res() res: Response) {
    send(res, await this.console.callback(toRequest(req)));
  }

  @Post('logout')
  async logout(@Req() req: Request, @Res() res: Response) {
    send(res, await this.console.logout(toRequest(req)));
  }

  @Get('signed-out')
  signedOut(@Res() res: Response) {
    send(res, this.console.signedOut());
  }

  @Get()
  home(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.home(ctx));
  }

  // ---- admin

  @Get('regions')
  regions(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.regions(ctx));
  }

  @Get('federations')
  federations(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.federations(ctx));
  }

  @Get('federations/new')
  newFederation(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, async (ctx) => this.admin.newFederation(ctx));
  }

  @Post('federations')
  createFederation(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.createFederation(ctx));
  }

  @Get('federations/:id')
  federation(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.federation(ctx, id));
  }

  @Post('federations/:id')
  updateFederation(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.updateFederation(ctx, id));
  }

  @Post('federations/:id/enabled')
  setFederationEnabled(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.setFederationEnabled(ctx, id));
  }

  @Get('clients')
  clients(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.clients(ctx));
  }

  @Get('clients/new')
  newClient(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, async (ctx) => this.admin.newClient(ctx));
  }

  @Post('clients')
  createClient(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.saveClient(ctx));
  }

  @Get('clients/:id')
  client(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.client(ctx, id));
  }

  @Post('clients/:id')
  updateClient(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.saveClient(ctx, id));
  }

  @Post('clients/:id/secret')
  rotateClientSecret(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.rotateClientSecret(ctx, id));
  }

  @Post('clients/:id/secret/previous')
  revokePreviousClientSecret(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.revokePreviousClientSecret(ctx, id));
  }

  @Post('federations/:id/secret')
  rotateFederationSecret(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.rotateFederationSecret(ctx, id));
  }

  @Post('federations/:id/secret/promote')
  promoteFederationSecret(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.promoteFederationSecret(ctx, id));
  }

  @Get('resources')
  resources(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.resources(ctx));
  }

  @Get('resources/new')
  newResource(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.newResource(ctx));
  }

  @Post('resources')
  createResource(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.saveResource(ctx));
  }

  @Get('resources/:id')
  resource(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.resource(ctx, id));
  }

  @Post('resources/:id')
  updateResource(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.admin.saveResource(ctx, id));
  }

  @Get('keys')
  keys(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.keys(ctx));
  }

  @Post('keys/rotate')
  rotateKeys(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.admin.rotateKeys(ctx));
  }

  // ---- compliance

  @Get('policies')
  policies(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.compliance.policies(ctx));
  }

  @Post('policies/dry-run')
  dryRun(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.compliance.dryRun(ctx));
  }

  @Post('policies/save')
  savePolicy(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.compliance.save(ctx));
  }

  @Get('policies/:id')
  policy(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    return this.run(req, res, (ctx) => this.compliance.policy(ctx, id));
  }

  @Get('subjects')
  subjects(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.compliance.subjects(ctx));
  }

  @Get('subjects/export')
  exportSubject(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.compliance.exportSubject(ctx));
  }

  @Get('subjects/erase')
  eraseConfirm(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, async (ctx) => this.compliance.eraseConfirm(ctx));
  }

  @Post('subjects/erase')
  erase(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.compliance.erase(ctx));
  }

  @Get('audit')
  audit(@Req() req: Request, @Res() res: Response) {
    return this.run(req, res, (ctx) => this.compliance.audit(ctx));
  }
}
