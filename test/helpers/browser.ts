/**
 * Debian's Chromium for the browser tests, driven by playwright-core (never a downloaded browser).
 * A missing browser FAILS the test, never skips it: CI installs `chromium` with apt.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** The Chromium binary: `CHROMIUM_PATH`, else Debian's. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

/**
 * Throw (never skip) when the Chromium binary is missing: call it first in `beforeAll`, before
 * any server is started.
 *
 * @example
 * ```ts
 * beforeAll(async () => { requireChromium(); ... });
 * ```
 */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: install it with \`apt-get install chromium\` (the browser tests never download a browser and never skip)`);
  }
}

/**
 * Launch headless Chromium with quiet defaults plus `extraArgs`; throws when the binary is missing.
 *
 * @example
 * ```ts
 * const browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash}`]);
 * ```
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  requireChromium();
  return chromium.launch({ executablePath: CHROMIUM, args: [...LAUNCH_ARGS, ...extraArgs] });
}
