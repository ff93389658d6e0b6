export interface FetchJsonOptions {
  timeoutMs: number
  maxBytes: number
  init?: RequestInit
}

/** Why a fetch failed, in words an operator can act on. Thrown as a plain Error; callers wrap it. */
export class FetchFailure extends Error {
  override name = 'FetchFailure'
  /** The HTTP status, when the server answered at all. */
  readonly status: number | undefined

  constructor(message: string, options?: ErrorOptions & { status?: number }) {
    super(message, options)
    this.status = options?.status
  }
}

/** This machine's names, as URL hostnames: the one list of loopback addresses in Gatehouse. */
export const LOOPBACK_HOSTNAMES: readonly string[] = ['localhost', '127.0.0.1', '[::1]']
const LOOPBACK_HOSTS = new Set(LOOPBACK_HOSTNAMES)

/** A loopback hostname or listen address (`::1` as given to `listen`, `[::1]` as in a URL). */
export const isLoopback = (host: string): boolean =>
  LOOPBACK_HOSTS.has(host) || LOOPBACK_HOSTS.has(`[${host}]`)

/**
 * The address a request is counted against (rate limits, sign-in, logs): behind a trusted proxy (`trustProxy`)
 * the last `X-Forwarded-For` entry, the one that proxy appended, as the entries before it are whatever the
 * client sent; otherwise the socket's peer. (Koa's `ctx.ip` takes the first entry: never use it.) The one rule
 * for the gateway and the authorization server.
 */
export function clientAddress(
  req: {
    headers: Record<string, string | string[] | undefined>
    socket: { remoteAddress?: string | undefined }
  },
  trustProxy: boolean,
): string {
  const forwarded = trustProxy
    ? String(req.headers['x-forwarded-for'] ?? '')
        .split(',')
        .at(-1)
        ?.trim()
    : undefined
  return forwarded || req.socket.remoteAddress || 'unknown'
}

/** https everywhere; plain http only to this machine, for development and tests. */
export function assertSecureUrl(url: URL, what: string): void {
  if (url.protocol === 'https:') return
  if (url.protocol === 'http:' && isLoopback(url.hostname)) return
  throw new FetchFailure(`${what} ${url.href} must use https (plain http is allowed only on loopback)`)
}

/**
 * GET or POST a URL that must answer 200 with a JSON object. Redirects are refused (a metadata or key
 * endpoint that redirects elsewhere is not followed), bodies are capped, and the whole exchange times out.
 */
export async function fetchJson(url: URL, options: FetchJsonOptions): Promise<Record<string, unknown>> {
  let response: Response
  try {
    response = await fetch(url, {
      ...options.init,
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs),
      headers: { accept: 'application/json', ...options.init?.headers },
    })
  } catch (cause) {
    const reason =
      (cause as Error).name === 'TimeoutError'
        ? `no answer within ${options.timeoutMs} ms`
        : describeNetworkError(cause)
    throw new FetchFailure(reason, { cause })
  }
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel()
    throw new FetchFailure(
      `answered ${response.status} redirect to ${response.headers.get('location') ?? '?'}, which is not followed`,
    )
  }
  if (response.status !== 200) {
    await response.body?.cancel()
    throw new FetchFailure(`answered HTTP ${response.status}`, { status: response.status })
  }
  const text = await readCapped(response, options.maxBytes)
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new FetchFailure('answered with a body that is not JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new FetchFailure('answered with JSON that is not an object')
  }
  return body as Record<string, unknown>
}

/** A response body as text, refused past `maxBytes` (declared or read). */
export async function readCapped(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'))
  if (declared > maxBytes) {
    await response.body?.cancel()
    throw new FetchFailure(`answered with ${declared} bytes, over the ${maxBytes}-byte limit`)
  }
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength
    if (size > maxBytes) throw new FetchFailure(`answered with more than ${maxBytes} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** A failed `fetch`, in words an operator can act on. */
export function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause
  if (cause?.code === 'ECONNREFUSED')
    return 'connection refused (is the server running, and is the port right?)'
  if (cause?.code === 'ENOTFOUND') return 'host name not found (check the spelling and DNS)'
  if (cause?.code) return `${cause.code}${cause.message ? ` ${cause.message}` : ''}`
  return (error as Error).message
}
