/**
 * Backup schedules across many switchovers: an every-minute incremental schedule on a 3-member
 * cluster while `warden switchover` moves the leadership every --every seconds, --switchovers
 * times (the issue asks for 20). Then: every slot has exactly one record, no minute is missing
 * between the first and the last slot, each succeeded slot is exactly one set in the repository
 * (no set without a slot, no slot reported succeeded whose set is missing — a backup a
 * switchover interrupted is failed, never succeeded), and every succeeded backup read a standby.
 *
 *   npm run build && node --import tsx bench/schedules.ts [--switchovers 20] [--every 15] [--dir /var/tmp/warden-bench-schedules]
 *
 * Exit 1 when a promise is broken. Prints the slots, the switchover times (median, spread) and
 * the backups' durations.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackupsOutput } from '../src/cli/backup-commands.js';
import type { ListOutput } from '../src/cli/list.js';
import { fmt, logger, machine, machineLine, now, onCleanup, parseOptions, run, runBench, sleep, summarize, table, warden } from './support.js';

const opts = parseOptions({ switchovers: 20, every: 15, dir: '/var/tmp/warden-bench-schedules' });
const log = logger('schedules');

const SPEC = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: sched
spec:
  instances: [{ name: instance1, replicas: 3 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      global: { repo1-retention-full: 9 }
      repos:
        - name: repo1
          volume: {}
          schedules:
            incremental: "* * * * *"
`;

async function list(dir: string): Promise<ListOutput> {
  const r = await warden(['list', '--dir', dir, '--format', 'json'], 30_000);
  if (r.code !== 0) throw new Error(`warden list: ${r.stderr}`);
  return JSON.parse(r.stdout) as ListOutput;
}

async function backups(dir: string): Promise<BackupsOutput> {
  const r = await warden(['backups', '--dir', dir, '--format', 'json'], 120_000);
  if (r.code !== 0) throw new Error(`warden backups: ${r.stderr}`);
  return JSON.parse(r.stdout) as BackupsOutput;
}

/** The last line of an error that says something (Node's own warnings on stderr come first). */
function lastLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^(\(node:\d+\) )?Warning:/.test(l)).at(-1) ?? '';
}

/** Polls `fn` every `intervalMs` until it returns a value, for at most `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, intervalMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

await runBench(async () => {
  const m0 = machine();
  const dir = opts.dir;
  await run('mkdir', ['-p', '-m', '755', `${dir}-spec`], { timeoutMs: 5000 });
  const specFile = join(`${dir}-spec`, 'cluster.yaml');
  await writeFile(specFile, SPEC);
  await warden(['down', '--dir', dir, '--purge'], 180_000);
  onCleanup(async () => {
    log(`warden down --dir ${dir} --purge`);
    await warden(['down', '--dir', dir, '--purge'], 180_000);
    await rm(`${dir}-spec`, { recursive: true, force: true });
  });
  const up = await warden(['up', '--static', '-f', specFile, '--dir', dir], 400_000);
  if (up.code !== 0) throw new Error(`warden up failed:\n${up.stdout}\n${up.stderr}`);
  const startedAt = Date.now();

  const switchMs: number[] = [];
  const leaders: string[] = [];
  for (let i = 0; i < opts.switchovers; i++) {
    // A candidate within maximum_lag_on_failover (1 MiB): a backup's WAL switch leaves the replicas'
    // published positions a segment behind for a moment, and the switchover would be refused.
    const l = await waitFor('a leader with two streaming replicas, one caught up', 120_000, 500, async () => {
      const x = await list(dir);
      return x.members.some((m) => m.role === 'leader' && m.state === 'running') && x.members.filter((m) => m.state === 'streaming').length === 2 && x.members.some((m) => m.role !== 'leader' && m.state === 'streaming' && (m.lagBytes ?? Infinity) < 1_000_000) ? x : undefined;
    });
    const candidate = l.members.find((m) => m.role !== 'leader' && m.state === 'streaming' && (m.lagBytes ?? Infinity) < 1_000_000);
    if (candidate === undefined) throw new Error('no streaming replica');
    const t0 = now();
    let r = await warden(['switchover', '--dir', dir, '--candidate', candidate.name, '--force'], 120_000);
    // Refused (the candidate fell behind between the list and the request): nothing changed; again.
    for (let retry = 0; retry < 5 && r.code !== 0 && /switchover-candidate-ineligible/.test(r.stdout + r.stderr); retry++) {
      log(`switchover ${i + 1} refused (${(r.stdout + r.stderr).trim().split('\n').at(-1) ?? ''}); again in 2 s`);
      await sleep(2000);
      r = await warden(['switchover', '--dir', dir, '--candidate', candidate.name, '--force'], 120_000);
    }
    if (r.code !== 0) throw new Error(`switchover ${i + 1}: ${r.stdout}\n${r.stderr}`);
    await waitFor(`${candidate.name} leading`, 120_000, 200, async () => ((await list(dir)).members.some((m) => m.role === 'leader' && m.name === candidate.name && m.state === 'running') ? true : undefined));
    switchMs.push(now() - t0);
    leaders.push(candidate.name);
    log(`switchover ${i + 1}/${opts.switchovers} to ${candidate.name}: ${fmt((now() - t0) / 1000)} s`);
    await sleep(Math.max(0, opts.every * 1000 - (now() - t0)));
  }

  // Let the slot in flight finish; the one after the last switchover ends the run.
  const lastSwitchAt = Date.now();
  const out = await waitFor('every slot finished, one after the last switchover', 300_000, 2000, async () => {
    const b = await backups(dir);
    if ('error' in b.slots) return undefined;
    const recs = b.slots.map((s) => s.record);
    if (recs.some((r) => r === null || r.state === 'claimed')) return undefined;
    return recs.some((r) => r !== null && r.slotMs > lastSwitchAt) ? b : undefined;
  });
  if ('error' in out.slots) throw new Error(out.slots.error);
  const slots = out.slots.map((s) => {
    if (s.record === null) throw new Error(`slot ${s.key} unreadable: ${s.invalid ?? ''}`);
    return { key: s.key, ...s.record };
  });

  const broken: string[] = [];
  const minutes = slots.map((s) => s.slotMs).sort((a, b) => a - b);
  if (new Set(minutes).size !== minutes.length) broken.push('a slot has two records');
  for (let i = 1; i < minutes.length; i++) {
    if ((minutes[i] ?? 0) - (minutes[i - 1] ?? 0) !== 60_000) broken.push(`no slot between ${new Date(minutes[i - 1] ?? 0).toISOString()} and ${new Date(minutes[i] ?? 0).toISOString()}`);
  }
  const labels = out.backups.map((b) => b.label);
  const succeeded = slots.filter((s) => s.state === 'succeeded');
  for (const s of succeeded) {
    if (s.label === null || !labels.includes(s.label)) broken.push(`slot ${s.key} reports set ${s.label ?? 'none'}, which the repository does not have`);
    if (s.fromStandby !== true) broken.push(`slot ${s.key} read the primary`);
  }
  if (new Set(succeeded.map((s) => s.label)).size !== succeeded.length) broken.push('two slots report the same set');
  const unclaimed = labels.filter((l) => !succeeded.some((s) => s.label === l));
  if (unclaimed.length > 0) broken.push(`sets no slot claims: ${unclaimed.join(', ')}`);

  const m1 = machine();
  const sw = summarize(switchMs.map((x) => x / 1000));
  const durations = summarize(out.backups.map((b) => b.durationSeconds));
  process.stdout.write(`\n${machineLine('start', m0)}\n${machineLine('end', m1)}\n`);
  process.stdout.write(
    table(
      ['slot (UTC)', 'member', 'state', 'set', 'from standby', 'note'],
      slots
        .sort((a, b) => a.slotMs - b.slotMs)
        .map((s) => [new Date(s.slotMs).toISOString().slice(11, 16), s.member, s.state, s.label ?? '-', s.fromStandby === true ? 'yes' : s.fromStandby === false ? 'no' : '-', lastLine(s.error ?? '').slice(0, 90)]),
    ),
  );
  process.stdout.write(
    `\n${opts.switchovers} switchovers in ${((lastSwitchAt - startedAt) / 1000).toFixed(0)} s (leaders ${[...new Set(leaders)].join(', ')}): switchover ${fmt(sw.median)} s median (${fmt(sw.min)}–${fmt(sw.max)})\n` +
      `${slots.length} slots: ${succeeded.length} succeeded, ${slots.filter((s) => s.state === 'failed').length} failed; ${out.backups.length} sets in the repository; backup ${fmt(durations.median)} s median (${fmt(durations.min)}–${fmt(durations.max)})\n` +
      (broken.length === 0 ? 'every slot fired exactly once; no interrupted backup reported as succeeded\n' : `BROKEN:\n${broken.map((b) => `  ${b}`).join('\n')}\n`),
  );
  if (broken.length > 0) process.exitCode = 1;
});
