/**
 * Real Chromium for page tests: the Debian package's binary (`which chromium`, or
 * `CHROMIUM_PATH`), driven by playwright-core. Never a downloaded browser.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT } from './broker';

/** Where page tests save their screenshots (committed: the README shows the main ones). */
export const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR ?? join(REPO_ROOT, 'docs', 'screenshots');

export function chromiumPath(): string {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) return fromEnv;
  try {
    const found = execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim();
    if (found) return found;
  } catch {
    // fall through
  }
  throw new Error(
    'Chromium not found: install the Debian package (apt-get install -y chromium) or set CHROMIUM_PATH',
  );
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    // Root in CI containers has no user namespace sandbox.
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
}

/** A fresh context (own cookies) with a preferred language. */
export async function newContext(browser: Browser, locale = 'en-US'): Promise<BrowserContext> {
  return browser.newContext({ locale, viewport: { width: 1100, height: 800 } });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  if (!existsSync(SCREENSHOT_DIR)) mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Collects CSP violations and page errors: a page test asserts both stay empty. */
export function watchPage(page: Page): { cspViolations: string[]; errors: string[] } {
  const seen = { cspViolations: [] as string[], errors: [] as string[] };
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) seen.cspViolations.push(msg.text());
  });
  page.on('pageerror', (err) => seen.errors.push(err.message));
  return seen;
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: number;
}

/**
 * Runs axe-core (WCAG 2.1 A/AA rules) in the page. Injected through the DevTools protocol, so
 * it works under the page's strict CSP.
 */
export async function accessibilityViolations(page: Page): Promise<AxeViolation[]> {
  const source = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  await page.evaluate(source);
  return page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<any> } })
      .axe;
    const result = await axe.run((globalThis as unknown as { document: unknown }).document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return result.violations.map((v: any) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.length,
    }));
  });
}
