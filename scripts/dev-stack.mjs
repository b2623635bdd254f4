#!/usr/bin/env node
// `npm start`: the local multi-region stack on one embedded PostgreSQL (one database per role:
// control, eu, us), two regional brokers on loopback. Data and the generated development
// secrets stay under .meridian/ between runs; `npm run reset` wipes them.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { startEmbeddedPostgres } = require(join(root, 'dist/libs/persistence/src/embedded-postgres.js'));

const dataDir = process.env.MERIDIAN_DATA_DIR ?? join(root, '.meridian');
const REGIONS = [
  { region: 'eu', port: Number(process.env.MERIDIAN_EU_PORT ?? 4000), jurisdiction: 'EU' },
  { region: 'us', port: Number(process.env.MERIDIAN_US_PORT ?? 4001), jurisdiction: 'US' },
];

function portFree(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function devSecrets() {
  const file = join(dataDir, 'dev-secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  mkdirSync(dataDir, { recursive: true });
  const secrets = {
    kek: randomBytes(32).toString('base64'),
    adminClientId: 'meridian-admin',
    adminClientSecret: randomBytes(32).toString('base64url'),
  };
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}

async function main() {
  for (const r of REGIONS) {
    if (!(await portFree(r.port))) {
      console.error(
        `port ${r.port} (region ${r.region}) is already in use: stop what uses it or set MERIDIAN_${r.region.toUpperCase()}_PORT`,
      );
      process.exit(1);
    }
  }
  const secrets = devSecrets();
  console.log('starting the embedded PostgreSQL under .meridian/pg …');
  const pg = await startEmbeddedPostgres({ dataDir: join(dataDir, 'pg') });
  const controlUrl = await pg.ensureDatabase('meridian_control');
  const children = [];
  let stopping = false;

  const stop = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping …');
    await Promise.all(
      children.map(
        (c) =>
          new Promise((resolve) => {
            if (c.exitCode !== null) return resolve();
            c.once('exit', resolve);
            c.kill('SIGTERM');
          }),
      ),
    );
    await pg.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  for (const r of REGIONS) {
    const regionUrl = await pg.ensureDatabase(`meridian_${r.region}`);
    const issuer = `http://127.0.0.1:${r.port}`;
    const child = spawn(process.execPath, [join(root, 'dist/apps/broker/main.js')], {
      env: {
        ...process.env,
        MERIDIAN_REGION: r.region,
        MERIDIAN_ISSUER: issuer,
        MERIDIAN_JURISDICTION: r.jurisdiction,
        PORT: String(r.port),
        HOST: '127.0.0.1',
        CONTROL_DATABASE_URL: controlUrl,
        REGION_DATABASE_URL: regionUrl,
        MERIDIAN_KEK: secrets.kek,
        MERIDIAN_ADMIN_CLIENT_ID: secrets.adminClientId,
        MERIDIAN_ADMIN_CLIENT_SECRET: secrets.adminClientSecret,
        LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('exit', (code) => {
      if (!stopping) {
        console.error(`broker ${r.region} exited (${code}); stopping the stack`);
        void stop(1);
      }
    });
    children.push(child);
    r.issuer = issuer;
  }

  for (const r of REGIONS) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        if ((await fetch(`${r.issuer}/readyz`)).ok) break;
      } catch {
        // not yet listening
      }
      if (Date.now() > deadline) {
        console.error(`broker ${r.region} did not become ready`);
        return stop(1);
      }
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  console.log(`
Meridian is running (development mode, embedded PostgreSQL under .meridian/).

  region  issuer                     discovery
${REGIONS.map((r) => `  ${r.region.padEnd(6)}  ${r.issuer.padEnd(25)}  ${r.issuer}/.well-known/openid-configuration`).join('\n')}

  trust bundle (all regions):  ${REGIONS[0].issuer}/.well-known/meridian/trust-bundle
  admin API docs:              ${REGIONS[0].issuer}/admin/openapi.json

  admin client (both regions)
    client_id:     ${secrets.adminClientId}
    client_secret: ${secrets.adminClientSecret}

  try it:
    curl -s -u '${secrets.adminClientId}:${secrets.adminClientSecret}' \\
      -d grant_type=client_credentials -d resource=urn:meridian:admin -d scope=meridian:admin \\
      ${REGIONS[0].issuer}/token

Ctrl-C stops everything.`);
}

main().catch((err) => {
  console.error(`npm start failed: ${err.message}`);
  process.exit(1);
});
