import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhookSignature } from './webhook';

const SECRET = 'webhook-secret-0123456789abcdefghijklmnop';

describe('signed alert webhooks (HMAC-SHA256 over timestamp and body)', () => {
  const body = JSON.stringify({ id: 'a1', detector: 'code_replay' });
  const now = 1_800_000_000;
  const headers = { signature: signWebhook(SECRET, now, body), timestamp: String(now) };

  it('verifies what was signed', () => {
    expect(headers.signature).toMatch(/^v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, headers, body, { nowSeconds: now + 10 })).toBe(true);
  });

  it('refuses another body, another secret, another timestamp, or an old delivery', () => {
    expect(verifyWebhookSignature(SECRET, headers, `${body} `, { nowSeconds: now })).toBe(false);
    expect(verifyWebhookSignature(`${SECRET}x`, headers, body, { nowSeconds: now })).toBe(false);
    expect(
      verifyWebhookSignature(SECRET, { ...headers, timestamp: String(now + 1) }, body, { nowSeconds: now }),
    ).toBe(false);
    expect(verifyWebhookSignature(SECRET, headers, body, { nowSeconds: now + 301 })).toBe(false);
  });
});
