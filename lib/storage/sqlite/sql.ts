/**
 * The SQL text of the batched statements a transaction runs, and how values
 * are packed into their few large parameters (the limits that come with it
 * and {@link exactNumber}). Strings and numbers only: builds on nothing.
 * @module
 */

/*
 * Batched statements take a few large parameters instead of one per value:
 * the sqlite3 package spends ~2 µs binding each parameter, several times what
 * SQLite needs to insert a row. Bytes (uuids, data) travel in one BLOB cut
 * with substr(); other values in JSON read with json_each(). Numbers go
 * through JSON as an integer pair "n,k" meaning n / 2^k, because SQLite's
 * text-to-double conversion is not always correctly rounded while integers
 * and divisions by powers of two are exact.
 */
const num = (n: string, k: string): string => `CAST(${n} AS REAL) / (1 << min(${k}, 62)) / (1 << max(${k} - 62, 0))`;

/** @internal Bits of a packed insert row (see SQL.insert): offset in the BLOB, data length; the dictionary index above. */
export const LEN_BITS = 17;
/** @internal */
export const OFFSET_BITS = 22;
/** @internal Data at most this long goes through the packed INSERT; longer data is inserted alone. */
export const PACKED_MAX_DATA = 2 ** LEN_BITS - 1;
/** @internal Bytes of uuids and data per packed INSERT, at most (offsets are 1-based). */
export const PACKED_MAX_BYTES = 2 ** OFFSET_BITS - 1;
/** @internal Rows per packed INSERT, at most (keeps the packed integers below 2^53). */
export const INSERT_ROWS = 4096;
/** @internal Entries per DELETE / TTL / away statement, at most. */
export const CHUNK = 8192;

/** @internal The batched statements, prepared once per storage. */
export const SQL = {
  /**
   * ?1 BLOB of uuid+data per row; ?2 JSON array, one integer per row:
   * dictionary index << 39 | 1-based offset in ?1 << 17 | data length;
   * ?3 JSON dictionary [[ident, flags, ttl n, ttl k], …] (rows share few).
   * Scalar json_each values are cheap, `->>` on every row is not. CROSS JOIN
   * keeps the rows as the outer loop (the dictionary gets an automatic index).
   */
  insert:
    `WITH d(i, queue, flags, ttl) AS MATERIALIZED (` +
    `SELECT key, value ->> 0, value ->> 1, ${num('value ->> 2', 'value ->> 3')} FROM json_each(?3)) ` +
    'INSERT INTO messages (queue, uuid, data, flags, ttl) ' +
    `SELECT d.queue, substr(?1, (j.value >> ${LEN_BITS}) & ${PACKED_MAX_BYTES}, 16), ` +
    `substr(?1, ((j.value >> ${LEN_BITS}) & ${PACKED_MAX_BYTES}) + 16, j.value & ${PACKED_MAX_DATA}), d.flags, d.ttl ` +
    `FROM json_each(?2) AS j CROSS JOIN d ON d.i = j.value >> ${LEN_BITS + OFFSET_BITS} ORDER BY j.key`,
  /** One large message. */
  insertOne: 'INSERT INTO messages (queue, uuid, data, flags, ttl) VALUES (?1, ?2, ?3, ?4, ?5)',
  /** ?1 queue, ?2 BLOB of uuids. */
  delete:
    'WITH RECURSIVE u(o) AS (SELECT 1 UNION ALL SELECT o + 16 FROM u WHERE o + 16 <= length(?2)) ' +
    'DELETE FROM messages WHERE queue = ?1 AND uuid IN (SELECT substr(?2, o, 16) FROM u)',
  /** ?1 BLOB of uuids, ?2 JSON [[ttl n, ttl k], …]. A keyed temp table keeps the UPDATE's plan index-driven. */
  ttlStage:
    'INSERT OR REPLACE INTO temp.smq_ttl (uuid, ttl) ' +
    `SELECT substr(?1, j.key * 16 + 1, 16), ${num('j.value ->> 0', 'j.value ->> 1')} FROM json_each(?2) AS j`,
  /** ?1 queue. */
  ttlApply:
    'UPDATE messages SET ttl = (SELECT t.ttl FROM temp.smq_ttl AS t WHERE t.uuid = messages.uuid) ' +
    'WHERE queue = ?1 AND uuid IN (SELECT uuid FROM temp.smq_ttl)',
  ttlClear: 'DELETE FROM temp.smq_ttl',
  /** ?1 JSON [[ident, since n, since k], …]. */
  awaySet:
    `INSERT INTO queues (ident, away_since) SELECT j.value ->> 0, ${num('j.value ->> 1', 'j.value ->> 2')} ` +
    'FROM json_each(?1) AS j WHERE true ON CONFLICT (ident) DO UPDATE SET away_since = excluded.away_since',
  /** ?1 JSON [ident, …]. */
  awayDelete: 'DELETE FROM queues WHERE ident IN (SELECT value FROM json_each(?1))',
  /** ?1 JSON [ident, …]: only queues without messages. */
  forget:
    'DELETE FROM queues WHERE ident IN (SELECT value FROM json_each(?1)) ' + 'AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.queue = queues.ident)',
} as const;
/** @internal */
export type StatementName = keyof typeof SQL;
/** @internal Run by load(), outside the batches. */
export const SQL_PRUNE = 'DELETE FROM queues WHERE NOT EXISTS (SELECT 1 FROM messages WHERE messages.queue = queues.ident)';

/**
 * `"n,k"` with x = n / 2^k, n an integer (so SQLite reads it exactly), or
 * `"null,0"`. Only |x| < 2^-71 (meaningless as a TTL or a time) falls back to
 * a decimal that SQLite may round differently.
 * @internal
 */
export function exactNumber(x: number | null): string {
  if (x === null) return 'null,0';
  if (Number.isInteger(x)) return `${x},0`;
  // x is not an integer, so |x| < 2^52 and k >= 1; n = x * 2^k is exact (a power-of-two scaling).
  let k = 52 - Math.floor(Math.log2(Math.abs(x)));
  if (k > 124) return `${JSON.stringify(x)},0`;
  let n = x * 2 ** k;
  if (!Number.isInteger(n)) {
    n *= 2; // Math.log2 rounded up at a power of two
    k++;
  }
  return `${n},${k}`;
}
