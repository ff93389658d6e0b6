/**
 * `--help` everywhere: every command and every subcommand listed in `gatehouse --help` answers its help with
 * a usage line and examples, and each example is a command line the real parser accepts. A new command
 * (or subcommand) is found here without being named, so it cannot ship without them.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { gatehouseCommandLines, parseWithHelp, runGatehouse } from '../support/command-lines.ts'

/** In this process: the help of every command, many times over, would cost minutes as child processes. */
async function gatehouse(args: string[]) {
  const { code, out } = await runGatehouse(args)
  return { code, stdout: out, stderr: out }
}

/** The commands `gatehouse --help` lists. */
async function commands(): Promise<string[]> {
  const { stdout } = await gatehouse(['--help'])
  const section = /\nCommands:\n((?: {2}\S.*\n)+)/.exec(stdout)?.[1]
  assert.ok(section, `gatehouse --help has a Commands: section:\n${stdout}`)
  return section.split('\n').flatMap((line) => /^ {2}(\S+)/.exec(line)?.[1] ?? [])
}

/** The subcommands a command's usage names: `gatehouse users add <username>` gives `add`. */
const subcommands = (command: string, help: string): string[] => {
  const usage = help.split(/\n(?:Options|Examples?):/)[0] as string
  const pattern = new RegExp(`gatehouse ${command} ([a-z][a-z-]*)`, 'g')
  return [...new Set([...usage.matchAll(pattern)].map((match) => match[1] as string))]
}

/** The convention every help follows (src/cli/style.ts's neighbour, reported to new commands). */
function assertHelpShape(where: string, help: string, command: string): void {
  assert.match(help, /^Usage:/m, `${where}: a "Usage:" line`)
  const examples = /\nExamples:\n((?: {2}.*\n?)+)/.exec(help)?.[1]
  assert.ok(examples, `${where}: an "Examples:" section`)
  assert.ok(
    gatehouseCommandLines(examples).some((line) => line.args[0] === command),
    `${where}: an example of gatehouse ${command}`,
  )
}

describe('--help on every command and subcommand', () => {
  it('lists the commands, and the top-level help has examples', async () => {
    const { code, stdout } = await gatehouse(['--help'])
    assert.equal(code, 0)
    assert.match(stdout, /^Usage: gatehouse <command>/)
    assert.ok((await commands()).length >= 10)
    assert.equal((await gatehouse(['help', 'keys'])).stdout, (await gatehouse(['keys', '--help'])).stdout)
  })

  it('every command and subcommand answers --help with a usage line and an example of itself', async () => {
    const checked: string[] = []
    for (const command of await commands()) {
      for (const flag of ['--help', '-h']) {
        const { code, stdout, stderr } = await gatehouse([command, flag])
        assert.equal(code, 0, `gatehouse ${command} ${flag}: ${stderr}`)
        assertHelpShape(`gatehouse ${command} ${flag}`, stdout, command)
      }
      const { stdout: help } = await gatehouse([command, '--help'])
      for (const sub of subcommands(command, help)) {
        const { code, stdout, stderr } = await gatehouse([command, sub, '--help'])
        assert.equal(code, 0, `gatehouse ${command} ${sub} --help: ${stderr}`)
        assertHelpShape(`gatehouse ${command} ${sub} --help`, stdout, command)
        checked.push(`${command} ${sub}`)
      }
    }
    // The walk reached the subcommands, not just the commands.
    for (const sub of ['users add', 'keys rotate', 'clients revoke', 'grants list'])
      assert.ok(checked.includes(sub), `${sub} was walked: ${checked.join(', ')}`)
  })

  it("every example in every help is accepted by the command's parser", async () => {
    const failures: string[] = []
    for (const command of await commands()) {
      const { stdout } = await gatehouse([command, '--help'])
      const examples = /\nExamples:\n((?: {2}.*\n?)+)/.exec(stdout)?.[1] ?? ''
      for (const line of gatehouseCommandLines(examples)) {
        const { code, out } = await parseWithHelp(line.args)
        if (code !== 0 || !/^Usage/m.test(out)) failures.push(`${line.text}\n  ${out.trim()}`)
      }
    }
    assert.deepEqual(failures, [])
  })

  it('a mistyped command or option says what to type instead', async () => {
    const command = await gatehouse(['user', 'list'])
    assert.equal(command.code, 2)
    assert.match(command.stderr, /^gatehouse: unknown command "user": did you mean users\?/)
    const option = await gatehouse(['keys', 'rotate', '--algorithm', 'EdDSA'])
    assert.equal(option.code, 1)
    assert.equal(
      option.stderr,
      'gatehouse: unknown option --algorithm: gatehouse keys --help lists the options\n',
    )
    // A name that is a property of every object is still an unknown command, not a crash.
    const inherited = await gatehouse(['constructor'])
    assert.equal(inherited.code, 2)
    assert.match(inherited.stderr, /^gatehouse: unknown command "constructor"/)
    const missing = await gatehouse(['users', 'add'])
    assert.equal(missing.stderr, 'gatehouse: gatehouse users add <username>: expected <username>, got none\n')
  })
})
