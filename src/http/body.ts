/**
 * Request bodies: JSON only, at most 16 KiB, read with a byte count (a
 * Content-Length can lie). Anything else is a clear 4xx that changes nothing.
 */
import type { IncomingMessage } from 'node:http';
import { TokendError } from '../shared/errors.js';

export const BODY_LIMIT = 16 * 1024;

export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const type = (value.split(';', 1)[0] ?? '').trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

/** A POST may omit a body (no Content-Type needed); a body present must be JSON. */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

export async function readJsonBody(req: IncomingMessage, required: boolean): Promise<unknown> {
  const present = hasBody(req);
  if (!present && !required) return undefined;
  if (!isJsonContentType(req.headers['content-type'])) {
    req.resume();
    throw new TokendError('unsupported_media_type', 'the request body must be application/json');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > BODY_LIMIT) {
    req.resume();
    throw new TokendError('payload_too_large', `the request body is over ${BODY_LIMIT} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > BODY_LIMIT) {
        req.resume();
        throw new TokendError('payload_too_large', `the request body is over ${BODY_LIMIT} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof TokendError) throw err;
    // The client went away (or was cut off as too slow) mid-body: its request, not a fault here.
    throw new TokendError('invalid_request', 'the connection closed before the whole request body arrived');
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') {
    if (required) throw new TokendError('invalid_json', 'the request body is empty; expected a JSON object');
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new TokendError('invalid_json', 'the request body is not valid JSON');
  }
}
