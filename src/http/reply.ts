/** Every response is JSON; every error is `{"error": code, "message": ...}`. */
import type { ServerResponse } from 'node:http';
import { errorCodes, type ErrorCode, type ErrorData } from '../errors.js';

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

export function sendError(res: ServerResponse, error: ErrorData, headers?: Record<string, string>, extra?: Record<string, unknown>): void {
  sendJson(res, errorCodes[error.code].status, { error: error.code, message: error.message, ...extra }, headers);
}

export function fail(res: ServerResponse, code: ErrorCode, message: string, headers?: Record<string, string>): void {
  sendError(res, { code, message }, headers);
}
