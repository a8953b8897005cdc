/**
 * Every error tokend reports, with its HTTP status and CLI exit code.
 * The code is the contract: messages may change, codes do not.
 *
 * `status: null` marks a code the CLI reports and no HTTP answer carries as
 * its own (its README row shows "—"): `httpStatusOf` takes only codes with a
 * status, so calling it with one of these does not compile.
 */
export const errorCodes = {
  invalid_request: { status: 400, exit: 2 },
  invalid_json: { status: 400, exit: 2 },
  unauthorized: { status: 401, exit: 1 },
  forbidden_host: { status: 403, exit: 1 },
  forbidden_origin: { status: 403, exit: 1 },
  forbidden_user: { status: 403, exit: 1 },
  not_found: { status: 404, exit: 1 },
  method_not_allowed: { status: 405, exit: 1 },
  payload_too_large: { status: 413, exit: 2 },
  unsupported_media_type: { status: 415, exit: 2 },
  internal_error: { status: 500, exit: 1 },
  upstream_error: { status: 502, exit: 1 },
  reauthorization_required: { status: 503, exit: 1 },
  persist_failed: { status: 503, exit: 1 },
  lock_lost: { status: 503, exit: 1 },
  shutting_down: { status: 503, exit: 1 },
  overloaded: { status: 503, exit: 1 },
  not_ready: { status: 503, exit: 1 },
  daemon_unreachable: { status: null, exit: 1 },
  state_corrupt: { status: null, exit: 1 },
  state_locked: { status: null, exit: 75 },
  config_invalid: { status: null, exit: 2 },
  login_failed: { status: null, exit: 1 },
  address_in_use: { status: null, exit: 1 },
  listen_failed: { status: null, exit: 1 },
} as const satisfies Record<string, { status: number | null; exit: number }>;

export type ErrorCode = keyof typeof errorCodes;
/** The codes an HTTP answer carries, each with its own status. */
export type HttpErrorCode = { [C in ErrorCode]: (typeof errorCodes)[C]['status'] extends number ? C : never }[ErrorCode];
/** The codes only the CLI reports (an exit code, no HTTP status). */
export type CliErrorCode = Exclude<ErrorCode, HttpErrorCode>;

/** Plain data form of an error: what crosses threads and the wire. */
export interface ErrorData {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

export class TokendError extends Error {
  override readonly name = 'TokendError';
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }

  static from(data: ErrorData): TokendError {
    return new TokendError(data.code, data.message, data.details ? { details: { ...data.details } } : undefined);
  }

  toData(): ErrorData {
    return this.details ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
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
