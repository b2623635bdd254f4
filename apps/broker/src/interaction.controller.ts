import { Body, Controller, Get, Header, Inject, Param, Post, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import {
  LOGIN_CSP,
  LOGIN_CSS,
  negotiateLanguage,
  pageHeaders,
  renderPage,
  type LoginAnswer,
} from '@meridian/federation';
import { BROKER_RUNTIME, type BrokerState } from './broker-state';

/** The login pages and the upstream callback: each route is one call of the login use case. */
@ApiExcludeController()
@Controller()
export class InteractionController {
  constructor(@Inject(BROKER_RUNTIME) private readonly state: BrokerState) {}

  private get login() {
    return this.state.runtime.login;
  }

  @Get('interaction/static/login.css')
  @Header('Content-Type', 'text/css; charset=utf-8')
  @Header('Cache-Control', 'public, max-age=3600')
  css() {
    return LOGIN_CSS;
  }

  @Get('interaction/:uid')
  async start(@Req() req: Request, @Res() res: Response) {
    send(req, res, await this.login.start(req, res));
  }

  @Get('interaction/:uid/federation/:federation')
  async choose(@Req() req: Request, @Res() res: Response, @Param('federation') federation: string) {
    send(req, res, await this.login.choose(req, res, federation));
  }

  @Post('interaction/:uid/home-realm')
  async homeRealm(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    send(req, res, await this.login.homeRealm(req, res, body?.email));
  }

  @Post('interaction/:uid/cancel')
  async cancel(@Req() req: Request, @Res() res: Response) {
    send(req, res, await this.login.cancel(req, res));
  }

  @Get('federation/logged-out')
  loggedOut(@Req() req: Request, @Res() res: Response) {
    const q = req.originalUrl.indexOf('?');
    send(req, res, this.login.loggedOut(new URLSearchParams(q === -1 ? '' : req.originalUrl.slice(q + 1))));
  }

  @Get('federation/callback')
  async callback(@Req() req: Request, @Res() res: Response) {
    const q = req.originalUrl.indexOf('?');
    send(
      req,
      res,
      await this.login.callback(new URLSearchParams(q === -1 ? '' : req.originalUrl.slice(q + 1))),
    );
  }
}

function send(req: Request, res: Response, answer: LoginAnswer): void {
  res.setHeader('Content-Security-Policy', LOGIN_CSP);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (answer.kind === 'redirect') {
    res.redirect(303, answer.location);
    return;
  }
  if (answer.kind === 'page') {
    res.status(answer.status).type('html').send(answer.html);
    return;
  }
  // RFC 9110 §12.5.4: the page's language follows Accept-Language, so caches must key on it.
  const lang = negotiateLanguage(req.headers['accept-language']);
  res.set(pageHeaders(lang)).vary('Accept-Language');
  res.status(answer.status).type('html').send(renderPage(answer.view, lang));
}
