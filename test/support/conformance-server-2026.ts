/**
 * The conformance fixtures (conformance-fixtures.ts) served by the MCP SDK v2's `createMcpHandler`, which
 * speaks the 2026-07-28 revision (and 2025 requests without sessions). Run as a process, it serves
 * Streamable HTTP on a random loopback port and prints `listening <url>`: the direct baseline for the
 * suite's 2026-07-28 scenarios and the HTTP upstream they reach through the gateway.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import {
  createMcpHandler,
  hostHeaderValidationResponse,
  localhostAllowedHostnames,
  ProtocolError,
  Server,
} from '@modelcontextprotocol/server'
import {
  PROMPTS,
  plainToolResult,
  promptResult,
  RESOURCES,
  resourceContents,
  TEMPLATES,
  TOOLS,
} from './conformance-fixtures.ts'

const INVALID_PARAMS = -32602

function buildServer(): Server {
  const server = new Server(
    { name: 'gatehouse-conformance-fixture', version: '1.0.0' },
    { capabilities: { tools: {}, resources: {}, prompts: {}, completions: {} } },
  )
  // Tools that need the client mid-call (sampling, elicitation, logging, progress) are the 2025 fixture's.
  const tools = TOOLS.filter((tool) => plainToolResult(tool.name, {}) !== undefined)
  server.setRequestHandler('tools/list', () => ({ tools }) as never)
  server.setRequestHandler('tools/call', (request) => {
    const result = plainToolResult(request.params.name, request.params.arguments ?? {})
    if (result === undefined) throw new ProtocolError(INVALID_PARAMS, `unknown tool ${request.params.name}`)
    return result as never
  })
  server.setRequestHandler('resources/list', () => ({ resources: RESOURCES }))
  server.setRequestHandler('resources/templates/list', () => ({ resourceTemplates: TEMPLATES }))
  server.setRequestHandler('resources/read', (request) => {
    const { uri } = request.params
    const contents = resourceContents(uri)
    if (contents === undefined) throw new ProtocolError(INVALID_PARAMS, 'Resource not found', { uri })
    return contents as never
  })
  server.setRequestHandler('prompts/list', () => ({ prompts: PROMPTS }))
  server.setRequestHandler('prompts/get', (request) => {
    const result = promptResult(request.params.name, request.params.arguments ?? {})
    if (result === undefined) throw new ProtocolError(INVALID_PARAMS, `unknown prompt ${request.params.name}`)
    return result as never
  })
  server.setRequestHandler('completion/complete', () => ({
    completion: { values: [], total: 0, hasMore: false },
  }))
  return server
}

const handler = createMcpHandler(buildServer)
const http = createServer(async (req, res) => {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers))
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value])
      headers.append(name, one)
  const request = new Request(`http://${req.headers.host}${req.url}`, {
    method: req.method,
    headers,
    body: req.method === 'GET' || req.method === 'HEAD' ? undefined : Buffer.concat(chunks),
  })
  const response =
    hostHeaderValidationResponse(request, localhostAllowedHostnames()) ?? (await handler.fetch(request))
  res.writeHead(response.status, Object.fromEntries(response.headers))
  if (response.body) Readable.fromWeb(response.body as never).pipe(res)
  else res.end()
})
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp\n`)
})
