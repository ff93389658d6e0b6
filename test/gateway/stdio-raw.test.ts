import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  addMembers,
  keepBodyRaw,
  keepRaw,
  replaceValue,
  textOf,
  valueSpan,
} from '../../src/gateway/stdio/raw.ts'

const at = (text: string, path: string[]) => {
  const span = valueSpan(text, path)
  return span && text.slice(...span)
}

describe('stdio bridge: splicing the child’s bytes', () => {
  it('finds a member past strings holding braces, quotes and escapes, at any depth', () => {
    const text = String.raw`{ "a" : "}\"{[" , "b":{"c":[1,{"id":2}],"d" :  12345678901234567890 } }`
    assert.equal(at(text, ['b', 'd']), '12345678901234567890')
    assert.equal(at(text, ['b', 'c']), '[1,{"id":2}]')
    assert.equal(at(text, ['id']), undefined)
    assert.equal(at(text, ['a', 'x']), undefined)
  })

  it('reads a key as JSON.parse does: escaped spellings match, and the last of two wins', () => {
    const text = String.raw`{"id":1,"\u0069d":2,"params":{}}`
    assert.equal(JSON.parse(text).id, 2)
    assert.equal(at(text, ['id']), '2')
  })

  it('replaces only the value, and adds members to an empty or a full object', () => {
    const message = JSON.parse('{"id": 7 ,"result":{}}')
    keepRaw(message, '{"id": 7 ,"result":{}}')
    const next = replaceValue(message, { ...message, id: 'a"b' }, ['id'], 'a"b')
    assert.equal(textOf(next), '{"id": "a\\"b" ,"result":{}}')
    assert.deepEqual(JSON.parse(textOf(addMembers(next, { ...next }, ['result'], { x: 1 }))).result, { x: 1 })
    const full = JSON.parse('{"result":{ "y":1.0}}')
    keepRaw(full, '{"result":{ "y":1.0}}')
    assert.equal(textOf(addMembers(full, { ...full }, ['result'], { x: 1 })), '{"result":{"x":1, "y":1.0}}')
  })

  it('drops a CR (whitespace in JSON) so that an SSE data line cannot be split by it', () => {
    const message = JSON.parse('{"a":\r1}')
    keepRaw(message, '{"a":\r1}')
    assert.equal(textOf(message), '{"a":1}')
  })

  it('a message the bridge built is serialized', () => {
    assert.equal(textOf({ jsonrpc: '2.0', id: 1, result: {} }), '{"jsonrpc":"2.0","id":1,"result":{}}')
  })

  it('a batch body: each element’s own text, spacing and line ends around the elements not included', () => {
    const body = '[ {"id":1,"n":1.0} ,\n\t{"id":"2","s":"]\\"[,"} ]'
    const messages = JSON.parse(body)
    keepBodyRaw(messages, Buffer.from(body), true)
    assert.deepEqual(messages.map(textOf), ['{"id":1,"n":1.0}', '{"id":"2","s":"]\\"[,"}'])
    const single = { jsonrpc: '2.0' as const, id: 1 }
    keepBodyRaw([single], Buffer.from('{"jsonrpc":"2.0",\r\n"id":1}'), false)
    assert.equal(textOf(single), '{"jsonrpc":"2.0","id":1}')
  })
})
