/**
 * Reading a provider's answer without trusting its size.
 *
 * The owner thread has a small heap: a provider answering 60 MB used to take
 * the whole process down with the refresh intent open. So a body is read up
 * to a cap, counted as it arrives (a content-length can lie or be absent),
 * and destroyed past it, which closes the connection. A compressed body is
 * decoded (a provider may compress when not asked not to) with the cap on
 * both sides, so a small bomb cannot expand into a large answer.
 */
import { pipeline, Transform, type Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

/** The most tokend reads of any upstream answer. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** The answer was larger than the cap; what arrived of it was discarded. */
export class BodyTooLarge extends Error {
  override readonly name = 'BodyTooLarge';
  constructor(readonly limit: number) {
    super(`the answer was over ${limit / 1024 / 1024} MiB`);
  }
}

/** The answer came in a content coding tokend cannot decode, or did not decode. */
export class BodyUndecodable extends Error {
  override readonly name = 'BodyUndecodable';
}

type Headers = Record<string, string | string[] | undefined>;

const decoders: Record<string, () => Transform> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value.join(',') : (value ?? '')).toLowerCase();
}

/** Counts the bytes that pass, and fails past `limit`. */
function counter(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      done(seen > limit ? new BodyTooLarge(limit) : null, chunk);
    },
  });
}

/** Close the connection under an unread body (undici reports the destroy as an error event: nobody needs it). */
function discard(body: Readable): void {
  body.once('error', () => undefined);
  body.destroy();
}

/** The whole body as text, at most `limit` bytes on the wire and after decoding. The body is always consumed or destroyed. */
export async function readBody(body: Readable, headers: Headers, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(one(headers['content-length']) || 0);
  const codings = one(headers['content-encoding'])
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c !== 'identity');
  if (declared > limit) {
    discard(body);
    throw new BodyTooLarge(limit);
  }
  // Own keys only: a coding named `constructor` must not find Object's.
  const decoder = codings.length === 1 && Object.hasOwn(decoders, codings[0]!) ? decoders[codings[0]!] : undefined;
  if (codings.length > 1 || (codings.length === 1 && !decoder)) {
    discard(body);
    throw new BodyUndecodable(`the answer is in a content coding tokend does not decode (${codings.join(', ').slice(0, 40)})`);
  }
  const stages: Array<Readable | Transform> = [body, counter(limit)];
  if (decoder) stages.push(decoder(), counter(limit));
  const out = (pipeline as (...streams: Array<Readable | Transform | ((err: Error | null) => void)>) => Readable)(...stages, () => undefined);
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of out) chunks.push(chunk as Buffer);
  } catch (err) {
    // zlib's codes are Z_*, brotli's ERR__*; undici's are UND_ERR_*, the system's E*.
    if (codings.length === 1 && /^(Z_|ERR__)/.test(String((err as { code?: unknown }).code)))
      throw new BodyUndecodable(`the ${codings[0]} answer did not decode`);
    throw err;
  }
  // RFC 8259: JSON is UTF-8; a byte-order mark is tolerated, not required.
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/^\ufeff/, '');
}
