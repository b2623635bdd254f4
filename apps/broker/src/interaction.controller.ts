import { Controller, Get, Inject, Param, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { BROKER_RUNTIME, type BrokerState } from './broker-state';

/**
 * oidc-provider hands the browser here to log the person in. Federated login arrives with the
 * federation work; until then every login ends as an OAuth error redirect to the client
 * (`login_required`), never a hang or an error page with a trace.
 */
@ApiExcludeController()
@Controller('interaction')
export class InteractionController {
  constructor(@Inject(BROKER_RUNTIME) private readonly state: BrokerState) {}

  @Get(':uid')
  async start(@Req() req: Request, @Res() res: Response, @Param('uid') _uid: string) {
    const provider = this.state.runtime.provider;
    try {
      await provider.interactionDetails(req, res);
    } catch {
      res
        .status(400)
        .type('html')
        .send(
          '<!doctype html><title>Sign-in expired</title><p>This sign-in has expired or is unknown. Go back to the application and start again.</p>',
        );
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      {
        error: 'login_required',
        error_description:
          'no login method is available at this broker yet: federated login is not configured',
      },
      { mergeWithLastSubmission: false },
    );
  }
}
