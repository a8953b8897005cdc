/**
 * The seam between the main thread and the owner thread.
 *
 * The owner (src/owner) is the only code that reads or writes the state
 * file, holds its lock or calls the provider. The main thread imports this file
 * with `import type` only, so no worker code ever loads on the main thread.
 * Errors cross as data (`Result`), never as thrown subclasses: Comlink keeps
 * only an Error's name, message and stack.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ErrorData } from './errors.js';

export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ErrorData };

/** How the client authenticates at the token endpoint. */
export type ClientAuthMethod = 'client_secret_post' | 'client_secret_basic' | 'none';

export interface ProviderSettings {
  readonly name: string;
  /** Empty when it is to be discovered from `issuer`. */
  readonly tokenUrl: string;
  readonly issuer: string | null;
  readonly clientId: string;
  readonly clientSecret: string | null;
  /** null: chosen from the issuer's discovery document (client_secret_basic when it is offered). */
  readonly authMethod: ClientAuthMethod | null;
}

export interface UpstreamTimeouts {
  readonly connectMs: number;
  readonly headersMs: number;
  readonly bodyMs: number;
  /** Hard deadline for a whole token request. */
  readonly totalMs: number;
}

export interface OwnerOptions {
  readonly stateFile: string;
  readonly provider: ProviderSettings;
  readonly timeouts: UpstreamTimeouts;
  /** Longest sleep between checks of the wall clock. */
  readonly wakeIntervalMs: number;
  /** Owner identity recorded beside the state file. */
  readonly owner: { readonly pid: number; readonly instance: string; readonly listen: string | null };
  /** Move a corrupt state file aside instead of refusing to start. */
  readonly moveCorruptAside: boolean;
  /** Lines below this level are not sent to the main thread at all. */
  readonly logLevel: string;
  /** Run the refresh timer (false for a short-lived owner, such as `tokend login` with no daemon). */
  readonly scheduleRefresh: boolean;
  /** Refresh at the latest this long before expiry (the account's `refresh_lead`); absent: 5 minutes. */
  readonly refreshLeadMs?: number;
  /** Refresh at least this often (the account's `refresh_at_least`); absent: no such rule. */
  readonly refreshAtLeastMs?: number;
}

export type DaemonStatus =
  /** A usable access token is held. */
  | 'ok'
  /** No tokens yet: waiting for `tokend login` or `tokend set`. */
  | 'waiting_for_login'
  /** The access token expired and refreshing has not yet succeeded. */
  | 'expired'
  /** The provider refused the refresh token: only a new login helps. */
  | 'reauthorization_required'
  /** The state-file lock was lost: refreshing stopped. */
  | 'lock_lost'
  /** The account's owner could not start (a corrupt or unreadable state file, …): its file is left as it was; `reason` says why. */
  | 'failed';

export interface TokenView {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly scope: string | null;
  /** Absolute expiry, ms since the epoch; null when unknown (older layout). */
  readonly expiresAtMs: number | null;
  readonly obtainedAtMs: number | null;
  /** Short fingerprint of the access token, safe to log. */
  readonly fingerprint: string;
  /** Short fingerprint of the refresh token, or null when none is held. */
  readonly refreshFingerprint: string | null;
  /** Short fingerprint of the refresh token the current one replaced, kept until the current one has been redeemed once. */
  readonly replacedRefreshFingerprint: string | null;
}

export interface RefreshView {
  readonly inFlight: boolean;
  readonly nextAtMs: number | null;
  readonly lastAttemptAtMs: number | null;
  readonly lastSuccessAtMs: number | null;
  readonly lastError: ErrorData | null;
  readonly consecutiveFailures: number;
}

export interface PersistView {
  readonly ok: boolean;
  readonly lastError: string | null;
  readonly lastWriteAtMs: number | null;
}

/** What the owner pushes to the main thread after every change. Read-only. */
export interface Snapshot {
  /** Grows with every snapshot taken: orders snapshots that arrive on two ports (events and RPC replies). */
  readonly seq: number;
  /** State version: grows with every persisted change. */
  readonly version: number;
  readonly status: DaemonStatus;
  /** Why a reauthorization is needed, with the command that fixes it. */
  readonly reason: string | null;
  readonly token: TokenView | null;
  readonly refresh: RefreshView;
  readonly persist: PersistView;
  readonly lockHeld: boolean;
  readonly stateFile: string;
  readonly provider: string;
  /** Provider fields worth keeping (Monzo's user_id, client_id). */
  readonly account: Readonly<Record<string, string>>;
}

export interface SetTokensInput {
  readonly accessToken: string;
  /** null: not given, the current refresh token is kept. */
  readonly refreshToken: string | null;
  readonly expiresInSec: number | null;
  readonly tokenType?: string;
  readonly scope?: string | null;
  readonly extra?: Readonly<Record<string, string>>;
}

export type RefreshTrigger = 'timer' | 'http' | 'cli' | 'read' | 'start';

/** Measurements the owner reports for metrics (main thread owns prom-client). */
export type OwnerEvent =
  | { readonly type: 'snapshot'; readonly snapshot: Snapshot }
  | { readonly type: 'refresh'; readonly outcome: RefreshOutcome; readonly seconds: number }
  | { readonly type: 'persist'; readonly ok: boolean; readonly seconds: number }
  /** A log line of the owner thread, written by the main thread's logger (one logger, one redaction). */
  | { readonly type: 'log'; readonly level: OwnerLogLevel; readonly fields: Record<string, unknown>; readonly msg: string | undefined }
  /** The owner has closed: every log line it wrote before is already delivered (one port keeps order). */
  | { readonly type: 'closed' };

export type OwnerLogLevel = 'error' | 'warn' | 'info' | 'debug';

export type RefreshOutcome = 'success' | 'transient_error' | 'invalid_grant' | 'bad_response' | 'rejected' | 'skipped';

/** The RPC surface of the owner thread. */
export interface OwnerApi {
  /** Take the lock, load the state, schedule; events arrive on the attach task's port. */
  start(options: OwnerOptions): Promise<Result<Snapshot>>;
  setListen(listen: string): Promise<void>;
  refresh(trigger: RefreshTrigger): Promise<Result<Snapshot>>;
  /** Refresh only if the token is about to expire; otherwise answer at once. */
  ensureFresh(): Promise<Result<Snapshot>>;
  setTokens(input: SetTokensInput): Promise<Result<Snapshot>>;
  /** Let an in-flight refresh settle (bounded), flush, release the lock. */
  close(timeoutMs: number): Promise<Result<null>>;
  /**
   * A deliberate second stop request: stop waiting for the provider (abort the
   * token request in flight) so `close` can finish. An answer that has already
   * arrived is still written first.
   */
  hurry(): Promise<void>;
}

/** The owner record written beside the state file while a daemon holds it. */
/** The piscina task that attaches the main thread to a (new) owner thread. */
export interface AttachTask {
  readonly rpc: MessagePort;
  readonly events: MessagePort;
}

export interface OwnerRecord {
  readonly pid: number;
  readonly host: string;
  readonly instance: string;
  readonly listen: string | null;
  readonly startedAt: string;
}
