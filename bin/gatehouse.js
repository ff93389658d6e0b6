#!/usr/bin/env node
// Plain JavaScript so that an old Node reaches this check instead of failing on TypeScript syntax.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(
    `gatehouse needs Node.js 22.18 or later (this is ${process.version}). ` +
      'In a clone, run it through `npx gatehouse` or `npm start`, which use the Node pinned in node_modules.',
  )
  process.exit(1)
}
await import('../src/cli/main.ts')
