import { Body, Controller, HttpCode, Inject, Post, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';
import { BROKER_RUNTIME, type BrokerState } from './broker-state';

/** Broker-to-broker calls, authenticated by JWTs signed with a region's published keys. */
@ApiExcludeController()
@Controller('privacy/erasure-notices')
export class PeerController {
  constructor(@Inject(BROKER_RUNTIME) private readonly state: BrokerState) {}

  @Post()
  @HttpCode(202)
  async erasureNotice(@Body() body: Record<string, unknown> | undefined, @Res() res: Response) {
    const answer = await this.state.runtime.peerErasure.receive(body?.notice);
    res.status(answer.status).json(answer.body);
  }
}
