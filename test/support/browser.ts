import { existsSync } from 'node:fs'
import { type Browser, type BrowserContext, chromium } from 'playwright-core'

const SYSTEM_CHROMIUMS = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']

/** An error whose report is its one-line message, without a stack: the reader has a setup step to do. */
class SetupError extends Error {
  override stack = `Error: ${this.message}`
}

/**
 * The Chromium the browser tests drive: PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH, then the usual system
 * locations, then the one `playwright-core install chromium` downloads.
 */
export function findChromium(
  env: NodeJS.ProcessEnv = process.env,
  candidates: readonly string[] = [...SYSTEM_CHROMIUMS, chromium.executablePath()],
): string {
  const configured = env.PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH
  if (configured) {
    if (existsSync(configured)) return configured
    throw new SetupError(
      `PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH is ${configured}, which does not exist: point it at a Chromium or Chrome executable`,
    )
  }
  const found = candidates.find((path) => existsSync(path))
  if (found) return found
  throw new SetupError(
    `The browser tests need Chromium: install it (Debian/Ubuntu: apt-get install chromium; elsewhere: npx playwright-core install chromium) or set PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH to a Chromium or Chrome executable`,
  )
}

/** A Chromium (findChromium), headless, with nothing phoning home; one per test file. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: findChromium(),
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
