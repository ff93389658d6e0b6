/**
 * The published package as a user gets it: `npm pack` (which builds dist/ through prepack), the tarball
 * installed into an empty project outside the repository, then each entry point imported from plain Node,
 * the guard type-checked from a TypeScript file, and the installed command run.
 */
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { startDevServe } from '../support/dev-serve.ts'
import { ENV, packTarball, REPO, sh } from '../support/pack.ts'

const run = promisify(execFile)
const TSC = join(REPO, 'node_modules/.bin/tsc')
const GUARD_ENTRIES = ['guard', 'guard/node', 'guard/express', 'guard/fetch', 'guard/mcp-sdk']
/** Every entry point of `exports`: a new one must be added here, and is then imported below. */
const ENTRIES = [...GUARD_ENTRIES, 'on-behalf-of']

let project: string
let installed: string

/** Node with a resolve hook that records every package a module graph loads, then the given imports. */
const LOAD_RECORDER = `
import { registerHooks } from 'node:module'
const packages = new Set()
registerHooks({
  resolve(specifier, context, next) {
    const resolved = next(specifier, context)
    const match = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(resolved.url)
    if (match) packages.add(match[1])
    return resolved
  },
})
for (const entry of process.argv.slice(2)) await import(entry)
console.log(JSON.stringify([...packages].sort()))
`

describe('the npm package, installed from its tarball', { timeout: 90_000 }, () => {
  before(async () => {
    project = await mkdtemp(join(tmpdir(), 'gatehouse-package-'))
    const { tarball, files } = await packTarball(project)
    assert.ok(
      files.includes('dist/guard/index.js') && files.includes('dist/guard/index.d.ts'),
      'dist is packed',
    )
    assert.deepEqual(
      files.filter(
        (f) =>
          !/^(dist\/|bin\/gatehouse\.js$|templates\/mcp-server\/|package\.json$|README\.md$|LICENSE$)/.test(
            f,
          ),
      ),
      [],
      'only dist, bin, the templates of gatehouse new, README, LICENSE and package.json are packed',
    )
    await writeFile(
      join(project, 'package.json'),
      '{ "name": "consumer", "private": true, "type": "module" }',
    )
    await sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], project)
    installed = join(project, 'node_modules/mcp-gatehouse')
  })

  after(async () => {
    if (project) await rm(project, { recursive: true, force: true })
  })

  it('ships no TypeScript sources for Node to refuse under node_modules', async () => {
    const pkg = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8'))
    assert.equal(pkg.name, 'mcp-gatehouse')
    assert.deepEqual(Object.keys(pkg.bin).sort(), ['gatehouse', 'mcp-gatehouse'])
    const targets = JSON.stringify(pkg.exports).match(/"\.\/[^"]+"(?=[,}])/g) ?? []
    assert.ok(targets.length > 0)
    for (const target of targets) assert.match(target, /^"\.\/(dist\/.*\.(js|d\.ts)|package\.json)"$/)
    assert.deepEqual(
      Object.keys(pkg.exports).filter((entry) => entry !== './package.json'),
      ENTRIES.map((entry) => `./${entry}`),
    )
  })

  it('imports the on-behalf-of helper from plain Node, loading no package but jose', async () => {
    const script = join(project, 'load-recorder.mjs')
    await writeFile(script, LOAD_RECORDER)
    const loaded = JSON.parse(await sh(process.execPath, [script, 'mcp-gatehouse/on-behalf-of'], project))
    assert.deepEqual(loaded, ['jose', 'mcp-gatehouse'])
    const { stdout } = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const m = await import('mcp-gatehouse/on-behalf-of'); console.log(typeof m.createOnBehalfOf, typeof m.OnBehalfOfError)",
      ],
      { cwd: project },
    )
    assert.equal(stdout.trim(), 'function function')
  })

  it('imports each guard entry point from plain Node, loading no package but jose', async () => {
    const entries = GUARD_ENTRIES.map((entry) => `mcp-gatehouse/${entry}`)
    const script = join(project, 'load-recorder.mjs')
    await writeFile(script, LOAD_RECORDER)
    const loaded = JSON.parse(await sh(process.execPath, [script, ...entries], project))
    assert.deepEqual(loaded, ['jose', 'mcp-gatehouse'])
    const { stdout } = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const m = await import('mcp-gatehouse/guard'); console.log(typeof m.createGuard)",
      ],
      { cwd: project },
    )
    assert.equal(stdout.trim(), 'function')
  })

  it('type-checks a TypeScript file that uses the guard with tsc', async () => {
    await writeFile(
      join(project, 'server.ts'),
      [
        "import { createGuard, type GuardOptions } from 'mcp-gatehouse/guard'",
        "import { guardNodeHandler } from 'mcp-gatehouse/guard/node'",
        'const options: GuardOptions = {',
        "  resource: 'https://mcp.example.com/mcp',",
        "  authorizationServers: [{ issuer: 'https://idp.example.com/' }],",
        '}',
        'export const guard = createGuard(options)',
        'export const handler = guardNodeHandler',
        '// @ts-expect-error the types are real: a number is not a resource URL',
        'export const wrong: GuardOptions = { resource: 1, authorizationServers: [] }',
        '',
      ].join('\n'),
    )
    const compilerOptions = {
      target: 'es2022',
      module: 'nodenext',
      strict: true,
      noEmit: true,
      typeRoots: [join(REPO, 'node_modules/@types')],
      types: ['node'],
    }
    await writeFile(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['server.ts'] }))
    await sh(TSC, ['-p', project], project)
  })

  it('runs `npx gatehouse --help` and `npx mcp-gatehouse --version`', async () => {
    assert.match(
      await sh('npx', ['--no-install', 'gatehouse', '--help'], project),
      /^Usage: gatehouse <command>/,
    )
    const version = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')).version
    assert.equal((await sh('npx', ['--no-install', 'mcp-gatehouse', '--version'], project)).trim(), version)
  })

  it('runs `gatehouse serve --dev -- <stdio server>`, which answers 401 on /mcp', async () => {
    const serve = await startDevServe({ main: join(installed, 'bin/gatehouse.js'), cwd: project })
    try {
      const response = await fetch(serve.resource, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      })
      assert.equal(response.status, 401)
      assert.match(
        response.headers.get('www-authenticate') ?? '',
        /^Bearer .*resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/,
      )
    } finally {
      await serve.stop()
    }
  })

  it('runs `gatehouse demo`: one line naming what to install, then, with it installed, a protected MCP URL', async () => {
    const EVERYTHING = '@modelcontextprotocol/server-everything'
    const dataDir = join(project, 'demo-data')
    const demo = () =>
      spawn(
        process.execPath,
        [join(installed, 'bin/gatehouse.js'), 'demo', '--port', '0', '--data-dir', dataDir],
        {
          cwd: project,
          env: { PATH: ENV.PATH },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      )
    const missing = demo()
    let stderr = ''
    missing.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk
    })
    const [code] = await once(missing, 'exit')
    assert.equal(code, 1)
    assert.equal(
      stderr,
      `gatehouse: gatehouse demo serves the MCP example server ${EVERYTHING}, which is not installed: install it next to mcp-gatehouse (npm install ${EVERYTHING}), or run npx -p mcp-gatehouse -p ${EVERYTHING} gatehouse demo\n`,
    )

    // Installed next to mcp-gatehouse (linked from the clone: no download in the test).
    await mkdir(join(project, 'node_modules/@modelcontextprotocol'), { recursive: true })
    await symlink(join(REPO, 'node_modules', EVERYTHING), join(project, 'node_modules', EVERYTHING))
    const running = demo()
    try {
      const mcpUrl = await new Promise<string>((resolve, reject) => {
        createInterface({ input: running.stdout }).on('line', (line) => {
          const url = /^ {2}MCP URL: {2}(\S+)$/.exec(line)?.[1]
          if (url) resolve(url)
        })
        running.once('exit', (status) => reject(new Error(`gatehouse demo exited with ${status}`)))
      })
      const response = await fetch(mcpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      })
      assert.equal(response.status, 401)
    } finally {
      running.kill('SIGTERM')
      if (running.exitCode === null) await once(running, 'exit')
    }
  })
})
