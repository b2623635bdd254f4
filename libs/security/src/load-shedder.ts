/**
 * Load shedding: when the process is saturated, a new request is answered 503 with Retry-After
 * at once instead of joining a queue whose latency grows without bound. Saturated means more
 * requests in progress than `maxInFlight`, or an event loop that runs late by more than
 * `maxEventLoopDelayMs` on consecutive turns (measured by a timer's drift, so a loop busy with
 * parsing and crypto callbacks shows up within a few ms). One late turn alone — a GC pause, a
 * start-up step, a large synchronous job — sheds nothing: only a loop that stays behind does.
 */
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

const TICK_MS = 20;

export interface LoadSheddingOptions {
  maxInFlight: number;
  maxEventLoopDelayMs: number;
}

export type ShedReason = 'in_flight' | 'event_loop_delay';

export class LoadShedder {
  private inFlight = 0;
  private delayMs = 0;
  private lateTurns = 0;
  private timer?: NodeJS.Timeout;

  constructor(private readonly opts: LoadSheddingOptions) {}

  start(): void {
    if (this.opts.maxEventLoopDelayMs <= 0 || this.timer) return;
    let last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      const late = Math.max(0, now - last - TICK_MS);
      last = now;
      this.delayMs = late;
      this.lateTurns = late > this.opts.maxEventLoopDelayMs ? this.lateTurns + 1 : 0;
    }, TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Why a new request should be refused now, or undefined. */
  saturated(): ShedReason | undefined {
    if (this.opts.maxInFlight > 0 && this.inFlight >= this.opts.maxInFlight) return 'in_flight';
    if (this.opts.maxEventLoopDelayMs > 0 && this.lateTurns >= 2) return 'event_loop_delay';
    return undefined;
  }

  /** Counts `res` as in progress until it is finished or its connection closes. */
  track(res: ServerResponse): void {
    this.inFlight++;
    res.once('close', () => this.inFlight--);
  }

  get current(): { inFlight: number; eventLoopDelayMs: number } {
    return { inFlight: this.inFlight, eventLoopDelayMs: Math.round(this.delayMs) };
  }
}
