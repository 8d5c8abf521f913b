import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import * as binaryRl from '../recipes/binary-rl.ts';
import * as combined from '../recipes/combined.ts';
import { isRecipeName, recipes } from '../recipes/index.ts';
import * as opd from '../recipes/opd.ts';
import { INTERNAL_CONTEXT_MARKER, type Message } from '../recipes/types.ts';

/** Element-wise equality up to floating-point rounding. */
function close(actual: readonly number[], expected: readonly number[]): void {
  assert.equal(actual.length, expected.length, `length ${actual.length} ≠ ${expected.length}`);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]!) < 1e-12, `index ${i}: ${a} ≠ ${expected[i]}`));
}

const teacher = [-0.5, -2.0, -0.1, -3.0];
const student = [-1.0, -1.0, -0.1, -0.5];
const gap = [0.5, -1.0, 0, -2.5]; // teacher − student

describe('defaults', () => {
  test("OpenClaw-RL's settings, KL off", () => {
    for (const d of [binaryRl.defaults, opd.defaults, combined.defaults]) {
      assert.equal(d.lr, 1e-5);
      assert.equal(d.clipLow, 0.2);
      assert.equal(d.clipHigh, 0.28);
      assert.equal(d.klCoef, 0);
      assert.equal(d.batchSize, 16);
      assert.equal(d.m, 3);
      assert.equal(d.temperature, 0.6);
    }
    assert.equal(opd.defaults.advantageClip, undefined);
    assert.equal(combined.defaults.wOpd, 1);
    assert.equal(combined.defaults.wRl, 1);
  });
});

describe('binary RL', () => {
  test('A_t = score for every response token', () => {
    assert.deepEqual(binaryRl.advantages({ responseTokens: 3, nextState: { toolResults: [] } }, 1), {
      advantages: [1, 1, 1],
      mask: [1, 1, 1],
    });
    assert.deepEqual(binaryRl.advantages({ responseTokens: 2 }, -1), { advantages: [-1, -1], mask: [1, 1] });
  });
  test('neutral, no next state or an empty response: not trainable', () => {
    assert.equal(binaryRl.advantages({ responseTokens: 3 }, 0), null);
    assert.equal(binaryRl.advantages({ responseTokens: 3, nextState: { toolResults: [], none: true } }, 1), null);
    assert.equal(binaryRl.advantages({ responseTokens: 0 }, 1), null);
    assert.equal(binaryRl.advantages({ responseTokens: 3 }, Number.NaN), null);
  });
});

describe('OPD', () => {
  test('A_t = teacher − student', () => {
    const r = opd.advantages(teacher, student);
    close(r.advantages, gap);
    assert.deepEqual(r.mask, [1, 1, 1, 1]);
  });
  test('clipped to ±clip when set', () => {
    close(opd.advantages(teacher, student, 0.75).advantages, [0.5, -0.75, 0, -0.75]);
    assert.throws(() => opd.advantages(teacher, student, 0), RangeError);
  });
  test('misaligned log-probs throw; non-finite tokens are masked', () => {
    assert.throws(() => opd.advantages([-1, -2], [-1]), RangeError);
    const r = opd.advantages([-Infinity, -1, Number.NaN], [-1, -2, -1]);
    assert.deepEqual(r, { advantages: [0, 1, 0], mask: [0, 1, 0] });
  });

  test('teacherContext appends the hint to the last real user message, skipping internal context', () => {
    const internal = `${INTERNAL_CONTEXT_MARKER}\nsubagents: none\n<<<END_OPENCLAW_INTERNAL_CONTEXT>>>`;
    const messages: Message[] = [
      { role: 'system', content: 'sys' },
      { role: 'user', content: 'old request' },
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: 'list /tmp' },
      { role: 'assistant', content: '' },
      { role: 'tool', content: 'a b c' },
      { role: 'user', content: internal },
    ];
    const before = structuredClone(messages);
    const ctx = opd.teacherContext(messages, '  Include hidden files.  ');
    assert.equal(ctx.length, messages.length);
    assert.equal(ctx[3]!.content, `list /tmp\n\n${opd.HINT_HEADER}\nInclude hidden files.`);
    assert.equal(ctx[6]!.content, internal, 'the internal-context block is untouched');
    assert.equal(ctx[1]!.content, 'old request');
    assert.deepEqual(messages, before, 'the input is not modified');
  });

  test('teacherContext with no user message adds one', () => {
    const ctx = opd.teacherContext([{ role: 'system', content: 'sys' }], 'hint text');
    assert.deepEqual(ctx[1], { role: 'user', content: `${opd.HINT_HEADER}\nhint text` });
  });
});

describe('combined', () => {
  const n = teacher.length;
  test('hint and score: w_opd·gap + w_rl·score', () => {
    const r = combined.advantages({ score: -1, teacherLogprobs: teacher, studentLogprobs: student, responseLength: n });
    close(r!.advantages, gap.map((g) => g - 1));
    close(combined.advantages({ score: 1, teacherLogprobs: teacher, studentLogprobs: student, responseLength: n }, { wOpd: 0.5, wRl: 2 })!.advantages, gap.map((g) => 0.5 * g + 2));
  });
  test('hint only: w_opd·gap', () => {
    for (const score of [0, undefined]) {
      const r = combined.advantages({ score, teacherLogprobs: teacher, studentLogprobs: student, responseLength: n }, { wOpd: 2 });
      close(r!.advantages, gap.map((g) => 2 * g));
      assert.deepEqual(r!.mask, [1, 1, 1, 1]);
    }
  });
  test('score only: w_rl·score on every token', () => {
    assert.deepEqual(combined.advantages({ score: 1, responseLength: 3 }, { wRl: 0.5 }), { advantages: [0.5, 0.5, 0.5], mask: [1, 1, 1] });
  });
  test('neither: not trainable', () => {
    assert.equal(combined.advantages({ score: 0, responseLength: 3 }), null);
    assert.equal(combined.advantages({ responseLength: 3 }), null);
  });
  test('the clip applies to the gap, not the sum; a non-finite teacher token keeps the score term', () => {
    const r = combined.advantages({ score: 1, teacherLogprobs: teacher, studentLogprobs: student, responseLength: n }, { advantageClip: 1 });
    close(r!.advantages, [1.5, 0, 1, 0]);
    const masked = combined.advantages({ score: 1, teacherLogprobs: [-Infinity, -1], studentLogprobs: [-1, -1], responseLength: 2 });
    assert.deepEqual(masked, { advantages: [1, 1], mask: [1, 1] });
    const hintOnly = combined.advantages({ teacherLogprobs: [-Infinity, -1], studentLogprobs: [-1, -2], responseLength: 2 });
    assert.deepEqual(hintOnly, { advantages: [0, 1], mask: [0, 1] });
  });
  test('inconsistent inputs throw', () => {
    assert.throws(() => combined.advantages({ teacherLogprobs: teacher, responseLength: n }), TypeError);
    assert.throws(() => combined.advantages({ teacherLogprobs: teacher, studentLogprobs: student, responseLength: n + 1 }), RangeError);
  });
});

describe('registry', () => {
  test('names and what each recipe needs', () => {
    assert.deepEqual(Object.keys(recipes).sort(), ['binary-rl', 'combined', 'opd']);
    for (const [name, r] of Object.entries(recipes)) assert.equal(r.name, name);
    assert.deepEqual([recipes['binary-rl'].needsScore, recipes['binary-rl'].needsHint], [true, false]);
    assert.deepEqual([recipes.opd.needsScore, recipes.opd.needsHint], [false, true]);
    assert.deepEqual([recipes.combined.needsScore, recipes.combined.needsHint], [true, true]);
    // OPD's teacher (the hint appended to the user's last message) is the two hint recipes' own input.
    assert.deepEqual([recipes['binary-rl'].teacher, recipes.opd.teacher, recipes.combined.teacher], [undefined, opd.teacherContext, opd.teacherContext]);
    assert.ok(isRecipeName('opd'));
    assert.ok(!isRecipeName('toString'));
  });

  test('each recipe composes generically from the same input', () => {
    const both = { score: 1, teacherLogprobs: teacher, studentLogprobs: student, responseLength: teacher.length };
    assert.deepEqual(recipes['binary-rl'].advantages(both)!.advantages, [1, 1, 1, 1]);
    close(recipes.opd.advantages(both)!.advantages, gap); // the score is ignored
    close(recipes.opd.advantages(both, { advantageClip: 1 })!.advantages, [0.5, -1, 0, -1]);
    close(recipes.combined.advantages(both)!.advantages, gap.map((g) => g + 1));
    assert.equal(recipes.opd.advantages({ score: 1, responseLength: 4 }), null, 'no accepted hint → no OPD sample');
    assert.equal(recipes['binary-rl'].advantages({ score: 0, responseLength: 4 }), null);
  });
});
