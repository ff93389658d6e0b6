import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider from 'oidc-provider'

export interface SignInIdp {
  issuer: string
  clientId: string
  clientSecret: string
  close(): Promise<void>
}

/**
 * A real `oidc-provider` playing the operator's identity provider: its built-in development pages sign in
 * any login (the login becomes `sub`), and one confidential client is registered for `redirectUri`. Its
 * `groups` claim (with `profile`) is `[admins, staff]` for a login starting with `admin-`, else `[staff]`.
 */
export async function startSignInIdp(redirectUri: string): Promise<SignInIdp> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const clientId = 'gatehouse'
  const clientSecret = 'gatehouse-upstream-secret-0123456789'
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
    findAccount: (_ctx, sub) => ({
      accountId: sub,
      claims: () => ({
        sub,
        name: `Upstream ${sub}`,
        email: `${sub}@corp.example`,
        email_verified: true,
        groups: sub.startsWith('admin-') ? ['admins', 'staff'] : ['staff'],
      }),
    }),
  })
  provider.on('server_error', (_ctx, error) => console.error('sign-in IdP error', error))
  server.on('request', provider.callback())
  return {
    issuer,
    clientId,
    clientSecret,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
