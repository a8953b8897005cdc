/** Schema issues (valibot) as one line naming each field and what is wrong, never the value. */
import type { BaseIssue } from 'valibot';

export function describeIssues(issues: readonly BaseIssue<unknown>[]): string {
  return issues
    .map((issue) => {
      const path = issue.path?.map((p) => String(p.key)).join('.') || 'body';
      return `${path}: ${issueText(issue)}`;
    })
    .join('; ');
}

/** What is wrong, without the value: valibot's message less its "but received ...". */
export function issueText(issue: BaseIssue<unknown>): string {
  return issue.kind === 'schema' && issue.type === 'strict_object' && issue.expected === 'never'
    ? 'unknown field'
    : issue.message.replace(/,? *but received .*$/i, '').trim();
}
