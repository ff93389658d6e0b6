import { type Browser, type BrowserContext, chromium } from 'playwright-core'

/** Debian's Chromium, headless, with nothing phoning home; one per test file. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

/** A fresh context (no cookies, no cache) for one test, closed afterwards whatever happens. */
export async function withContext<T>(
  browser: Browser,
  run: (context: BrowserContext) => Promise<T>,
): Promise<T> {
  const context = await browser.newContext()
  try {
    return await run(context)
  } finally {
    await context.close()
  }
}
