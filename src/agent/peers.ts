import { httpCall, type ClientTls } from '../core/http-app.js';
import { parseLsn } from '../core/lsn.js';
import type { MemberTags, PeerFacts } from '../ha/index.js';

/** Reads one peer's GET /patroni within `timeoutMs`; an unreachable peer is reported, never thrown. */
export async function fetchPeer(name: string, apiUrl: string, timeoutMs: number, tls?: ClientTls): Promise<PeerFacts> {
  try {
    const res = await httpCall(new URL('/patroni', apiUrl), { timeoutMs, ...(tls === undefined ? {} : { tls }) });
    const body = JSON.parse(res.body) as {
      role?: string;
      state?: string;
      timeline?: number;
      warden?: { walPosition?: string; tags?: MemberTags; name?: string };
    };
    const role = body.role === 'primary' || body.role === 'master' ? 'primary' : body.role === 'replica' ? 'replica' : undefined;
    const pos = body.warden?.walPosition;
    return {
      name,
      reachable: true,
      running: body.state === 'running' || body.state === 'streaming',
      ...(role === undefined ? {} : { role }),
      ...(pos === undefined ? {} : { walPosition: parseLsn(pos) }),
      ...(body.timeline === undefined ? {} : { timeline: body.timeline }),
      ...(body.warden?.tags === undefined ? {} : { tags: body.warden.tags }),
    };
  } catch {
    // Unreachable or malformed: the race treats it as a member that cannot be promoted now.
    return { name, reachable: false };
  }
}
