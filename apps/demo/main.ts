/**
 * The demo processes of the local stack (`npm start`): demo upstream IdPs, the demo app and the
 * demo services, in one Node process, configured by the JSON in `DEMO_CONFIG` (written by
 * scripts/dev-stack.mjs). Not for production: passwords of demo users are in that JSON.
 */
import { startDemoApp, type DemoAppOptions } from './src/demo-app';
import { startDemoIdp, type DemoIdpOptions } from './src/demo-idp';
import { startDemoService, type DemoServiceOptions } from './src/demo-service';

interface DemoConfig {
  idps?: DemoIdpOptions[];
  services?: DemoServiceOptions[];
  app?: DemoAppOptions;
}

async function main(): Promise<void> {
  const raw = process.env.DEMO_CONFIG;
  if (!raw) {
    process.stderr.write('config error: DEMO_CONFIG is required (JSON written by scripts/dev-stack.mjs)\n');
    process.exit(1);
  }
  let config: DemoConfig;
  try {
    config = JSON.parse(raw) as DemoConfig;
  } catch {
    process.stderr.write('config error: DEMO_CONFIG is not valid JSON\n');
    process.exit(1);
  }
  const running: { close(): Promise<void> }[] = [];
  try {
    for (const idp of config.idps ?? []) running.push(await startDemoIdp(idp));
    for (const service of config.services ?? []) running.push(await startDemoService(service));
    if (config.app) running.push(await startDemoApp(config.app));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { port?: number };
    process.stderr.write(
      e.code === 'EADDRINUSE'
        ? `startup error: port ${e.port} is already in use\n`
        : `startup error: ${e.message}\n`,
    );
    process.exit(1);
  }
  process.stdout.write('demo ready\n');
  const stop = () => {
    void Promise.all(running.map((r) => r.close())).then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

void main();
