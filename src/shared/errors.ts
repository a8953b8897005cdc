/**
 * Every error tokend reports, with its HTTP status and CLI exit code.
 * The code is the contract: messages may change, codes do not.
 *
 * `status: null` marks a code the CLI reports and no HTTP answer carries as
 * its own (its README row shows "—"): `httpStatusOf` takes only codes with a
 * status, so calling it with one of these does not compile.
 */
import type { OwnerRecord } from './contract.js';

export const errorCodes = {
  invalid_request: { status: 400, exit: 2 },
  invalid_json: { status: 400, exit: 2 },
  unauthorized: { status: 401, exit: 1 },
  forbidden_host: { status: 403, exit: 1 },
  forbidden_origin: { status: 403, exit: 1 },
  forbidden_user: { status: 403, exit: 1 },
  not_found: { status: 404, exit: 1 },
  unknown_account: { status: 404, exit: 2 },
  method_not_allowed: { status: 405, exit: 1 },
  reload_unavailable: { status: 409, exit: 2 },
  payload_too_large: { status: 413, exit: 2 },
  unsupported_media_type: { status: 415, exit: 2 },
  config_invalid: { status: 422, exit: 2 },
  internal_error: { status: 500, exit: 1 },
  upstream_error: { status: 502, exit: 1 },
  reauthorization_required: { status: 503, exit: 1 },
  persist_failed: { status: 503, exit: 1 },
  lock_lost: { status: 503, exit: 1 },
  shutting_down: { status: 503, exit: 1 },
  overloaded: { status: 503, exit: 1 },
  not_ready: { status: 503, exit: 1 },
  state_corrupt: { status: 503, exit: 1 },
  daemon_unreachable: { status: null, exit: 1 },
  state_locked: { status: null, exit: 75 },
  login_failed: { status: null, exit: 1 },
  address_in_use: { status: null, exit: 1 },
  listen_failed: { status: null, exit: 1 },
} as const satisfies Record<string, { status: number | null; exit: number }>;

export type ErrorCode = keyof typeof errorCodes;
/** The codes an HTTP answer carries, each with its own status. */
export type HttpErrorCode = { [C in ErrorCode]: (typeof errorCodes)[C]['status'] extends number ? C : never }[ErrorCode];
/** The codes only the CLI reports (an exit code, no HTTP status). */
export type CliErrorCode = Exclude<ErrorCode, HttpErrorCode>;

/** What the provider answered to a failed token request, in its words; `status` null when no answer was read. */
export interface UpstreamAnswer {
  readonly status: number | null;
  readonly error: string | null;
}

/** What an error may carry beyond its code and message, each field typed. */
export interface ErrorFields {
  /** A failed token request: the provider's answer (an HTTP error body carries it as `upstream`). */
  readonly upstream?: UpstreamAnswer;
  /** The pause the provider asked for (Retry-After). */
  readonly retryAfterMs?: number;
  /** When the refresher tries again: a refresh asked for sooner is answered with this failure. */
  readonly retryAt?: string;
  /** Who holds the state file (`state_locked`). */
  readonly owner?: OwnerRecord;
  /** Worth trying again (the owner thread's attach, which piscina may not have finished replacing). */
  readonly retryable?: boolean;
}

/** Plain data form of an error: what crosses threads (structured clone) and the wire. */
export interface ErrorData extends ErrorFields {
  readonly code: ErrorCode;
  readonly message: string;
}

export class TokendError extends Error {
  override readonly name = 'TokendError';
  readonly code: ErrorCode;
  readonly fields: ErrorFields;

  constructor(code: ErrorCode, message: string, options: { readonly cause?: unknown } & ErrorFields = {}) {
    const { cause, ...fields } = options;
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.fields = fields;
  }

  static from(data: ErrorData): TokendError {
    const { code, message, ...fields } = data;
    return new TokendError(code, message, fields);
  }

  toData(): ErrorData {
    return { code: this.code, message: this.message, ...this.fields };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}

export function isHttpErrorCode(code: ErrorCode): code is HttpErrorCode {
  return errorCodes[code].status !== null;
}

export function httpStatusOf(code: HttpErrorCode): number {
  return errorCodes[code].status;
}

export function exitCodeOf(code: ErrorCode): number {
  return errorCodes[code].exit;
}
