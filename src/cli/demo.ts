import { parseArgs } from 'node:util'
import { startProtectedServer } from '../../examples/protected-server.ts'
import { startDevIdp } from '../dev/idp.ts'

const HELP = `Usage: gatehouse demo [--port 3000] [--idp-port 3001]

Starts a local OIDC provider and an example MCP server protected by the guard, then prints how to get a
token and call the server. Everything runs on 127.0.0.1 and is forgotten when it stops.`

const SCOPE = 'mcp:tools'

export async function runDemo(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', default: process.env.PORT ?? '3000' },
      'idp-port': { type: 'string', default: '3001' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(HELP)
    return
  }
  const port = Number(values.port)
  const mcpUrl = `http://127.0.0.1:${port}/mcp`
  const idp = await startDevIdp({ resources: { [mcpUrl]: SCOPE }, port: Number(values['idp-port']) })
  const server = await startProtectedServer({
    port,
    guardOptions: { resource: mcpUrl, authorizationServers: [{ issuer: idp.issuer }], scopes: [SCOPE] },
  })
  const { id, secret } = idp.client
  console.log(`
Gatehouse demo
  MCP endpoint (protected):  ${mcpUrl}
  Resource metadata:         http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp
  Local OIDC provider:       ${idp.issuer}  (client ${id})

1. Without a token the server answers 401 with a challenge:
   curl -si -X POST ${mcpUrl} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\
     -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'

2. Get a token for the MCP endpoint (client credentials, audience bound by "resource"):
   TOKEN=$(curl -s ${idp.issuer}/token -u '${id}:${secret}' \\
     -d grant_type=client_credentials -d scope=${SCOPE} --data-urlencode resource=${mcpUrl} | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')

3. Call the server with it:
   curl -s -X POST ${mcpUrl} -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
     -H 'accept: application/json, text/event-stream' \\
     -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'

Press Ctrl+C to stop.`)
  const stop = async () => {
    await server.close()
    await idp.close()
    process.exit(0)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
