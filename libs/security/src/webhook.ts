/**
 * Signed alert webhooks. The body is JSON; the receiver checks
 *
 *   X-Meridian-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
 *   X-Meridian-Timestamp: <unix seconds>
 *
 * — the timestamp is inside the MAC, so a captured delivery cannot be replayed later than the
 * receiver's tolerance (verifyWebhookSignature: 300 s by default). `X-Meridian-Event-Id` is
 * unique per alert (deliveries are retried, receivers deduplicate by it).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';

export const SIGNATURE_HEADER = 'x-meridian-signature';
export const TIMESTAMP_HEADER = 'x-meridian-timestamp';
export const EVENT_ID_HEADER = 'x-meridian-event-id';

export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** What a receiver does: the MAC over timestamp and body, and a fresh timestamp. */
export function verifyWebhookSignature(
  secret: string,
  headers: { signature?: string; timestamp?: string },
  body: string,
  opts: { toleranceSeconds?: number; nowSeconds?: number } = {},
): boolean {
  const ts = Number(headers.timestamp);
  if (!headers.signature || !Number.isInteger(ts)) return false;
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - ts) > (opts.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(signWebhook(secret, ts, body));
  const given = Buffer.from(headers.signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

export interface WebhookDeliveryOptions {
  url: string;
  secret: string;
  logger: Logger;
  timeoutMs?: number;
  attempts?: number;
  /** Alerts waiting for delivery at most; more are dropped (and logged). */
  maxQueue?: number;
  onOutcome?: (outcome: 'delivered' | 'failed') => void;
}

/** Delivers alerts one at a time, in order, with retries and back-off; never blocks the caller. */
export class WebhookSender {
  private readonly queue: { id: string; body: string }[] = [];
  private running = false;
  private stopped = false;
  delivered = 0;
  failed = 0;

  constructor(private readonly opts: WebhookDeliveryOptions) {}

  send(id: string, payload: unknown): void {
    if (this.stopped) return;
    if (this.queue.length >= (this.opts.maxQueue ?? 1000)) {
      this.failed++;
      this.opts.onOutcome?.('failed');
      this.opts.logger.warn({ id }, 'security webhook queue full: alert dropped');
      return;
    }
    this.queue.push({ id, body: JSON.stringify(payload) });
    if (!this.running) void this.drain();
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length && !this.stopped) {
        const item = this.queue.shift()!;
        await this.deliver(item.id, item.body);
      }
    } finally {
      this.running = false;
    }
  }

  private async deliver(id: string, body: string): Promise<void> {
    const attempts = this.opts.attempts ?? 4;
    for (let attempt = 1; attempt <= attempts && !this.stopped; attempt++) {
      const timestamp = Math.floor(Date.now() / 1000);
      try {
        const res = await fetch(this.opts.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            [SIGNATURE_HEADER]: signWebhook(this.opts.secret, timestamp, body),
            [TIMESTAMP_HEADER]: String(timestamp),
            [EVENT_ID_HEADER]: id,
          },
          body,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) {
          this.delivered++;
          this.opts.onOutcome?.('delivered');
          return;
        }
        this.opts.logger.warn({ id, status: res.status, attempt }, 'security webhook refused');
      } catch (err) {
        this.opts.logger.warn(
          { id, attempt, err: { message: (err as Error).message } },
          'security webhook failed',
        );
      }
      if (attempt < attempts) await new Promise((r) => setTimeout(r, 250 * 4 ** (attempt - 1)).unref());
    }
    this.failed++;
    this.opts.onOutcome?.('failed');
  }

  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
  }
}
