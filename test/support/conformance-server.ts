/**
 * An MCP server built on the MCP SDK with the fixtures the conformance suite's `server` scenarios call
 * (tools, resources, prompts, logging, completion by the names the scenarios use). Run as a process:
 * `node conformance-server.ts stdio` serves one client on stdin/stdout; `node conformance-server.ts http`
 * serves Streamable HTTP with sessions and resumable streams on a random loopback port and prints
 * `listening <url>` on stdout.
 */
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  GetPromptRequestSchema,
  type JSONRPCMessage,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js'
import {
  ELICIT_DEFAULTS,
  ELICIT_ENUMS,
  PROMPTS,
  pause,
  plainToolResult,
  promptResult,
  RESOURCES,
  resourceContents,
  TEMPLATES,
  TOOLS,
  text,
} from './conformance-fixtures.ts'

function buildServer(): Server {
  const server = new Server(
    { name: 'gatehouse-conformance-fixture', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
    },
  )
  const log = (data: string) =>
    server.sendLoggingMessage({ level: 'info', logger: 'fixture', data }).catch(() => undefined)

  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: TOOLS }))
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const args = (request.params.arguments ?? {}) as Record<string, unknown>
    const elicit = async (message: string, requestedSchema: object) => {
      const answer = await extra.sendRequest(
        { method: 'elicitation/create', params: { mode: 'form', message, requestedSchema } as never },
        ElicitResultSchema,
      )
      return { content: [text(`action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`)] }
    }
    switch (request.params.name) {
      case 'test_tool_with_logging':
        for (const step of ['started', 'working', 'done']) {
          await extra.sendNotification({
            method: 'notifications/message',
            params: { level: 'info', data: step },
          })
          await pause(20)
        }
        return { content: [text('logged')] }
      case 'test_tool_with_progress': {
        const progressToken = request.params._meta?.progressToken ?? 0
        for (const progress of [0, 50, 100]) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress, total: 100 },
          })
          await pause(20)
        }
        return { content: [text(String(progressToken))] }
      }
      case 'test_reconnection':
        extra.closeSSEStream?.()
        await pause(100)
        return { content: [text('answered after the stream was closed')] }
      case 'test_sampling': {
        const answer = await extra.sendRequest(
          {
            method: 'sampling/createMessage',
            params: { messages: [{ role: 'user', content: text(String(args.prompt)) }], maxTokens: 100 },
          },
          CreateMessageResultSchema,
        )
        const content = answer.content as { text?: string }
        return { content: [text(`LLM response: ${content.text ?? ''}`)] }
      }
      case 'test_elicitation':
        return elicit(String(args.message), {
          type: 'object',
          properties: { response: { type: 'string' } },
          required: ['response'],
        })
      case 'test_elicitation_sep1034_defaults':
        return elicit('defaults', ELICIT_DEFAULTS)
      case 'test_elicitation_sep1330_enums':
        return elicit('enums', ELICIT_ENUMS)
      default: {
        const result = plainToolResult(request.params.name, args)
        if (result === undefined) throw new McpError(-32602, `unknown tool ${request.params.name}`)
        return result
      }
    }
  })

  server.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: RESOURCES }))
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: TEMPLATES,
  }))
  server.setRequestHandler(ReadResourceRequestSchema, (request) => {
    const { uri } = request.params
    const contents = resourceContents(uri)
    if (contents === undefined) throw new McpError(-32002, 'Resource not found', { uri })
    return contents
  })
  server.setRequestHandler(SubscribeRequestSchema, (request) => {
    void log(`subscribed ${request.params.uri}`)
    return {}
  })
  server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    void log(`unsubscribed ${request.params.uri}`)
    return {}
  })

  server.setRequestHandler(ListPromptsRequestSchema, () => ({ prompts: PROMPTS }))
  server.setRequestHandler(GetPromptRequestSchema, (request) => {
    const result = promptResult(request.params.name, request.params.arguments ?? {})
    if (result === undefined) throw new McpError(-32602, `unknown prompt ${request.params.name}`)
    return result
  })

  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    void log(`level ${request.params.level}`)
    return {}
  })
  server.setRequestHandler(CompleteRequestSchema, () => ({
    completion: { values: [], total: 0, hasMore: false },
  }))
  return server
}

/** Events kept in memory so a cut stream can be resumed with `Last-Event-ID`. */
function memoryEventStore(): EventStore {
  const events: { id: string; stream: string; message: JSONRPCMessage }[] = []
  return {
    async storeEvent(stream, message) {
      const id = `${stream}_${events.length}`
      events.push({ id, stream, message })
      return id
    },
    async replayEventsAfter(lastEventId, { send }) {
      const index = events.findIndex((event) => event.id === lastEventId)
      const stream = events[index]?.stream ?? ''
      for (const event of events.slice(index + 1))
        if (event.stream === stream) await send(event.id, event.message)
      return stream
    },
  }
}

async function serveHttp(): Promise<void> {
  const sessions = new Map<string, StreamableHTTPServerTransport>()
  const http = createServer(async (req, res) => {
    const id = req.headers['mcp-session-id']
    let transport = typeof id === 'string' ? sessions.get(id) : undefined
    if (!transport && id === undefined && req.method === 'POST') {
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        eventStore: memoryEventStore(),
        retryInterval: 500,
        enableDnsRebindingProtection: true,
        allowedHosts: [
          `127.0.0.1:${(http.address() as AddressInfo).port}`,
          `localhost:${(http.address() as AddressInfo).port}`,
        ],
        onsessioninitialized: (session) => void sessions.set(session, created),
        onsessionclosed: (session) => void sessions.delete(session),
      })
      await buildServer().connect(created)
      transport = created
    }
    if (!transport) {
      res
        .writeHead(id === undefined ? 400 : 404, { 'content-type': 'application/json' })
        .end(
          JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'no such session' } }),
        )
      return
    }
    await transport.handleRequest(req, res)
  })
  http.listen(0, '127.0.0.1', () => {
    process.stdout.write(`listening http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp\n`)
  })
}

if (process.argv[2] === 'http') await serveHttp()
else await buildServer().connect(new StdioServerTransport())
