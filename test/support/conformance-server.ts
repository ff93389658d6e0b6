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

/** A 1×1 PNG and an empty WAV, small valid media for the content scenarios. */
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=='
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA='
const NO_ARGS = { type: 'object', properties: {} } as const
const text = (value: string) => ({ type: 'text' as const, text: value })
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const TOOLS = [
  { name: 'test_simple_text', inputSchema: NO_ARGS },
  { name: 'test_image_content', inputSchema: NO_ARGS },
  { name: 'test_audio_content', inputSchema: NO_ARGS },
  { name: 'test_embedded_resource', inputSchema: NO_ARGS },
  { name: 'test_multiple_content_types', inputSchema: NO_ARGS },
  { name: 'test_tool_with_logging', inputSchema: NO_ARGS },
  { name: 'test_tool_with_progress', inputSchema: NO_ARGS },
  { name: 'test_error_handling', inputSchema: NO_ARGS },
  { name: 'test_reconnection', inputSchema: NO_ARGS },
  {
    name: 'test_sampling',
    inputSchema: { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
  },
  {
    name: 'test_elicitation',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  },
  { name: 'test_elicitation_sep1034_defaults', inputSchema: NO_ARGS },
  { name: 'test_elicitation_sep1330_enums', inputSchema: NO_ARGS },
  {
    name: 'json_schema_2020_12_tool',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } },
      },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
  },
].map((tool) => ({ ...tool, description: `conformance fixture ${tool.name}` }))

const ELICIT_DEFAULTS = {
  type: 'object',
  properties: {
    name: { type: 'string', default: 'John Doe' },
    age: { type: 'integer', default: 30 },
    score: { type: 'number', default: 95.5 },
    status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active' },
    verified: { type: 'boolean', default: true },
  },
}
const CHOICES = ['option1', 'option2', 'option3']
const TITLED = [1, 2, 3].map((n) => ({ const: `value${n}`, title: `Choice ${n}` }))
const ELICIT_ENUMS = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', enum: CHOICES },
    titledSingle: { type: 'string', oneOf: TITLED },
    legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['One', 'Two', 'Three'] },
    untitledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { type: 'string', enum: CHOICES } },
    titledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { anyOf: TITLED } },
  },
}

const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', mimeType: 'text/plain' },
  { uri: 'test://static-binary', name: 'static-binary', mimeType: 'image/png' },
  { uri: 'test://watched-resource', name: 'watched-resource', mimeType: 'text/plain' },
]

const PROMPTS = [
  { name: 'test_simple_prompt' },
  {
    name: 'test_prompt_with_arguments',
    arguments: [
      { name: 'arg1', required: true },
      { name: 'arg2', required: true },
    ],
  },
  { name: 'test_prompt_with_embedded_resource', arguments: [{ name: 'resourceUri', required: true }] },
  { name: 'test_prompt_with_image' },
].map((prompt) => ({ ...prompt, description: `conformance fixture ${prompt.name}` }))

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
      case 'test_simple_text':
        return { content: [text('This is a simple text response for testing.')] }
      case 'test_image_content':
        return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }
      case 'test_audio_content':
        return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }
      case 'test_embedded_resource':
        return {
          content: [
            {
              type: 'resource',
              resource: { uri: 'test://embedded', mimeType: 'text/plain', text: 'embedded' },
            },
          ],
        }
      case 'test_multiple_content_types':
        return {
          content: [
            text('mixed'),
            { type: 'image', data: PNG, mimeType: 'image/png' },
            {
              type: 'resource',
              resource: { uri: 'test://mixed', mimeType: 'application/json', text: '{"n":1}' },
            },
          ],
        }
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
      case 'test_error_handling':
        return { isError: true, content: [text('This tool intentionally returns an error for testing')] }
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
      case 'json_schema_2020_12_tool':
        return { content: [text(JSON.stringify(args))] }
      default:
        throw new McpError(-32602, `unknown tool ${request.params.name}`)
    }
  })

  server.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: RESOURCES }))
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: [
      { uriTemplate: 'test://template/{id}/data', name: 'template', mimeType: 'application/json' },
    ],
  }))
  server.setRequestHandler(ReadResourceRequestSchema, (request) => {
    const { uri } = request.params
    const template = /^test:\/\/template\/([^/]+)\/data$/.exec(uri)
    if (template) {
      const id = template[1]
      return {
        contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id, data: `id ${id}` }) }],
      }
    }
    if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: PNG }] }
    if (RESOURCES.some((resource) => resource.uri === uri))
      return { contents: [{ uri, mimeType: 'text/plain', text: `content of ${uri}` }] }
    throw new McpError(-32002, 'Resource not found', { uri })
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
    const args = request.params.arguments ?? {}
    switch (request.params.name) {
      case 'test_simple_prompt':
        return { messages: [{ role: 'user', content: text('This is a simple prompt for testing.') }] }
      case 'test_prompt_with_arguments':
        return {
          messages: [{ role: 'user', content: text(`arg1='${args.arg1}', arg2='${args.arg2}'`) }],
        }
      case 'test_prompt_with_embedded_resource':
        return {
          messages: [
            {
              role: 'user',
              content: {
                type: 'resource',
                resource: { uri: String(args.resourceUri), mimeType: 'text/plain', text: 'embedded' },
              },
            },
            { role: 'user', content: text('Please read the resource above.') },
          ],
        }
      case 'test_prompt_with_image':
        return {
          messages: [
            { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
            { role: 'user', content: text('Please describe the image above.') },
          ],
        }
      default:
        throw new McpError(-32602, `unknown prompt ${request.params.name}`)
    }
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
