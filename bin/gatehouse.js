#!/usr/bin/env node
// Plain JavaScript so that an old Node reaches this check instead of failing on TypeScript syntax.
import { existsSync } from 'node:fs'

const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(
    `gatehouse needs Node.js 22.18 or later (this is ${process.version}). ` +
      'Install a newer Node; in a clone, `npx mcp-gatehouse` and `npm start` use the Node pinned in node_modules.',
  )
  process.exit(1)
}
// A clone has the sources and runs them (Node strips the types); the published package ships only the
// compiled dist/, since Node does not strip types under node_modules.
const source = new URL('../src/cli/main.ts', import.meta.url)
const { run } = await import(existsSync(source) ? source.href : '../dist/cli/main.js')
await run(process.argv.slice(2))
