/**
 * SoftHSM2 tokens for tests (Debian packages softhsm2 and opensc): each test file gets its own
 * token directory and configuration, so nothing touches the machine's default token store.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_MODULE = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
].find((p) => existsSync(p));

export function softHsmAvailable(): boolean {
  if (!SOFTHSM_MODULE) return false;
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface SoftHsmToken {
  module: string;
  label: string;
  pin: string;
  /** SOFTHSM2_CONF for every process that opens the token. */
  env: { SOFTHSM2_CONF: string };
  remove(): void;
}

export function createSoftHsmToken(label: string, pin = '1234-test-pin'): SoftHsmToken {
  if (!SOFTHSM_MODULE || !softHsmAvailable())
    throw new Error('SoftHSM2 is not installed: apt-get install -y softhsm2 opensc');
  const dir = mkdtempSync(join(tmpdir(), 'meridian-softhsm-'));
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  const env = { SOFTHSM2_CONF: conf };
  execFileSync(
    'softhsm2-util',
    ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', `so-${pin}`],
    { env: { ...process.env, ...env }, stdio: 'ignore' },
  );
  return {
    module: SOFTHSM_MODULE,
    label,
    pin,
    env,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
