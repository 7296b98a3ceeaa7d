/** A local-runtime cluster spec with one pgBackRest volume repository (the backup tests' shape). */
export function backupClusterSpec(name: string, replicas: number): string {
  return `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: ${name}
spec:
  instances: [{ name: instance1, replicas: ${replicas} }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      repos:
        - name: repo1
          volume: {}
`;
}
