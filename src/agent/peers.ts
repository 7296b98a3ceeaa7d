import { httpCall, type ClientTls } from '../core/http-app.js';
import { parseLsn } from '../core/lsn.js';
import type { MemberTags, PeerFacts } from '../ha/index.js';

/** Reads one peer's GET /patroni within `timeoutMs`; an unreachable peer is reported, never thrown. */
export async function fetchPeer(name: string, apiUrl: string, timeoutMs: number, tls?: ClientTls): Promise<PeerFacts> {
  try {
    const res = await httpCall(new URL('/patroni', apiUrl), { timeoutMs, ...(tls === undefined ? {} : { tls }) });
    return peerFactsFromPatroni(name, JSON.parse(res.body));
  } catch {
    // Unreachable or malformed: the race treats it as a member that cannot be promoted now.
    return { name, reachable: false };
  }
}

/**
 * What the leader race needs from a peer's GET /patroni body (patroniStatus in rest-api.ts); also
 * used by in-process tests that read a peer's snapshot without HTTP. Throws on a malformed LSN.
 */
export function peerFactsFromPatroni(name: string, json: unknown): PeerFacts {
  if (typeof json !== 'object' || json === null) throw new Error(`GET /patroni of ${name}: not a JSON object`);
  const body = json as {
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
}
