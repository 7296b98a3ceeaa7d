/** One key as stored in the DCS, with the revisions compare-and-swap needs. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** Lease id as a decimal string; '0' when the key has no lease. */
  readonly lease: string;
}

/** A consistent read of a whole prefix at one store revision. */
export interface Snapshot {
  readonly revision: number;
  readonly kvs: readonly KeyValue[];
}

/** A lease the DCS granted; `ttlMs` is what the store granted, which may exceed what was asked. */
export interface LeaseGrant {
  readonly id: string;
  readonly ttlMs: number;
}

/** A change seen by a watch. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly kv: KeyValue;
}

/** Per-call bound: every DCS call finishes (or fails) within `timeoutMs`, or when `signal` aborts. */
export interface CallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Options for writes that may attach a lease. */
export interface WriteOptions extends CallOptions {
  readonly leaseId?: string;
}

/**
 * The distributed configuration store as Warden uses it: a prefix read at one revision, create-only
 * and compare-and-swap writes, leases and a resumable watch. Errors are WardenErrors with codes
 * 'dcs-unavailable' / 'dcs-timeout' (retryable) or 'dcs-bad-response' / 'lease-not-found'.
 */
export interface Dcs {
  /** Reads every key under `prefix` in one revision. */
  range(prefix: string, opts?: CallOptions): Promise<Snapshot>;
  /** Reads one key; undefined when absent. */
  get(key: string, opts?: CallOptions): Promise<KeyValue | undefined>;
  /** Unconditional write; returns the new store revision. */
  put(key: string, value: string, opts?: WriteOptions): Promise<number>;
  /** Writes only if the key does not exist; true when this call created it. */
  create(key: string, value: string, opts?: WriteOptions): Promise<boolean>;
  /** Writes only if the key's modRevision is still `expectModRevision`; true on success. */
  compareAndSwap(key: string, value: string, expectModRevision: number, opts?: WriteOptions): Promise<boolean>;
  /** Deletes the key, only if its modRevision matches when given; true when a key was deleted. */
  delete(key: string, opts?: CallOptions & { expectModRevision?: number }): Promise<boolean>;
  /** Grants a lease; the TTL granted is returned in ms. */
  grantLease(ttlMs: number, opts?: CallOptions): Promise<LeaseGrant>;
  /** Renews a lease once; throws 'lease-not-found' when the lease has expired or was revoked. */
  keepAlive(leaseId: string, opts?: CallOptions): Promise<{ ttlMs: number }>;
  /** Revokes a lease, deleting every key attached to it. */
  revokeLease(leaseId: string, opts?: CallOptions): Promise<void>;
  /**
   * Streams changes under `prefix` from `fromRevision` (inclusive) until `signal` aborts (resolves)
   * or the stream fails (rejects; the caller re-reads and resumes). `onEvents` gets each batch with
   * the revision of the batch's header.
   */
  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: readonly WatchEvent[], revision: number) => void,
    signal: AbortSignal,
  ): Promise<void>;
  /** Releases sockets and timers. */
  close(): void;
}
