import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, quoteInReadme, UsageError } from '../src/main';
import { FULL_PROFILE, QUICK_PROFILE } from '../src/profile';
import { peerRatios, renderMarkdown, type BenchResults } from '../src/report';
import { pidOfOwner } from '../src/scenarios/failover';

describe('bench command line', () => {
  it('runs the full profile and every scenario by default', () => {
    const options = parseArgs([]);
    expect(options.profile).toBe(FULL_PROFILE);
    expect(options.only.size).toBe(7);
  });

  it('takes --quick (also after pnpm\'s --), --only and --no-peers', () => {
    const options = parseArgs(['--', '--quick', '--only', 'relay,peers', '--no-peers']);
    expect(options.profile).toBe(QUICK_PROFILE);
    expect([...options.only]).toEqual(['relay']);
  });

  it('names an unknown scenario or flag instead of ignoring it', () => {
    expect(() => parseArgs(['--only', 'relay,speed'])).toThrow(new UsageError('unknown scenario(s) speed; known: limits, relay, drain, latency, keeping-up, failover, peers'));
    expect(() => parseArgs(['--fast'])).toThrow(UsageError);
    expect(() => parseArgs(['--out'])).toThrow('--out needs a value');
  });
});

describe('lease owner ids', () => {
  it('reads the pid out of <host>:<pid>:<random>, even when the host has colons', () => {
    expect(pidOfOwner('vm:10429:5621c7')).toBe(10429);
    expect(pidOfOwner('fe80::1:77:abcd')).toBe(77);
    expect(pidOfOwner('garbage')).toBeNull();
  });
});

describe('report', () => {
  const empty: BenchResults = {
    date: '2026-11-22T00:00:00.000Z',
    profile: 'quick',
    durationSeconds: 1,
    machine: { cpus: 2, cpuModel: 'test cpu', memoryGiB: 1, os: 'Linux', loadAverageAtStart: [0, 0, 0] },
    versions: { node: 'v20' },
    notes: [],
    limits: null,
    relay: [],
    drain: [],
    latency: [],
    live: [],
    enqueueCpu: null,
    keepingUp: null,
    failover: null,
    memory: null,
    ratios: [],
    goals: [],
    errors: [{ scenario: 'relay (1 streams)', message: 'publisher exited' }],
  };

  it('renders a run where nothing was measured, listing what did not run', () => {
    const markdown = renderMarkdown(empty);
    expect(markdown).toContain('## Benchmark (quick), 2026-11-22T00:00:00.000Z');
    expect(markdown).toContain('| (not measured) | | |');
    expect(markdown).toContain('- **relay (1 streams)**: publisher exited');
  });

  it('computes ours/peer ratios only where both sides were measured', () => {
    const drain = (system: string, eventsPerSec: number) => ({
      system, settings: {}, events: 10, handled: 10, duplicates: 0, seconds: 1, eventsPerSec, peakRssMiB: {}, complete: true,
    });
    expect(peerRatios([drain('petcover', 3000), drain('pg-boss', 1000)], [], 1000)).toEqual([
      { peer: 'pg-boss', drainThroughput: 3, latencyP50: null, latencyP99: null, cpuPerEvent: null },
    ]);
  });
});

describe('quoting the table in the README', () => {
  it('replaces only what lies between the markers, headings moved down', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-readme-'));
    const readme = path.join(dir, 'README.md');
    fs.writeFileSync(readme, '# Title\n<!-- bench:latest:start -->\nold\n<!-- bench:latest:end -->\ntail\n');
    quoteInReadme(readme, '## Benchmark (full)\n\n| a |\n');
    expect(fs.readFileSync(readme, 'utf8')).toBe('# Title\n<!-- bench:latest:start -->\n#### Benchmark (full)\n\n| a |\n<!-- bench:latest:end -->\ntail\n');
    fs.writeFileSync(readme, 'no markers\n');
    expect(() => quoteInReadme(readme, 'x')).toThrow('lacks the <!-- bench:latest:start -->');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to quote a quick run', () => {
    expect(() => parseArgs(['--quick', '--write-readme'])).toThrow('--write-readme quotes full runs only');
  });
});
