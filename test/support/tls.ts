import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** PEM texts of a test CA, a server and a client certificate it signed, and a self-signed rogue client; plus where they are. */
export interface Pems {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly rogueCert: string;
  readonly rogueKey: string;
  /**
   * A client certificate with no CommonName (subject /O=warden): etcd's JSON gateway refuses client
   * certificates that carry one (CVE-2018-16886), so etcd clients need this kind.
   */
  readonly noCnCert: string;
  readonly noCnKey: string;
  /** The files, in `dir`: ca.pem, server.pem, server.key, client.pem, client.key, rogue.pem, rogue.key. */
  readonly dir: string;
}

/** Makes a CA, a server certificate for 127.0.0.1 and a client certificate it signed, plus a self-signed rogue client, with openssl in `dir`. */
export async function makePems(dir: string): Promise<Pems> {
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 30_000 });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=warden-test-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=warden-ctl', '-keyout', 'client.key', '-out', 'client.csr');
  ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'client.pem');
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=rogue', '-keyout', 'rogue.key', '-out', 'rogue.pem');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/O=warden', '-keyout', 'nocn.key', '-out', 'nocn.csr');
  ssl('x509', '-req', '-in', 'nocn.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'nocn.pem');
  const f = (n: string): Promise<string> => readFile(join(dir, n), 'utf8');
  return { ca: await f('ca.pem'), serverCert: await f('server.pem'), serverKey: await f('server.key'), clientCert: await f('client.pem'), clientKey: await f('client.key'), rogueCert: await f('rogue.pem'), rogueKey: await f('rogue.key'), noCnCert: await f('nocn.pem'), noCnKey: await f('nocn.key'), dir };
}
