/**
 * `gatehouse new`, as a user gets it: the command of the packed package scaffolds a project, which installs
 * mcp-gatehouse from that tarball (not from the registry, nor from this clone) and passes its own tests and
 * type-check straight away.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { packTarball, REPO, sh } from '../support/pack.ts'

let work: string
let tarball: string
/** The packed package unpacked, its dependencies those of the clone: what `npx mcp-gatehouse` would run. */
let bin: string

describe('gatehouse new, from the packed package', { timeout: 300_000 }, () => {
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'gatehouse-new-'))
    ;({ tarball } = await packTarball(work))
    await sh('tar', ['-xzf', tarball, '-C', work], work)
    await symlink(join(REPO, 'node_modules'), join(work, 'package/node_modules'))
    bin = join(work, 'package/bin/gatehouse.js')
  })
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true })
  })

  it('scaffolds a project whose tests and type-check pass after npm install', async () => {
    const project = join(work, 'weather-server')
    const printed = await sh(process.execPath, [bin, 'new', project], work)
    assert.match(printed, /Next steps:\n {2}cd .*weather-server\n {2}npm install\n {2}npm test\n/)

    const pkg = JSON.parse(await readFile(join(project, 'package.json'), 'utf8'))
    assert.equal(pkg.name, 'weather-server')
    const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8'))
    assert.equal(pkg.dependencies['mcp-gatehouse'], `^${version}`, 'the published package, not a path')
    assert.ok(pkg.dependencies['@modelcontextprotocol/sdk'])
    assert.equal(pkg.scripts.dev, 'node --watch src/main.ts')
    assert.deepEqual((await readdir(project)).sort(), [
      '.gitignore',
      'README.md',
      'package.json',
      'src',
      'test',
      'tsconfig.json',
    ])
    assert.match(await readFile(join(project, 'README.md'), 'utf8'), /^# weather-server\n/)
    const left = (await sh('grep', ['-rl', '{{', project], project).catch(() => '')).trim()
    assert.equal(left, '', 'every placeholder is filled in')

    // For the test only: mcp-gatehouse from the tarball, everything else as the project declares it.
    await sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], project)
    const tests = await sh('npm', ['test'], project)
    assert.match(tests, /pass 3\b/)
    assert.match(tests, /fail 0\b/)
    await sh('npm', ['run', 'check'], project)
  })

  it('refuses a directory that is not empty, writing nothing into it', async () => {
    const taken = join(work, 'taken')
    await mkdir(taken)
    await writeFile(join(taken, 'notes.txt'), 'mine')
    const refused = await sh(process.execPath, [bin, 'new', taken], work).then(
      () => assert.fail('gatehouse new wrote into a non-empty directory'),
      (error: { code: number; stderr: string }) => error,
    )
    assert.equal(refused.code, 1)
    assert.equal(
      refused.stderr,
      `gatehouse: ${taken} is not empty (notes.txt): give a new or empty directory\n`,
    )
    assert.deepEqual(await readdir(taken), ['notes.txt'])
  })

  it('--help has an example', async () => {
    assert.match(
      await sh(process.execPath, [bin, 'new', '--help'], work),
      /Examples:\n {2}gatehouse new my-server\n/,
    )
  })
})
