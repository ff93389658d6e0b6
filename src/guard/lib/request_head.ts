/**
 * What the guard reads of a request: its method, its target and two header fields. Never the body, so the
 * body stream stays unread for whatever handles the request next.
 */
export interface RequestHead {
  method: string
  /** The request-target as received (`req.url`: path and query, or absolute-form), or an absolute URL. */
  url: string
  /**
   * Field values by lower-case name, as `IncomingHttpHeaders`; an array for a field sent more than once. Node's
   * own `req.headers` keeps only the first Authorization field: {@link headersFromRaw} keeps every one.
   */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>
}

/** A web `Request` or a {@link RequestHead}: every guard entry point takes either. */
export type GuardRequest = Request | RequestHead

/** The head of a web `Request`: the fields the guard reads, repeated ones already joined with ", ". */
export function headOf(request: GuardRequest): RequestHead {
  if (!(request instanceof Request)) return request
  const { headers } = request
  return {
    method: request.method,
    url: request.url,
    headers: {
      authorization: headers.get('authorization') ?? undefined,
      dpop: headers.get('dpop') ?? undefined,
    },
  }
}

/** One field's value, repeated fields joined with ", " as `Headers` does; `undefined` when absent. */
export function headerValue(head: RequestHead, name: 'authorization' | 'dpop'): string | undefined {
  const value = head.headers[name]
  return typeof value === 'string' || value === undefined ? value : value.join(', ')
}

/**
 * The two fields the guard reads, from Node's `rawHeaders` (`[name, value, name, value, …]`), each one kept
 * every time it was sent: `req.headers` silently drops a second Authorization field, which must be refused.
 */
export function headersFromRaw(rawHeaders: readonly string[]): RequestHead['headers'] {
  let authorization: string | string[] | undefined
  let dpop: string | string[] | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    // Length first: most fields are neither, and this skips lower-casing them.
    if (name.length === 13 && name.toLowerCase() === 'authorization')
      authorization = append(authorization, rawHeaders[i + 1] as string)
    else if (name.length === 4 && name.toLowerCase() === 'dpop')
      dpop = append(dpop, rawHeaders[i + 1] as string)
  }
  return { authorization, dpop }
}

function append(known: string | string[] | undefined, value: string): string | string[] {
  if (known === undefined) return value
  return typeof known === 'string' ? [known, value] : [...known, value]
}

/**
 * The path and query of a request-target or URL. Concatenated onto an origin, never resolved against one:
 * "//evil.example/x" stays a path. Absolute-form (sent to proxies) or "*" keeps only its path and query.
 */
export function pathOf(target: string): string {
  if (target.startsWith('/')) return target
  if (!URL.canParse(target)) return '/'
  const url = new URL(target)
  return `${url.pathname}${url.search}`
}

/** The path of `target` as URL parsing normalizes it (dot segments, percent-encoding), on `origin`. */
export function normalizedPath(origin: string, target: string): string {
  return new URL(`${origin}${pathOf(target)}`).pathname
}

/** Whether the query of `target` has a parameter `name`, percent-decoded as URL parsing decodes it. */
export function hasQueryParameter(target: string, name: string): boolean {
  const fragment = target.indexOf('#')
  const start = target.indexOf('?')
  if (start === -1 || (fragment !== -1 && fragment < start)) return false
  return new URLSearchParams(target.slice(start + 1, fragment === -1 ? undefined : fragment)).has(name)
}
