import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { startEmbeddedAuthorizationServer } from '../../src/cli/embedded_server.ts'
import { type GatewayFlags, loadGatewayConfig } from '../../src/gateway/config.ts'
import { createGatewayLogger, guardLogger } from '../../src/gateway/logger.ts'
import { type Gateway, startGateway } from '../../src/gateway/server.ts'
import { EVERYTHING_BIN, NODE } from './gateway-harness.ts'
import type { TestCertificates } from './test-ca.ts'

/** A local https server, signed by the test CA, answering the JSON documents it is given; counts hits per path. */
export async function startDocumentServer(certificates: TestCertificates) {
  const hits = new Map<string, number>()
  // A JSON document, or a function giving the raw answer (for broken documents).
  const documents = new Map<string, unknown | (() => { status: number; body: string })>()
  const server = createServer({ cert: certificates.cert, key: certificates.key }, (req, res) => {
    const path = req.url ?? '/'
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const document = documents.get(path)
    const answer =
      typeof document === 'function'
        ? (document as () => { status: number; body: string })()
        : document === undefined
          ? { status: 404, body: '' }
          : { status: 200, body: JSON.stringify(document) }
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    host,
    url: (path: string) => `https://${host}${path}`,
    hits,
    documents,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/**
 * `gatehouse serve` with the embedded authorization server, as `startServe` starts it, except that the
 * authorization server fetches client metadata documents from `documentHost` (loopback, past the SSRF guard)
 * trusting the test CA. The file's `authorization_server.cimd` block cannot carry these test-only options.
 */
export async function startEmbeddedGatewayTrustingDocuments(
  flags: GatewayFlags,
  documentHost: string,
  ca: string,
): Promise<Gateway> {
  const config = await loadGatewayConfig({ port: '0', command: [NODE, EVERYTHING_BIN], ...flags }, {})
  const settings = config.authorizationServer
  if (!settings) throw new Error('the gateway was expected to use the embedded authorization server')
  const logger = createGatewayLogger('silent')
  // Passed through untouched to createAuthorizationServer's `cimd` option, which knows these keys.
  const cimd = { ...settings.cimd, unsafeAllowHosts: [documentHost], ca }
  return startGateway(config, {
    logger,
    authorizationServer: (resource) =>
      startEmbeddedAuthorizationServer({ ...settings, cimd }, resource, {
        logger: guardLogger(logger),
        proxy: config.trustProxy,
        everyone: resource.scopes,
      }),
  })
}
