import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { describe, it } from 'node:test'
import { accepts, addresses, mediaType, requestUrl } from '../../src/gateway/http.ts'
import { normalizedPath } from '../../src/guard/lib/request_head.ts'

const ORIGIN = 'https://mcp.gatehouse.test'
const incoming = (url: string) => ({ url, method: 'POST', headers: {} }) as unknown as IncomingMessage

describe('gateway: the request target becomes the path the guard reads', () => {
  for (const target of [
    '/mcp',
    '/mcp?x=1',
    '//evil.example/mcp',
    '///evil.example/mcp',
    '/a/../mcp',
    'http://evil.example/mcp?q',
    '*',
  ]) {
    it(JSON.stringify(target), () => {
      const gateway = requestUrl(incoming(target), ORIGIN)
      assert.equal(gateway.pathname, normalizedPath(ORIGIN, target))
      assert.equal(gateway.origin, ORIGIN)
    })
  }

  it('`//evil.example/mcp` is not the MCP path', () => {
    assert.equal(requestUrl(incoming('//evil.example/mcp'), ORIGIN).pathname, '//evil.example/mcp')
  })
})

describe('gateway: the MCP path recognised without a URL, as requestUrl reads it', () => {
  for (const path of ['/mcp', '/', '/a%20b/mcp']) {
    it(path, () => {
      for (const target of [
        path,
        `${path}?x=1`,
        `${path}?`,
        `${path}#x`,
        `${path}/`,
        `${path}x`,
        `${path};x`,
        `/x/..${path}`,
        `/.${path}`,
        `//evil.example${path}`,
        `http://evil.example${path}?q`,
        path.toUpperCase(),
        path.replace('m', '%6d'),
        '*',
      ]) {
        const expected = requestUrl(incoming(target), ORIGIN).pathname === path
        assert.equal(addresses(incoming(target), ORIGIN, path), expected, target)
      }
    })
  }
})

describe('gateway: one media-type parser', () => {
  for (const [value, expected] of [
    ['application/json', 'application/json'],
    ['application/JSON; charset=utf-8', 'application/json'],
    [' Application/Json ;charset=UTF-8', 'application/json'],
    ['application/jsonx', 'application/jsonx'],
    ['application/json-seq', 'application/json-seq'],
    ['', undefined],
    [undefined, undefined],
  ] as const) {
    it(`${JSON.stringify(value)} is ${expected}`, () => assert.equal(mediaType(value), expected))
  }

  it('reads Accept lists entry by entry', () => {
    assert.equal(accepts('application/json, Text/Event-Stream;q=0.9', 'text/event-stream'), true)
    assert.equal(accepts('application/json', 'text/event-stream'), false)
    assert.equal(accepts('text/event-streamx', 'text/event-stream'), false)
    assert.equal(accepts(undefined, 'application/json'), false)
  })
})
