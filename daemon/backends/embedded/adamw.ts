// AdamW (Loshchilov & Hutter) over one flat parameter buffer, with bias correction and
// decoupled weight decay; and global gradient-norm clipping.

import type { Buf } from './model.ts';

export class AdamW {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private t = 0;

  constructor(
    size: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  step(params: Buf, grads: Buf, lr: number, weightDecay: number): void {
    if (params.length !== this.m.length || grads.length !== this.m.length) {
      throw new Error(`AdamW holds state for ${this.m.length} parameters, got ${params.length}`);
    }
    this.t++;
    const { beta1: b1, beta2: b2, eps, m, v } = this;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    for (let i = 0; i < params.length; i++) {
      const g = grads[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      params[i] -= lr * (m[i] / c1 / (Math.sqrt(v[i] / c2) + eps) + weightDecay * params[i]);
    }
  }
}

/** Scales grads so their L2 norm is at most maxNorm; returns the norm before scaling. */
export function clipGradNorm(grads: Buf, maxNorm: number): number {
  let ss = 0;
  for (let i = 0; i < grads.length; i++) ss += grads[i] * grads[i];
  const norm = Math.sqrt(ss);
  if (norm > maxNorm && norm > 0) {
    const s = maxNorm / norm;
    for (let i = 0; i < grads.length; i++) grads[i] *= s;
  }
  return norm;
}
