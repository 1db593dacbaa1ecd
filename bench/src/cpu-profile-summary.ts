#!/usr/bin/env node
/**
 * `node bench/dist/cpu-profile-summary.js <file.cpuprofile> [top=20]`: where
 * a process spent its CPU (self time per function, idle and GC included), for
 * the profiles `pnpm bench --cpu-prof` writes to bench/results/profiles/.
 */
import fs from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time in microseconds per `function file:line`, largest first. */
export function selfTimeByFunction(profile: CpuProfile): Array<{ frame: string; micros: number }> {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id)?.callFrame;
    if (!frame) return;
    const file = frame.url.split('/').slice(-3).join('/');
    const key = `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
    totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return [...totals].map(([frame, micros]) => ({ frame, micros })).sort((a, b) => b.micros - a.micros);
}

if (require.main === module) {
  const [file, top = '20'] = process.argv.slice(2);
  if (!file) {
    console.error('usage: cpu-profile-summary <file.cpuprofile> [top]');
    process.exit(64);
  }
  const rows = selfTimeByFunction(JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile);
  const total = rows.reduce((sum, r) => sum + r.micros, 0);
  console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled`);
  for (const r of rows.slice(0, Number(top))) {
    console.log(`${(r.micros / 1000).toFixed(0).padStart(8)} ms ${((100 * r.micros) / total).toFixed(1).padStart(5)} %  ${r.frame}`);
  }
}
