/**
 * `gatehouse init`: the file it writes for each choice of upstream, provider and storage loads with the
 * configuration schema and `gatehouse serve`'s own checks, and says what was chosen.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { renderConfig, resolveChoices } from '../../src/cli/init.ts'
import { loadSettings } from '../../src/config/load.ts'
import { loadGatewayConfig } from '../../src/gateway/config.ts'
import { gatehouse, MAIN, tempDir } from '../support/embedded-gateway.ts'
import { NODE } from '../support/gateway-harness.ts'

/** util-linux's script(1) gives the command a pseudo-terminal, so init asks as it does for a person. */
const SCRIPT = ['/usr/bin/script', '/bin/script'].find((path) => existsSync(path))
const NO_SCRIPT = SCRIPT ? false : 'script(1) is not installed'

/** Runs gatehouse on a terminal, typing each answer (keys as typed) once its question shows; what shows after the last. */
async function onTerminal(args: string[], answers: [RegExp, string][], more: string[] = []) {
  const command = [NODE, MAIN, ...args, ...more].join(' ')
  const child = spawn(SCRIPT as string, ['-qec', command, '/dev/null'], {
    // A terminal gets colour; the screen is compared as text (test/cli/colour.test.ts covers colour).
    env: { PATH: process.env.PATH, NO_COLOR: '1' },
    stdio: 'pipe',
  })
  let screen = ''
  child.stdout.on('data', (chunk: Buffer) => {
    screen += chunk
    const [question, keys] = answers[0] ?? []
    if (!question?.test(screen)) return
    answers.shift()
    screen = ''
    child.stdin.write(keys)
  })
  const [code] = (await once(child, 'exit')) as [number]
  return { code, screen }
}

const UPSTREAMS = {
  http: ['--upstream', 'http://127.0.0.1:3001/mcp'],
  stdio: ['--command', 'npx -y @modelcontextprotocol/server-everything'],
}
const PROVIDERS = { embedded: [], external: ['--issuer', 'https://idp.example.com/'] }
const STORAGES = { sqlite: [], postgres: ['--storage-url', 'postgres://gatehouse:pw@127.0.0.1:5432/test'] }

/** What `gatehouse serve --config <file>` would run with, read with no flag and no variable. */
async function load(file: string) {
  const { settings } = await loadSettings({ config: file }, {})
  return { settings, config: await loadGatewayConfig({ config: file }, {}) }
}

describe('gatehouse init', () => {
  for (const [upstream, upstreamFlags] of Object.entries(UPSTREAMS))
    for (const [provider, providerFlags] of Object.entries(PROVIDERS))
      for (const [storage, storageFlags] of Object.entries(STORAGES))
        it(`writes a file that loads: ${upstream} upstream, ${provider} provider, ${storage}`, async () => {
          const file = join(await tempDir('init'), 'gatehouse.yaml')
          const args = [
            'init',
            '--yes',
            '--output',
            file,
            ...upstreamFlags,
            ...providerFlags,
            ...storageFlags,
          ]
          const run = await gatehouse(args)
          assert.equal(run.stderr, '')
          assert.equal(run.code, 0)
          assert.match(run.stdout, new RegExp(`gatehouse serve --config ${file}`))

          const { settings, config } = await load(file)
          const {
            kind,
            command,
            args: commandArgs,
          } = config.upstream as { kind: string; command?: string; args?: string[] }
          if (upstream === 'http')
            assert.deepEqual(config.upstream, { kind: 'http', url: new URL('http://127.0.0.1:3001/mcp') })
          else
            assert.deepEqual(
              { kind, command, commandArgs },
              {
                kind: 'stdio',
                command: 'npx',
                commandArgs: ['-y', '@modelcontextprotocol/server-everything'],
              },
            )
          assert.equal(config.authorizationServer === undefined, provider === 'external')
          assert.deepEqual(
            settings.transport.auth?.servers,
            provider === 'external' ? [{ issuer: 'https://idp.example.com/' }] : undefined,
          )
          assert.equal(settings.storage.url, storage === 'postgres' ? STORAGES.postgres[1] : undefined)
          // The password in the file: readable by its owner only.
          if (storage === 'postgres') assert.equal((await stat(file)).mode & 0o077, 0)
        })

  it('asks on a terminal for what the flags do not give; an empty answer takes the default', async () => {
    const asked: string[] = []
    const answers = ['node server.js --verbose', '', 'postgres://127.0.0.1/test']
    const choices = await resolveChoices({}, async (question) => {
      asked.push(question)
      return answers.shift() ?? ''
    })
    assert.equal(asked.length, 3)
    assert.deepEqual(choices, {
      upstream: { command: 'node', args: ['server.js', '--verbose'] },
      issuer: undefined,
      storageUrl: 'postgres://127.0.0.1/test',
    })
    const file = join(await tempDir('init'), 'gatehouse.yaml')
    await writeFile(file, renderConfig(choices))
    const { config } = await load(file)
    assert.equal(config.upstream.kind === 'stdio' && config.upstream.command, 'node')
    assert.ok(config.authorizationServer)

    const onlyIssuerAsked = await resolveChoices(
      { upstream: 'https://mcp.internal/mcp', storageUrl: 'sqlite:x.db' },
      async (question) => {
        assert.match(question, /issuer/)
        return 'https://idp.example.com/'
      },
    )
    assert.equal(onlyIssuerAsked.issuer, 'https://idp.example.com/')
  })

  it('asks on a real terminal, answering each question as it appears', { skip: NO_SCRIPT }, async () => {
    const file = join(await tempDir('init'), 'gatehouse.yaml')
    const answers: [RegExp, string][] = [
      [/its URL \(Streamable HTTP\) or the command/, 'https://mcp.internal/mcp\r'],
      [/issuer URL \(empty/, '\r'],
      [/PostgreSQL URL \(empty/, '\r'],
    ]
    const { code, screen } = await onTerminal(['init', '--output', file], answers)
    assert.equal(code, 0, screen)
    assert.deepEqual(answers, [], 'every question was asked')
    const { settings, config } = await load(file)
    assert.equal(settings.upstream, 'https://mcp.internal/mcp')
    assert.ok(config.authorizationServer, 'the embedded authorization server, the empty answer')
    assert.equal(settings.storage.url, undefined)
  })

  it('stops on Ctrl-C or Ctrl-D at a question, writing nothing', { skip: NO_SCRIPT }, async () => {
    const file = join(await tempDir('init'), 'gatehouse.yaml')
    for (const key of ['\u0003', '\u0004']) {
      const { code, screen } = await onTerminal(
        ['init', '--output', file],
        [[/issuer URL/, key]],
        ['--upstream', 'http://a/mcp'],
      )
      assert.equal(code, 1)
      assert.match(screen, /gatehouse: cancelled/)
      await assert.rejects(stat(file), { code: 'ENOENT' })
    }
  })

  it('without a terminal and without --yes, names the missing flag and writes nothing', async () => {
    const dir = await tempDir('init')
    const run = await gatehouse([
      'init',
      '--output',
      join(dir, 'gatehouse.yaml'),
      '--upstream',
      'http://127.0.0.1:3001/mcp',
    ])
    assert.equal(run.code, 1)
    assert.equal(
      run.stderr,
      'gatehouse: no terminal to ask on: give --issuer, or --yes for the defaults (gatehouse init --help)\n',
    )
    await assert.rejects(stat(join(dir, 'gatehouse.yaml')), { code: 'ENOENT' })
  })

  it('refuses to replace an existing file unless --force', async () => {
    const file = join(await tempDir('init'), 'gatehouse.yaml')
    await writeFile(file, 'mine\n')
    const refused = await gatehouse(['init', '--yes', '--output', file])
    assert.equal(refused.code, 1)
    assert.equal(
      refused.stderr,
      `gatehouse: ${file} exists: give another --output, or --force to replace it\n`,
    )
    assert.equal(await readFile(file, 'utf8'), 'mine\n')

    assert.equal((await gatehouse(['init', '--yes', '--force', '--output', file])).code, 0)
    assert.equal((await load(file)).config.upstream.kind, 'http')
  })

  it('refuses choices that cannot work, saying what to give instead', async () => {
    const refusals: [string[], RegExp][] = [
      [
        ['--upstream', 'npx server'],
        /--upstream npx server is not an http\(s\) URL: for a stdio server, give --command/,
      ],
      [['--upstream', 'http://a/mcp', '--command', 'x'], /give --upstream .* or --command .*, not both/],
      [['--issuer', 'idp.example.com'], /issuer "idp.example.com" is not a URL/],
      [['--storage-url', 'mysql://db/x'], /storage URL "mysql:\/\/db\/x" must be postgres:\/\//],
    ]
    for (const [flags, message] of refusals) {
      const run = await gatehouse([
        'init',
        '--yes',
        '--output',
        join(await tempDir('init'), 'g.yaml'),
        ...flags,
      ])
      assert.equal(run.code, 1, flags.join(' '))
      assert.match(run.stderr, message)
    }
  })

  it('--help has examples', async () => {
    const run = await gatehouse(['init', '--help'])
    assert.match(run.stdout, /^Usage:\n {2}gatehouse init/)
    assert.match(run.stdout, /Examples:\n {2}gatehouse init\n/)
  })
})
