/**
 * Logging in by pasting the URL the browser landed on: every way a pasted
 * line can fail is one line that says what to do and repeats nothing of what
 * was pasted; the callback listener and the terminal race, and the first
 * valid answer wins.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePastedRedirect, raceCallbackAndPaste, type PastedRedirect } from '../../src/login/paste.ts';

const expected = { redirectUri: 'http://localhost:8080/authorization-code', state: 'st4te-of-this-login-0123456789abcdef' };
const CODE = 'c0de-secret-Zq81xY2vLw9pM3nK7rT';
const landed = (query: Record<string, string>, base = expected.redirectUri): string => `${base}?${new URLSearchParams(query).toString()}`;
const good = landed({ code: CODE, state: expected.state });

function refusal(line: string): Exclude<PastedRedirect, { kind: 'code' }> {
  const read = parsePastedRedirect(line, expected);
  assert.notEqual(read.kind, 'code', `${line} was taken`);
  if (read.kind === 'code') throw new Error('unreachable');
  assert.doesNotMatch(read.message, /\n/, 'one line');
  assert.ok(!read.message.includes(CODE), 'the code is not repeated');
  assert.ok(!read.message.includes(expected.state), 'the state is not repeated');
  return read;
}

describe('parsePastedRedirect', () => {
  it('takes the code from the URL the browser landed on', () => {
    assert.deepEqual(parsePastedRedirect(good, expected), { kind: 'code', code: CODE });
  });

  it('takes it with surrounding spaces, quotes or angle brackets, as terminals and mail clients wrap URLs', () => {
    for (const line of [`  ${good}\r`, `"${good}"`, `'${good}'`, `<${good}>`]) {
      assert.deepEqual(parsePastedRedirect(line, expected), { kind: 'code', code: CODE }, line);
    }
  });

  it('something that is not a URL: says to paste the address bar, without repeating it', () => {
    for (const line of [
      CODE,
      `code=${CODE}&state=${expected.state}`,
      `ftp://localhost:8080/authorization-code?code=${CODE}`,
      'http://',
      `http://${'a'.repeat(20_000)}`,
    ]) {
      const r = refusal(line);
      assert.equal(r.kind, 'not_a_url', line.slice(0, 40));
      assert.match(r.message, /^that is not a URL: paste the whole address from the browser's address bar/);
    }
  });

  it("a URL for another redirect URI (host, port, path or scheme) is refused, naming this login's", () => {
    for (const base of [
      'http://127.0.0.1:8080/authorization-code',
      'http://localhost:8081/authorization-code',
      'http://localhost:8080/other',
      'https://localhost:8080/authorization-code',
      'https://evil.example/authorization-code',
    ]) {
      const r = refusal(landed({ code: CODE, state: expected.state }, base));
      assert.equal(r.kind, 'other_redirect', base);
      assert.equal(r.message, "that URL is not this login's redirect URI: paste the address that starts with http://localhost:8080/authorization-code");
    }
  });

  it('a URL with another state (an earlier login) does not belong to this login', () => {
    for (const state of ['an-earlier-login', '']) {
      const r = refusal(landed({ code: CODE, state }));
      assert.equal(r.kind, 'wrong_state');
      assert.match(r.message, /^that URL does not belong to this login/);
    }
    assert.equal(refusal(landed({ code: CODE })).kind, 'wrong_state', 'no state at all');
    assert.equal(refusal(landed({ error: 'access_denied', state: 'an-earlier-login' })).kind, 'wrong_state', "another login's error");
  });

  it('a URL of this login without a code says to finish the login first', () => {
    const r = refusal(landed({ state: expected.state }));
    assert.equal(r.kind, 'no_code');
    assert.equal(r.message, 'that URL has no code: finish the login in the browser, then paste the address it lands on');
  });

  it("the provider's error is final and in its words, scrubbed of control characters and anything like a token", () => {
    const denied = refusal(landed({ error: 'access_denied', error_description: 'End-User aborted interaction', state: expected.state }));
    assert.deepEqual(denied, {
      kind: 'provider_error',
      error: 'access_denied',
      message: 'authorization failed: access_denied: End-User aborted interaction (the request was declined at the provider)',
    });
    const hostile = refusal(
      landed({
        error: 'invalid_scope',
        error_description: `bad\u001b[31m scope\nfor ${CODE} and tok_9f8e7d6c5b4a39281706abcdef`,
        code: CODE,
        state: expected.state,
      }),
    );
    assert.equal(hostile.kind, 'provider_error');
    assert.equal(hostile.message, 'authorization failed: invalid_scope: bad [31m scope for [redacted] and [redacted]');
    const noState = refusal(landed({ error: 'server_error' }));
    assert.equal(noState.kind, 'provider_error', 'an error without state is still the answer: not every provider repeats it');
    const notACode = refusal(landed({ error: 'a b <c>', state: expected.state }));
    assert.deepEqual([notACode.kind, notACode.message], ['provider_error', 'authorization failed: an error that is not an error code']);
  });
});

/** Lines arriving when the test pushes them, ending when it says so; records whether reading was stopped. */
class Terminal implements AsyncIterable<string> {
  readonly #queue: Array<string | null> = [];
  #wake: (() => void) | null = null;
  returned = false;
  type(line: string | null): void {
    this.#queue.push(line);
    this.#wake?.();
  }
  [Symbol.asyncIterator](): AsyncIterator<string> {
    return {
      next: async () => {
        while (this.#queue.length === 0 && !this.returned) await new Promise<void>((r) => (this.#wake = r));
        const line = this.returned ? null : this.#queue.shift();
        return line === null || line === undefined ? { done: true, value: undefined } : { done: false, value: line };
      },
      return: async () => {
        this.returned = true;
        this.#wake?.();
        return { done: true, value: undefined };
      },
    };
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('raceCallbackAndPaste', () => {
  it('the callback wins when it comes first, and the terminal is no longer read', async () => {
    const term = new Terminal();
    const problems: string[] = [];
    const code = await raceCallbackAndPaste({ callback: Promise.resolve('from-callback'), lines: term, expected, onProblem: (m) => problems.push(m) });
    assert.equal(code, 'from-callback');
    assert.ok(term.returned);
    assert.deepEqual(problems, []);
  });

  it('a pasted URL wins while the callback waits; bad lines before it are reported one by one, blank ones ignored', async () => {
    const term = new Terminal();
    const problems: string[] = [];
    const race = raceCallbackAndPaste({ callback: new Promise<string>(() => undefined), lines: term, expected, onProblem: (m) => problems.push(m) });
    term.type('');
    term.type('not a url');
    term.type(landed({ code: CODE, state: 'old' }));
    term.type(good);
    assert.equal(await race, CODE);
    assert.equal(problems.length, 2);
    assert.match(problems[0]!, /not a URL/);
    assert.match(problems[1]!, /does not belong to this login/);
    assert.ok(term.returned);
  });

  it('with no callback listener (its port could not be bound), a pasted URL alone completes the login', async () => {
    const term = new Terminal();
    const race = raceCallbackAndPaste({ callback: null, lines: term, expected, onProblem: () => assert.fail('no problem expected') });
    term.type(good);
    assert.equal(await race, CODE);
  });

  it("the provider's error in a pasted URL ends the login", async () => {
    const term = new Terminal();
    const race = raceCallbackAndPaste({ callback: new Promise<string>(() => undefined), lines: term, expected, onProblem: () => undefined });
    term.type(landed({ error: 'access_denied', state: expected.state }));
    await assert.rejects(race, { code: 'login_failed', message: /^authorization failed: access_denied \(the request was declined at the provider\)$/ });
  });

  it('a failed callback ends the login, as without pasting', async () => {
    const term = new Terminal();
    const failed = Promise.reject(new Error('authorization failed: the state does not match'));
    await assert.rejects(raceCallbackAndPaste({ callback: failed, lines: term, expected, onProblem: () => undefined }), /state does not match/);
  });

  it('standard input closing leaves the callback to answer; with no callback either, the login fails', async () => {
    const term = new Terminal();
    let answer!: (code: string) => void;
    const race = raceCallbackAndPaste({ callback: new Promise<string>((r) => (answer = r)), lines: term, expected, onProblem: () => undefined });
    term.type(null);
    await tick();
    answer('late-callback');
    assert.equal(await race, 'late-callback');

    const closed = new Terminal();
    closed.type(null);
    await assert.rejects(raceCallbackAndPaste({ callback: null, lines: closed, expected, onProblem: () => undefined }), {
      code: 'login_failed',
      message: /standard input closed before the URL was pasted/,
    });
  });

  it('an abort (Ctrl-C, the timeout) rejects with its reason and stops reading', async () => {
    const term = new Terminal();
    const ac = new AbortController();
    const race = raceCallbackAndPaste({ callback: new Promise<string>(() => undefined), lines: term, expected, onProblem: () => undefined, signal: ac.signal });
    await tick();
    ac.abort(new Error('login cancelled'));
    await assert.rejects(race, /login cancelled/);
    assert.ok(term.returned);
  });
});
