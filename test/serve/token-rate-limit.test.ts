import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startEmbeddedGateway } from '../support/embedded-gateway.ts'

/** A token request that fails (unknown client) but still counts against the address's limit. */
const guess = (issuer: string) =>
  fetch(`${issuer}/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_id: 'nobody' }),
  })

async function statuses(rateLimit: { limit: number; window_seconds: number }, requests: number) {
  const gateway = await startEmbeddedGateway(
    { dev: true },
    { authorization_server: { token_rate_limit: rateLimit } },
  )
  try {
    const issuer = new URL(gateway.resource).origin
    const seen: number[] = []
    for (let i = 0; i < requests; i++) seen.push((await guess(issuer)).status)
    return seen
  } finally {
    await gateway.close()
  }
}

test('authorization_server.token_rate_limit sets how many token requests one address may send', async () => {
  assert.deepEqual(await statuses({ limit: 2, window_seconds: 600 }, 3), [401, 401, 429])
  // The same three requests under a higher limit: the 429 above came from the setting.
  assert.deepEqual(await statuses({ limit: 3, window_seconds: 600 }, 4), [401, 401, 401, 429])
})
