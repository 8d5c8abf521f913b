// Base weights of the embedded model: random from a seed (`--base random`, the default), or a
// pretrained file: `--base hints` is the one shipped beside this file (bases/hints.safetensors,
// made by scripts/pretrain-base.ts), and any other value is a path to such a file.
//
// The file holds every base tensor (model.ts's baseTensors names) and, in its metadata, the
// model's shape and how it was made. Its identity (name and a hash of the bytes) becomes
// ModelConfig.base, which adapters record, so an adapter never loads on another base.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeSafetensors, writeSafetensors, type Tensor } from '../safetensors.ts';
import type { Model, ModelConfig } from './model.ts';
import type { PretrainOptions } from './pretrain.ts';

/** The shipped base's recipe: the defaults of scripts/pretrain-base.ts. */
export const BASE_RECIPE: Omit<PretrainOptions, 'onLog' | 'logEvery'> = {
  model: { context: 512, dim: 64, layers: 2, heads: 4, mlpRatio: 4, seed: 1 },
  steps: 2400,
  batch: 12,
  lr: 3e-3,
};

/** Names `--base` accepts besides a file path. */
export const BASE_NAMES = ['random', 'hints'] as const;

// In a checkout the file sits beside this source; the package ships it at the same path from its
// root (package.json "files"), which the compiled dist/daemon/backends/embedded/bases.js reaches.
const SHIPPED_DIR = new URL(import.meta.url.endsWith('.js') ? '../../../../daemon/backends/embedded/bases/' : './bases/', import.meta.url);
const SHIPPED: Record<string, string> = { hints: fileURLToPath(new URL('hints.safetensors', SHIPPED_DIR)) };

/** What --base resolves to: no file (random weights) or a file's shape, tensors and identity. */
export interface LoadedBase {
  config: Omit<ModelConfig, 'seed'>;
  tensors: Map<string, Tensor>;
}

/** Reads a base: 'random' gives null; 'hints' the shipped file; anything else is a file path. */
export async function loadBase(base: string): Promise<LoadedBase | null> {
  if (base === 'random') return null;
  const file = SHIPPED[base] ?? base;
  if (!existsSync(file)) {
    throw new Error(
      SHIPPED[base]
        ? `the ${base} base is missing (${file}); make it with: node --import tsx scripts/pretrain-base.ts --out ${file}`
        : `--base ${JSON.stringify(base)} is neither ${BASE_NAMES.join(' nor ')} nor a file`,
    );
  }
  const bytes = await readFile(file);
  const { tensors, metadata } = decodeSafetensors(bytes, file);
  let shape: Omit<ModelConfig, 'seed' | 'base'>;
  try {
    shape = JSON.parse(metadata.clawrl_model ?? '') as typeof shape;
  } catch {
    throw new Error(`${file} is not a clawrl base: its metadata has no clawrl_model`);
  }
  const name = SHIPPED[base] ? base : basename(file).replace(/\.safetensors$/, '');
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 12);
  return { config: { ...shape, base: `${name}@${hash}` }, tensors };
}

/** Writes `model`'s base tensors and shape (and `made`: how, for the record); returns the file's identity hash. */
export async function saveBase(file: string, model: Model, made: object): Promise<string> {
  await mkdir(dirname(file), { recursive: true });
  const { vocab, context, dim, layers, heads, mlpRatio } = model.cfg;
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of model.tensors()) tensors.set(name, { shape: t.shape, data: Float32Array.from(t.data) });
  // Written aside and renamed: a daemon starting meanwhile reads the old file or the new, never half of one.
  await writeSafetensors(`${file}.tmp`, tensors, { clawrl_model: JSON.stringify({ vocab, context, dim, layers, heads, mlpRatio }), clawrl_made: JSON.stringify(made) });
  await rename(`${file}.tmp`, file);
  return createHash('sha256').update(await readFile(file)).digest('hex').slice(0, 12);
}
