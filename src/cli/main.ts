import { Command, Option } from 'commander';
import { describeError, WardenError } from '../core/errors.js';
import { runSupervisor } from '../controller/supervisor.js';
import { runAgentCommand } from './agent-command.js';
import { registerBackupCommands } from './backup-commands.js';
import { registerChaosCommands } from './chaos-command.js';
import { runDown } from './down-command.js';
import { archiveReportOf, lastBackupReportOf, listFromView, renderList, type ListOutput } from './list.js';
import { registerRouterCommands } from './router-commands.js';
import { etcdClientFor, readClusterView, resolveTarget, type Target, type TargetOptions } from './target.js';
import { clusterPrefix, KEYS } from '../ha/index.js';
import { registerOpsCommands } from './ops-commands.js';
import { runPlan } from './plan-command.js';
import { registerClusterCommands } from './cluster-commands.js';
import { runControllerCommand, runNodeCommand } from './node-command.js';
import { explainUpError, runUp } from './up-command.js';

const useColor = process.stdout.isTTY === true && process.env.NO_COLOR === undefined;

function targetOptions(cmd: Command): Command {
  return cmd
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (with --cluster)')
    .option('--cluster <name>', 'cluster name (with --etcd; with --dir, another cluster of that runtime\'s etcd)');
}

function formatOption(): Option {
  return new Option('--format <format>', 'output format').choices(['pretty', 'json']).default('pretty');
}

/** Exit codes: 0 ok, 1 operational failure, 2 invalid input. */
function exitCodeFor(e: unknown): number {
  if (e instanceof WardenError && (e.code === 'config-invalid')) return 2;
  return 1;
}

/** Builds the `warden` command line. */
export function buildCli(): Command {
  const program = new Command('warden')
    .description('High availability for PostgreSQL: agents, etcd, automatic failover')
    .showHelpAfterError()
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : 2);
    });

  program
    .command('up')
    .description('start a local cluster (3-member etcd, 3 node daemons running the PostgreSQL members and routers), detached, and wait until it is healthy')
    .option('-f, --file <cluster.yaml>', 'cluster spec (default: cluster "demo" with 3 members)')
    .option('--dir <dir>', 'runtime directory', '.warden')
    .option('--source-dir <dir>', "with spec.dataSource: the runtime dir of the cluster whose backups the new cluster starts from")
    .option('--nodes <count|nodes.yaml>', 'the node daemons a new dir gets (default 3: node-1..3 in zones a, b, c), or a nodes file with their labels and taints')
    .option('--netns', 'as root: each node daemon in a network namespace of its own, with its own address (implies 3 nodes)', false)
    .option('--static', 'a new dir without node daemons: the members and a router under the supervisor alone', false)
    .action(async (o: { file?: string; dir: string; sourceDir?: string; nodes?: string; netns: boolean; static: boolean }) => {
      const nodes = o.nodes ?? (o.netns ? '3' : undefined);
      process.exitCode = await runUp({ ...(o.file === undefined ? {} : { file: o.file }), ...(o.sourceDir === undefined ? {} : { sourceDir: o.sourceDir }), ...(nodes === undefined ? {} : { nodes }), netns: o.netns, static: o.static, dir: o.dir, color: useColor }).catch(explainUpError);
    });

  program
    .command('plan')
    .description('dry-run placement: the node each instance would land on, or Pending with the rule each node broke (exit 3 when some stay Pending)')
    .requiredOption('-f, --file <cluster.yaml>', 'cluster spec')
    .option('--nodes <nodes.yaml>', 'nodes (labels, taints) and what already runs on them')
    .option('--etcd <urls>', 'instead of --nodes: the nodes registered in this etcd (`warden node`) and what runs on them')
    .addOption(formatOption())
    .action(async (o: { file: string; nodes?: string; etcd?: string; format: string }) => {
      process.exitCode = await runPlan({ file: o.file, format: o.format, ...(o.nodes === undefined ? {} : { nodes: o.nodes }), ...(o.etcd === undefined ? {} : { etcd: o.etcd }) });
    });

  program
    .command('down')
    .description('stop everything `warden up` started in DIR (by PID)')
    .option('--dir <dir>', 'runtime directory', '.warden')
    .option('--purge', 'also delete the data directory', false)
    .action(async (o: { dir: string; purge: boolean }) => {
      process.exitCode = await runDown({ dir: o.dir, purge: o.purge });
    });

  targetOptions(program.command('list'))
    .description('members with role, state, timeline and lag')
    .addOption(formatOption())
    .option('-e, --extended', 'add each agent\'s last decision reason', false)
    .action(async (o: TargetOptions & { format: string; extended: boolean }) => {
      const target = await resolveTarget(o);
      const view = await readClusterView(target);
      const list = { ...listFromView(target.cluster, view, await readArchiveReport(target, view.leader?.name)), lastBackup: await readLastBackup(target) };
      if (o.format === 'json') process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      else process.stdout.write(`${renderList(list, { extended: o.extended, color: useColor })}\n`);
    });

  program
    .command('agent')
    .description('run the HA agent of one PostgreSQL instance')
    .requiredOption('-c, --config <file>', 'agent config (YAML); every setting may also come from WARDEN_* variables')
    .action(async (o: { config: string }) => {
      process.exitCode = await runAgentCommand(o.config);
    });

  registerRouterCommands(program);

  const node = program
    .command('node')
    .description('run the node daemon of this host (registers it, runs what the controller assigns to it); or cordon / uncordon / drain a node')
    .option('-c, --config <node.yaml>', 'node config: name, dir, etcd endpoints, labels, taints, capacity')
    .action(async (o: { config?: string }) => {
      if (o.config === undefined) throw new WardenError('config-invalid', 'warden node: --config <node.yaml> is required to run the daemon (or use cordon, uncordon, drain)');
      process.exitCode = await runNodeCommand(o.config);
    });
  registerClusterCommands(program, node);

  program
    .command('controller')
    .description('run a controller candidate on its own (every node daemon runs one too; one is active)')
    .requiredOption('--etcd <urls>', 'etcd endpoints, comma-separated (credentials: WARDEN_ETCD_USERNAME, WARDEN_ETCD_PASSWORD_FILE)')
    .option('--name <name>', 'how it is named in /warden/_controller (default: the host name)')
    .option('--ttl <seconds>', 'election lease', '10')
    .option('--node-lost-seconds <seconds>', 'members of a node gone this long are re-created elsewhere', '30')
    .action(async (o: { etcd: string; name?: string; ttl: string; nodeLostSeconds: string }) => {
      process.exitCode = await runControllerCommand({ etcd: o.etcd, ...(o.name === undefined ? {} : { name: o.name }), ttlSeconds: Number(o.ttl), nodeLostSeconds: Number(o.nodeLostSeconds) });
    });

  program
    .command('supervise', { hidden: true })
    .description('the local runtime supervisor (started by `warden up`)')
    .requiredOption('--dir <dir>')
    .action(async (o: { dir: string }) => {
      await runSupervisor(o.dir);
    });

  registerChaosCommands(program);

  registerOpsCommands(program);
  registerBackupCommands(program);
  return program;
}

/** Entry point: runs the CLI and turns errors into a message and an exit code. */
export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildCli().parseAsync([...argv]);
  } catch (e) {
    process.stderr.write(`warden: ${describeError(e)}\n`);
    process.exitCode = exitCodeFor(e);
  }
}

/** The last completed backup (`backup/last`) for `warden list`; a failed read is said, not hidden. */
async function readLastBackup(t: Target): Promise<ListOutput['lastBackup']> {
  const client = etcdClientFor(t, 3000);
  try {
    const kv = await client.get(`${clusterPrefix(t.cluster)}${KEYS.backupLast}`, { timeoutMs: 3000 });
    return lastBackupReportOf(kv?.value, Date.now());
  } catch (e) {
    return { error: `cannot read ${KEYS.backupLast} from etcd: ${describeError(e)}` };
  } finally {
    client.close();
  }
}

/** The leader's last archive report (`backup/archive`) for `warden list`; a failed read is said, not hidden. */
async function readArchiveReport(t: Target, leader: string | undefined): Promise<ListOutput['archive']> {
  const client = etcdClientFor(t, 3000);
  try {
    const kv = await client.get(`${clusterPrefix(t.cluster)}${KEYS.backupArchive}`, { timeoutMs: 3000 });
    return archiveReportOf(kv?.value, leader, Date.now());
  } catch (e) {
    return { error: `cannot read ${KEYS.backupArchive} from etcd: ${describeError(e)}` };
  } finally {
    client.close();
  }
}
