import { spawn } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { basename, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { failWith } from './errors.ts'
import { step } from './style.ts'

export const NEW_HELP = `Usage:
  gatehouse new <dir>    create a TypeScript MCP server protected by the Gatehouse guard

The project, named after <dir>, depends on mcp-gatehouse and the MCP TypeScript SDK: npm run dev serves
http://localhost:3000/mcp and its Protected Resource Metadata for the provider at OAUTH_ISSUER_URL; npm test
runs its own tests, with no provider needed. <dir> must be empty or not exist yet.

Options:
  --install     run npm install in the new project, showing npm's progress
  -h, --help    this help

Examples:
  gatehouse new my-server
  gatehouse new my-server --install
  cd my-server && OAUTH_ISSUER_URL=https://your-tenant.auth0.com/ npm run dev
`

/** Shipped in the package (`files`); the same place from src/cli and dist/cli. */
const TEMPLATE = new URL('../../templates/mcp-server/', import.meta.url)
/** npm drops a packed `.gitignore`, so the template carries it without the dot. */
const RENAMED: Record<string, string> = { gitignore: '.gitignore' }
const PACKAGE_NAME = /^[a-z0-9][a-z0-9._-]*$/

/** `gatehouse new <dir>`: copies the template into an empty directory, the project name filled in. */
export async function runNew(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { help: { type: 'boolean', short: 'h' }, install: { type: 'boolean' } },
    allowPositionals: true,
  })
  if (values.help) {
    process.stdout.write(NEW_HELP)
    return
  }
  if (positionals.length !== 1)
    failWith('usage', 'gatehouse new takes one directory, e.g. gatehouse new my-server')
  const dir = resolve(positionals[0] as string)
  const files = await scaffold(dir)
  const shown = relative(process.cwd(), dir) || '.'
  process.stdout.write(`Created ${shown}: ${files.join(', ')}\n`)
  if (values.install) await npmInstall(dir, shown)
  process.stdout.write(
    `\nNext steps:\n  cd ${shown}\n${values.install ? '' : '  npm install\n'}  npm test\n` +
      '  OAUTH_ISSUER_URL=https://your-idp.example.com/ npm run dev   # http://localhost:3000/mcp\n',
  )
}

/** `npm install` in the new project, npm's own progress shown as it goes (its output goes to stderr). */
async function npmInstall(dir: string, shown: string): Promise<void> {
  step(`installing the dependencies: npm install in ${shown} (this takes a minute)`)
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const child = spawn(npm, ['install', '--no-fund'], {
    cwd: dir,
    stdio: ['ignore', process.stderr, 'inherit'],
  })
  const outcome = await new Promise<number | null | NodeJS.ErrnoException>((resolve) => {
    child.once('error', resolve)
    child.once('exit', resolve)
  })
  if (typeof outcome === 'object' && outcome !== null)
    failWith(
      'install_failed',
      `cannot run npm (${outcome.code ?? outcome.message}): the project is written; install Node.js's npm, then run npm install in ${shown}`,
    )
  if (outcome !== 0)
    failWith(
      'install_failed',
      `npm install exited with ${outcome ?? 'a signal'} (its messages are above): the project is written; fix what npm says, then run npm install in ${shown}`,
    )
}

/** Writes the project into `dir` and returns the files written, relative to it. */
export async function scaffold(dir: string): Promise<string[]> {
  const name = basename(dir).toLowerCase()
  if (!PACKAGE_NAME.test(name) || name.length > 214)
    failWith(
      'usage',
      `${JSON.stringify(basename(dir))} cannot name an npm package: name the directory with lowercase letters, digits, -, _ or .`,
    )
  const existing = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return []
    throw error
  })
  if (existing.length > 0)
    failWith(
      'directory_not_empty',
      `${dir} is not empty (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', …' : ''}): give a new or empty directory`,
    )
  const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'))
  const values: Record<string, string> = { name, gatehouseVersion: version }
  const files = await templateFiles(TEMPLATE)
  await mkdir(dir, { recursive: true })
  for (const file of files) {
    const text = await readFile(new URL(file, TEMPLATE), 'utf8')
    const target = join(dir, ...file.split('/').map((part) => RENAMED[part] ?? part))
    await mkdir(resolve(target, '..'), { recursive: true })
    await writeFile(
      target,
      text.replace(/\{\{(\w+)\}\}/g, (match, key: string) => values[key] ?? match),
    )
  }
  return files.map((file) => RENAMED[file] ?? file)
}

async function templateFiles(root: URL): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true })
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(fileURLToPath(root), join(entry.parentPath, entry.name)))
    .sort()
}
