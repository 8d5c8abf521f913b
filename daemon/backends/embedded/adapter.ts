// LoRA adapters on disk in PEFT's layout: adapter_config.json + adapter_model.safetensors with
// names like base_model.model.layers.0.self_attn.q_proj.lora_A.weight, A [r, in] and B [out, r]
// (the model keeps the same layout, so tensors are copied as they are).
//
// An adapter is only meaningful on the exact base it was trained on (random from a seed, or a
// pretrained file named by ModelConfig.base): the config records that base and loading refuses any other.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type Tensor } from '../safetensors.ts';
import { LORA_TARGETS, Lora, type LoraTarget, type ModelConfig, targetShape } from './model.ts';
import { errorMessage } from '../../errors.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

interface AdapterConfig {
  peft_type: 'LORA';
  task_type: 'CAUSAL_LM';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  bias: 'none';
  target_modules: string[];
  base_model_name_or_path: string;
  /** The embedded base this adapter belongs to. */
  clawrl_base: ModelConfig;
}

function tensorName(layer: number, target: LoraTarget, which: 'A' | 'B'): string {
  const block = target === 'up_proj' || target === 'down_proj' ? 'mlp' : 'self_attn';
  return `base_model.model.layers.${layer}.${block}.${target}.lora_${which}.weight`;
}

export async function saveAdapter(dir: string, lora: Lora, modelName: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, Tensor>();
  lora.layers.forEach((layer, l) => {
    for (const t of LORA_TARGETS) {
      const [nIn, nOut] = targetShape(lora.cfg, t);
      tensors.set(tensorName(l, t, 'A'), { shape: [lora.rank, nIn], data: Float32Array.from(layer[t].a) });
      tensors.set(tensorName(l, t, 'B'), { shape: [nOut, lora.rank], data: Float32Array.from(layer[t].b) });
    }
  });
  const config: AdapterConfig = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: 0,
    bias: 'none',
    target_modules: [...LORA_TARGETS],
    base_model_name_or_path: modelName,
    clawrl_base: lora.cfg,
  };
  // Weights first: a reader that finds the config can expect the weights to be complete.
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  await writeFile(join(dir, ADAPTER_CONFIG), JSON.stringify(config, null, 2) + '\n');
}

const BASE_KEYS: (keyof ModelConfig)[] = ['vocab', 'context', 'dim', 'layers', 'heads', 'mlpRatio', 'seed', 'base'];

/** Reads and checks an adapter for the base `cfg`; throws a clear Error and changes nothing on failure. */
export async function loadAdapter(dir: string, cfg: ModelConfig): Promise<Lora> {
  const configFile = join(dir, ADAPTER_CONFIG);
  let config: AdapterConfig;
  try {
    config = JSON.parse(await readFile(configFile, 'utf8')) as AdapterConfig;
  } catch (err) {
    throw new Error(`cannot read adapter config ${configFile}: ${errorMessage(err)}`, { cause: err });
  }
  if (config.peft_type !== 'LORA') throw new Error(`${configFile}: peft_type ${JSON.stringify(config.peft_type)} is not LORA`);
  const base = config.clawrl_base;
  const mismatch = BASE_KEYS.filter((k) => !base || base[k] !== cfg[k]);
  if (mismatch.length > 0) {
    const show = (c: Partial<ModelConfig> | undefined) => mismatch.map((k) => `${k}=${c?.[k]}`).join(' ');
    throw new Error(`adapter ${dir} was made for another base model (${show(base)}); this backend's base has ${show(cfg)}`);
  }
  if (!(Number.isInteger(config.r) && config.r > 0 && typeof config.lora_alpha === 'number')) {
    throw new Error(`${configFile}: bad r ${config.r} or lora_alpha ${config.lora_alpha}`);
  }
  const weightsFile = join(dir, ADAPTER_WEIGHTS);
  const { tensors } = await readSafetensors(weightsFile);
  const lora = new Lora(cfg, config.r, config.lora_alpha);
  lora.layers.forEach((layer, l) => {
    for (const t of LORA_TARGETS) {
      const [nIn, nOut] = targetShape(cfg, t);
      const r = config.r;
      for (const [which, rows, cols, dst] of [
        ['A', r, nIn, layer[t].a],
        ['B', nOut, r, layer[t].b],
      ] as const) {
        const name = tensorName(l, t, which);
        const tensor = tensors.get(name);
        if (!tensor) throw new Error(`${weightsFile}: missing tensor ${name}`);
        if (tensor.shape.length !== 2 || tensor.shape[0] !== rows || tensor.shape[1] !== cols) {
          throw new Error(`${weightsFile}: tensor ${name} has shape [${tensor.shape}], expected [${rows}, ${cols}]`);
        }
        dst.set(tensor.data);
      }
    }
  });
  return lora;
}
