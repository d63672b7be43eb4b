#!/usr/bin/env node
// `npm run bench`: the hub against Mosquitto on the workloads of shared PERFORMANCE.md (W1-W8), measured in the
// same run on the same machine, printed as one table (hub, peer, ratio, CPU of hub, peer and load generator) and
// saved as JSON under bench/results/. `--quick` runs every workload small (CI: does each complete and deliver
// every message?); `--only W1,W3` picks workloads; `--rounds N` repeats the throughput workloads (median);
// `--update-readme` writes the table into README.md's Performance section (full runs of every workload only).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureMosquitto, mosquittoVersion, startHub, startMosquitto } from './lib/processes.mjs';
import { formatTable } from './lib/table.mjs';
import { workloads } from './workloads/index.mjs';

const root = new URL('../../../', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    out: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
    'update-readme': { type: 'boolean', default: false },
  },
});
const quick = values.quick;
const rounds = Number(values.rounds ?? (quick ? 1 : 3));
const only = values.only ? new Set(values.only.toUpperCase().split(',')) : null;
const selected = workloads.filter((workload) => !only || only.has(workload.id));

const mosquitto = ensureMosquitto();
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  mosquitto: mosquittoVersion(mosquitto),
};
const startedAt = new Date();
console.log(
  `Fieldhub bench${quick ? ' (quick)' : ''}: ${machine.cores} x ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}, Mosquitto ${machine.mosquitto}`,
);

/** Shared state of one run: the long-lived hub and peer are started lazily and replaced when a workload asks. */
const environment = {
  quick,
  rounds,
  mosquitto,
  hub: null,
  peer: null,
  async freshHub() {
    await this.hub?.stop();
    this.hub = await startHub();
    return this.hub;
  },
  async freshPeer() {
    await this.peer?.stop();
    this.peer = await startMosquitto({ binary: mosquitto, tlsDir: join(this.hub.dataDir, 'tls') });
    return this.peer;
  },
  async close() {
    await this.peer?.stop();
    await this.hub?.stop();
    this.peer = null;
    this.hub = null;
  },
};

const rows = [];
let failed = false;
try {
  for (const workload of selected) {
    const began = performance.now();
    process.stdout.write(`${workload.id} ${workload.title} ... `);
    try {
      const row = await workload.run(environment);
      rows.push({ id: workload.id, title: workload.title, ...row });
      const problems = row.problems ?? [];
      if (problems.length > 0) failed = true;
      console.log(
        `${((performance.now() - began) / 1000).toFixed(1)} s${problems.length ? ` FAILED: ${problems.join('; ')}` : ''}`,
      );
    } catch (error) {
      failed = true;
      rows.push({ id: workload.id, title: workload.title, problems: [error.message] });
      console.log(`FAILED: ${error.stack ?? error}`);
      if (environment.hub) console.log(`hub output (tail):\n${environment.hub.output().slice(-3000)}`);
      await environment.close();
    }
  }
} finally {
  await environment.close();
}

const seconds = (Date.now() - startedAt.getTime()) / 1000;
const table = formatTable(rows);
const footer =
  `${startedAt.toISOString().slice(0, 10)}, ${machine.cores} x ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}, ` +
  `Mosquitto ${machine.mosquitto}; \`${quick ? 'npm run bench -- --quick' : 'npm run bench'}\`; ${seconds.toFixed(0)} s.`;
console.log('');
console.log(table);
console.log('');
console.log(footer);

// --update-readme: the README's Performance section (between the bench markers) gets this table.
if (values['update-readme'] && !quick && selected.length === workloads.length) {
  const readme = join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from === -1 || to < from) throw new Error(`README.md has no ${start} ... ${end} section`);
  writeFileSync(readme, `${text.slice(0, from + start.length)}\n\n${table}\n\n${footer}\n\n${text.slice(to)}`);
  execFileSync(join(root, 'node_modules/.bin/biome'), ['format', '--write', readme], { stdio: 'ignore' });
  console.log('README.md Performance section updated');
}

if (!values['no-save'] && (!quick || values.out)) {
  const file =
    values.out ?? join(root, 'bench', 'results', `${startedAt.toISOString().replace(/:/g, '-').slice(0, 19)}.json`);
  mkdirSync(join(file, '..'), { recursive: true });
  const version = JSON.parse(readFileSync(join(root, 'packages/hub/package.json'), 'utf8')).version;
  writeFileSync(
    file,
    `${JSON.stringify({ date: startedAt.toISOString(), quick, rounds, seconds, machine, hubVersion: version, rows }, null, 2)}\n`,
  );
  console.log(`results: ${file}`);
}
process.exitCode = failed ? 1 : 0;
