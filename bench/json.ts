/**
 * `node bench/json.ts`: what the gateway's strict body parser costs against `JSON.parse` on the bodies it
 * sees most, side by side in this process. BENCH_SECONDS (default 2) sets the measured time per case.
 */
import { parseJsonRpcBody } from '../src/gateway/jsonrpc.ts'
import { parseStrictJsonRpc } from '../src/gateway/strict-json.ts'
import { benchSeconds, measureSideBySide } from './measure.ts'

const BODIES = {
  'tools/call, echo': {
    jsonrpc: '2.0',
    id: 42,
    method: 'tools/call',
    params: { name: 'echo', arguments: { message: 'hello' }, _meta: { progressToken: 42 } },
  },
  'tools/call, 2 KB of arguments': {
    jsonrpc: '2.0',
    id: 'c1b6a2f0-9f3e-4d5e-8f6a-1e2d3c4b5a69',
    method: 'tools/call',
    params: {
      name: 'write_file',
      arguments: {
        path: '/srv/data/notes/2026/report.md',
        content: 'Line of text with "quotes", a tab\tand é.\n'.repeat(40),
        options: { overwrite: true, mode: 420, tags: ['a', 'b', 'c'] },
      },
    },
  },
  initialize: {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: {
      protocolVersion: '2025-06-18',
      capabilities: { roots: { listChanged: true }, sampling: {}, elicitation: {} },
      clientInfo: { name: 'example-client', version: '1.4.2' },
    },
  },
}

const rows: string[][] = []
for (const [name, message] of Object.entries(BODIES)) {
  const body = Buffer.from(JSON.stringify(message))
  const [native, strict, whole] = await measureSideBySide([
    () => JSON.parse(body.toString('utf8')),
    () => parseStrictJsonRpc(body),
    () => parseJsonRpcBody(body, 100),
  ])
  const micros = (m: { opsPerCpuSecond: number } | undefined) =>
    (1e6 / (m?.opsPerCpuSecond ?? NaN)).toFixed(2)
  rows.push([`${name} (${body.length} B)`, micros(native), micros(strict), micros(whole)])
}

process.stdout.write(
  [
    `Node ${process.versions.node}, BENCH_SECONDS=${benchSeconds}; CPU µs per body (median of 5 interleaved rounds).`,
    '',
    '| body | JSON.parse | strict parser | parseJsonRpcBody (strict + shape) |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map((row) => `| ${row.join(' | ')} |`),
    '',
  ].join('\n'),
)
