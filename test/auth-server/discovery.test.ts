import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { metadataUrls } from '../../src/guard/index.ts'
import { type Harness, startAuthServer } from './harness.ts'

for (const path of ['/oauth', '']) {
  describe(`discovery, issuer ${path ? 'with a path' : 'at the origin'}`, () => {
    let h: Harness
    before(async () => {
      h = await startAuthServer({ path })
    })
    after(() => h.close())

    // The guard's list is the MCP client order (path-inserted RFC 8414, path-inserted OIDC, appended OIDC).
    test('every URL an MCP client tries serves the same metadata, issuer byte-exact', async () => {
      const urls = metadataUrls(h.issuer).map(String)
      assert.equal(urls.length, path ? 3 : 2)
      for (const url of urls) {
        const response = await fetch(url)
        assert.equal(response.status, 200, url)
        assert.match(response.headers.get('content-type') ?? '', /^application\/json/)
        const metadata = (await response.json()) as Record<string, unknown>
        assert.equal(metadata.issuer, h.issuer, url)
        assert.equal(metadata.authorization_endpoint, `${h.issuer}/authorize`, url)
        assert.equal(metadata.token_endpoint, `${h.issuer}/token`, url)
        assert.equal(metadata.registration_endpoint, `${h.issuer}/register`, url)
        assert.equal(metadata.jwks_uri, `${h.issuer}/jwks`, url)
      }
    })

    test('the metadata says what MCP clients check', async () => {
      const metadata = (await (await fetch(metadataUrls(h.issuer)[0] as URL)).json()) as Record<
        string,
        unknown
      >
      assert.deepEqual(metadata.code_challenge_methods_supported, ['S256'])
      assert.deepEqual(metadata.response_types_supported, ['code'])
      assert.equal(metadata.authorization_response_iss_parameter_supported, true)
      assert.equal(metadata.client_id_metadata_document_supported, true)
      assert.deepEqual(
        new Set(metadata.grant_types_supported as string[]),
        new Set(['authorization_code', 'refresh_token', 'client_credentials']),
      )
      assert.ok((metadata.token_endpoint_auth_methods_supported as string[]).includes('none'))
      assert.equal(metadata.revocation_endpoint, `${h.issuer}/revoke`)
      assert.equal(metadata.introspection_endpoint, `${h.issuer}/introspect`)
      assert.ok((metadata.dpop_signing_alg_values_supported as string[]).includes('ES256'))
      for (const scope of ['mcp:read', 'mcp:write', 'other:read']) {
        assert.ok((metadata.scopes_supported as string[]).includes(scope), scope)
      }
    })

    test('paths that are not the authorization server are left to the host', async () => {
      for (const other of [
        '/mcp',
        '/.well-known/oauth-protected-resource/mcp',
        '/.well-known/oauth-authorization-server/elsewhere',
      ]) {
        const response = await fetch(`${h.origin}${other}`)
        assert.equal(response.status, 404, other)
        assert.equal(await response.text(), 'not the authorization server')
      }
    })
  })
}
