/** Markup that is already safe; only {@link html} and {@link raw} make it. */
export class SafeHtml {
  readonly value: string
  constructor(value: string) {
    this.value = value
  }
  toString() {
    return this.value
  }
}

type Interpolation = SafeHtml | string | number | undefined | null | false | readonly Interpolation[]

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ESCAPES[c] as string)
}

function render(value: Interpolation): string {
  if (value instanceof SafeHtml) return value.value
  if (Array.isArray(value)) return value.map(render).join('')
  if (value === undefined || value === null || value === false) return ''
  return escapeHtml(String(value))
}

/** A template tag that escapes every interpolated value unless it is itself `html`. */
export function html(strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0] as string
  for (let i = 0; i < values.length; i++) out += render(values[i] as Interpolation) + strings[i + 1]
  return new SafeHtml(out)
}

const STYLE = `
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}
main{max-width:30rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}
h1{font-size:1.4rem;margin-top:0}
label{display:block;margin-top:1rem;font-weight:600}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;margin-top:.25rem}
button{margin-top:1rem;padding:.6rem 1rem;font-size:1rem;border-radius:4px;border:1px solid #888;cursor:pointer;background:#fff}
button.primary{background:#1d4ed8;border-color:#1d4ed8;color:#fff}
.providers button{width:100%}
.warning{background:#fff4e5;border-left:4px solid #d97706;padding:.75rem;margin:1rem 0}
.error{background:#fdecec;border-left:4px solid #c81e1e;padding:.75rem;margin:1rem 0}
.host{font-size:1.2rem;font-weight:700;word-break:break-all}
dt{font-weight:600;margin-top:.75rem}dd{margin-left:0;word-break:break-all}
.actions{display:flex;gap:.75rem}
small{color:#555}
`

export function page(title: string, body: SafeHtml): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<title>${title} · Gatehouse</title>
<style>${new SafeHtml(STYLE)}</style>
</head>
<body><main>
<h1>${title}</h1>
${body}
</main></body>
</html>
`.value
}
