// Five-field cron expressions (minute hour day-of-month month day-of-week), as the operators'
// spec.backups.pgbackrest.repos[].schedules write them, evaluated in UTC. Pure.

/** A parsed cron expression: the allowed values of each field. */
export interface Cron {
  readonly text: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday … 6 = Saturday (7 is read as 0). */
  readonly daysOfWeek: ReadonlySet<number>;
  /** Day-of-month and day-of-week were both restricted: a day matches when either does (Vixie cron's rule). */
  readonly eitherDay: boolean;
}

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
] as const;

/** Why a cron text is refused, with the 1-based column in the text where the bad field starts. */
export interface CronError {
  readonly message: string;
  readonly col: number;
}

/** Parses `text` (five fields: numbers, `*`, `a-b`, lists, `/step`, month and weekday names), or says why not. */
export function parseCron(text: string): { ok: true; value: Cron } | { ok: false; error: CronError } {
  const parts: { text: string; col: number }[] = [];
  const re = /\S+/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) parts.push({ text: m[0], col: m.index + 1 });
  if (parts.length !== 5) {
    return { ok: false, error: { message: `a cron schedule has 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}: ${JSON.stringify(text)}`, col: 1 } };
  }
  const sets: Set<number>[] = [];
  for (let i = 0; i < 5; i++) {
    const field = FIELDS[i];
    const part = parts[i];
    if (field === undefined || part === undefined) continue;
    const r = parseField(part.text, field.min, field.max, 'names' in field ? field.names : undefined);
    if (typeof r === 'string') return { ok: false, error: { message: `${field.name} ${JSON.stringify(part.text)}: ${r}`, col: part.col } };
    sets.push(r);
  }
  const [minutes, hours, daysOfMonth, months, daysOfWeekRaw] = sets as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
  const daysOfWeek = new Set([...daysOfWeekRaw].map((d) => (d === 7 ? 0 : d)));
  const restricted = (i: number): boolean => parts[i]?.text.startsWith('*') !== true;
  return { ok: true, value: { text, minutes, hours, daysOfMonth, months, daysOfWeek, eitherDay: restricted(2) && restricted(4) } };
}

function parseField(text: string, min: number, max: number, names: readonly string[] | undefined): Set<number> | string {
  const out = new Set<number>();
  for (const item of text.split(',')) {
    const m = /^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:\/(\d+))?$/i.exec(item);
    if (m === null || m[1] === undefined) return `not a value, range or step (${JSON.stringify(item)})`;
    const step = m[2] === undefined ? 1 : Number(m[2]);
    if (!Number.isInteger(step) || step < 1) return `step must be at least 1 (${JSON.stringify(item)})`;
    let lo: number;
    let hi: number;
    if (m[1] === '*') {
      lo = min;
      hi = max;
    } else {
      const [a, b] = m[1].split('-');
      const va = value(a ?? '', min, names);
      const vb = b === undefined ? (m[2] === undefined ? va : max) : value(b, min, names);
      if (typeof va === 'string') return va;
      if (typeof vb === 'string') return vb;
      lo = va;
      hi = vb;
    }
    if (lo < min || hi > max) return `must be within ${min}-${max}`;
    if (lo > hi) return `range ${lo}-${hi} runs backwards`;
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

function value(text: string, min: number, names: readonly string[] | undefined): number | string {
  if (/^\d+$/.test(text)) return Number(text);
  const i = names?.indexOf(text.toLowerCase()) ?? -1;
  if (i >= 0) return i + (min === 1 ? 1 : 0);
  return `${JSON.stringify(text)} is not a number${names === undefined ? '' : ` or a name (${names.join(', ')})`}`;
}

/** True when the UTC minute that starts at `ms` (a multiple of 60 000) is one the schedule names. */
export function cronMatches(c: Cron, ms: number): boolean {
  const d = new Date(ms);
  if (!c.minutes.has(d.getUTCMinutes()) || !c.hours.has(d.getUTCHours()) || !c.months.has(d.getUTCMonth() + 1)) return false;
  const dom = c.daysOfMonth.has(d.getUTCDate());
  const dow = c.daysOfWeek.has(d.getUTCDay());
  return c.eitherDay ? dom || dow : dom && dow;
}

const MINUTE_MS = 60_000;

/**
 * The newest slot (start of a matching minute) at or before `nowMs` and no older than
 * `nowMs - lookBackMs`, or undefined when there is none in that window. Bounded: at most
 * lookBackMs / 1 min minutes are looked at.
 */
export function latestSlot(c: Cron, nowMs: number, lookBackMs: number): number | undefined {
  const oldest = nowMs - lookBackMs;
  for (let t = Math.floor(nowMs / MINUTE_MS) * MINUTE_MS; t >= oldest; t -= MINUTE_MS) if (cronMatches(c, t)) return t;
  return undefined;
}

/** The first slot after `afterMs`, looking at most `horizonMs` ahead (undefined past it: e.g. `0 0 30 2 *` never comes). */
export function nextSlot(c: Cron, afterMs: number, horizonMs = 366 * 24 * 3600_000): number | undefined {
  for (let t = Math.floor(afterMs / MINUTE_MS) * MINUTE_MS + MINUTE_MS; t <= afterMs + horizonMs; t += MINUTE_MS) if (cronMatches(c, t)) return t;
  return undefined;
}
