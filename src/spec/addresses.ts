// Network addresses in settings: host:port pairs and etcd client URLs, parsed and written back.

/** A TCP address; `host` is an IP address or DNS name, IPv6 without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

/** Parses `host:port`, `[v6]:port` or `*:port`; undefined when malformed or the port is outside 1..65535. */
export function parseHostPort(text: string): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (!(port >= 1 && port <= 65535)) return undefined;
  const v6 = m[1];
  if (v6 !== undefined) return IPV6.test(v6) && v6.includes(':') ? { host: v6, port } : undefined;
  const host = m[2] ?? '';
  if (host === '*' || IPV4.test(host) || (HOSTNAME.test(host) && !/^[\d.]+$/.test(host))) return { host, port };
  return undefined;
}

/** `host:port`, with brackets around IPv6 hosts. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** An etcd client URL as `scheme://host:port`, or undefined when it is not a plain http(s) URL. */
export function normalizeEtcdUrl(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined; // not a URL: reported by the caller with the offending text
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.hostname === '' || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return undefined;
  if (url.pathname !== '/' && url.pathname !== '') return undefined;
  return `${url.protocol}//${url.host}`;
}
