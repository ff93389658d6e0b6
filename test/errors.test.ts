import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { AUTH_SERVER_ERRORS, AuthServerError } from '../src/auth-server/errors.ts'
import { CLI_ERRORS, CliError, operatorMessage } from '../src/cli/errors.ts'
import { CONFIG_ERRORS, GatewayConfigError } from '../src/config/errors.ts'
import { defineErrors, GatehouseError, type Registry } from '../src/errors/index.ts'
import { GATEWAY_ERRORS, GatewayError, type GatewayErrorCode } from '../src/gateway/errors.ts'
import { GUARD_ERRORS, GuardError } from '../src/guard/index.ts'
import { ON_BEHALF_OF_ERRORS, OnBehalfOfError, type OnBehalfOfErrorCode } from '../src/on-behalf-of/index.ts'

// docs/errors.md and every registry must say the same thing (a drift test, as fastify does for Errors.md).

/** Each part's `##` heading on the page, its registry, and how to make one of its errors. */
const PARTS: { heading: string; registry: Registry; make: (code: string, detail: string) => Error }[] = [
  {
    heading: 'Guard',
    registry: GUARD_ERRORS,
    make: (code, detail) => new GuardError(code as keyof typeof GUARD_ERRORS, detail),
  },
  {
    heading: 'Gateway',
    registry: GATEWAY_ERRORS,
    make: (code, detail) => new GatewayError(code as GatewayErrorCode, { detail }),
  },
  {
    heading: 'Configuration',
    registry: CONFIG_ERRORS.registry,
    make: (code, detail) => new GatewayConfigError(detail, code as keyof typeof CONFIG_ERRORS.registry),
  },
  {
    heading: 'Authorization server',
    registry: AUTH_SERVER_ERRORS.registry,
    make: (code, detail) => new AuthServerError(code as keyof typeof AUTH_SERVER_ERRORS.registry, detail),
  },
  {
    heading: 'Command line',
    registry: CLI_ERRORS.registry,
    make: (code, detail) => new CliError(code as keyof typeof CLI_ERRORS.registry, detail),
  },
  {
    heading: 'On behalf of',
    registry: ON_BEHALF_OF_ERRORS.registry,
    make: (code, detail) => new OnBehalfOfError(code as OnBehalfOfErrorCode, detail),
  },
]

/**
 * How each field of an entry is written on the page, as `- Label: value`. A part with a field of its own
 * (a JSON-RPC code, say) adds its label here.
 */
const LABELS: Record<string, { label: string; show: (value: unknown) => string }> = {
  status: { label: 'Status', show: String },
  error: { label: 'OAuth error', show: (value) => (value === undefined ? 'none' : `\`${value}\``) },
  title: { label: 'Page title', show: (value) => `\`${value}\`` },
  rpc: { label: 'JSON-RPC code', show: String },
  description: { label: 'Description', show: (value) => `\`${value}\`` },
  detailIsPublic: { label: 'Detail', show: (value) => (value ? 'public' : 'private') },
}

const page = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')

/** `## Part` sections, each split into its `### \`code\`` sections. */
function parsePage(markdown: string) {
  return markdown
    .split(/^## /m)
    .slice(1)
    .map((part) => ({
      heading: part.split('\n', 1)[0] as string,
      codes: part
        .split(/^### /m)
        .slice(1)
        .map((section) => ({
          code: /^`([a-z_]+)`\n/.exec(section)?.[1] ?? section.split('\n', 1)[0],
          fields: [...section.matchAll(/^- ([A-Za-z -]+): (.+)$/gm)].map(
            ([, label, value]) => `${label}: ${value}`,
          ),
          when: /^\*\*When:\*\* \S/m.test(section),
          check: /^\*\*Check:\*\* \S/m.test(section),
        })),
    }))
}

const documented = parsePage(page)

/** The `- Label: value` lines an entry must have, in the order of its fields. */
function expectedFields(entry: object): string[] {
  return Object.entries(entry).map(([key, value]) => {
    const format = LABELS[key]
    assert.ok(format, `no label for the field ${key}: add it to LABELS in test/errors.test.ts`)
    return `${format.label}: ${format.show(value)}`
  })
}

describe('docs/errors.md matches the registries', () => {
  it('has one section per part, in order', () => {
    assert.deepEqual(
      documented.map((part) => part.heading),
      PARTS.map((part) => part.heading),
    )
  })

  for (const { heading, registry } of PARTS) {
    describe(heading, () => {
      const section = documented.find((part) => part.heading === heading)

      it('documents every code once, in registry order, and nothing else', () => {
        assert.deepEqual(
          section?.codes.map((c) => c.code),
          Object.keys(registry),
        )
      })

      for (const [code, entry] of Object.entries(registry)) {
        it(code, () => {
          assert.match(code, /^[a-z][a-z_]*[a-z]$/)
          assert.ok(entry.status >= 400 && entry.status <= 599, `${code}: status ${entry.status}`)
          const doc = section?.codes.find((c) => c.code === code)
          assert.ok(doc, `${code} is not documented under ## ${heading}`)
          assert.deepEqual(
            { fields: doc.fields, when: doc.when, check: doc.check },
            { fields: expectedFields(entry), when: true, check: true },
          )
        })
      }
    })
  }
})

describe('each error class reads its registry', () => {
  for (const { heading, registry, make } of PARTS.slice(1)) {
    for (const [code, entry] of Object.entries(registry)) {
      it(`${heading}: ${code}`, () => {
        const error = make(code, 'the detail') as GatehouseError
        assert.ok(error instanceof GatehouseError)
        assert.deepEqual(
          [error.code, error.status, error.message, error.detail],
          [code, entry.status, 'the detail', 'the detail'],
        )
        const bare = make(code, '') as GatehouseError
        assert.equal(bare.message, entry.description)
      })
    }
  }

  it('the public description is the fixed text, unless the entry says the detail is public', () => {
    assert.equal(
      new AuthServerError('registration_too_large', 'size 60000').publicDescription,
      'the registration request is larger than 56 KiB',
    )
    assert.equal(
      new AuthServerError('options_invalid', 'secret is too short').publicDescription,
      'the authorization server options are invalid',
    )
    assert.equal(
      new AuthServerError('origin_not_allowed', 'from https://evil.example').publicDescription,
      'from https://evil.example',
    )
    assert.equal(
      new AuthServerError('origin_not_allowed').publicDescription,
      'requests from this origin are not allowed',
    )
  })

  it('a new part plugs in with defineErrors and a subclass', () => {
    const PART = defineErrors('example', {
      thing_failed: { status: 502, description: 'the thing failed', rpc: -32000 },
    })
    class ExampleError extends GatehouseError<typeof PART.registry> {
      constructor(code: keyof typeof PART.registry, detail?: string) {
        super(PART, code, detail)
      }
    }
    const error = new ExampleError('thing_failed', 'thing 7 answered 500')
    assert.deepEqual(
      [error.part, error.code, error.status, error.entry.rpc, error.publicDescription, error.message],
      ['example', 'thing_failed', 502, -32000, 'the thing failed', 'thing 7 answered 500'],
    )
    assert.equal(operatorMessage(error), 'thing 7 answered 500')
  })
})

describe('the CLI tells operator errors from bugs', () => {
  it('prints the message of every registry error, the guard included', () => {
    for (const { make, registry } of PARTS) {
      const code = Object.keys(registry)[0] as string
      assert.ok(operatorMessage(make(code, 'the detail'))?.includes('the detail'), code)
    }
  })

  it('prints a stack for a TypeError: it is a bug, not a setting', () => {
    assert.equal(
      operatorMessage(new TypeError("Cannot read properties of undefined (reading 'url')")),
      undefined,
    )
    assert.equal(operatorMessage(new Error('boom')), undefined)
  })

  it("prints node's unknown-flag errors as usage, with the help that lists the options", () => {
    const error = Object.assign(new TypeError("Unknown option '--nope'"), {
      code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION',
    })
    assert.equal(
      operatorMessage(error, 'keys'),
      'unknown option --nope: gatehouse keys --help lists the options',
    )
    assert.equal(operatorMessage(error), 'unknown option --nope: gatehouse --help lists the options')
  })
})
