import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

/** What one path answers. */
export interface ScriptedReply {
  /** Default 200. */
  status?: number
  /** A string is sent as is (for broken JSON); anything else is serialized as JSON. */
  body?: unknown
  headers?: Record<string, string>
  /** Wait this long before answering: for timeouts and for overlapping requests. */
  delayMs?: number
}

/**
 * A loopback HTTP server whose answers the test sets per path and changes at will; unset paths answer 404.
 * It records every request path, so a test can count fetches and check their order.
 */
export interface ScriptedServer {
  /** `http://127.0.0.1:<port>` */
  origin: string
  route(path: string, reply: ScriptedReply): void
  /** Paths requested so far, in order, with their query. */
  readonly requests: readonly string[]
  hits(path: string): number
  close(): Promise<void>
}

export async function startScriptedServer(): Promise<ScriptedServer> {
  const routes = new Map<string, ScriptedReply>()
  const requests: string[] = []
  const server = createServer((req, res) => {
    const path = req.url ?? '/'
    requests.push(path)
    const reply = routes.get(path.split('?')[0] as string)
    if (!reply) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}')
      return
    }
    const answer = () => {
      const body = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body ?? {})
      // Declared unless the test streams it, so both size checks of a client can be reached.
      const length = reply.headers?.['transfer-encoding'] ? {} : { 'content-length': Buffer.byteLength(body) }
      res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', ...length, ...reply.headers })
      res.end(body)
    }
    if (reply.delayMs) setTimeout(answer, reply.delayMs).unref()
    else answer()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    origin: `http://127.0.0.1:${port}`,
    route: (path, reply) => routes.set(path, reply),
    requests,
    hits: (path) => requests.filter((p) => p.split('?')[0] === path).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A scripted server that publishes a JWKS at `/jwks`. */
export interface JwksServer extends ScriptedServer {
  /** `{origin}/jwks` */
  url: string
  /** Serves `{ keys }` with 200 from now on. */
  publish(keys: readonly object[]): void
  /** Serves anything else at `/jwks`: an error status, a broken body, a delay. */
  reply(reply: ScriptedReply): void
  /** How many times `/jwks` was requested. */
  readonly fetches: number
}

export async function startJwksServer(keys: readonly object[] = []): Promise<JwksServer> {
  const server = await startScriptedServer()
  const reply = (r: ScriptedReply) => server.route('/jwks', r)
  reply({ body: { keys } })
  return {
    ...server,
    url: `${server.origin}/jwks`,
    publish: (next) => reply({ body: { keys: next } }),
    reply,
    get fetches() {
      return server.hits('/jwks')
    },
  }
}

/** An origin on which nothing listens: the port was bound, then released. */
export async function closedOrigin(): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}
