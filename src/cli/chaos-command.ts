import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { WardenError } from '../core/errors.js';
import { chaosReportJson, injectFault, LOCAL_FAULTS, localCluster, parseFaults, renderChaosReport, runChaos } from '../chaos/index.js';

/** Adds `warden chaos run` (fault injection + consistency check against a running local cluster). */
export function registerChaosCommands(program: Command): void {
  const chaos = program.command('chaos').description('prove the promises: inject faults into a running cluster while a writer records every acknowledged write');
  chaos
    .command('run')
    .description('inject faults round after round, then report lost writes, overlapping primaries, unavailability and recovery; exit 1 when a promise is broken')
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--faults <list>', `comma-separated: ${LOCAL_FAULTS.join(', ')}`, 'kill,freeze,crash-postgres,kill-replica,kill-etcd-member')
    .option('--rounds <n>', 'number of faults to inject', '5')
    .option('--seed <n>', 'seed of the random delays, targets and fault order (default: random, printed)')
    .option('--recovery-timeout <seconds>', 'how long a round may take to heal before the run stops', '180')
    .option('--connection <mode>', 'writer connections: persistent or fresh per write', 'persistent')
    .addOption(new Option('--via <target>', 'where the writer sends writes: the router, the member answering /primary, or auto (the router when there is one)').choices(['auto', 'router', 'primary']).default('auto'))
    .addOption(new Option('--format <format>', 'output format').choices(['pretty', 'json']).default('pretty'))
    .action(async (o: { dir: string; faults: string; rounds: string; seed?: string; recoveryTimeout: string; connection: string; via: 'auto' | 'router' | 'primary'; format: string }) => {
      const faults = parseFaults(o.faults);
      if (!faults.ok) throw new WardenError('config-invalid', faults.message);
      const rounds = positiveInt('--rounds', o.rounds);
      const recoveryTimeoutS = positiveInt('--recovery-timeout', o.recoveryTimeout);
      const seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : nonNegativeInt('--seed', o.seed);
      if (o.connection !== 'persistent' && o.connection !== 'fresh') throw new WardenError('config-invalid', '--connection: persistent or fresh');
      const cluster = await localCluster(resolve(o.dir));
      // A frozen node must never stay frozen because this command was interrupted: turn signals into
      // an orderly exit, which runs the thaw handlers the faults registered.
      const onSignal = (sig: NodeJS.Signals): void => {
        process.stderr.write(`chaos: ${sig}, thawing anything frozen and leaving\n`);
        process.exit(130);
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const log = (s: string): void => void process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 23)}] ${s}\n`);
      log(`seed ${seed}: ${rounds} round(s) of ${faults.faults.join(', ')} against cluster ${cluster.name}`);
      const report = await runChaos({
        cluster,
        faults: faults.faults,
        rounds,
        seed,
        log,
        recoveryTimeoutMs: recoveryTimeoutS * 1000,
        connection: o.connection,
        via: o.via,
        inject: (kind, ctx) => injectFault(parseKind(kind), cluster, ctx.health, ctx.rng, { ttlMs: ctx.ttlMs }),
      });
      process.stdout.write(`${o.format === 'json' ? chaosReportJson(report) : renderChaosReport(report)}\n`);
      process.exitCode = report.summary.ok ? 0 : 1;
    });
}

function parseKind(kind: string): (typeof LOCAL_FAULTS)[number] {
  const k = LOCAL_FAULTS.find((f) => f === kind);
  if (k === undefined) throw new WardenError('internal', `not a local fault: ${kind}`);
  return k;
}

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new WardenError('config-invalid', `${flag} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

function nonNegativeInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new WardenError('config-invalid', `${flag} must be an integer in [0, 2^32), got ${JSON.stringify(text)}`);
  return n;
}
