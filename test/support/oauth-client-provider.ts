import { randomBytes } from 'node:crypto'
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js'
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js'

/**
 * The MCP SDK v1 client's OAuth state, in memory, for one test: client information, tokens, the PKCE
 * verifier and `state`. The user's part (sign-in and consent in a browser, up to the redirect to the loopback
 * callback) is `authorize`; its result is kept in `callback` for the test to finish with `finishAuth(code)`.
 */
export class InMemoryOAuthProvider implements OAuthClientProvider {
  readonly redirectUrl: string
  readonly clientMetadataUrl: string | undefined
  /** The redirect back to the client, once `redirectToAuthorization` ran. */
  callback: Promise<URL> | undefined
  authorizationUrl: URL | undefined
  #authorize: (url: URL) => Promise<URL>
  #client: OAuthClientInformationMixed | undefined
  #tokens: OAuthTokens | undefined
  #verifier: string | undefined
  #state: string | undefined

  constructor(options: {
    redirectUrl: string
    authorize: (url: URL) => Promise<URL>
    /** A CIMD client: this https URL is the client_id, and no registration happens. */
    clientMetadataUrl?: string
  }) {
    this.redirectUrl = options.redirectUrl
    this.clientMetadataUrl = options.clientMetadataUrl
    this.#authorize = options.authorize
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: 'Gatehouse e2e (MCP SDK v1)',
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }
  }

  state(): string {
    this.#state = randomBytes(16).toString('base64url')
    return this.#state
  }

  /** The `state` sent with the last authorization request. */
  get sentState(): string | undefined {
    return this.#state
  }

  clientInformation() {
    return this.#client
  }

  saveClientInformation(client: OAuthClientInformationMixed) {
    this.#client = client
  }

  tokens() {
    return this.#tokens
  }

  saveTokens(tokens: OAuthTokens) {
    this.#tokens = tokens
  }

  redirectToAuthorization(url: URL) {
    this.authorizationUrl = url
    this.callback = this.#authorize(url)
    // The SDK throws UnauthorizedError right after this returns; a failure shows when the test awaits it.
    this.callback.catch(() => {})
  }

  saveCodeVerifier(verifier: string) {
    this.#verifier = verifier
  }

  codeVerifier(): string {
    if (!this.#verifier) throw new Error('no PKCE verifier saved')
    return this.#verifier
  }
}
