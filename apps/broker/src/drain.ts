/**
 * Graceful shutdown that loses no request the broker accepted. Node's `server.close()` also
 * destroys every connection it considers idle, including keep-alive connections whose next
 * request is already in the socket buffer but not yet parsed, and closing the listener at once
 * resets connections still in the kernel's accept queue: under load both lose requests that
 * clients had sent on an established connection. Instead, on SIGTERM:
 *
 * 1. Refusal window: the listener stays open; requests already being processed finish (their
 *    response says `Connection: close`); every request that arrives from now on gets a clean
 *    503 with `Retry-After` (RFC 9110 §15.6.4) and `Connection: close` — except `/healthz` and
 *    `/readyz`, which keep telling the truth (alive; not ready). The window ends when nothing
 *    is in flight and no request came for a moment (clients and load balancers have backed
 *    off), or after half the grace period.
 * 2. The listener closes (new connections are refused), idle connections are ended, and the
 *    rest finish within the grace period; whatever is still open then is cut (and counted).
 */
import net from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** How long without a new request (and with nothing in flight) ends the refusal window. */
const QUIET_MS = 250;
/** Longer than a refusal window usually lasts: a client that honours it comes back to a closed port. */
export const SHUTDOWN_RETRY_AFTER_SECONDS = 2;
const EXEMPT = /^\/(?:[^?]*\/)?(?:healthz|readyz)(?:\?|$)/;

export interface DrainStats {
  /** Requests the broker read. */
  received: number;
  /** …answered completely (including the refusals). */
  answered: number;
  /** …refused with 503 because they arrived during the shutdown. */
  refused: number;
  /** …whose connection closed before the answer was complete (client gone, or the grace ran out). */
  cutOff: number;
}

interface SocketState {
  inFlight: number;
  idleSince: number;
}

export class Drain {
  private draining = false;
  private lastRequestAt = 0;
  private readonly sockets = new Map<net.Socket, SocketState>();
  private readonly open = new Set<ServerResponse>();
  readonly stats: DrainStats = { received: 0, answered: 0, refused: 0, cutOff: 0 };

  /** `refuse` writes the 503 of a request that arrived during the shutdown. */
  constructor(private readonly refuse: Handler) {}

  /** Tracks the server's connections (plain or TLS) so idle ones can be told apart and ended. */
  attach(server: Server | HttpsServer, o: { tls: boolean }): void {
    // A request's socket is the TLS socket on an HTTPS server, the TCP socket otherwise.
    server.on(o.tls ? 'secureConnection' : 'connection', (socket: net.Socket) => {
      this.sockets.set(socket, { inFlight: 0, idleSince: Date.now() });
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /** Wraps the request handler: counts requests, and refuses new ones once draining. */
  wrap(handler: Handler): Handler {
    return (req, res) => {
      this.stats.received++;
      this.lastRequestAt = Date.now();
      const socket = this.sockets.get(req.socket);
      if (socket) socket.inFlight++;
      this.open.add(res);
      res.once('close', () => {
        this.open.delete(res);
        if (socket) {
          socket.inFlight--;
          socket.idleSince = Date.now();
        }
        if (res.writableFinished) this.stats.answered++;
        else this.stats.cutOff++;
      });
      if (this.draining) {
        res.setHeader('Connection', 'close');
        if (!EXEMPT.test(req.url ?? '')) {
          this.stats.refused++;
          this.refuse(req, res);
          return;
        }
      }
      handler(req, res);
    };
  }

  private inFlight(): number {
    return this.open.size;
  }

  /** Runs the shutdown described above; resolves when every connection is closed. */
  async drain(servers: (Server | HttpsServer)[], graceMs: number): Promise<DrainStats> {
    const started = Date.now();
    this.draining = true;
    // Responses under way close their connection when done: no further request on it.
    for (const res of this.open) if (!res.headersSent) res.setHeader('Connection', 'close');
    const windowEnd = started + graceMs / 2;
    const tick = () => new Promise((r) => setTimeout(r, 25));
    while (Date.now() < windowEnd) {
      const quiet = Date.now() - Math.max(this.lastRequestAt, started) >= QUIET_MS;
      if (quiet && this.inFlight() === 0) break;
      await tick();
    }
    // Stop accepting, without Node's close() destroying "idle" connections (see above).
    const closed = Promise.all(
      servers.map((s) => new Promise<void>((resolve) => net.Server.prototype.close.call(s, () => resolve()))),
    );
    const sweep = () => {
      for (const [socket, state] of this.sockets) {
        if (state.inFlight === 0 && Date.now() - state.idleSince >= QUIET_MS) socket.end();
      }
    };
    sweep();
    const sweeper = setInterval(sweep, 50);
    const deadline = setTimeout(
      () => {
        for (const s of servers) s.closeAllConnections();
      },
      Math.max(0, started + graceMs - Date.now()),
    );
    await closed;
    clearInterval(sweeper);
    clearTimeout(deadline);
    return { ...this.stats };
  }
}
