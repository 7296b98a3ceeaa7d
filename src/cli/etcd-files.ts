import { readFileSync } from 'node:fs';
import { WardenError } from '../core/errors.js';
import type { EtcdAuth, EtcdTls } from '../dcs/etcd-client.js';

/** The credentials and TLS material the files name; throws a WardenError naming the file it cannot read. */
export function readEtcdFiles(f: { username?: string; passwordFile?: string; cacert?: string; cert?: string; key?: string }): { tls?: EtcdTls; auth?: EtcdAuth } {
  const read = (path: string, what: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw new WardenError('config-invalid', `cannot read ${what} ${path}: ${(e as Error).message}`);
    }
  };
  const tls: { ca?: string; cert?: string; key?: string } = {
    ...(f.cacert === undefined ? {} : { ca: read(f.cacert, 'etcd.cacert') }),
    ...(f.cert === undefined ? {} : { cert: read(f.cert, 'etcd.cert') }),
    ...(f.key === undefined ? {} : { key: read(f.key, 'etcd.key') }),
  };
  return {
    ...(Object.keys(tls).length === 0 ? {} : { tls }),
    ...(f.username === undefined || f.passwordFile === undefined ? {} : { auth: { username: f.username, password: read(f.passwordFile, 'etcd.password_file').trim() } }),
  };
}
