import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { extractHint, judgeTurn } from '../recipes/judge.ts';
import { computeEvidence, screenAction, userReaction } from '../recipes/evidence.ts';
import { rulesJudge } from '../recipes/rules.ts';
import { buildHintPrompt, buildJudgePrompt, clipMiddle } from '../recipes/prompts.ts';
import { chooseHint, majority, parseHint, parseVote } from '../recipes/parsing.ts';
import { createLimiter } from '../recipes/limiter.ts';
import { INTERNAL_CONTEXT_MARKER, type Complete, type NextState, type ToolResult, type Turn } from '../recipes/types.ts';

const INTERNAL = `${INTERNAL_CONTEXT_MARKER}\nactive exec sessions: none\n<<<END_OPENCLAW_INTERNAL_CONTEXT>>>`;

function turn(nextState: Partial<NextState> = {}, request = 'list the files in the tmp directory please'): Turn {
  return {
    action: { text: 'Running ls.', toolCalls: [{ id: 'c1', name: 'exec', arguments: '{"command":"ls /tmp"}' }] },
    context: {
      messages: [
        { role: 'system', content: 'You are an agent.' },
        { role: 'user', content: request },
        { role: 'user', content: INTERNAL },
      ],
    },
    nextState: { toolResults: [], ...nextState },
    responseTokens: 5,
  };
}

const exec = (exitCode: number, extra: object = {}) => ({
  toolCallId: 'c1',
  toolName: 'exec',
  output: 'out',
  isError: false,
  exitCode,
  ...extra,
});

describe('parseVote', () => {
  const cases: [string, 1 | -1 | 0 | null][] = [
    ['The action worked. \\boxed{1}', 1],
    ['\\boxed{-1}', -1],
    ['\\boxed{0}', 0],
    ['\\boxed{+1}', 1],
    ['\\boxed{ 1 }', 1],
    ['\\boxed {1}', 1],
    ['$\\boxed{-1}$', -1],
    ['\\boxed{\u22121}', -1], // Unicode minus
    ['\\boxed{\\text{good}}', 1],
    ['\\boxed{BAD}', -1],
    ['\\boxed{{1}}', 1],
    ['no box at all', null],
    ['', null],
    ['\\boxed{}', null],
    ['\\boxed{2}', null],
    ['\\boxed{-2}', null],
    ['\\boxed{0.5}', null],
    ['\\boxed{yes}', null],
    ['\\boxed{1', null], // never closed
    ['\\boxed 1', null],
    ['boxed{1}', null], // no backslash
    ['\\boxed{\\text{1}', null], // unbalanced nesting
    ['first \\boxed{1} then on reflection \\boxed{-1}', -1], // last box decides
    ['\\boxed{-1} ... final: \\boxed{1}', 1],
    ['\\boxed{1} but the final box is broken \\boxed{}', null], // a malformed last box is not backed by earlier ones
    ['判断：\\boxed{1} 👍', 1],
    ['👍👍 \\boxed{😀}', null],
  ];
  for (const [text, want] of cases) {
    test(JSON.stringify(text.slice(0, 60)), () => assert.equal(parseVote(text), want));
  }

  test('a box body longer than the scan bound is invalid, not a runaway scan', () => {
    assert.equal(parseVote(`\\boxed{${'{'.repeat(10_000)}1${'}'.repeat(10_000)}}`), null);
  });

  test('1 MB of garbage, with and without a box at the end, parses quickly', () => {
    const garbage = 'x{}\\boxe\\boxed'.repeat(80_000);
    const t0 = performance.now();
    assert.equal(parseVote(garbage), null);
    assert.equal(parseVote(`${garbage} \\boxed{-1}`), -1);
    assert.equal(parseVote(`${'\\boxed{'.repeat(100_000)}`), null);
    assert.ok(performance.now() - t0 < 500, 'parsing must be linear');
  });
});

describe('majority', () => {
  test('plurality of valid votes wins', () => {
    assert.deepEqual(majority([1, 1, -1]), { score: 1, valid: 3 });
    assert.deepEqual(majority([-1, -1, 1]), { score: -1, valid: 3 });
    assert.deepEqual(majority([0, 0, 1]), { score: 0, valid: 3 });
    assert.deepEqual(majority([1, null, null]), { score: 1, valid: 1 });
  });
  test('a tie for first place is 0', () => {
    assert.deepEqual(majority([1, -1, 0]), { score: 0, valid: 3 });
    assert.deepEqual(majority([1, -1, null]), { score: 0, valid: 2 });
    assert.deepEqual(majority([1, 1, -1, -1]), { score: 0, valid: 4 });
  });
  test('no valid vote is 0', () => {
    assert.deepEqual(majority([null, null, null]), { score: 0, valid: 0 });
    assert.deepEqual(majority([]), { score: 0, valid: 0 });
  });
});

describe('hints', () => {
  test('parseHint takes the vote and the last complete hint block', () => {
    assert.deepEqual(parseHint('\\boxed{1} [HINT_START] Use ls -la to show hidden files. [HINT_END]'), {
      vote: 1,
      hint: 'Use ls -la to show hidden files.',
    });
    assert.deepEqual(parseHint('[HINT_START]a[HINT_END] [HINT_START]second hint[HINT_END] \\boxed{1}'), { vote: 1, hint: 'second hint' });
    assert.deepEqual(parseHint('\\boxed{-1}'), { vote: -1, hint: null });
    assert.deepEqual(parseHint('\\boxed{0} [HINT_START]x[HINT_END]'), { vote: null, hint: 'x' });
    assert.deepEqual(parseHint('\\boxed{1} [HINT_START]never closed'), { vote: 1, hint: null });
    assert.deepEqual(parseHint('\\boxed{1} [HINT_START]   [HINT_END]'), { vote: 1, hint: null });
  });

  test('chooseHint: the longest hint among +1 votes, over 10 and up to 1000 characters', () => {
    const short = 'Use ls -la.'; // 11 characters: accepted
    const longer = 'Use ls -la so hidden files are listed too.';
    assert.equal(
      chooseHint([
        { vote: 1, hint: short },
        { vote: -1, hint: `${longer} and even longer, but voted down` },
        { vote: 1, hint: longer },
        { vote: null, hint: `${longer} with no valid vote at all` },
      ]),
      longer,
    );
    assert.equal(chooseHint([{ vote: 1, hint: 'ten chars!' }]), null); // exactly 10: rejected
    assert.equal(chooseHint([{ vote: 1, hint: 'x'.repeat(1001) }, { vote: 1, hint: short }]), short);
    assert.equal(chooseHint([{ vote: -1, hint: longer }, { vote: 1, hint: null }]), null);
    assert.equal(chooseHint([]), null);
  });
});

describe('evidence and the rules judge', () => {
  test('exit code 2 → −1', () => {
    const ev = computeEvidence(turn({ toolResults: [exec(2), exec(0, { toolCallId: 'c2' })] }));
    assert.deepEqual(ev.toolFailures, [{ toolName: 'exec', toolCallId: 'c1', reason: 'exit-code', exitCode: 2 }]);
    assert.equal(ev.toolSuccesses, 1);
    assert.equal(rulesJudge(ev), -1);
  });

  test('timeout and tool errors are failures; tools that exit 0 alone are neutral', () => {
    assert.equal(computeEvidence(turn({ toolResults: [exec(0, { timedOut: true })] })).toolFailures[0]?.reason, 'timeout');
    assert.equal(rulesJudge(computeEvidence(turn({ toolResults: [{ ...exec(0), exitCode: undefined, isError: true }] }))), -1);
    assert.equal(rulesJudge(computeEvidence(turn({ toolResults: [exec(0)] }))), 0);
  });

  test('explicit feedback wins over everything', () => {
    assert.equal(rulesJudge(computeEvidence(turn({ toolResults: [exec(2)], feedback: { rating: 'good' } }))), 1);
    assert.equal(rulesJudge(computeEvidence(turn({ userMessage: 'Great, thanks!', feedback: { rating: 'bad' } }))), -1);
  });

  test("the user's reaction outranks exit codes; no next state is 0", () => {
    assert.equal(rulesJudge(computeEvidence(turn({ toolResults: [exec(1)], userMessage: 'Perfect, that is what I needed.' }))), 1);
    assert.equal(rulesJudge(computeEvidence(turn({ userMessage: "No, that's not what I asked for." }))), -1);
    assert.equal(rulesJudge(computeEvidence(turn({ none: true }))), 0);
  });

  test('user reactions', () => {
    const req = 'list the files in the tmp directory please';
    const cases: [string, ReturnType<typeof userReaction>][] = [
      ['Great, now show me the largest one.', 'approval'],
      ['Thanks!', 'approval'],
      ['thank you so much', 'approval'],
      ["That's right.", 'approval'],
      ['Thanks, but you missed the hidden files.', null],
      ['No, I wanted the hidden files too.', 'correction'],
      ['no', 'correction'],
      ['NO!!! wrong directory', 'correction'],
      ['No problem, next list /var', null],
      ["That’s wrong.", 'correction'], // typographic apostrophe
      ['I said /tmp, not /var.', 'correction'],
      ['Hmm, this is not what I asked.', 'correction'],
      ['It failed. Try again.', 'correction'],
      ['**No,** use sudo.', 'correction'],
      ['Please list the files in the tmp directory', 'repeat'],
      ['Now summarise the README file', null],
      ['nothing else for now', null], // "nothing" is not "no"
      ['Correct the typo in line 3', null],
      ['', null],
    ];
    for (const [reply, want] of cases) assert.equal(userReaction(reply, req), want, reply);
    assert.equal(userReaction('ok ok ok', 'ok'), null, 'short messages never count as repeats');
  });

  describe('screen changes', () => {
    const call = (id: string, args: object, name = 'browser') => ({ id, name, arguments: JSON.stringify(args) });
    // A tool result that ran from `startedAt` to `endedAt` (ms, the plugin's clock), with a screenshot's change or without.
    const ran = (toolCallId: string, startedAt: number, endedAt: number, screen?: object, toolName = 'browser'): ToolResult => ({
      toolCallId, toolName, output: 'ok', isError: false, startedAt, endedAt, ...(screen && { screen: { width: 1280, height: 720, ...screen } }),
    });
    const unchanged = { changedShare: 0, hashDistance: 0, comparedTo: 'before' };
    const guiTurn = (toolCalls: ReturnType<typeof call>[], toolResults: ToolResult[], extra: Partial<NextState> = {}): Turn => ({
      ...turn(),
      action: { text: '', toolCalls },
      nextState: { toolResults, ...extra },
    });
    const click = call('c1', { action: 'act', kind: 'click', ref: 'e3' });
    const screenshot = call('c2', { action: 'screenshot' });
    // The click ran 100-150, the screenshot after it 160-200: as OpenClaw runs a sequential tool's calls.
    const clicked = ran('c1', 100, 150);
    const shotAfter = (screen: object) => ran('c2', 160, 200, screen);

    test('which calls are meant to change the screen', () => {
      assert.equal(screenAction(click), 'click');
      assert.equal(screenAction(call('x', { action: 'navigate', targetUrl: 'http://127.0.0.1/' })), 'navigate');
      assert.equal(screenAction(call('x', { action: 'act', request: { kind: 'type', text: 'hi' } })), 'type');
      assert.equal(screenAction(call('x', { action: 'left_click', coordinate: [10, 20] }, 'computer')), 'left_click');
      for (const args of [{ action: 'screenshot' }, { action: 'act', kind: 'hover' }, { action: 'act', kind: 'wait' }, { action: 'snapshot' }]) assert.equal(screenAction(call('x', args)), null, JSON.stringify(args));
      assert.equal(screenAction({ id: 'x', name: 'browser', arguments: 'not json' }), null);
    });

    test('a click after which the screen did not change at all → −1; any change, or no comparison, is no evidence', () => {
      const ev = computeEvidence(guiTurn([click, screenshot], [clicked, shotAfter(unchanged)]));
      assert.deepEqual(ev.unchangedScreens, [{ toolCallId: 'c1', toolName: 'browser', action: 'click', screenshotCallId: 'c2' }]);
      assert.equal(rulesJudge(ev), -1);
      // A hover highlight or a caret is a change: no evidence either way, and a change never earns +1.
      assert.equal(rulesJudge(computeEvidence(guiTurn([click, screenshot], [clicked, shotAfter({ changedShare: 0.002, hashDistance: 0, comparedTo: 'before' })]))), 0);
      assert.equal(rulesJudge(computeEvidence(guiTurn([click, screenshot], [clicked, shotAfter({ hashDistance: 0, comparedTo: 'before' })]))), 0, 'a resized screen is not compared cell by cell');
      assert.equal(rulesJudge(computeEvidence(guiTurn([click, screenshot], [clicked, shotAfter({})]))), 0, 'the first screenshot has nothing to compare with');
      // Only a screenshot and nothing meant to change the screen.
      assert.equal(rulesJudge(computeEvidence(guiTurn([screenshot], [shotAfter(unchanged)]))), 0);
    });

    test('a screenshot run beside the click (OpenClaw runs one response\'s calls at once) says nothing; the next response\'s does', () => {
      // Started at 105, before the click ended at 150: it may show the page before the click landed.
      const beside = ran('c2', 105, 140, unchanged);
      assert.deepEqual(computeEvidence(guiTurn([click, screenshot], [clicked, beside])).unchangedScreens, []);
      assert.deepEqual(computeEvidence(guiTurn([click, screenshot], [ran('c1', 100, 150), ran('c2', 160, 200, unchanged)].map(({ startedAt: _s, ...r }) => r))).unchangedScreens, [], 'no times, no judgement');
      assert.deepEqual(computeEvidence(guiTurn([click, screenshot], [beside])).unchangedScreens, [], "the click's result is missing: when it ended is unknown");
      // The first screenshot of a later response, started after the click: judged by it, unless compared with the one beside the click.
      const later = ran('n1', 300, 340, unchanged);
      const ev = computeEvidence(guiTurn([click, screenshot], [clicked, beside], { screenAfter: later }));
      assert.deepEqual(ev.unchangedScreens, [{ toolCallId: 'c1', toolName: 'browser', action: 'click', screenshotCallId: 'n1' }]);
      assert.deepEqual(computeEvidence(guiTurn([click, screenshot], [clicked, beside], { screenAfter: { ...later, screen: { ...later.screen!, comparedTo: 'c2' } } })).unchangedScreens, [], 'the screenshot beside the click may already show it');
      // One taken before the click started is a fair comparison.
      const first = call('c0', { action: 'screenshot' });
      assert.equal(computeEvidence(guiTurn([first, click, screenshot], [ran('c0', 50, 90, {}), clicked, shotAfter({ ...unchanged, comparedTo: 'c0' })])).unchangedScreens.length, 1);
    });

    test('a computer-use action whose own result carries the screenshot; a screenshot compared with one taken after the action says nothing', () => {
      const tap = call('c1', { action: 'left_click', coordinate: [500, 300] }, 'computer');
      assert.equal(rulesJudge(computeEvidence(guiTurn([tap], [ran('c1', 100, 150, unchanged, 'computer')]))), -1);
      // click, screenshot (changed), screenshot (same as the one after the click): the click did something.
      const again = call('c3', { action: 'screenshot' });
      const ev = computeEvidence(guiTurn([click, screenshot, again], [clicked, shotAfter({ changedShare: 0.1, hashDistance: 4, comparedTo: 'before' }), ran('c3', 210, 250, { ...unchanged, comparedTo: 'c2' })]));
      assert.deepEqual(ev.unchangedScreens, []);
    });

    test("the user's approval outranks an unchanged screen; the judge's prompt states the change", () => {
      assert.equal(rulesJudge(computeEvidence(guiTurn([click, screenshot], [clicked, shotAfter(unchanged)], { userMessage: 'Perfect, thanks.' }))), 1);
      const t = guiTurn([click, screenshot], [clicked, shotAfter(unchanged)]);
      const [, user] = buildJudgePrompt(t, computeEvidence(t));
      assert.match(user!.content, /screenshot 1280x720, 0\.0 % of the screen changed since the screenshot of \[before\] \(perceptual hash distance 0 of 64\)/);
      assert.match(user!.content, /Tool browser \[c1\] was meant to change the screen \(click\), but the screenshot after it \[c2\] shows no change at all\./);
      const later = guiTurn([click], [clicked], { screenAfter: ran('n1', 300, 340, unchanged) });
      assert.match(buildJudgePrompt(later, computeEvidence(later))[1]!.content, /The next screenshot, from a later step, browser \[n1\] \(screenshot 1280x720, 0\.0 % of the screen changed/);
    });
  });

  test('the request is the last real user message, not the internal-context block', () => {
    // If the internal block were taken for the request, this reply would not be a repeat.
    assert.equal(computeEvidence(turn({ userMessage: 'list the files in the tmp directory please' })).userReaction, 'repeat');
  });
});

describe('prompts', () => {
  test('the judge prompt carries request, action, next state and evidence, and asks for a box', () => {
    const t = turn({ toolResults: [exec(2, { output: 'ls: cannot access' })] });
    const [system, user] = buildJudgePrompt(t, computeEvidence(t));
    assert.equal(system?.role, 'system');
    assert.match(system!.content, /\\boxed\{1\}.*\\boxed\{-1\}.*\\boxed\{0\}/s);
    assert.match(user!.content, /list the files in the tmp directory/);
    assert.doesNotMatch(user!.content, /OPENCLAW_INTERNAL_CONTEXT/);
    assert.match(user!.content, /Tool call exec \[c1\]/);
    assert.match(user!.content, /exit code 2/);
    assert.match(user!.content, /exited with code 2\./);
    assert.match(user!.content, /ls: cannot access/);
  });

  test('huge outputs are cut to a budget keeping head and tail', () => {
    const output = `HEAD${'x'.repeat(1_000_000)}TAIL`;
    const t = turn({ toolResults: [exec(0, { output })], userMessage: 'y'.repeat(1_000_000) });
    const [, user] = buildJudgePrompt(t, computeEvidence(t));
    assert.ok(user!.content.length < 20_000, `prompt is ${user!.content.length} chars`);
    assert.match(user!.content, /HEAD/);
    assert.match(user!.content, /TAIL/);
    assert.match(user!.content, /characters omitted/);
    const [, hintUser] = buildHintPrompt(t);
    assert.ok(hintUser!.content.length < 20_000);
  });

  test('clipMiddle keeps short text, cuts long text, never splits a surrogate pair', () => {
    assert.equal(clipMiddle('short', 10), 'short');
    const cut = clipMiddle('abcdefghijklmnopqrstuvwxyz', 10);
    assert.ok(cut.startsWith('abcde') && cut.endsWith('vwxyz'));
    assert.match(cut, /16 characters omitted/);
    const emoji = clipMiddle('😀'.repeat(20), 5);
    assert.doesNotMatch(emoji, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  });
});

describe('judgeTurn', () => {
  const badTurn = turn({ toolResults: [exec(0)], userMessage: 'now summarise the README file' });

  test('majority of m votes through the given complete', async () => {
    const answers = ['\\boxed{1}', 'hmm \\boxed{-1}', 'ok \\boxed{1}'];
    const seen: { temperature: number; maxTokens: number }[] = [];
    const fakeComplete: Complete = async (messages, opts) => {
      assert.equal(messages[0]?.role, 'system');
      seen.push({ temperature: opts.temperature, maxTokens: opts.maxTokens });
      return answers[seen.length - 1]!;
    };
    const r = await judgeTurn(badTurn, { complete: fakeComplete, maxTokens: 256 });
    assert.deepEqual(r, { score: 1, votes: [1, -1, 1], valid: 3, failures: 0, source: 'judge' });
    assert.deepEqual(seen[0], { temperature: 0.6, maxTokens: 256 });
    assert.equal(seen.length, 3);
  });

  test('garbage, throws and hangs are counted failures, never crashes', async () => {
    let call = 0;
    const fakeComplete: Complete = (_messages, { signal }) => {
      call++;
      if (call === 1) return Promise.resolve('I think it is fine, no box');
      if (call === 2) return Promise.reject(new Error('judge endpoint down'));
      if (call === 3) throw new Error('synchronous throw');
      if (call === 4) return new Promise(() => undefined); // hangs and ignores the signal
      if (call === 5) return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      return Promise.resolve('\\boxed{-1}');
    };
    const t0 = performance.now();
    const r = await judgeTurn(badTurn, { complete: fakeComplete, m: 6, timeoutMs: 50 });
    assert.ok(performance.now() - t0 < 2000);
    assert.deepEqual(r, { score: -1, votes: [null, null, null, null, null, -1], valid: 1, failures: 5, source: 'judge' });
  });

  test('when every vote fails, the rules judge keeps clear evidence', async () => {
    const fakeComplete: Complete = async () => 'garbage';
    const failed = turn({ toolResults: [exec(2)] });
    assert.deepEqual(await judgeTurn(failed, { complete: fakeComplete }), {
      score: -1,
      votes: [null, null, null],
      valid: 0,
      failures: 3,
      source: 'rules',
    });
  });

  test('explicit feedback skips the judge; so does no next state', async () => {
    let calls = 0;
    const fakeComplete: Complete = async () => {
      calls++;
      return '\\boxed{1}';
    };
    const bad = await judgeTurn(turn({ toolResults: [exec(0)], feedback: { rating: 'bad' } }), { complete: fakeComplete });
    assert.deepEqual(bad, { score: -1, votes: [], valid: 0, failures: 0, source: 'feedback' });
    const none = await judgeTurn(turn({ none: true }), { complete: fakeComplete });
    assert.equal(none.source, 'none');
    assert.equal(none.score, 0);
    assert.equal(calls, 0);
  });

  test('no judge model: the rules judge', async () => {
    assert.deepEqual(await judgeTurn(turn({ toolResults: [exec(2)] })), {
      score: -1,
      votes: [],
      valid: 0,
      failures: 0,
      source: 'rules',
    });
  });

  test('an aborted signal fails every pending vote', async () => {
    const ac = new AbortController();
    const fakeComplete: Complete = () => new Promise(() => undefined);
    const pending = judgeTurn(badTurn, { complete: fakeComplete, signal: ac.signal, timeoutMs: 60_000 });
    setTimeout(() => ac.abort(), 10);
    const r = await pending;
    assert.equal(r.failures, 3);
    assert.equal(r.source, 'rules');
  });

  test('a shared limiter bounds concurrent calls across turns', async () => {
    let active = 0;
    let peak = 0;
    const fakeComplete: Complete = async () => {
      peak = Math.max(peak, ++active);
      await new Promise((r) => setTimeout(r, 5));
      active--;
      return '\\boxed{1}';
    };
    const limiter = createLimiter(2);
    const results = await Promise.all([badTurn, badTurn, badTurn].map((t) => judgeTurn(t, { complete: fakeComplete, limiter })));
    assert.equal(peak, 2);
    assert.ok(results.every((r) => r.score === 1 && r.valid === 3));
  });

  test('createLimiter rejects a bad size and survives failing tasks', async () => {
    assert.throws(() => createLimiter(0), RangeError);
    const limit = createLimiter(1);
    await assert.rejects(limit(() => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await limit(async () => 7), 7);
  });
});

describe('extractHint', () => {
  const t = turn({ toolResults: [exec(0)], userMessage: 'You should have included hidden files with -a.' });

  test('explicit /clawrl hint is taken directly', async () => {
    const fakeComplete: Complete = async () => assert.fail('judge must not run');
    const r = await extractHint(turn({ feedback: { hint: '  Use ls -a.  ' } }), { complete: fakeComplete });
    assert.deepEqual(r, { hint: 'Use ls -a.', votes: [], failures: 0, source: 'feedback' });
  });

  test('votes through the hint prompt, the longest accepted hint wins, failures are counted', async () => {
    const answers = [
      '\\boxed{1} [HINT_START]Use ls -a.[HINT_END]',
      '\\boxed{1} [HINT_START]Include hidden files: run ls -a /tmp.[HINT_END]',
      '\\boxed{-1} [HINT_START]A much longer hint that was voted down, so it does not count.[HINT_END]',
      'no answer',
    ];
    let i = 0;
    const fakeComplete: Complete = async (messages) => {
      assert.match(messages[0]!.content, /HINT_START/);
      return answers[i++]!;
    };
    const r = await extractHint(t, { complete: fakeComplete, m: 4 });
    assert.equal(r.hint, 'Include hidden files: run ls -a /tmp.');
    assert.equal(r.source, 'judge');
    assert.equal(r.failures, 1);
    assert.equal(r.votes.length, 4);
  });

  test('no judge model, or no next state: no hint', async () => {
    assert.equal((await extractHint(t)).hint, null);
    const fakeComplete: Complete = async () => assert.fail('judge must not run');
    assert.equal((await extractHint(turn({ none: true }), { complete: fakeComplete })).hint, null);
  });
});
