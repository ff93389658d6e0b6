const WELL_KNOWN = '/.well-known/oauth-protected-resource'

export interface ResourceMetadataInput {
  resource: string
  authorizationServers: readonly string[]
  scopesSupported: readonly string[]
  resourceName?: string | undefined
  resourceDocumentation?: string | undefined
  dpopAlgorithms?: readonly string[] | undefined
  dpopRequired?: boolean | undefined
}

/** RFC 9728 §3.1: the well-known suffix goes between the host and the resource's path. */
export function resourceMetadataUrl(resource: string): string {
  const url = new URL(resource)
  const path = url.pathname.replace(/\/+$/, '')
  return `${url.origin}${WELL_KNOWN}${path}`
}

/** Paths on which the document is served: path-inserted (what `resource_metadata` points to) and root. */
export function resourceMetadataPaths(resource: string): Set<string> {
  return new Set([new URL(resourceMetadataUrl(resource)).pathname, WELL_KNOWN])
}

/** The Protected Resource Metadata document (RFC 9728 §2). Members with no value are left out (§3.2). */
export function resourceMetadataDocument(input: ResourceMetadataInput): Record<string, unknown> {
  const document: Record<string, unknown> = {
    resource: input.resource,
    authorization_servers: [...input.authorizationServers],
    bearer_methods_supported: ['header'],
  }
  if (input.scopesSupported.length > 0) document.scopes_supported = [...input.scopesSupported]
  if (input.resourceName) document.resource_name = input.resourceName
  if (input.resourceDocumentation) document.resource_documentation = input.resourceDocumentation
  if (input.dpopAlgorithms?.length) document.dpop_signing_alg_values_supported = [...input.dpopAlgorithms]
  if (input.dpopRequired) document.dpop_bound_access_tokens_required = true
  return document
}
