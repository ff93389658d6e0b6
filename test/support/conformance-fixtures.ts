/**
 * The fixtures the conformance suite's `server` scenarios call by name (tools, resources, prompts), for
 * the SDK-built servers of test/conformance: their content, whatever SDK serves it.
 */
/** A 1×1 PNG and an empty WAV, small valid media for the content scenarios. */
export const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=='
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA='
const NO_ARGS = { type: 'object', properties: {} } as const
export const text = (value: string) => ({ type: 'text' as const, text: value })
export const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const TOOLS = [
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

export const ELICIT_DEFAULTS = {
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
export const ELICIT_ENUMS = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', enum: CHOICES },
    titledSingle: { type: 'string', oneOf: TITLED },
    legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['One', 'Two', 'Three'] },
    untitledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { type: 'string', enum: CHOICES } },
    titledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { anyOf: TITLED } },
  },
}

export const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', mimeType: 'text/plain' },
  { uri: 'test://static-binary', name: 'static-binary', mimeType: 'image/png' },
  { uri: 'test://watched-resource', name: 'watched-resource', mimeType: 'text/plain' },
]

export const PROMPTS = [
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

export const TEMPLATES = [
  { uriTemplate: 'test://template/{id}/data', name: 'template', mimeType: 'application/json' },
]

/** The result of a tool that needs nothing of the client; `undefined` for the others. */
export function plainToolResult(name: string, args: Record<string, unknown>): object | undefined {
  switch (name) {
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
    case 'test_error_handling':
      return { isError: true, content: [text('This tool intentionally returns an error for testing')] }
    case 'json_schema_2020_12_tool':
      return { content: [text(JSON.stringify(args))] }
    default:
      return undefined
  }
}

/** A resource's contents; `undefined` when there is none at `uri`. */
export function resourceContents(uri: string): object | undefined {
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
  return undefined
}

/** A prompt's messages; `undefined` for an unknown prompt. */
export function promptResult(name: string, args: Record<string, string>): object | undefined {
  switch (name) {
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
      return undefined
  }
}
