/**
 * A steady writer for the switchover and synchronous-mode benchmarks: one INSERT at a time into
 * bench_writes(v), v strictly increasing, always against whichever member answers GET /primary with
 * 200 (a session is kept until it fails, then the primary is looked up again). Every acknowledged v
 * is recorded with the time it was acknowledged, so that gaps and lost writes can be computed.
 */
import type pg from 'pg';
import { closeSession, getJson, now, openSession, sleep, type StateFile } from './support.js';

export interface Ack {
  readonly v: number;
  readonly at: number;
  readonly member: string;
}

export class SteadyWriter {
  readonly acks: Ack[] = [];
  failures = 0;
  /** Writes that committed although their acknowledgement never arrived (found as duplicates on retry). */
  committedUnacknowledged = 0;
  private next = 1;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly state: StateFile,
    private readonly password: string,
    private readonly intervalMs = 5,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async findPrimary(): Promise<StateFile['members'][number] | undefined> {
    const answers = await Promise.all(this.state.members.map(async (m) => ({ m, r: await getJson<unknown>(m.apiUrl, '/primary', 500) })));
    return answers.find((a) => a.r?.status === 200)?.m;
  }

  private async run(): Promise<void> {
    let client: pg.Client | undefined;
    let member = '';
    while (this.running) {
      if (client === undefined) {
        const p = await this.findPrimary();
        if (p === undefined) {
          await sleep(10);
          continue;
        }
        try {
          client = await openSession({ host: p.host, port: p.port, password: this.password }, 1000);
          member = p.name;
        } catch {
          this.failures++;
          client = undefined;
          await sleep(10);
          continue;
        }
      }
      const v = this.next;
      try {
        await Promise.race([
          client.query('INSERT INTO bench_writes(v) VALUES ($1)', [v]),
          sleep(3000).then(() => {
            throw new Error('statement timed out');
          }),
        ]);
        this.acks.push({ v, at: now(), member });
        this.next++;
      } catch (e) {
        // Not acknowledged: the same v is retried on the next primary, unless it committed after all
        // (its acknowledgement was lost with the old primary): a duplicate key says so, and it moves on.
        this.failures++;
        if ((e as { code?: string }).code === '23505') {
          this.committedUnacknowledged++;
          this.next++;
          continue;
        }
        await closeSession(client);
        client = undefined;
        continue;
      }
      if (this.intervalMs > 0) await sleep(this.intervalMs);
    }
    if (client !== undefined) await closeSession(client);
  }

  /** The longest time between two consecutive acknowledgements inside [fromMs, toMs]. */
  gapWithin(fromMs: number, toMs: number): number {
    const before = [...this.acks].reverse().find((a) => a.at <= fromMs);
    const inside = this.acks.filter((a) => a.at > fromMs && a.at <= toMs);
    let prev = before?.at ?? fromMs;
    let max = 0;
    for (const a of inside) {
      max = Math.max(max, a.at - prev);
      prev = a.at;
    }
    return max;
  }
}
