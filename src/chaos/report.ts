/** The human form of a chaos report: one row per round, then the summary and every broken promise. */
import Table from 'cli-table3';
import type { ChaosReport, Stat } from './run.js';

const ms = (v: number | null): string => (v === null ? '—' : `${(v / 1000).toFixed(2)} s`);
const stat = (s: Stat): string => `median ${ms(s.median)}, max ${ms(s.max)}`;

/** Renders the report as text (tables without colour, so that it reads the same in a log). */
export function renderChaosReport(r: ChaosReport): string {
  const t = new Table({ head: ['#', 'Fault', 'Target', 'Delay', 'Held', 'Unavailable', 'Lost writes', 'Overlap', 'Recovered', 'Rejoin'], style: { head: [], border: [] } });
  r.rounds.forEach((x, i) => {
    if (x.skipped !== undefined) {
      t.push([String(i + 1), x.fault, x.target, { colSpan: 7, content: `skipped: ${x.skipped}` }]);
      return;
    }
    t.push([
      String(i + 1),
      x.fault,
      x.target,
      `${x.delayMs} ms`,
      x.holdMs > 0 ? ms(x.holdMs) : '',
      ms(x.unavailableMs),
      x.lostWrites === 0 ? '0' : `${x.lostWrites} (~${x.lostWalBytes} B WAL)`,
      `${x.overlapMs} ms`,
      ms(x.recoveredMs),
      ms(x.rejoinMs),
    ]);
  });
  const s = r.summary;
  const lines = [
    `Chaos run on cluster ${r.cluster}: seed ${r.seed}, ${s.rounds} rounds (${s.injected} injected, ${s.skipped} skipped), writes via ${r.via}, mode ${r.mode}` +
      ` (${r.promises.lossAllowed ? `lost writes allowed within maximum_lag_on_failover = ${r.promises.maxLagBytes} bytes` : 'no acknowledged write may be lost'})`,
    t.toString(),
    `writes: ${s.acked} acknowledged, ${s.failed} with unknown outcome; lost: ${s.lostWrites}; overlapping primaries: ${s.overlaps} (concurrently ${s.overlapMs} ms, within ${s.overlapSpanMs} ms of evidence)`,
    `unavailable: ${stat(s.unavailableMs)}; recovered: ${stat(s.recoveredMs)}; rejoin: ${stat(s.rejoinMs)}`,
    ...s.notes.map((n) => `note: ${n}`),
    ...(s.ok ? ['PASS: every promise held'] : ['FAIL: broken promises:', ...s.violations.map((v) => `  - ${v}`)]),
  ];
  return lines.join('\n');
}

/** The JSON form (`--format json`): the report plus the checker's evidence (epochs, lost values, overlaps). */
export function chaosReportJson(r: ChaosReport, withEvidence = true): string {
  const { check, ...rest } = r;
  const evidence = withEvidence ? { evidence: { epochs: check.epochs, lostWrites: check.lostWrites, overlaps: check.overlaps, phantomValues: check.phantomValues } } : {};
  return JSON.stringify({ ...rest, ...evidence }, null, 2);
}
