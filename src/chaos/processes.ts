/** /proc helpers for the faults: process trees and the postmaster of a data directory. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A process and all its descendants, breadth first ([root] when it has none or is gone). */
export async function processTree(rootPid: number): Promise<number[]> {
  const out = [rootPid];
  for (let i = 0; i < out.length && i < 10_000; i++) {
    const pid = out[i] ?? 0;
    try {
      const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim();
      if (kids !== '') out.push(...kids.split(/\s+/).map(Number));
    } catch {
      // gone: nothing below it
    }
  }
  return out;
}

/** The postmaster PID recorded in <dataDir>/postmaster.pid, when there is one. */
export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
