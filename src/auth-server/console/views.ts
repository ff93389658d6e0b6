import { createHash } from 'node:crypto'
import { html, SafeHtml } from '../interactions/html.ts'

type Cell = SafeHtml | string | number | undefined

/** The console's pages, in the order of the navigation. */
export const PAGES = [
  { path: '', label: 'Overview' },
  { path: '/clients', label: 'Clients' },
  { path: '/users', label: 'Users' },
  { path: '/grants', label: 'Grants and consents' },
  { path: '/keys', label: 'Signing keys' },
  { path: '/connections', label: 'Vault connections' },
  { path: '/audit', label: 'Audit events' },
  { path: '/health', label: 'Upstream health' },
] as const

const STYLE = `
body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}
a{color:#1d4ed8}a:focus,button:focus{outline:3px solid #f59e0b;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem}
header{background:#1d1f23;color:#fff;padding:.75rem 1.5rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#fff}header p{margin:0;font-weight:700}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:1rem}
nav [aria-current=page]{font-weight:700;text-decoration:none;border-bottom:2px solid #fff}
main{max-width:72rem;margin:1.5rem auto;padding:1.5rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}
h1{font-size:1.4rem;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border-bottom:1px solid #ddd;padding:.4rem .5rem;text-align:left;vertical-align:top;word-break:break-word}
th{background:#f4f5f7}
button{padding:.35rem .8rem;font-size:.95rem;border-radius:4px;border:1px solid #888;background:#fff;cursor:pointer}
button.danger{border-color:#c81e1e;color:#c81e1e}
.notice{background:#e7f5ec;border-left:4px solid #15803d;padding:.75rem}
.error{background:#fdecec;border-left:4px solid #c81e1e;padding:.75rem}
.ok{color:#15803d;font-weight:700}.bad{color:#c81e1e;font-weight:700}
.signout{margin-left:auto}
ul.plain{margin:0;padding-left:1rem}
td time,.nowrap{white-space:nowrap}
code{font-size:.9em}
`

/** The page's style is allowed by its hash: no inline style or script of anyone else runs. */
export const CONSOLE_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`

export interface Body {
  title: string
  content?: SafeHtml
  /** A failure page's text and error code. */
  text?: string
  code?: string
  /** The signed-in administrator's navigation: their name, the sign-out form's token, this page. */
  admin?: { username: string; csrf: string; base: string; current: string }
  /** Go there at once (after a sign-in: a same-site navigation, which carries the SameSite=Strict cookie). */
  refresh?: string
}

function navigation(admin: NonNullable<Body['admin']>): SafeHtml {
  const links = PAGES.map(
    (page) =>
      html`<li><a href="${admin.base}${page.path}"${page.path === admin.current ? new SafeHtml(' aria-current="page"') : ''}>${page.label}</a></li>`,
  )
  return html`<header><p>Gatehouse console</p>
<nav aria-label="Console pages"><ul>${links}</ul></nav>
<form class="signout" method="post" action="${admin.base}/sign-out"><input type="hidden" name="csrf" value="${admin.csrf}"><button type="submit">Sign out ${admin.username}</button></form>
</header>`
}

export function layout(body: Body): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<meta name="referrer" content="same-origin">
${body.refresh ? html`<meta http-equiv="refresh" content="0;url=${body.refresh}">` : ''}
<title>${body.title} · Gatehouse console</title>
<style>${new SafeHtml(STYLE)}</style>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
${body.admin ? navigation(body.admin) : ''}
<main id="main">
<h1>${body.title}</h1>
${body.text ? html`<p class="error" role="alert">${body.text}</p>` : ''}
${body.code ? html`<p><small>Error code: <code>${body.code}</code></small></p>` : ''}
${body.content}
</main>
</body>
</html>
`.value
}

/** A data table: a caption, column headers with their scope, one row per item, or a sentence when empty. */
export function table<T>(
  caption: string,
  columns: readonly (readonly [string, (row: T) => Cell])[],
  rows: readonly T[],
  empty: string,
): SafeHtml {
  if (rows.length === 0) return html`<p>${empty}</p>`
  return html`<table><caption>${caption}</caption>
<thead><tr>${columns.map(([name]) => html`<th scope="col">${name}</th>`)}</tr></thead>
<tbody>${rows.map((row) => html`<tr>${columns.map(([, cell]) => html`<td>${cell(row)}</td>`)}</tr>`)}</tbody>
</table>`
}

/** Seconds since the epoch as a `<time>`; a dash when unknown. */
export function time(seconds: number | undefined): SafeHtml | string {
  if (seconds === undefined) return '—'
  const iso = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')
  return html`<time datetime="${iso}">${iso.replace('T', ' ')}</time>`
}

export function list(items: readonly string[]): SafeHtml | string {
  return items.length ? html`<ul class="plain">${items.map((item) => html`<li>${item}</li>`)}</ul>` : '—'
}

/** A POST form of one button, with the session's CSRF token. */
export function actionForm(
  action: string,
  csrf: string,
  fields: Record<string, string>,
  button: { text: string; label: string },
): SafeHtml {
  return html`<form method="post" action="${action}"><input type="hidden" name="csrf" value="${csrf}">${Object.entries(
    fields,
  ).map(
    ([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`,
  )}<button type="submit" class="danger" aria-label="${button.label}">${button.text}</button></form>`
}
