import { ArgumentsHost, Catch, HttpException, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Logger } from 'pino';
import { AdminError, BearerError, adminErrorStatus } from '@meridian/admin';
import { isDatabaseUnavailable } from '@meridian/persistence';
import type { OutageResponder } from './unavailable';

/**
 * One place that turns errors into answers. Clients see an OAuth-style `error` and a
 * description they can act on; stack traces and causes go to the log only.
 */
@Catch()
export class BrokerErrorFilter implements ExceptionFilter {
  constructor(
    private readonly logger: Logger,
    private readonly outage?: OutageResponder,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    if (res.headersSent) return;
    if (this.outage && isDatabaseUnavailable(exception)) {
      // A database went away during the request: 503 naming it, not a 500 (unavailable.ts).
      void this.outage.sendExpress(host.switchToHttp().getRequest<Request>(), res);
      return;
    }
    if (exception instanceof AdminError) {
      const { status, error } = adminErrorStatus(exception.code);
      res
        .status(status)
        .json({ error, error_description: exception.message, code: exception.code, ...exception.extra });
      return;
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const body = exception.getResponse();
      if (body instanceof BearerError) {
        // RFC 6750 §3
        const scope = body.scope ? `, scope="${body.scope}"` : '';
        res.setHeader(
          'WWW-Authenticate',
          `Bearer error="${body.error}", error_description="${body.description}"${scope}`,
        );
        res.status(body.status).json({ error: body.error, error_description: body.description });
        return;
      }
      if (status === 503 && typeof body === 'object' && body !== null && 'details' in body) {
        // @nestjs/terminus readiness answer: which dependency is down, nothing more.
        res.status(503).json(body);
        return;
      }
      const message =
        typeof body === 'object' && body !== null && 'message' in body
          ? (body as { message: unknown }).message
          : exception.message;
      const description = Array.isArray(message) ? message.join('; ') : String(message);
      const error =
        status === 400
          ? 'invalid_request'
          : status === 404
            ? 'not_found'
            : status === 413
              ? 'request_too_large'
              : status === 415
                ? 'unsupported_media_type'
                : status >= 500
                  ? 'server_error'
                  : 'invalid_request';
      res.status(status).json({ error, error_description: status >= 500 ? 'internal error' : description });
      return;
    }
    // body-parser errors (malformed JSON, too large) carry a status and `expose`.
    const e = exception as {
      status?: number;
      statusCode?: number;
      expose?: boolean;
      type?: string;
      message?: string;
    };
    const status = e.status ?? e.statusCode;
    if (status && status >= 400 && status < 500 && e.expose) {
      const description =
        e.type === 'entity.parse.failed' ? 'the body is not valid JSON' : (e.message ?? 'bad request');
      res.status(status).json({ error: 'invalid_request', error_description: description });
      return;
    }
    this.logger.error(
      { err: { message: (exception as Error)?.message, stack: (exception as Error)?.stack } },
      'unhandled error',
    );
    res.status(500).json({ error: 'server_error', error_description: 'internal error' });
  }
}
