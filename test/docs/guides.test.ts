/**
 * The guides (docs/guides/*.md) and the README cannot rot unnoticed:
 * - every ```yaml block is a whole gatehouse.yaml, loaded as `gatehouse serve --config` loads it (the schema
 *   and the checks that span several settings); another program's YAML says whose (```yaml apollo-mcp-server);
 * - every ```json block parses; every ```haproxy block passes `haproxy -c` (its certificate path replaced by a
 *   throwaway certificate);
 * - every `gatehouse` command line of every shell block is accepted by the real command's parser;
 * - every relative link points at a file that exists;
 * - the ```sh test blocks of a guide run for real, in the guide's order, each in its own `bash -e`, all in
 *   one empty directory with `gatehouse` on the PATH; a ```sh test-server block is started in the
 *   background there and waited for until it answers /healthz, and stopped after the guide's last block.
 *   Port 8000 in them is replaced by a free port (GATEHOUSE_PORT is set to it too); npm runs offline, so
 *   `npx` finds the packages of this clone's node_modules and downloads nothing.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { after, describe, it } from 'node:test'
import { loadGatewayConfig } from '../../src/gateway/config.ts'
import { gatehouseCommandLines, parseWithHelp } from '../support/command-lines.ts'
import { MAIN, tempDir } from '../support/embedded-gateway.ts'
import { freePort } from '../support/gateway-harness.ts'
import { createTestCertificates } from '../support/test-ca.ts'

const REPO = resolve(import.meta.dirname, '../..')
const GUIDES = join(REPO, 'docs/guides')
const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((path) => existsSync(path))

interface Block {
  file: string
  /** The fence's info string: `sh test`, `yaml`, … */
  info: string
  text: string
  line: number
}

const documents = [
  join(REPO, 'README.md'),
  ...readdirSync(GUIDES)
    .filter((name) => name.endsWith('.md'))
    .map((name) => join(GUIDES, name)),
]

function blocksOf(file: string): Block[] {
  const source = readFileSync(file, 'utf8')
  return [...source.matchAll(/^```([^\n]*)\n([\s\S]*?)^```$/gm)].map((match) => ({
    file,
    info: (match[1] as string).trim(),
    text: match[2] as string,
    line: source.slice(0, match.index).split('\n').length,
  }))
}

const blocks = documents.flatMap(blocksOf)
const where = (block: Block) => `${block.file.slice(REPO.length + 1)}:${block.line}`
const language = (block: Block) => block.info.split(/\s+/)[0] ?? ''
const SHELLS = new Set(['sh', 'bash', 'shell', 'console'])

describe('the guides', () => {
  let work: string
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true })
  })

  it('exist, and the README shows the flow and links every guide', () => {
    assert.ok(documents.length >= 7, documents.join(', '))
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8')
    assert.match(readme, /\(docs\/flow\.svg\)/)
    for (const guide of documents.slice(1))
      assert.ok(readme.includes(`(docs/guides/${guide.slice(GUIDES.length + 1)})`), `README links ${guide}`)
  })

  it('link only to files that exist', () => {
    const broken: string[] = []
    for (const file of documents) {
      for (const [, target] of readFileSync(file, 'utf8').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target as string) || (target as string).startsWith('#')) continue
        const path = resolve(dirname(file), (target as string).split('#')[0] as string)
        if (!existsSync(path)) broken.push(`${file}: ${target}`)
      }
    }
    assert.deepEqual(broken, [])
  })

  it('every YAML block is a gatehouse.yaml that gatehouse serve loads', async () => {
    work ??= await tempDir('guides')
    const yaml = blocks.filter((block) => block.info === 'yaml')
    assert.ok(yaml.length >= 5, `YAML blocks found: ${yaml.length}`)
    for (const [i, block] of yaml.entries()) {
      const file = join(work, `snippet-${i}.yaml`)
      await writeFile(file, block.text)
      await loadGatewayConfig({ config: file }, {}).catch((error: Error) =>
        assert.fail(`${where(block)}: ${error.message}`),
      )
    }
  })

  it('every JSON block parses', () => {
    for (const block of blocks.filter((b) => language(b) === 'json'))
      assert.doesNotThrow(() => JSON.parse(block.text), where(block))
  })

  it('every HAProxy block passes haproxy -c', { skip: !HAPROXY && 'haproxy is not installed' }, async () => {
    work ??= await tempDir('guides')
    const { cert, key } = createTestCertificates()
    const pem = join(work, 'proxy.pem')
    await writeFile(pem, `${cert}${key}`)
    const configs = blocks.filter((block) => language(block) === 'haproxy')
    assert.ok(configs.length > 0)
    for (const [i, block] of configs.entries()) {
      const file = join(work, `haproxy-${i}.cfg`)
      await writeFile(file, block.text.replace(/\bcrt \S+/g, `crt ${pem}`))
      try {
        execFileSync(HAPROXY as string, ['-c', '-q', '-f', file], { stdio: 'pipe' })
      } catch (error) {
        assert.fail(`${where(block)}: ${(error as { stderr: Buffer }).stderr}`)
      }
    }
  })

  it("every gatehouse command line is accepted by the command's parser", async () => {
    const failures: string[] = []
    let count = 0
    for (const block of blocks.filter((b) => SHELLS.has(language(b)))) {
      for (const line of gatehouseCommandLines(block.text)) {
        count++
        const { code, out } = await parseWithHelp(line.args)
        if (code !== 0 || !/^Usage/m.test(out))
          failures.push(`${where(block)}: ${line.text}\n  ${out.trim()}`)
      }
    }
    assert.ok(count >= 20, `command lines found: ${count}`)
    assert.deepEqual(failures, [])
  })

  for (const file of documents) {
    const runnable = blocksOf(file).filter((block) => /^sh test(-server)?$/.test(block.info))
    if (!runnable.length) continue
    it(`${file.slice(REPO.length + 1)}: its sh test blocks run`, { timeout: 600_000 }, async () => {
      const dir = await tempDir('guide-run')
      const servers: ChildProcess[] = []
      try {
        const env = await shellEnvironment(dir)
        const port = String(await freePort())
        const text = (block: Block) => block.text.replace(/\b8000\b/g, port)
        for (const block of runnable) {
          const options = { cwd: dir, env: { ...env, GATEHOUSE_PORT: port } }
          if (block.info === 'sh test-server') {
            const server = spawn('bash', ['-c', text(block)], {
              ...options,
              stdio: ['ignore', 'ignore', 'pipe'],
              detached: true,
            })
            servers.push(server)
            await healthy(server, port, where(block))
            continue
          }
          const shell = spawn('bash', ['-e', '-o', 'pipefail', '-c', text(block)], {
            ...options,
            stdio: ['ignore', 'pipe', 'pipe'],
          })
          let out = ''
          shell.stdout.on('data', (chunk: Buffer) => {
            out += chunk
          })
          shell.stderr.on('data', (chunk: Buffer) => {
            out += chunk
          })
          const [code] = (await once(shell, 'exit')) as [number]
          assert.equal(code, 0, `${where(block)} failed:\n${text(block)}---\n${out}`)
        }
      } finally {
        for (const server of servers) await stop(server)
        await rm(dir, { recursive: true, force: true })
      }
    })
  }
})

/**
 * PATH with a `gatehouse` that runs this clone's sources, and a directory whose node_modules are the
 * clone's, so `npx <package>` finds it there; npm is offline and never asks.
 */
async function shellEnvironment(dir: string): Promise<Record<string, string>> {
  const bin = join(dir, '.bin')
  await mkdir(bin)
  await writeFile(join(bin, 'gatehouse'), `#!/bin/sh\nexec "${process.execPath}" "${MAIN}" "$@"\n`)
  await chmod(join(bin, 'gatehouse'), 0o755)
  await writeFile(join(dir, 'package.json'), '{ "private": true }\n')
  await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'))
  return {
    PATH: `${bin}:${dirname(process.execPath)}:${process.env.PATH}`,
    HOME: dir,
    npm_config_offline: 'true',
    npm_config_yes: 'true',
    npm_config_update_notifier: 'false',
  }
}

/** Resolves once the server answers /healthz; rejects with its stderr if it exits first. */
async function healthy(server: ChildProcess, port: string, block: string): Promise<void> {
  let stderr = ''
  server.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  for (;;) {
    if (server.exitCode !== null || server.signalCode !== null)
      assert.fail(`${block}: the server exited (${server.exitCode}):\n${stderr}`)
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (response) => response.ok,
      () => false,
    )
    if (ok) return
    await new Promise((wake) => setTimeout(wake, 200))
  }
}

/** Ends the server block's whole process group (bash, gatehouse, npx, the MCP server), which this test started. */
async function stop(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null || server.pid === undefined) return
  const exited = once(server, 'exit')
  process.kill(-server.pid, 'SIGTERM')
  await exited
}
