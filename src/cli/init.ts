import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { DEFAULT_DATA_DIR } from '../config/schema.ts'
import { failWith } from './errors.ts'
import { type Ask, withQuestions } from './prompt.ts'

const DEFAULT_UPSTREAM = 'http://127.0.0.1:3001/mcp'

export const INIT_HELP = `Usage:
  gatehouse init [options]    write a commented gatehouse.yaml for gatehouse serve

On a terminal it asks for what the options do not give; in a script, give them (or --yes for the defaults).

Options:
  --upstream <url>        the MCP server to protect speaks Streamable HTTP at this URL
  --command <command>     the MCP server to protect is this stdio command (arguments split at spaces)
  --issuer <url>          tokens come from this identity provider; without it, from Gatehouse's own
                          authorization server (sign-in pages, accounts: gatehouse users add <name>)
  --storage-url <url>     postgres://user:password@host/db, for several instances; without it, SQLite
                          in ${DEFAULT_DATA_DIR}
  -o, --output <file>     default gatehouse.yaml
  --force                 replace the file if it exists
  -y, --yes               ask nothing: the defaults for what the options do not give (upstream
                          ${DEFAULT_UPSTREAM}, the embedded authorization server, SQLite)
  -h, --help              this help

Examples:
  gatehouse init
  gatehouse init --yes --command "npx -y @modelcontextprotocol/server-everything"
  gatehouse init --upstream http://127.0.0.1:3001/mcp --issuer https://your-tenant.auth0.com/ \\
    --storage-url postgres://gatehouse@db.internal/gatehouse
  gatehouse serve --config gatehouse.yaml
`

/** What the file is written for. */
export interface InitChoices {
  upstream: { url: string } | { command: string; args: string[] }
  /** The external identity provider; undefined: the embedded authorization server. */
  issuer: string | undefined
  /** A PostgreSQL URL; undefined: SQLite in the data directory. */
  storageUrl: string | undefined
}

export interface InitFlags {
  upstream?: string | undefined
  command?: string | undefined
  issuer?: string | undefined
  storageUrl?: string | undefined
  yes?: boolean | undefined
}

/** `gatehouse init`: asks (on a terminal) or takes the flags, then writes the file. */
export async function runInit(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      upstream: { type: 'string' },
      command: { type: 'string' },
      issuer: { type: 'string' },
      'storage-url': { type: 'string' },
      output: { type: 'string', short: 'o' },
      force: { type: 'boolean' },
      yes: { type: 'boolean', short: 'y' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(INIT_HELP)
    return
  }
  const flags = { ...values, storageUrl: values['storage-url'] }
  const interactive = !values.yes && process.stdin.isTTY === true
  const choices = interactive
    ? await withQuestions((ask) => resolveChoices(flags, ask))
    : await resolveChoices(flags, undefined)
  const output = values.output ?? 'gatehouse.yaml'
  await writeFile(output, renderConfig(choices), {
    flag: values.force ? 'w' : 'wx',
    // A database password in the file: readable by its owner only.
    mode: hasPassword(choices.storageUrl) ? 0o600 : 0o644,
  }).catch((error: NodeJS.ErrnoException) =>
    error.code === 'EEXIST'
      ? failWith('file_exists', `${output} exists: give another --output, or --force to replace it`)
      : Promise.reject(error),
  )
  process.stdout.write(`Wrote ${output}. Next:\n${nextSteps(choices, output)}`)
}

/**
 * The choices from the flags; what they do not give is asked with `ask`, or, without it (a script), taken
 * from the defaults with --yes and refused otherwise, naming the flag.
 */
export async function resolveChoices(flags: InitFlags, ask: Ask | undefined): Promise<InitChoices> {
  if (flags.upstream !== undefined && flags.command !== undefined)
    failWith('usage', 'give --upstream (an HTTP server) or --command (a stdio server), not both')
  const question = async (flag: string, text: string, fallback: string | undefined) => {
    if (ask) return (await ask(text)) || fallback
    if (flags.yes) return fallback
    return failWith(
      'usage',
      `no terminal to ask on: give ${flag}, or --yes for the defaults (gatehouse init --help)`,
    )
  }
  const upstream =
    flags.upstream ??
    flags.command ??
    ((await question(
      '--upstream or --command',
      `The MCP server to protect: its URL (Streamable HTTP) or the command that starts it (stdio) [${DEFAULT_UPSTREAM}]: `,
      DEFAULT_UPSTREAM,
    )) as string)
  const issuer =
    flags.issuer ??
    (await question(
      '--issuer',
      "Your identity provider's issuer URL (empty: Gatehouse's own authorization server): ",
      undefined,
    ))
  const storageUrl =
    flags.storageUrl ??
    (await question('--storage-url', `A PostgreSQL URL (empty: SQLite in ${DEFAULT_DATA_DIR}): `, undefined))
  if (flags.upstream !== undefined && !isHttpUrl(flags.upstream))
    failWith(
      'usage',
      `--upstream ${flags.upstream} is not an http(s) URL: for a stdio server, give --command`,
    )
  return {
    upstream: flags.command === undefined && isHttpUrl(upstream) ? { url: upstream } : commandOf(upstream),
    issuer: issuer === undefined ? undefined : checkIssuer(issuer),
    storageUrl: storageUrl === undefined ? undefined : checkStorageUrl(storageUrl),
  }
}

const isHttpUrl = (value: string) => /^https?:$/.test(URL.parse(value)?.protocol ?? '')

function commandOf(line: string): InitChoices['upstream'] {
  const [command, ...args] = line.split(/\s+/).filter(Boolean)
  if (command === undefined)
    return failWith('usage', '--command is empty: give the command that starts the server')
  if (/^[a-z]+:\/\//i.test(command))
    failWith(
      'usage',
      `${command} is not an http(s) URL: the upstream speaks Streamable HTTP over http or https`,
    )
  return { command, args }
}

function checkIssuer(issuer: string): string {
  if (!isHttpUrl(issuer))
    failWith(
      'usage',
      `issuer ${JSON.stringify(issuer)} is not a URL: give the issuer, e.g. https://your-tenant.auth0.com/`,
    )
  return issuer
}

function checkStorageUrl(url: string): string {
  if (!/^(postgres|postgresql):\/\//.test(url) && !url.startsWith('sqlite:'))
    failWith(
      'usage',
      `storage URL ${JSON.stringify(url)} must be postgres://user:password@host/db (or sqlite:<file>)`,
    )
  return url
}

const hasPassword = (url: string | undefined) => !!url && !!URL.parse(url)?.password

/** YAML scalars written as JSON strings, which YAML reads as they are: no quoting rules to get wrong. */
const quote = (value: string) => JSON.stringify(value)

/** The file: each chosen part with a comment that says what it does and what to change. */
export function renderConfig(choices: InitChoices): string {
  return [
    '# Gatehouse configuration, written by `gatehouse init`. Run: gatehouse serve --config <this file>',
    '# Every setting with its default: gatehouse serve --help, or docs/configuration.md. Unknown keys stop the start.',
    '',
    ...upstreamPart(choices.upstream),
    '',
    '# Where gatehouse listens. Behind TLS or a proxy, set public_url to the URL clients use.',
    '# public_url: https://mcp.example.com/mcp',
    'transport:',
    '  address: 127.0.0.1',
    '  port: 8000',
    ...providerPart(choices.issuer),
    '',
    ...storagePart(choices.storageUrl),
    '',
  ].join('\n')
}

function upstreamPart(upstream: InitChoices['upstream']): string[] {
  if ('url' in upstream)
    return [
      '# The MCP server to protect, over Streamable HTTP. Clients never reach it directly.',
      `upstream: ${quote(upstream.url)}`,
    ]
  return [
    '# The MCP server to protect: a stdio command, one process per session (stdio.shared: true for one in all).',
    `command: ${quote(upstream.command)}`,
    `args: [${upstream.args.map(quote).join(', ')}]`,
    "# Its environment: PATH, HOME and the like of gatehouse's, plus these (nothing else).",
    '# env:',
    '#   API_KEY: "..."',
  ]
}

function providerPart(issuer: string | undefined): string[] {
  if (issuer === undefined)
    return [
      '',
      "# No transport.auth.servers: Gatehouse runs its own authorization server on the MCP URL's origin",
      '# (discovery, registration, sign-in and consent pages). Accounts: gatehouse users add <name> --config <this file>',
      'authorization_server:',
      '  # Scopes every token carries; add per-tool scopes under tools: { <name>: { scopes: [...] } }.',
      '  scopes: [mcp]',
      '  login:',
      '    local_accounts: true',
    ]
  return [
    '  auth:',
    '    # Tokens come from this identity provider: its issuer exactly as its metadata writes it.',
    '    servers:',
    `      - ${quote(issuer)}`,
    "    # The audience your provider puts in its tokens, when it is not the MCP URL (Auth0's API identifier, say):",
    '    # audiences: [https://api.example.com]',
    '    # accept_plain_jwt: true   # tokens with typ JWT, the default of Auth0, Okta, Entra and Keycloak',
  ]
}

function storagePart(storageUrl: string | undefined): string[] {
  const secret = [
    '# Encrypts the signing keys and signs the cookies; every instance needs the same one. Prefer the',
    '# GATEHOUSE_SECRET variable to writing it here (openssl rand -base64 32).',
    '# secret: ...',
  ]
  if (storageUrl === undefined)
    return [
      "# Gatehouse's state (accounts, clients, grants, keys) is a SQLite file in data_dir, created 0700.",
      `data_dir: ${DEFAULT_DATA_DIR}`,
      '# For several instances, one PostgreSQL database instead:',
      '# storage:',
      '#   url: postgres://user:password@host/db',
      ...secret,
    ]
  return [
    "# Gatehouse's state (accounts, clients, grants, keys), shared by every instance. The variable",
    '# GATEHOUSE_STORAGE_URL keeps a password out of this file.',
    'storage:',
    `  url: ${quote(storageUrl)}`,
    ...secret,
  ]
}

function nextSteps(choices: InitChoices, output: string): string {
  const config = `--config ${output}`
  const steps = choices.issuer === undefined ? [`  gatehouse users add <name> ${config}`] : []
  return [...steps, `  gatehouse serve ${config}`, ''].join('\n')
}
