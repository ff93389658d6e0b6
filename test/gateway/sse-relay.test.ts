import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { relayEvents } from '../../src/gateway/sse.ts'

describe('relayEvents: an upstream stream cut at any byte', () => {
  const data = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"é, 中, 😀"}]}}'
  const event = Buffer.from(`event: message\nid: 7\ndata: ${data}\n\n`)
  let chunks: Buffer[] = []
  let seen: string[] = []
  // A real response to a real client: what the relay writes is what the client reads.
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const rewrite = (text: string) => {
      seen.push(text)
      return text
    }
    void relayEvents(Readable.from(chunks), res, rewrite, 1_000_000)
  })
  let url = ''
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
  })
  after(() => server.close())

  it('relays the event byte for byte and reads its data whole, a character cut in two included', async () => {
    for (let cut = 1; cut < event.length; cut++) {
      chunks = [event.subarray(0, cut), event.subarray(cut)]
      seen = []
      const body = Buffer.from(await (await fetch(url)).arrayBuffer())
      assert.deepEqual(body, event, `cut at byte ${cut}`)
      assert.deepEqual(seen, [data], `cut at byte ${cut}`)
    }
  })
})
