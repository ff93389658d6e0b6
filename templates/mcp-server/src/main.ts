/**
 * `npm run dev` and `npm start`: the server on PORT (default 3000), protected by the provider at
 * OAUTH_ISSUER_URL. MCP_URL is the URL clients use, when it is not http://localhost:<port>/mcp (behind a
 * proxy, say); OAUTH_AUDIENCE the audiences your provider puts in its tokens, when not that URL.
 */
import { guardOptionsFromEnv, resourceMetadataUrl } from 'mcp-gatehouse/guard'
import { startServer } from './server.ts'

try {
  const server = await startServer({
    port: Number(process.env.PORT ?? 3000),
    ...(process.env.MCP_URL ? { url: process.env.MCP_URL } : {}),
    guardOptions: (url) => guardOptionsFromEnv(process.env, url),
  })
  console.log(`MCP server on ${server.url}`)
  console.log(`Protected Resource Metadata on ${resourceMetadataUrl(server.url)}`)
} catch (error) {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
}
