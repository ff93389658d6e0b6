/** One request a client made, as the server answered it. */
export interface Exchange {
  method: string
  url: string
  status: number
}

/** A fetch that notes each request (method, URL without query, status) in `exchanges`, in order. */
export const recordingFetch =
  (exchanges: Exchange[]): typeof fetch =>
  async (input, init) => {
    const response = await fetch(input, init)
    const url = new URL(input instanceof Request ? input.url : input)
    exchanges.push({ method: init?.method ?? 'GET', url: url.origin + url.pathname, status: response.status })
    return response
  }
