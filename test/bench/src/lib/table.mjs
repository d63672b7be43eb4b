// The results table, as GitHub Markdown (it goes into the README as is).

/** PERFORMANCE.md's reference: a bare Node TCP relay (no MQTT) moves ~180k msgs/s through loopback. */
const nodeRelayFloor = 180_000;

const number = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** 12,345 */
export function formatCount(value) {
  return Number.isFinite(value) ? number.format(value) : 'n/a';
}

/** 0.42 ms, 3.1 ms, 12 ms */
export function formatMs(value) {
  if (!Number.isFinite(value)) return 'n/a';
  return value < 1 ? `${value.toFixed(2)} ms` : value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

function formatPercent(value) {
  return Number.isFinite(value) ? `${Math.round(value)}%` : '-';
}

/** One Markdown table of every row, in workload order. */
export function formatTable(rows) {
  const lines = [
    '| # | workload | hub | Mosquitto | ratio | goal | hub CPU | peer CPU | generator CPU (hub / peer run) |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  let generatorBound = false;
  for (const row of [...rows].sort((a, b) => a.id.localeCompare(b.id))) {
    if (row.hubText === undefined) {
      lines.push(`| ${row.id} | ${row.title} | failed: ${(row.problems ?? []).join('; ')} | | | | | | |`);
      continue;
    }
    const mark = (bound) => (bound ? ' †' : '');
    generatorBound ||= Boolean(row.generatorBound?.hub || row.generatorBound?.peer);
    const ratio = Number.isFinite(row.ratio) ? `${row.ratio.toFixed(2)}x` : '-';
    const goal = row.goal ? `${row.goal} ${row.met === true ? '✅' : row.met === false ? '❌' : ''}`.trim() : '-';
    const generator = [row.cpu?.generatorHub, row.cpu?.generatorPeer].filter((value) => value !== undefined);
    lines.push(
      `| ${row.id} | ${row.title} | ${row.hubText}${mark(row.generatorBound?.hub)} | ${row.peerText ?? '-'}${mark(row.generatorBound?.peer)} | ${ratio} | ${goal} | ${formatPercent(row.cpu?.hub)} | ${formatPercent(row.cpu?.peer)} | ${generator.length ? generator.map(formatPercent).join(' / ') : '-'} |`,
    );
  }
  if (generatorBound) lines.push('', '† taken with a load-generator process at >= 95% of a core: generator-bound.');
  const w1 = rows.find((row) => row.id === 'W1' && Number.isFinite(row.hub));
  if (w1) {
    lines.push(
      '',
      `W1 hub = ${Math.round((w1.hub / nodeRelayFloor) * 100)}% of the floor a Node process pushes through loopback (a bare TCP relay, ` +
        '~180k msgs/s: the reference figure of PERFORMANCE.md, not measured in this run).',
    );
  }
  lines.push(
    '',
    'CPU: percent of one core over the measured stretch (generator: its busiest process). Ratios are hub / Mosquitto;',
    'for latency and memory lower is better.',
  );
  return lines.join('\n');
}
