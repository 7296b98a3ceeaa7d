// A child process that holds `count` idle TCP connections (connect, send nothing) to each of the
// given host:port targets for `seconds`, reopening those the server closes (at most `reopenPerSec`
// per second, so the flood stays idle rather than becoming a connect storm). Prints one JSON line
// with what it did, then exits. Run: node --import tsx test/support/idle-flood.ts SECONDS COUNT REOPEN host:port...
import net from 'node:net';

const [secondsArg, countArg, reopenArg, ...targets] = process.argv.slice(2);
const seconds = Number(secondsArg);
const count = Number(countArg);
const reopenPerSec = Number(reopenArg);
if (!(seconds > 0) || !(count > 0) || !(reopenPerSec > 0) || targets.length === 0) {
  process.stderr.write('usage: idle-flood.ts SECONDS COUNT REOPEN_PER_SEC host:port...\n');
  process.exit(2);
}
const until = Date.now() + seconds * 1000;
const stats = new Map<string, { open: number; opened: number; closedByServer: number; errors: number; minOpen: number }>();
const pending: string[] = [];

function open(target: string): void {
  const [host, port] = target.split(':');
  const s = stats.get(target)!;
  const sock = net.connect({ host: host ?? '127.0.0.1', port: Number(port) });
  s.opened++;
  let counted = false;
  sock.on('connect', () => {
    counted = true;
    s.open++;
  });
  sock.on('error', () => void s.errors++);
  sock.on('close', () => {
    if (counted) {
      s.open--;
      s.closedByServer++;
    }
    if (Date.now() < until) pending.push(target);
  });
  // Half-open reads: never send a byte.
  sock.resume();
}

for (const t of targets) stats.set(t, { open: 0, opened: 0, closedByServer: 0, errors: 0, minOpen: Number.MAX_SAFE_INTEGER });
let started = 0;
const opener = setInterval(() => {
  // First fill every target to `count`, spread over the first seconds; then reopen what closed.
  let budget = Math.max(1, Math.floor(reopenPerSec / 10));
  for (const t of targets) {
    while (budget > 0 && (stats.get(t)?.opened ?? 0) < count && started < count * targets.length) {
      open(t);
      started++;
      budget--;
    }
  }
  while (budget > 0 && pending.length > 0) {
    open(pending.shift()!);
    budget--;
  }
}, 100);
const sampler = setInterval(() => {
  if (started < count * targets.length) return;
  for (const s of stats.values()) s.minOpen = Math.min(s.minOpen, s.open);
}, 1000);
setTimeout(() => {
  clearInterval(opener);
  clearInterval(sampler);
  process.stdout.write(`${JSON.stringify(Object.fromEntries(stats))}\n`);
  process.exit(0);
}, seconds * 1000);
