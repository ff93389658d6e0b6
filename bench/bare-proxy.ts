/**
 * The baselines the gateway's proxied path is judged against: reverse proxies with nothing of the gateway's
 * checks, one on Node's HTTP client with a keep-alive agent and one on an undici `Pool`. Both relay headers
 * (less the hop-by-hop ones) and pipe bodies both ways, and end the upstream request of a client that went
 * away (an SSE stream would stay open upstream otherwise): the least a reverse proxy must do.
 */
import { Agent, createServer, type IncomingHttpHeaders, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'

export interface BareProxy {
  server: Server
  port: number
  close(): Promise<void>
}

/** The names undici refuses in a request, and that no proxy passes on anyway. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'expect', 'host'])

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const name in headers) if (!HOP_BY_HOP.has(name)) out[name] = headers[name]
  return out
}

/** `http.request` through a keep-alive agent; the client's request and the upstream's answer piped. */
export function startNodeProxy(upstream: URL): Promise<BareProxy> {
  const agent = new Agent({ keepAlive: true })
  return listen(
    createServer((req, res) => {
      const forwarded = request(
        {
          agent,
          hostname: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: endToEnd(req.headers),
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers))
          answer.pipe(res)
        },
      )
      forwarded.on('error', () => res.destroy())
      res.on('close', () => {
        if (!res.writableFinished) forwarded.destroy()
      })
      req.pipe(forwarded)
    }),
    () => agent.destroy(),
  )
}

/** undici's `Pool.request` with the client's request as the body stream. */
export function startUndiciProxy(upstream: URL): Promise<BareProxy> {
  const pool = new Pool(upstream.origin)
  return listen(
    createServer((req, res) => {
      const method = req.method ?? 'GET'
      pool
        .request({
          method,
          path: req.url ?? '/',
          headers: endToEnd(req.headers),
          body: method === 'GET' || method === 'HEAD' ? null : req,
        })
        .then(
          (answer) => {
            res.writeHead(answer.statusCode, endToEnd(answer.headers))
            answer.body.on('error', () => res.destroy())
            res.on('close', () => {
              if (!res.writableFinished) answer.body.destroy()
            })
            answer.body.pipe(res)
          },
          () => res.destroy(),
        )
    }),
    () => pool.close(),
  )
}

async function listen(server: Server, stop: () => unknown): Promise<BareProxy> {
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    server,
    port: (server.address() as AddressInfo).port,
    async close() {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await stop()
    },
  }
}
