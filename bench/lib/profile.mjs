// Summarises a V8 .cpuprofile (node --cpu-prof): self time by module and the top functions.
import fs from 'node:fs';
import { ROOT } from './common.mjs';

const SPECIAL = new Set(['(garbage collector)', '(program)', '(idle)', '(root)']);

/** Which module a call frame belongs to: an npm package, a Meridian lib/app, or a part of Node. */
export function moduleOf(callFrame) {
  const { url, functionName } = callFrame;
  if (SPECIAL.has(functionName) && !url) return functionName;
  if (!url) return '(native)';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = u.slice(nm + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const dist = u.indexOf('/dist/');
  if (u.startsWith(ROOT) && dist !== -1) {
    const parts = u.slice(dist + '/dist/'.length).split('/');
    return `meridian ${parts[0]}/${parts[1]}`;
  }
  if (u.startsWith('node:')) {
    const p = u.slice(5).split('/');
    if (p[0] === 'internal') {
      const area = p[1]?.replace(/\.js$/, '') ?? 'internal';
      return `node:${['streams', 'http', 'http2', 'crypto', 'webstreams', 'url', 'util', 'timers', 'async_hooks', 'process', 'perf', 'deps', 'fs', 'modules'].includes(area) ? area : `internal/${area}`}`;
    }
    return `node:${p[0].replace(/\.js$/, '')}`;
  }
  return u.startsWith(ROOT) ? u.slice(ROOT.length + 1) : u;
}

/** Broad groups for the one-line answer "where does the time go". */
export function groupOf(mod) {
  if (mod === '(idle)') return 'idle';
  if (mod === '(garbage collector)') return 'garbage collection';
  if (mod === '(program)' || mod === '(native)' || mod === '(root)') return 'V8 / native (not attributed)';
  if (mod.startsWith('meridian ')) return 'Meridian code (dist/apps, dist/libs)';
  if (mod === 'oidc-provider') return 'oidc-provider';
  if (
    [
      'koa',
      'koa-compose',
      '@koa/router',
      'koa-router',
      'raw-body',
      'co-body',
      'cookies',
      'keygrip',
      'content-type',
      'http-errors',
      'statuses',
      'accepts',
      'negotiator',
      'type-is',
      'mime-types',
      'iconv-lite',
      'qs',
      'on-finished',
      'ee-first',
      'fresh',
      'vary',
      'destroy',
      'encodeurl',
      'delegates',
      'depd',
      'only',
      'escape-html',
      'parseurl',
      'cache-content-type',
      'koa-convert',
      'media-typer',
      'inflation',
      'bytes',
      'unpipe',
      'setprototypeof',
      'toidentifier',
      'eta',
      'lru-cache',
      'quick-lru',
      'nanoid',
      'paseto3',
      'jsesc',
      'debug',
      'ms',
      'oidc-token-hash',
      '@koa/cors',
    ].includes(mod)
  )
    return 'Koa & oidc-provider dependencies';
  if (mod === 'jose' || mod === 'node:crypto') return 'jose / crypto';
  if (
    [
      'pg',
      'pg-protocol',
      'pg-pool',
      'pg-types',
      'typeorm',
      'postgres-array',
      'postgres-date',
      'postgres-bytea',
      'postgres-interval',
      'pgpass',
      'pg-connection-string',
      'buffer-writer',
      'packet-reader',
    ].includes(mod)
  )
    return 'PostgreSQL client (pg, TypeORM)';
  if (
    [
      'pino',
      'pino-std-serializers',
      'sonic-boom',
      'thread-stream',
      'fast-redact',
      'quick-format-unescaped',
      'atomic-sleep',
      'on-exit-leak-free',
      'safe-stable-stringify',
      'prom-client',
      'tdigest',
      'bintrees',
    ].includes(mod)
  )
    return 'logging & metrics (pino, prom-client)';
  if (
    mod.startsWith('@nestjs/') ||
    [
      'express',
      'router',
      'body-parser',
      'reflect-metadata',
      'rxjs',
      'class-validator',
      'class-transformer',
      'path-to-regexp',
      'send',
      'serve-static',
      'finalhandler',
    ].includes(mod)
  )
    return 'Nest / express';
  if (mod.startsWith('node:')) return 'Node core (http, net, streams, timers…)';
  return 'other packages';
}

/**
 * `window` ([startUs, endUs] on CLOCK_MONOTONIC, which V8 stamps samples with on Linux) keeps only
 * the samples of the measured run: start-up (module loading) and shutdown are left out.
 */
export function summarizeProfile(file, { top = 20, window, windows } = {}) {
  const inWindow = windows
    ? (t) => windows.some((w) => t >= w[0] && t <= w[1])
    : window
      ? (t) => t >= window[0] && t <= window[1]
      : () => true;
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const { samples, timeDeltas } = prof;
  const avg = samples.length ? (prof.endTime - prof.startTime) / samples.length : 0;
  let ts = prof.startTime;
  let kept = 0;
  for (let i = 0; i < samples.length; i++) {
    ts += timeDeltas[i] ?? 0;
    if (!inWindow(ts)) continue;
    kept++;
    const dt = timeDeltas[i + 1] ?? avg;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + Math.max(0, dt));
  }
  if ((window || windows) && kept < 10)
    throw new Error(
      `no profile samples inside the measured window (profile ${prof.startTime}–${prof.endTime} µs, window ${JSON.stringify(windows ?? window)} µs)`,
    );
  const mods = new Map();
  const groups = new Map();
  const fns = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const node = byId.get(id);
    const mod = moduleOf(node.callFrame);
    if (mod === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    mods.set(mod, (mods.get(mod) ?? 0) + us);
    const g = groupOf(mod);
    groups.set(g, (groups.get(g) ?? 0) + us);
    const cf = node.callFrame;
    const where = cf.url
      ? `${cf.url
          .replace(/^file:\/\//, '')
          .replace(`${ROOT}/`, '')
          .replace(/^.*\/node_modules\//, '')}:${cf.lineNumber + 1}`
      : '';
    const key = `${cf.functionName || '(anonymous)'}|${mod}|${where}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const pct = (us) => +((us / total) * 100).toFixed(1);
  const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return {
    file,
    sampledMs: +((total + idle) / 1000).toFixed(0),
    busyMs: +(total / 1000).toFixed(0),
    idleMs: +(idle / 1000).toFixed(0),
    groups: sorted(groups).map(([name, us]) => ({ name, ms: +(us / 1000).toFixed(1), percent: pct(us) })),
    modules: sorted(mods)
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: +(us / 1000).toFixed(1), percent: pct(us) })),
    functions: sorted(fns)
      .slice(0, top)
      .map(([key, us]) => {
        const [fn, mod, where] = key.split('|');
        return { function: fn, module: mod, where, ms: +(us / 1000).toFixed(1), percent: pct(us) };
      }),
  };
}
