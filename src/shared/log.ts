/**
 * pino, JSON by default and pretty on a terminal, with token fields redacted
 * as a second fence: code logs fingerprints, never token values.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

type LogFn = { (fields: object, msg?: string): void; (msg: string): void };
/** What the owner's code logs with: a pino logger, or the owner thread's forwarder (src/owner/log-forward.ts). */
export interface Log {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
}

const redact = [
  'access_token',
  'refresh_token',
  'accessToken',
  'refreshToken',
  'client_secret',
  'clientSecret',
  'apiKey',
  'authorization',
  '*.access_token',
  '*.refresh_token',
  '*.accessToken',
  '*.refreshToken',
  '*.client_secret',
  '*.clientSecret',
  '*.authorization',
  'req.headers.authorization',
];

export async function createLogger(level: string, prettyOutput: boolean, name: string): Promise<Logger> {
  const options = { level, name, redact: { paths: redact, censor: '[redacted]' }, base: { pid: process.pid } };
  // Synchronous writes to fd 2 work the same from a worker thread and survive process.exit().
  // pino-pretty is loaded only for a terminal: a daemon under a supervisor never pays for it.
  const stream = prettyOutput
    ? (await import('pino-pretty')).default({ sync: true, destination: 2, colorize: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss' })
    : pino.destination({ fd: 2, sync: true });
  return pino(options, stream);
}
