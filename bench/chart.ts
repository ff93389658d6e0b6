/** The benchmark's chart: each target's ratio to its baseline as a bar, its goal as a mark. Plain SVG text. */

/** One figure judged against a baseline of the same run. */
export interface Target {
  what: string
  figure: number
  unit: string
  baseline: string
  ratio: number
  /** The ratio the issue asks for, and which side of it is good. */
  goal: { ratio: number; atLeast: boolean }
}

const ROW = 26
const LABEL = 330
const BAR = 420
const TOP = 48

export function chart(targets: readonly Target[], title: string): string {
  const max = Math.max(1.2, ...targets.flatMap((t) => [t.ratio, t.goal.ratio].filter(Number.isFinite)))
  const x = (ratio: number) => LABEL + (Math.min(ratio, max) / max) * BAR
  const height = TOP + targets.length * ROW + 30
  const rows = targets.map((t, i) => {
    const y = TOP + i * ROW
    const ok = t.goal.atLeast ? t.ratio >= t.goal.ratio : t.ratio <= t.goal.ratio
    const width = Number.isFinite(t.ratio) ? x(t.ratio) - LABEL : 0
    return [
      `<text x="${LABEL - 8}" y="${y + 15}" text-anchor="end">${escapeXml(t.what)}</text>`,
      `<rect x="${LABEL}" y="${y + 4}" width="${width.toFixed(1)}" height="${ROW - 8}" fill="${ok ? '#2e7d32' : '#c62828'}"/>`,
      `<line x1="${x(t.goal.ratio).toFixed(1)}" x2="${x(t.goal.ratio).toFixed(1)}" y1="${y + 1}" y2="${y + ROW - 1}" stroke="#000" stroke-width="2"/>`,
      `<text x="${(LABEL + width + 6).toFixed(1)}" y="${y + 15}">${Number.isFinite(t.ratio) ? t.ratio.toFixed(2) : 'n/a'}×</text>`,
    ].join('')
  })
  const ticks = [0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10].filter((v) => v <= max)
  const axis = ticks.map(
    (v) =>
      `<line x1="${x(v)}" x2="${x(v)}" y1="${TOP - 4}" y2="${height - 26}" stroke="#ddd"/>` +
      `<text x="${x(v)}" y="${height - 10}" text-anchor="middle" fill="#555">${v}×</text>`,
  )
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${LABEL + BAR + 80}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="#fff"/>',
    `<text x="10" y="20" font-size="14" font-weight="bold">Gatehouse against its baselines, ${escapeXml(title)}</text>`,
    '<text x="10" y="36" fill="#555">bar: ratio to the baseline of the same run (green: goal met); black mark: the goal</text>',
    ...axis,
    ...rows,
    '</svg>',
    '',
  ].join('\n')
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}
