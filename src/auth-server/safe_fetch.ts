import { type LookupAddress, lookup } from 'node:dns'
import { request } from 'node:https'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { Readable } from 'node:stream'

/** RFC 6890 special-use ranges: private, loopback, link-local, CGNAT, documentation, multicast, reserved. */
const SPECIAL_USE = new BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 3],
] as const) {
  SPECIAL_USE.addSubnet(network, prefix, 'ipv4')
}
for (const [network, prefix] of [
  ['::', 127],
  ['::ffff:0:0', 96],
  ['64:ff9b::', 96],
  ['100::', 64],
  ['2001::', 23],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  SPECIAL_USE.addSubnet(network, prefix, 'ipv6')
}

const isSpecialUse = (address: string) => SPECIAL_USE.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')

const refuse = () => new Error('client metadata document host resolves to a special-use IP address')

/** Resolves, refuses special-use addresses, and hands the checked address to the socket: no rebinding gap. */
const checkedLookup: LookupFunction = (hostname, options, callback) => {
  lookup(hostname, { all: true, family: options.family ?? 0 }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, '', 4)
    if (addresses.length === 0 || addresses.some((a) => isSpecialUse(a.address)))
      return callback(refuse(), '', 4)
    const first = addresses[0] as LookupAddress
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses)
    callback(null, first.address, first.family)
  })
}

/**
 * TEST ONLY, NEVER IN PRODUCTION: hosts (`host:port`, exactly as in the URL) whose documents are fetched
 * although they resolve to special-use addresses, and an extra CA to trust for them. It exists so that tests
 * can serve a Client ID Metadata Document on a loopback https server with a test CA; in production it would
 * reopen the SSRF hole the guard closes.
 */
export interface UnsafeTestFetchOptions {
  unsafeAllowHosts?: readonly string[]
  /** PEM; the CA trusted (instead of the system CAs) for the allowed hosts only. */
  ca?: string
}

/** The guarded fetch, with the default policy. */
export const safeFetch = createSafeFetch()

/**
 * The `fetch` oidc-provider uses for Client ID Metadata Documents. Its built-in guard checks the peer only
 * after the connection (and TLS handshake) is made; this one refuses special-use addresses before any packet
 * is sent, IP literals included. https only, no redirects followed; the provider keeps its size cap and timeout.
 */
export function createSafeFetch(unsafe: UnsafeTestFetchOptions = {}) {
  const allowed = new Set(unsafe.unsafeAllowHosts ?? [])
  if (allowed.size > 0) {
    console.warn(
      `[gatehouse auth] UNSAFE, TEST ONLY: client metadata documents from ${[...allowed].join(', ')} bypass the SSRF guard`,
    )
  }
  return (url: URL | string, options: RequestInit = {}): Promise<Response> => {
    const target = new URL(url)
    if (target.protocol !== 'https:')
      return Promise.reject(new Error('client metadata documents are fetched over https only'))
    const exempt = allowed.has(target.host)
    const literal = target.hostname.replace(/^\[|\]$/g, '')
    if (!exempt && isIP(literal) && isSpecialUse(literal)) return Promise.reject(refuse())
    return new Promise((resolve, reject) => {
      const req = request(
        target,
        {
          method: options.method ?? 'GET',
          headers: Object.fromEntries(new Headers(options.headers)),
          ...(exempt ? { ca: unsafe.ca } : { lookup: checkedLookup }),
          signal: options.signal ?? undefined,
        },
        (res) => {
          const headers = new Headers()
          for (const [name, value] of Object.entries(res.headers)) {
            for (const item of [value ?? []].flat()) headers.append(name, item)
          }
          const body = Readable.toWeb(res) as ReadableStream<Uint8Array>
          resolve(new Response(body, { status: res.statusCode ?? 502, headers }))
        },
      )
      req.on('error', reject)
      req.end()
    })
  }
}
