/**
 * `tokend reload`: the daemon reads its config file again. What changed goes
 * to stdout, one line per account (`started: beta`); what went wrong to
 * stderr. An invalid file changes nothing: each problem on a line, exit 2.
 */
import type { ReloadReport, TokendClient } from '../client/index.js';
import { exitCodeOf } from '../shared/errors.js';
import { say } from '../daemon/serve.js';

/** The lines of a reload's report, each account once: started, stopped, restarted, then unchanged. */
export function describeReload(r: ReloadReport): string[] {
  const kinds = [
    ['started', r.started],
    ['stopped', r.stopped],
    ['restarted', r.restarted],
    ['unchanged', r.unchanged],
  ] as const;
  return kinds.flatMap(([kind, names]) => names.map((name) => `${kind}: ${name}`));
}

/** The problems of a `config_invalid` answer (`problems`: one string each), or null for any other failure. */
function problemsOf(err: unknown): readonly string[] | null {
  const e = err as { code?: unknown; body?: { problems?: unknown } };
  if (e.code !== 'config_invalid') return null;
  const problems = e.body?.problems;
  return Array.isArray(problems) ? problems.filter((p): p is string => typeof p === 'string') : [];
}

/** 0 when every account the reload started is running; 1 when one failed (each said); 2 for an invalid file. */
export async function runReload(client: TokendClient): Promise<number> {
  let report: ReloadReport;
  try {
    report = await client.reload();
  } catch (err) {
    const problems = problemsOf(err);
    if (problems === null) throw err;
    for (const p of problems) say(p);
    say((err as Error).message);
    return exitCodeOf('config_invalid');
  }
  const lines = describeReload(report);
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
  for (const f of report.failed) say(`account ${f.account} failed (${f.error}): ${f.message}`);
  return report.failed.length > 0 ? 1 : 0;
}
