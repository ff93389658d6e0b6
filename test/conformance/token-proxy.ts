import { once } from 'node:events'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * The conformance suite cannot send a token: this loopback proxy forwards every request to `target` with
 * `authorization: Bearer <token>` added, streaming both ways. The suite's own authority in `Host` and
 * `Origin` becomes the target's, so the gateway sees what a client of it would send; any other value (the
 * suite's DNS-rebinding probe) passes unchanged.
 */
export async function startTokenProxy(
  target: string,
  token: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const to = new URL(target)
  let own = ''
  const server = createServer((req, res) => {
    const headers = { ...req.headers, authorization: `Bearer ${token}` }
    if (headers.host === own) headers.host = to.host
    if (headers.origin === `http://${own}`) headers.origin = to.origin
    const upstream = request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    res.on('close', () => upstream.destroy())
    req.pipe(upstream)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  own = `127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: `http://${own}${to.pathname}`,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}
