import { createHash } from 'node:crypto';

/** A short, stable, non-reversible name for a secret: safe for logs, errors and metrics. */
export function fingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 10);
}
