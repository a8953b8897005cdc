/**
 * tokend's tables, created and migrated by tokend itself.
 *
 * Every instance migrates at start, several at once on several hosts: one
 * transaction takes a transaction-scoped advisory lock first, so migrations
 * run one at a time and each sees what the last one did; the applied versions
 * are rows of `tokend_schema`, so running again is a no-op. A database
 * migrated by a newer tokend is refused rather than used: a later schema may
 * mean something this version would break. A migration is never edited once
 * released; a change is a new entry at the end.
 *
 * The design (migration 1):
 *
 * - `tokend_accounts`: one row per account, holding what the state file holds
 *   (the codec's JSON, keys of other tools included) as text, not jsonb:
 *   jsonb refuses `\u0000` and lone surrogates, which a file may carry in
 *   other tools' keys, and the codec's bounds (size, nesting) apply to the
 *   row as to a file. `version` is the state's `state_version`, checked by
 *   every fenced write and only ever raised; `updated_at` is for people.
 * - `tokend_leases`: who may refresh an account. `holder` names an instance;
 *   `expires_at` is on the database's clock, never a host's; `epoch` (the
 *   fencing token) rises with every acquisition and never goes back: a
 *   release only expires the row, so an old epoch can never match again.
 *   No foreign key to `tokend_accounts`: a leader holds the lease before the
 *   account's first write.
 * - A trigger notifies channel `tokend_accounts` with `{"account","version"}`
 *   after every insert or update: delivered to listeners at commit, never
 *   before, and never carrying a token.
 */
import type pg from 'pg';
import { TokendError } from '../shared/errors.js';

/** The lock every migrating instance takes: 'tokend' in ASCII, a key no other application is likely to pick. */
const MIGRATION_LOCK = 0x746f6b656e64n;

export const NOTIFY_CHANNEL = 'tokend_accounts';

/** Index i holds the SQL of schema version i + 1. */
const migrations: readonly string[] = [
  `
  CREATE TABLE tokend_accounts (
    account    text PRIMARY KEY CHECK (account ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    version    bigint NOT NULL CHECK (version > 0),
    state      text NOT NULL CHECK (octet_length(state) <= 1048576),
    updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE tokend_leases (
    account     text PRIMARY KEY CHECK (account ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    holder      text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
    epoch       bigint NOT NULL CHECK (epoch > 0),
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL
  );
  CREATE FUNCTION tokend_accounts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM pg_notify('${NOTIFY_CHANNEL}', json_build_object('account', NEW.account, 'version', NEW.version)::text);
    RETURN NULL;
  END
  $$;
  CREATE TRIGGER tokend_accounts_notify AFTER INSERT OR UPDATE ON tokend_accounts
    FOR EACH ROW EXECUTE FUNCTION tokend_accounts_notify();
  `,
];

export const SCHEMA_VERSION = migrations.length;

export interface MigrationResult {
  readonly from: number;
  readonly to: number;
}

/** Bring the schema to `SCHEMA_VERSION` in one transaction on `client`. */
export async function migrate(client: pg.ClientBase, display: string): Promise<MigrationResult> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK.toString()]);
    // Looked up before created: CREATE ... IF NOT EXISTS needs the right to create even when
    // the table exists, and a role that only uses tables an administrator migrated has not.
    const { rows: found } = await client.query<{ exists: boolean }>("SELECT to_regclass('tokend_schema') IS NOT NULL AS exists");
    if (!found[0]?.exists) {
      await client.query(`CREATE TABLE tokend_schema (
        version    integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    }
    const { rows } = await client.query<{ version: number }>('SELECT coalesce(max(version), 0)::integer AS version FROM tokend_schema');
    const from = rows[0]?.version ?? 0;
    if (from > SCHEMA_VERSION) {
      throw new TokendError(
        'config_invalid',
        `store ${display} has schema version ${from}, written by a newer tokend; this one knows up to ${SCHEMA_VERSION}: upgrade tokend`,
      );
    }
    for (let version = from + 1; version <= SCHEMA_VERSION; version++) {
      await client.query(migrations[version - 1]!);
      await client.query('INSERT INTO tokend_schema (version) VALUES ($1)', [version]);
    }
    await client.query('COMMIT');
    return { from, to: Math.max(from, SCHEMA_VERSION) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
