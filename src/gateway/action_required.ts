import { randomUUID } from 'node:crypto'
import type { UserActionRequired } from './credentials/index.ts'
import { sendJson } from './http.ts'
import { isRequest, type JsonRpcId, type JsonRpcMessage, RPC } from './jsonrpc.ts'
import type { McpExchange } from './upstream.ts'

/** MCP 2025-11-25: the request needs the user to complete a URL-mode elicitation first. */
const URL_ELICITATION_REQUIRED = -32_042
const CLIENT_CAPABILITIES_META = 'io.modelcontextprotocol/clientCapabilities'

/** Whether client capabilities declare URL-mode elicitation (`elicitation.url`, an object). */
function urlElicitationIn(capabilities: unknown): boolean {
  const elicitation = (capabilities as { elicitation?: { url?: unknown } } | undefined)?.elicitation
  return typeof elicitation?.url === 'object' && elicitation.url !== null
}

/** An `initialize` of the body declares URL-mode elicitation (remembered for its session). */
export const initializeDeclaresUrlElicitation = (messages: readonly JsonRpcMessage[]): boolean =>
  messages.some((m) => m.method === 'initialize' && urlElicitationIn(m.params?.capabilities))

/** A request of the body declares it in its `_meta` (the stateless era sends the capabilities each time). */
const metaDeclaresUrlElicitation = (messages: readonly JsonRpcMessage[]): boolean =>
  messages.some((m) =>
    urlElicitationIn((m.params?._meta as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META]),
  )

/**
 * Answers each request of the body with what the user must do, instead of the upstream: to a client that
 * declared URL-mode elicitation (`sessionDeclared`, or in the request), a URLElicitationRequiredError (-32042)
 * carrying the URL; to others, a `tools/call` gets a tool result with `isError` whose text has the URL (the
 * model can show it), and any other request an error with the URL in its message and `data`.
 */
export function answerActionRequired(
  exchange: McpExchange,
  required: UserActionRequired,
  sessionDeclared: boolean,
): void {
  const elicit = sessionDeclared || metaDeclaresUrlElicitation(exchange.messages)
  const { message, url } = required
  const answers = exchange.messages.filter(isRequest).map((m): JsonRpcMessage => {
    const id = m.id as JsonRpcId
    if (elicit) {
      const elicitations = [{ mode: 'url', elicitationId: randomUUID(), url, message }]
      return {
        jsonrpc: '2.0',
        id,
        error: { code: URL_ELICITATION_REQUIRED, message, data: { elicitations } },
      }
    }
    if (m.method === 'tools/call')
      return { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: message }], isError: true } }
    return { jsonrpc: '2.0', id, error: { code: RPC.internalError, message, data: { url } } }
  })
  if (answers.length === 0) {
    exchange.res.writeHead(202, { 'content-length': 0 }).end()
    return
  }
  sendJson(exchange.res, 200, exchange.batch ? answers : answers[0])
}
