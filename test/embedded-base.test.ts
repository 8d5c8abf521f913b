// Pretrained bases of the embedded backend: pretraining is deterministic and lowers its loss, a
// base file round-trips, `--base` resolves names and files, and an adapter stays tied to its base.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadBase, saveBase } from '../daemon/backends/embedded/bases.ts';
import { corpusExample, follows } from '../daemon/backends/embedded/corpus.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { Model, Rng } from '../daemon/backends/embedded/model.ts';
import { pretrain } from '../daemon/backends/embedded/pretrain.ts';
import { decode } from '../daemon/backends/embedded/tokenizer.ts';
import { tempDir } from './helpers.ts';

const TINY = { context: 256, dim: 16, layers: 1, heads: 2, mlpRatio: 2, seed: 3 };

test('the corpus is deterministic from its seed, and its replies keep their instructions', () => {
  const a = new Rng(5);
  const b = new Rng(5);
  for (let i = 0; i < 3000; i++) {
    const x = corpusExample(a);
    assert.deepEqual(x, corpusExample(b));
    const reply = decode(x.tokens.slice(x.replyStart, -1));
    for (const rule of x.rules) assert.ok(follows(rule, reply), `${rule}: ${JSON.stringify(reply)}`);
  }
});

test('pretraining is deterministic and lowers the loss', async () => {
  const losses: number[] = [];
  const run = () => pretrain({ model: TINY, steps: 30, batch: 4, lr: 1e-2, logEvery: 10, onLog: (_, loss) => void losses.push(loss) });
  const a = await run();
  const first = losses.splice(0);
  const b = await run();
  assert.deepEqual(b.params, a.params);
  assert.deepEqual(losses, first);
  assert.ok(first.at(-1)! < first[0]! - 0.5, `loss ${first.join(' → ')}`);
});

test('a base file round-trips, and --base resolves names and files', async () => {
  const dir = tempDir('clawrl-base-');
  const model = await pretrain({ model: TINY, steps: 2, batch: 2, lr: 1e-2 });
  const file = join(dir, 'mine.safetensors');
  const hash = await saveBase(file, model, { steps: 2 });
  const loaded = (await loadBase(file))!;
  assert.equal(loaded.config.base, `mine@${hash}`);
  assert.deepEqual(new Model({ ...loaded.config, seed: 9 }, false, loaded.tensors).params, model.params);
  assert.equal(await loadBase('random'), null);
  await assert.rejects(loadBase(join(dir, 'nope.safetensors')), /is neither random nor hints nor a file/);
  const shipped = (await loadBase('hints'))!;
  assert.match(shipped.config.base!, /^hints@[0-9a-f]{12}$/);

  const backend = await EmbeddedBackend.create({ base: file, model: { seed: 4 } });
  try {
    assert.equal(backend.config.base, `mine@${hash}`);
    assert.equal(backend.config.dim, TINY.dim);
    // An adapter made on this base refuses a random base of the same shape and seed.
    await backend.saveAdapter(join(dir, 'adapter'));
    const random = await EmbeddedBackend.create({ model: { ...TINY, seed: 4 } });
    try {
      await assert.rejects(random.loadAdapter(join(dir, 'adapter'), 'v1'), /made for another base model \(base=mine@/);
    } finally {
      await random.close();
    }
  } finally {
    await backend.close();
  }
  await assert.rejects(EmbeddedBackend.create({ base: file, model: { dim: 32 } }), /fixes the model's shape: dim is 16, not 32/);
});
