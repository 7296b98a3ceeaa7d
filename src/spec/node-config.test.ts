import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSpecError, parseNodeConfig } from './index.js';

describe('parseNodeConfig', () => {
  it('reads a node config with defaults and the hostname label', () => {
    const r = parseNodeConfig('name: node-1\ndir: /var/lib/warden/node-1\netcd:\n  endpoints: ["http://127.0.0.1:2379/"]\nlabels:\n  topology.kubernetes.io/zone: zone-a\n', 'node.yaml');
    assert.ok(r.ok, r.ok ? '' : r.errors.map(formatSpecError).join('\n'));
    assert.deepEqual(r.config.etcd.endpoints, ['http://127.0.0.1:2379']);
    assert.deepEqual(r.config.labels, { 'topology.kubernetes.io/zone': 'zone-a', 'kubernetes.io/hostname': 'node-1' });
    assert.equal(r.config.restartDelaySeconds, 5);
    assert.deepEqual(r.config.controller, { enabled: true, nodeLostSeconds: 30, ttlSeconds: 10 });
  });

  it('reports every problem with file:line:col and the field', () => {
    const r = parseNodeConfig('name: Node_1\ndir: relative/dir\netcd:\n  endpoints: [ftp://x]\nleaseTtlSeconds: 1\ncapacty: {}\n', 'node.yaml');
    assert.equal(r.ok, false);
    const lines = r.ok ? [] : r.errors.map(formatSpecError);
    assert.ok(lines.some((l) => l.startsWith('node.yaml:1:1: name: node name "Node_1"')), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('node.yaml:2:1: dir: must be an absolute path')), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('node.yaml:4:3: etcd.endpoints: not an http(s)://host:port URL')), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('node.yaml:5:1: leaseTtlSeconds: must be')), lines.join('\n'));
    assert.ok(lines.some((l) => /^node\.yaml:6:1: capacty: .*capacity/.test(l)), lines.join('\n'));
  });

  it('requires name, dir and etcd', () => {
    const r = parseNodeConfig('labels: {}\n', 'node.yaml');
    assert.deepEqual(r.ok ? [] : r.errors.map((e) => e.field).sort(), ['dir', 'etcd.endpoints', 'name']);
  });

  it('reads etcd TLS (CA, client certificate and key) for https:// endpoints', () => {
    const r = parseNodeConfig('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [https://10.0.0.5:2379]\n  cacert: /etc/warden/etcd-ca.pem\n  cert: /etc/warden/etcd-client.pem\n  key: /etc/warden/etcd-client.key\n', 'node.yaml');
    assert.ok(r.ok, r.ok ? '' : r.errors.map(formatSpecError).join('\n'));
    assert.deepEqual(r.config.etcd, { endpoints: ['https://10.0.0.5:2379'], cacert: '/etc/warden/etcd-ca.pem', cert: '/etc/warden/etcd-client.pem', key: '/etc/warden/etcd-client.key' });
  });

  it('refuses TLS settings with http:// endpoints, a certificate without its key, and relative paths', () => {
    const lines = (text: string): string[] => {
      const r = parseNodeConfig(text, 'node.yaml');
      return r.ok ? [] : r.errors.map(formatSpecError);
    };
    const http = lines('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [http://127.0.0.1:2379]\n  cacert: /etc/ca.pem\n');
    assert.ok(http.some((l) => /^node\.yaml:1:1: etcd\.cacert: TLS settings need https:\/\/ etcd endpoints/.test(l)), http.join('\n'));
    const half = lines('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [https://127.0.0.1:2379]\n  cert: /etc/c.pem\n');
    assert.ok(half.some((l) => /etcd\.key: etcd\.cert and etcd\.key go together/.test(l)), half.join('\n'));
    const rel = lines('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [https://127.0.0.1:2379]\n  cacert: ca.pem\n');
    assert.ok(rel.some((l) => /^node\.yaml:5:3: etcd\.cacert: must be an absolute path/.test(l)), rel.join('\n'));
  });

  it('reads the agents\' REST API TLS (certificate, key, CA, client verification) and refuses half of it', () => {
    const base = 'name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [http://127.0.0.1:2379]\n';
    const ok = parseNodeConfig(`${base}restapi:\n  certfile: /etc/warden/rest.pem\n  keyfile: /etc/warden/rest.key\n  cafile: /etc/warden/ca.pem\n  verify_client: required\n`, 'node.yaml');
    assert.ok(ok.ok, ok.ok ? '' : ok.errors.map(formatSpecError).join('\n'));
    assert.deepEqual(ok.config.restApi, { certfile: '/etc/warden/rest.pem', keyfile: '/etc/warden/rest.key', cafile: '/etc/warden/ca.pem', verifyClient: 'required' });
    const plain = parseNodeConfig(`${base}restapi:\n  certfile: /etc/warden/rest.pem\n  keyfile: /etc/warden/rest.key\n`, 'node.yaml');
    assert.ok(plain.ok);
    assert.deepEqual(plain.config.restApi, { certfile: '/etc/warden/rest.pem', keyfile: '/etc/warden/rest.key', verifyClient: 'none' });
    const lines = (text: string): string[] => {
      const r = parseNodeConfig(text, 'node.yaml');
      return r.ok ? [] : r.errors.map(formatSpecError);
    };
    const cases: { text: string; want: RegExp }[] = [
      { text: 'restapi:\n  certfile: /etc/c.pem\n', want: /restapi\.keyfile: restapi\.certfile and restapi\.keyfile go together/ },
      { text: 'restapi:\n  cafile: /etc/ca.pem\n', want: /restapi\.cafile: needs restapi\.certfile and restapi\.keyfile \(TLS\)/ },
      { text: 'restapi:\n  certfile: /etc/c.pem\n  keyfile: /etc/c.key\n  verify_client: optional\n', want: /restapi\.verify_client: optional needs restapi\.cafile/ },
      { text: 'restapi:\n  certfile: /etc/c.pem\n  keyfile: /etc/c.key\n  verify_client: maybe\n', want: /^node\.yaml:8:3: restapi\.verify_client: must be one of none, optional, required \(got "maybe"\)/ },
      { text: 'restapi:\n  certfile: c.pem\n  keyfile: /etc/c.key\n', want: /^node\.yaml:6:3: restapi\.certfile: must be an absolute path/ },
    ];
    for (const c of cases) {
      const got = lines(`${base}${c.text}`);
      assert.ok(got.some((l) => c.want.test(l)), `${c.text}: ${got.join('\n')}`);
    }
  });

  it('reads backups.repo_path, absolute and required once backups is given', () => {
    const ok = parseNodeConfig('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [http://127.0.0.1:2379]\nbackups:\n  repo_path: /mnt/warden-backup\n', 'node.yaml');
    assert.ok(ok.ok, ok.ok ? '' : ok.errors.map(formatSpecError).join('\n'));
    assert.deepEqual(ok.config.backups, { repoPath: '/mnt/warden-backup' });
    const none = parseNodeConfig('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [http://127.0.0.1:2379]\n', 'node.yaml');
    assert.ok(none.ok);
    assert.equal(none.config.backups, undefined);
    const lines = (text: string): string[] => {
      const r = parseNodeConfig(text, 'node.yaml');
      return r.ok ? [] : r.errors.map(formatSpecError);
    };
    const rel = lines('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [http://127.0.0.1:2379]\nbackups:\n  repo_path: backup\n');
    assert.ok(rel.some((l) => /^node\.yaml:6:3: backups\.repo_path: must be an absolute path/.test(l)), rel.join('\n'));
    const empty = lines('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [http://127.0.0.1:2379]\nbackups: {}\n');
    assert.ok(empty.some((l) => /backups\.repo_path: required/.test(l)), empty.join('\n'));
    const typo = lines('name: node-1\ndir: /var/lib/warden\netcd:\n  endpoints: [http://127.0.0.1:2379]\nbackups:\n  repo_pat: /x\n');
    assert.ok(typo.some((l) => /repo_pat/.test(l)), typo.join('\n'));
  });

  it('refuses a dir too deep for PostgreSQL\'s Unix socket paths under it, with the limit', () => {
    const long = `/var/tmp/${'x'.repeat(70)}`;
    const r = parseNodeConfig(`name: node-1\ndir: ${long}\netcd:\n  endpoints: [http://127.0.0.1:2379]\n`, 'node.yaml');
    assert.ok(!r.ok);
    assert.match(r.errors.map(formatSpecError).join('\n'), /^node\.yaml:2:1: dir: 79 bytes is too long: PostgreSQL's Unix socket paths under it would not fit the 107 bytes the OS allows; use a path of at most 71 bytes/m);
    assert.ok(parseNodeConfig(`name: node-1\ndir: /${'x'.repeat(70)}\netcd:\n  endpoints: [http://127.0.0.1:2379]\n`, 'node.yaml').ok, '71 bytes fit');
  });
});
