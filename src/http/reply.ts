/** Every response is JSON; every error is `{"error": code, "message": ...}`. */
import type { ServerResponse } from 'node:http';
import { httpStatusOf, isHttpErrorCode, type ErrorCode, type ErrorData, type HttpErrorCode } from '../shared/errors.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/**
 * The status of an answer carrying `code`. An owner's verdict may in principle
 * carry any code (a `TokendError` thrown while serving becomes one); a code
 * without an HTTP status of its own (one the CLI reports) is not meant to reach
 * an answer, and one that does is a failure on tokend's side: 500, with that code.
 */
export function answerStatus(code: ErrorCode): number {
  return isHttpErrorCode(code) ? httpStatusOf(code) : 500;
}

export function sendError(res: ServerResponse, error: ErrorData, headers?: Record<string, string>, extra?: Record<string, unknown>): void {
  sendJson(res, answerStatus(error.code), { error: error.code, message: error.message, ...extra }, headers);
}

export function fail(res: ServerResponse, code: HttpErrorCode, message: string, headers?: Record<string, string>): void {
  sendError(res, { code, message }, headers);
}
