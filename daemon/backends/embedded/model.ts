// A small decoder-only transformer on typed arrays, with LoRA adapters and a hand-written
// backward pass (one forward/backward function per op, as in llm.c).
//
// The base weights are random, drawn from a seeded PRNG (there is no checkpoint to download, and
// the same config always yields the same base, so adapters saved against it stay valid), or come
// from a pretrained file (bases.ts; ModelConfig.base names it). In the daemon only the LoRA
// parameters train and the base is frozen; pretraining (pretrain.ts) passes a BaseGrads to the
// same backward pass, which then also accumulates every base weight's gradient.
//
// Layout conventions: activations are row-major [T, C] (one row per position); a linear layer's
// weight is [out, in] as in torch (and PEFT's adapter files), so y = x Wᵀ takes dot products of
// contiguous rows.

/** Float32 for serving and training; Float64 only for the finite-difference gradient check. */
export type Buf = Float32Array | Float64Array;

export interface ModelConfig {
  /** Token ids are 0..vocab-1. */
  vocab: number;
  /** Longest input sequence (learned absolute positions). */
  context: number;
  dim: number;
  layers: number;
  heads: number;
  /** MLP hidden width as a multiple of dim. */
  mlpRatio: number;
  /** Seed of the random base weights (and of LoRA init); a pretrained base keeps its own. */
  seed: number;
  /** Identity of pretrained base weights ("name@sha256 prefix"); absent for a random base. */
  base?: string;
}

/** ~2.07 M parameters (1.77 M in blocks, 0.30 M in embeddings and head); vocab comes from the tokenizer. */
export const DEFAULT_MODEL: Omit<ModelConfig, 'vocab'> = {
  context: 1024,
  dim: 192,
  layers: 4,
  heads: 6,
  mlpRatio: 4,
  seed: 1,
};

/** mulberry32: tiny, fast and seedable; plenty for weight init and sampling. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next(); // in (0, 1], so the log is finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

// ---------------------------------------------------------------------------------------------
// LoRA

export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** [in, out] of the linear layer a target adapts. */
export function targetShape(cfg: ModelConfig, target: LoraTarget): [number, number] {
  const hidden = cfg.dim * cfg.mlpRatio;
  if (target === 'up_proj') return [cfg.dim, hidden];
  if (target === 'down_proj') return [hidden, cfg.dim];
  return [cfg.dim, cfg.dim];
}

/** One adapted linear: y = x Wᵀ + scale · (x Aᵀ) Bᵀ, with A [r, in] and B [out, r] (PEFT's layout). */
export interface LoraPair {
  a: Buf;
  b: Buf;
  /** Gradients, same shapes as a and b. */
  ga: Buf;
  gb: Buf;
}

/**
 * All adapters of a model. Parameters live in one flat buffer (and gradients in another) with
 * per-layer views into it, so the optimiser, gradient clipping and transfer see a single array.
 */
export class Lora {
  readonly params: Buf;
  readonly grads: Buf;
  readonly layers: Record<LoraTarget, LoraPair>[];
  readonly scale: number;

  constructor(
    readonly cfg: ModelConfig,
    readonly rank: number,
    readonly alpha: number,
    float64 = false,
  ) {
    if (!(Number.isInteger(rank) && rank > 0)) throw new Error(`LoRA rank must be a positive integer, got ${rank}`);
    this.scale = alpha / rank;
    let size = 0;
    for (const t of LORA_TARGETS) size += rank * (targetShape(cfg, t)[0] + targetShape(cfg, t)[1]);
    size *= cfg.layers;
    this.params = float64 ? new Float64Array(size) : new Float32Array(size);
    this.grads = float64 ? new Float64Array(size) : new Float32Array(size);
    let off = 0;
    const take = (n: number): [Buf, Buf] => {
      const views: [Buf, Buf] = [this.params.subarray(off, off + n), this.grads.subarray(off, off + n)];
      off += n;
      return views;
    };
    this.layers = [];
    for (let l = 0; l < cfg.layers; l++) {
      const layer = {} as Record<LoraTarget, LoraPair>;
      for (const t of LORA_TARGETS) {
        const [nIn, nOut] = targetShape(cfg, t);
        const [a, ga] = take(nIn * rank);
        const [b, gb] = take(rank * nOut);
        layer[t] = { a, b, ga, gb };
      }
      this.layers.push(layer);
    }
  }

  /** PEFT's init: A uniform in ±1/sqrt(in), B zero, so a fresh adapter leaves the model unchanged. */
  static init(cfg: ModelConfig, rank: number, alpha: number, seed: number): Lora {
    const lora = new Lora(cfg, rank, alpha);
    const rng = new Rng(seed);
    for (const layer of lora.layers) {
      for (const t of LORA_TARGETS) {
        const bound = 1 / Math.sqrt(targetShape(cfg, t)[0]);
        const a = layer[t].a;
        for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
      }
    }
    return lora;
  }
}

// ---------------------------------------------------------------------------------------------
// Ops. Each forward writes into preallocated outputs; each backward ACCUMULATES (+=) into the
// input gradients it is given, because the residual stream and q/k/v fan-out sum gradients.

/**
 * out[T, m] (+)= scale · x[T, n] · wᵀ, for w [m, n] (torch's Linear layout): every output is a
 * dot product of two contiguous rows. Register-blocked, 4 rows × 2 columns (or 1 row × 4 columns
 * for leftover rows, e.g. one-token decoding), so each load feeds several multiply-adds: about 4×
 * the speed of the plain triple loop in V8.
 */
function matmul(out: Buf, x: Buf, w: Buf, T: number, n: number, m: number, accumulate: boolean, scale = 1): void {
  const put = (o: number, s: number) => {
    out[o] = accumulate ? out[o] + scale * s : scale * s;
  };
  let i = 0;
  for (; i + 4 <= T; i += 4) {
    const x0 = i * n;
    const x1 = x0 + n;
    const x2 = x1 + n;
    const x3 = x2 + n;
    let j = 0;
    for (; j + 2 <= m; j += 2) {
      const w0 = j * n;
      const w1 = w0 + n;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let k = 0; k < n; k++) {
        const a = w[w0 + k];
        const b = w[w1 + k];
        const c0 = x[x0 + k];
        const c1 = x[x1 + k];
        const c2 = x[x2 + k];
        const c3 = x[x3 + k];
        s00 += c0 * a; s01 += c0 * b; s10 += c1 * a; s11 += c1 * b;
        s20 += c2 * a; s21 += c2 * b; s30 += c3 * a; s31 += c3 * b;
      }
      const o = i * m + j;
      put(o, s00); put(o + 1, s01); put(o + m, s10); put(o + m + 1, s11);
      put(o + 2 * m, s20); put(o + 2 * m + 1, s21); put(o + 3 * m, s30); put(o + 3 * m + 1, s31);
    }
    if (j < m) for (let r = i; r < i + 4; r++) put(r * m + j, dot(x, r * n, w, j * n, n)); // odd m
  }
  for (; i < T; i++) {
    const xi = i * n;
    let j = 0;
    for (; j + 4 <= m; j += 4) {
      const w0 = j * n;
      const w1 = w0 + n;
      const w2 = w1 + n;
      const w3 = w2 + n;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < n; k++) {
        const c = x[xi + k];
        s0 += c * w[w0 + k]; s1 += c * w[w1 + k]; s2 += c * w[w2 + k]; s3 += c * w[w3 + k];
      }
      const o = i * m + j;
      put(o, s0); put(o + 1, s1); put(o + 2, s2); put(o + 3, s3);
    }
    for (; j < m; j++) put(i * m + j, dot(x, xi, w, j * n, n));
  }
}

function dot(a: Buf, ao: number, b: Buf, bo: number, n: number): number {
  let s = 0;
  for (let k = 0; k < n; k++) s += a[ao + k] * b[bo + k];
  return s;
}

/** out[T, m] += scale · x[T, n] w[n, m] (row-major w): for the small LoRA products of the backward. */
function matmulAdd(out: Buf, x: Buf, w: Buf, T: number, n: number, m: number, scale = 1): void {
  for (let i = 0; i < T; i++) {
    const oi = i * m;
    for (let k = 0; k < n; k++) {
      const a = x[i * n + k] * scale;
      const wk = k * m;
      for (let j = 0; j < m; j++) out[oi + j] += a * w[wk + j];
    }
  }
}

/** dw[m, n] += scale · dy[T, m]ᵀ x[T, n]: the weight gradient of y = x wᵀ. */
function matmulGradWeight(dw: Buf, dy: Buf, x: Buf, T: number, m: number, n: number, scale = 1): void {
  for (let i = 0; i < T; i++) {
    const xi = i * n;
    for (let j = 0; j < m; j++) {
      const a = dy[i * m + j] * scale;
      const wj = j * n;
      for (let k = 0; k < n; k++) dw[wj + k] += a * x[xi + k];
    }
  }
}

/**
 * dw[m, n] += dy[T, m]ᵀ x[T, n] through the blocked matmul, on transposed copies: for the large
 * base weights of pretraining, where matmulGradWeight's pass over all of dw per row is ~4× slower.
 */
function matmulGradWeightBlocked(dw: Buf, dy: Buf, x: Buf, T: number, m: number, n: number, alloc: (n: number) => Buf): void {
  const dyT = alloc(m * T);
  const xT = alloc(n * T);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < m; j++) dyT[j * T + t] = dy[t * m + j];
    for (let k = 0; k < n; k++) xT[k * T + t] = x[t * n + k];
  }
  matmul(dw, dyT, xT, m, T, n, true);
}

/** y = x Wᵀ (+ scale · (x Aᵀ) Bᵀ); u = x Aᵀ [T, r] is kept for the backward pass. */
function linearForward(y: Buf, u: Buf, x: Buf, w: Buf, lora: LoraPair | null, scale: number, T: number, n: number, m: number): void {
  matmul(y, x, w, T, n, m, false);
  if (!lora) return;
  const r = u.length / T;
  matmul(u, x, lora.a, T, n, r, false);
  matmul(y, u, lora.b, T, r, m, true, scale);
}

/**
 * Accumulates dx, dW when `dw` is given (pretraining), and, when adapted, the LoRA gradients.
 * `wt` is Wᵀ [in, out], so that dx += dy W is again a row-by-row product for the fast matmul.
 */
function linearBackward(dx: Buf, dy: Buf, x: Buf, u: Buf, wt: Buf, lora: LoraPair | null, scale: number, T: number, n: number, m: number, alloc: (n: number) => Buf, dw?: Buf): void {
  matmul(dx, dy, wt, T, m, n, true);
  if (dw) matmulGradWeightBlocked(dw, dy, x, T, m, n, alloc);
  if (!lora) return;
  const r = u.length / T;
  matmulGradWeight(lora.gb, dy, u, T, m, r, scale); // dB = s · dyᵀ u
  const du = alloc(T * r);
  matmulAdd(du, dy, lora.b, T, m, r, scale); // du = s · dy B
  matmulGradWeight(lora.ga, du, x, T, r, n); // dA = duᵀ x
  matmulAdd(dx, du, lora.a, T, r, n); // dx += du A
}

const RMS_EPS = 1e-5;

/** RMSNorm: y = g ⊙ x / sqrt(mean(x²) + eps); rstd [T] is kept for the backward pass. */
function rmsnormForward(y: Buf, rstd: Buf, x: Buf, g: Buf, T: number, D: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * D;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[o + i] * x[o + i];
    const r = 1 / Math.sqrt(ss / D + RMS_EPS);
    rstd[t] = r;
    for (let i = 0; i < D; i++) y[o + i] = x[o + i] * r * g[i];
  }
}

/** dx_j += r·g_j·dy_j − r³·x_j·mean_i(g_i·dy_i·x_i); dg_j += Σ_t dy_j·x_j·r when `dg` is given. */
function rmsnormBackward(dx: Buf, dy: Buf, x: Buf, g: Buf, rstd: Buf, T: number, D: number, dg?: Buf): void {
  for (let t = 0; t < T; t++) {
    const o = t * D;
    const r = rstd[t];
    let dot = 0;
    for (let i = 0; i < D; i++) dot += g[i] * dy[o + i] * x[o + i];
    if (dg) for (let i = 0; i < D; i++) dg[i] += dy[o + i] * x[o + i] * r;
    const c = (r * r * r * dot) / D;
    for (let i = 0; i < D; i++) dx[o + i] += r * g[i] * dy[o + i] - c * x[o + i];
  }
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation (as GPT-2). */
function geluForward(y: Buf, x: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    y[i] = 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
  }
}

function geluBackward(dx: Buf, dy: Buf, x: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    const th = Math.tanh(GELU_C * (v + 0.044715 * v * v * v));
    const local = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * v * v);
    dx[i] += local * dy[i];
  }
}

/**
 * Causal multi-head attention for T new positions pos0..pos0+T-1 over the cache, whose rows
 * 0..pos0+T-1 already hold this layer's keys and values ([capacity, D] each).
 * att [H, T, L] (L = pos0 + T) receives the softmax probabilities, zero above the diagonal.
 */
function attentionForward(y: Buf, att: Buf, q: Buf, kc: Buf, vc: Buf, T: number, pos0: number, H: number, D: number): void {
  const hd = D / H;
  const L = pos0 + T;
  const scale = 1 / Math.sqrt(hd);
  y.fill(0, 0, T * D);
  for (let h = 0; h < H; h++) {
    const ho = h * hd;
    for (let t = 0; t < T; t++) {
      const row = (h * T + t) * L;
      const qo = t * D + ho;
      const last = pos0 + t; // attends to positions 0..last
      let max = -Infinity;
      for (let s = 0; s <= last; s++) {
        const ko = s * D + ho;
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += q[qo + i] * kc[ko + i];
        dot *= scale;
        att[row + s] = dot;
        if (dot > max) max = dot;
      }
      let sum = 0;
      for (let s = 0; s <= last; s++) {
        const e = Math.exp(att[row + s] - max);
        att[row + s] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let s = 0; s <= last; s++) {
        const p = att[row + s] * inv;
        att[row + s] = p;
        const vo = s * D + ho;
        for (let i = 0; i < hd; i++) y[qo + i] += p * vc[vo + i];
      }
      for (let s = last + 1; s < L; s++) att[row + s] = 0;
    }
  }
}

/** Backward of attentionForward for a whole sequence (pos0 = 0, so L = T). */
function attentionBackward(dq: Buf, dk: Buf, dv: Buf, dy: Buf, att: Buf, q: Buf, k: Buf, v: Buf, T: number, H: number, D: number, datt: Buf): void {
  const hd = D / H;
  const scale = 1 / Math.sqrt(hd);
  for (let h = 0; h < H; h++) {
    const ho = h * hd;
    for (let t = 0; t < T; t++) {
      const row = (h * T + t) * T;
      const to = t * D + ho;
      // y_t = Σ_s a_s v_s  →  da_s = dy_t·v_s, dv_s += a_s dy_t
      let dotSum = 0;
      for (let s = 0; s <= t; s++) {
        const so = s * D + ho;
        const a = att[row + s];
        let d = 0;
        for (let i = 0; i < hd; i++) {
          d += dy[to + i] * v[so + i];
          dv[so + i] += a * dy[to + i];
        }
        datt[s] = d;
        dotSum += a * d;
      }
      // softmax backward: dscore_s = a_s (da_s − Σ a·da); score = scale · q_t·k_s
      for (let s = 0; s <= t; s++) {
        const ds = att[row + s] * (datt[s] - dotSum) * scale;
        const so = s * D + ho;
        for (let i = 0; i < hd; i++) {
          dq[to + i] += ds * k[so + i];
          dk[so + i] += ds * q[to + i];
        }
      }
    }
  }
}

/** log Σ exp(logits), computed stably. */
export function logSumExp(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

// ---------------------------------------------------------------------------------------------
// The model

interface Block {
  ln1: Buf; // [D] RMSNorm gains
  wq: Buf; // [D, D]
  wk: Buf;
  wv: Buf;
  wo: Buf;
  ln2: Buf;
  wup: Buf; // [M, D]
  wdown: Buf; // [D, M]
}

/** Every base weight, as views into one flat buffer (the weights, or their gradients). */
export interface Weights {
  wte: Buf; // [V, D] token embedding
  wpe: Buf; // [C, D] positions
  blocks: Block[];
  lnf: Buf;
  lmHead: Buf; // [V, D]
}

/**
 * Name and shape of each base tensor, in the order of the flat buffer. It is also the order of
 * random init, so a seed gives the same base it always has.
 */
export function baseTensors(cfg: ModelConfig): { name: string; shape: number[] }[] {
  const { vocab: V, context: C, dim: D } = cfg;
  const M = D * cfg.mlpRatio;
  const out = [
    { name: 'wte', shape: [V, D] },
    { name: 'wpe', shape: [C, D] },
  ];
  for (let l = 0; l < cfg.layers; l++) {
    const shapes: [keyof Block, number[]][] = [['ln1', [D]], ['wq', [D, D]], ['wk', [D, D]], ['wv', [D, D]], ['wo', [D, D]], ['ln2', [D]], ['wup', [M, D]], ['wdown', [D, M]]];
    for (const [k, shape] of shapes) out.push({ name: `layers.${l}.${k}`, shape });
  }
  out.push({ name: 'lnf', shape: [D] }, { name: 'lmHead', shape: [V, D] });
  return out;
}

/** Views of baseTensors(cfg) into `flat`, which must hold exactly their sizes. */
function weightViews(cfg: ModelConfig, flat: Buf): Weights {
  const views = new Map<string, Buf>();
  let off = 0;
  for (const { name, shape } of baseTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    views.set(name, flat.subarray(off, off + n));
    off += n;
  }
  if (off !== flat.length) throw new Error(`base weights need ${off} values, the buffer has ${flat.length}`);
  const get = (name: string) => views.get(name)!;
  return {
    wte: get('wte'),
    wpe: get('wpe'),
    blocks: Array.from({ length: cfg.layers }, (_, l) => {
      const at = (k: keyof Block) => get(`layers.${l}.${k}`);
      return { ln1: at('ln1'), wq: at('wq'), wk: at('wk'), wv: at('wv'), wo: at('wo'), ln2: at('ln2'), wup: at('wup'), wdown: at('wdown') };
    }),
    lnf: get('lnf'),
    lmHead: get('lmHead'),
  };
}

/** Gradients of every base weight, for pretraining: `flat` in the layout of Model.params. */
export class BaseGrads {
  readonly flat: Buf;
  readonly w: Weights;
  constructor(model: Model) {
    this.flat = model.alloc(model.params.length);
    this.w = weightViews(model.cfg, this.flat);
  }
}

/** Keys and values of the positions seen so far, per layer: [capacity, D] each. */
export interface KVCache {
  k: Buf[];
  v: Buf[];
  capacity: number;
}

/** What one layer's forward keeps for its backward. */
interface LayerActs {
  x: Buf; // [T, D] block input (residual stream)
  rstd1: Buf; // [T]
  xn1: Buf; // [T, D]
  q: Buf; // [T, D]; k and v live in the cache
  uq: Buf; // [T, r] LoRA x·A of each adapted linear ([0] without LoRA)
  uk: Buf;
  uv: Buf;
  att: Buf; // [H, T, L] attention probabilities
  y: Buf; // [T, D] attention output, input of o_proj
  uo: Buf;
  x2: Buf; // [T, D] residual after attention
  rstd2: Buf;
  xn2: Buf;
  h: Buf; // [T, M] up_proj output, input of GELU
  uup: Buf;
  g: Buf; // [T, M] GELU output, input of down_proj
  udown: Buf;
}

/** The forward pass of T positions starting at pos0. */
export interface Acts {
  T: number;
  pos0: number;
  layers: LayerActs[];
  xL: Buf; // [T, D] last residual
  rstdf: Buf;
  xf: Buf; // [T, D] after the final norm: the LM head's input
}

export class Model implements Weights {
  /** Every base weight in one buffer (baseTensors order); the fields below are views into it. */
  readonly params: Buf;
  readonly wte: Buf;
  readonly wpe: Buf;
  readonly blocks: Block[];
  readonly lnf: Buf;
  readonly lmHead: Buf;
  readonly alloc: (n: number) => Buf;
  /** Wᵀ of each base weight, made on the first backward (only the training worker needs them). */
  private readonly transposed = new Map<Buf, Buf>();

  /** `weights`: the base tensors by baseTensors name (a pretrained base); absent: random from cfg.seed. */
  constructor(
    readonly cfg: ModelConfig,
    readonly float64 = false,
    weights?: ReadonlyMap<string, { shape: number[]; data: ArrayLike<number> }>,
  ) {
    const { dim: D, heads: H } = cfg;
    if (!(D % H === 0)) throw new Error(`dim ${D} is not divisible by heads ${H}`);
    this.alloc = float64 ? (n) => new Float64Array(n) : (n) => new Float32Array(n);
    const specs = baseTensors(cfg);
    this.params = this.alloc(specs.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0));
    const w = weightViews(cfg, this.params);
    ({ wte: this.wte, wpe: this.wpe, blocks: this.blocks, lnf: this.lnf, lmHead: this.lmHead } = w);
    if (weights) {
      let off = 0;
      for (const { name, shape } of specs) {
        const t = weights.get(name);
        if (!t || t.shape.join(',') !== shape.join(',')) throw new Error(`base weights: tensor ${name} is ${t ? `[${t.shape}]` : 'missing'}, expected [${shape}]`);
        this.params.set(t.data, off);
        off += t.data.length;
      }
      return;
    }
    const rng = new Rng(cfg.seed);
    const normal = (b: Buf, std: number) => {
      for (let i = 0; i < b.length; i++) b[i] = rng.normal() * std;
    };
    // GPT-2's init; projections into the residual stream are scaled down by 1/sqrt(2·layers)
    // so the stream's variance does not grow with depth.
    const residStd = 0.02 / Math.sqrt(2 * cfg.layers);
    normal(this.wte, 0.02);
    normal(this.wpe, 0.01);
    for (const b of this.blocks) {
      b.ln1.fill(1);
      normal(b.wq, 0.02);
      normal(b.wk, 0.02);
      normal(b.wv, 0.02);
      normal(b.wo, residStd);
      b.ln2.fill(1);
      normal(b.wup, 0.02);
      normal(b.wdown, residStd);
    }
    this.lnf.fill(1);
    // Untied head with unit-norm rows (std 1/sqrt(D)): the final norm makes |xf| = sqrt(D), so a
    // token's logit can reach sqrt(D) ≈ 14 and an adapter can make a reply near-certain. A head
    // tied to the 0.02-std embedding caps every logit near 4, i.e. no token above p ≈ 0.16.
    normal(this.lmHead, 1 / Math.sqrt(D));
  }

  /** The base tensors by name, for saving a pretrained base (views: copy before changing the model). */
  tensors(): Map<string, { shape: number[]; data: Buf }> {
    const out = new Map<string, { shape: number[]; data: Buf }>();
    let off = 0;
    for (const { name, shape } of baseTensors(this.cfg)) {
      const n = shape.reduce((a, b) => a * b, 1);
      out.set(name, { shape, data: this.params.subarray(off, off + n) });
      off += n;
    }
    return out;
  }

  /** Call after changing base weights in place (a pretraining step): the cached transposes are stale. */
  weightsChanged(): void {
    this.transposed.clear();
  }

  /** Number of base parameters. */
  get parameterCount(): number {
    const { vocab: V, context: C, dim: D, layers, mlpRatio } = this.cfg;
    return 2 * V * D + C * D + D + layers * (2 * D + 4 * D * D + 2 * D * D * mlpRatio);
  }

  private transpose(w: Buf, rows: number, cols: number): Buf {
    let t = this.transposed.get(w);
    if (!t) {
      t = this.alloc(rows * cols);
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = w[i * cols + j];
      this.transposed.set(w, t);
    }
    return t;
  }

  newCache(capacity = this.cfg.context): KVCache {
    const D = this.cfg.dim;
    const make = () => Array.from({ length: this.cfg.layers }, () => this.alloc(capacity * D));
    return { k: make(), v: make(), capacity };
  }

  /**
   * Runs positions pos0..pos0+T-1 given the cache of positions before pos0 (which it extends).
   * A whole sequence is forward(tokens, 0, fresh cache); sampling prefills the prompt this way
   * and then feeds one token at a time, so both paths share every op.
   */
  forward(tokens: ArrayLike<number>, pos0: number, cache: KVCache, lora: Lora | null): Acts {
    const { dim: D, heads: H, vocab: V } = this.cfg;
    const M = D * this.cfg.mlpRatio;
    const T = tokens.length;
    const L = pos0 + T;
    if (L > cache.capacity) throw new Error(`sequence of ${L} positions exceeds the cache of ${cache.capacity}`);
    const r = lora ? lora.rank : 0;
    const scale = lora ? lora.scale : 0;
    const alloc = this.alloc;

    let x = alloc(T * D);
    for (let t = 0; t < T; t++) {
      const tok = tokens[t];
      if (!(Number.isInteger(tok) && tok >= 0 && tok < V)) throw new Error(`token id ${tok} out of range 0..${V - 1}`);
      for (let i = 0; i < D; i++) x[t * D + i] = this.wte[tok * D + i] + this.wpe[(pos0 + t) * D + i];
    }

    const layers: LayerActs[] = [];
    for (let l = 0; l < this.cfg.layers; l++) {
      const b = this.blocks[l];
      const lp = lora ? lora.layers[l] : null;
      const a: LayerActs = {
        x,
        rstd1: alloc(T),
        xn1: alloc(T * D),
        q: alloc(T * D),
        uq: alloc(T * r),
        uk: alloc(T * r),
        uv: alloc(T * r),
        att: alloc(H * T * L),
        y: alloc(T * D),
        uo: alloc(T * r),
        x2: alloc(T * D),
        rstd2: alloc(T),
        xn2: alloc(T * D),
        h: alloc(T * M),
        uup: alloc(T * r),
        g: alloc(T * M),
        udown: alloc(T * r),
      };
      const kRows = cache.k[l].subarray(pos0 * D, L * D);
      const vRows = cache.v[l].subarray(pos0 * D, L * D);
      rmsnormForward(a.xn1, a.rstd1, x, b.ln1, T, D);
      linearForward(a.q, a.uq, a.xn1, b.wq, lp && lp.q_proj, scale, T, D, D);
      linearForward(kRows, a.uk, a.xn1, b.wk, lp && lp.k_proj, scale, T, D, D);
      linearForward(vRows, a.uv, a.xn1, b.wv, lp && lp.v_proj, scale, T, D, D);
      attentionForward(a.y, a.att, a.q, cache.k[l], cache.v[l], T, pos0, H, D);
      linearForward(a.x2, a.uo, a.y, b.wo, lp && lp.o_proj, scale, T, D, D);
      for (let i = 0; i < T * D; i++) a.x2[i] += x[i];
      rmsnormForward(a.xn2, a.rstd2, a.x2, b.ln2, T, D);
      linearForward(a.h, a.uup, a.xn2, b.wup, lp && lp.up_proj, scale, T, D, M);
      geluForward(a.g, a.h, T * M);
      const next = alloc(T * D);
      linearForward(next, a.udown, a.g, b.wdown, lp && lp.down_proj, scale, T, M, D);
      for (let i = 0; i < T * D; i++) next[i] += a.x2[i];
      layers.push(a);
      x = next;
    }
    const rstdf = alloc(T);
    const xf = alloc(T * D);
    rmsnormForward(xf, rstdf, x, this.lnf, T, D);
    return { T, pos0, layers, xL: x, rstdf, xf };
  }

  /**
   * Backward of a whole-sequence forward (pos0 = 0) given dL/dxf; accumulates into lora.grads
   * (when there is a LoRA) and into `grads` (when given: pretraining). `cache` is the one the
   * forward filled (it holds k and v); `tokens` are its input, for the embeddings' gradients.
   */
  backward(acts: Acts, cache: KVCache, lora: Lora | null, dxf: Buf, grads?: { w: Weights; tokens: ArrayLike<number> }): void {
    const { dim: D, heads: H } = this.cfg;
    const M = D * this.cfg.mlpRatio;
    const { T } = acts;
    if (acts.pos0 !== 0) throw new Error('backward needs a whole-sequence forward (pos0 = 0)');
    const alloc = this.alloc;
    const scale = lora ? lora.scale : 0;
    const gw = grads?.w;
    const dx = alloc(T * D); // dL/d(residual stream), walked from the top down
    rmsnormBackward(dx, dxf, acts.xL, this.lnf, acts.rstdf, T, D, gw?.lnf);
    const datt = alloc(T);
    for (let l = this.cfg.layers - 1; l >= 0; l--) {
      const b = this.blocks[l];
      const a = acts.layers[l];
      const lp = lora ? lora.layers[l] : null;
      const gb = gw?.blocks[l];
      const k = cache.k[l].subarray(0, T * D);
      const v = cache.v[l].subarray(0, T * D);
      // x_out = x2 + down(gelu(up(norm2(x2))))
      const dg = alloc(T * M);
      linearBackward(dg, dx, a.g, a.udown, this.transpose(b.wdown, D, M), lp && lp.down_proj, scale, T, M, D, alloc, gb?.wdown);
      const dh = alloc(T * M);
      geluBackward(dh, dg, a.h, T * M);
      const dxn2 = alloc(T * D);
      linearBackward(dxn2, dh, a.xn2, a.uup, this.transpose(b.wup, M, D), lp && lp.up_proj, scale, T, D, M, alloc, gb?.wup);
      rmsnormBackward(dx, dxn2, a.x2, b.ln2, a.rstd2, T, D, gb?.ln2); // dx is now dL/dx2
      // x2 = x + o(attention(q(xn1), k(xn1), v(xn1))), xn1 = norm1(x)
      const dy = alloc(T * D);
      linearBackward(dy, dx, a.y, a.uo, this.transpose(b.wo, D, D), lp && lp.o_proj, scale, T, D, D, alloc, gb?.wo);
      const dq = alloc(T * D);
      const dk = alloc(T * D);
      const dv = alloc(T * D);
      attentionBackward(dq, dk, dv, dy, a.att, a.q, k, v, T, H, D, datt);
      const dxn1 = alloc(T * D);
      linearBackward(dxn1, dq, a.xn1, a.uq, this.transpose(b.wq, D, D), lp && lp.q_proj, scale, T, D, D, alloc, gb?.wq);
      linearBackward(dxn1, dk, a.xn1, a.uk, this.transpose(b.wk, D, D), lp && lp.k_proj, scale, T, D, D, alloc, gb?.wk);
      linearBackward(dxn1, dv, a.xn1, a.uv, this.transpose(b.wv, D, D), lp && lp.v_proj, scale, T, D, D, alloc, gb?.wv);
      rmsnormBackward(dx, dxn1, a.x, b.ln1, a.rstd1, T, D, gb?.ln1); // dx is now dL/dx of this block
    }
    if (!grads) return;
    // x_0 = wte[token] + wpe[position]
    for (let t = 0; t < T; t++) {
      const e = grads.tokens[t] * D;
      for (let i = 0; i < D; i++) {
        grads.w.wte[e + i] += dx[t * D + i];
        grads.w.wpe[t * D + i] += dx[t * D + i];
      }
    }
  }

  /** Logits [V] at one row of a forward: xf_row · lmHeadᵀ. */
  logits(acts: Acts, row: number): Buf {
    const { vocab: V, dim: D } = this.cfg;
    const out = this.alloc(V);
    matmul(out, acts.xf.subarray(row * D, (row + 1) * D), this.lmHead, 1, D, V, false);
    return out;
  }

  /**
   * log π(response_i | prompt, response_<i). The input is prompt + response minus its last
   * token (whose successor is never scored); a prompt too long for the context loses its front.
   */
  score(prompt: number[], response: number[], lora: Lora | null): number[] {
    if (response.length === 0) return [];
    const seq = this.sequence(prompt, response);
    const cache = this.newCache(seq.tokens.length);
    const acts = this.forward(seq.tokens, 0, cache, lora);
    return response.map((tok, i) => {
      const logits = this.logits(acts, seq.first + i);
      return logits[tok] - logSumExp(logits);
    });
  }

  /**
   * Forward and backward of one example: computes the response logprobs, asks `lossGrad` for
   * dL/dlogp of each response token, and accumulates dL/d(LoRA) into lora.grads (and, given
   * `grads`, dL/d(base weights): pretraining, with lora null). Returns the logprobs.
   */
  accumulateGradients(prompt: number[], response: number[], lora: Lora | null, lossGrad: (logp: number[]) => ArrayLike<number>, grads?: BaseGrads): number[] {
    if (response.length === 0) return [];
    const { vocab: V, dim: D } = this.cfg;
    const seq = this.sequence(prompt, response);
    const T = seq.tokens.length;
    const cache = this.newCache(T);
    const acts = this.forward(seq.tokens, 0, cache, lora);
    const logits = response.map((_, i) => this.logits(acts, seq.first + i));
    const lse = logits.map(logSumExp);
    const logp = response.map((tok, i) => logits[i][tok] - lse[i]);
    const dlogp = lossGrad(logp);
    // logp = logit_y − lse  →  dlogit_v = dlogp · (1[v = y] − softmax_v);  dxf_row = dlogit · lmHead
    const dxf = this.alloc(T * D);
    const dlogits = this.alloc(V);
    for (let i = 0; i < response.length; i++) {
      const g = dlogp[i];
      if (g === 0) continue;
      for (let v = 0; v < V; v++) dlogits[v] = -g * Math.exp(logits[i][v] - lse[i]);
      dlogits[response[i]] += g;
      const row = seq.first + i;
      matmulAdd(dxf.subarray(row * D, (row + 1) * D), dlogits, this.lmHead, 1, V, D);
      if (grads) matmulGradWeight(grads.w.lmHead, dlogits, acts.xf.subarray(row * D, (row + 1) * D), 1, V, D);
    }
    this.backward(acts, cache, lora, dxf, grads && { w: grads.w, tokens: seq.tokens });
    return logp;
  }

  /** The input tokens for scoring `response` after `prompt`, and the row that predicts response[0]. */
  private sequence(prompt: number[], response: number[]): { tokens: number[]; first: number } {
    const C = this.cfg.context;
    if (prompt.length === 0) throw new Error('cannot score a response without a prompt');
    if (response.length > C) throw new Error(`response of ${response.length} tokens exceeds the context of ${C}`);
    const keep = Math.min(prompt.length, C - (response.length - 1));
    const tokens = prompt.slice(prompt.length - keep).concat(response.slice(0, -1));
    return { tokens, first: keep - 1 };
  }
}
