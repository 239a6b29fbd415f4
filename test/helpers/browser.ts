// Debian's Chromium for the real-browser tests, launched as this machine needs
// (no sandbox as root, no background networking) with test hosts on loopback.
import { existsSync } from 'node:fs';
import t from 'tap';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
export const noChromium = `skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`;

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP *.localhost 127.0.0.1, MAP *.test 127.0.0.1',
    ],
  });
}

/**
 * One Chromium for the tests of a file, launched before them and closed after;
 * where there is no Chromium the file passes as skipped. body declares the tests.
 */
export function withChromium(body: (browser: () => Browser) => void): void {
  if (!hasChromium) {
    t.pass(noChromium, { skip: true });
    return;
  }
  let browser: Browser | undefined;
  t.before(async () => {
    browser = await launchChromium();
  });
  t.teardown(() => browser?.close());
  body(() => browser!);
}
