// The one trainer loss every backend uses (the torch worker mirrors this function exactly).
//
// For each response token t with mask m_t (1 = train, 0 = skip; fractional weights allowed):
//   r_t    = exp(logp_t − oldLogp_t)
//   pg_t   = −min(r_t·A_t, clip(r_t, 1 − clipLow, 1 + clipHigh)·A_t)
//   kl_t   = exp(ref_t − logp_t) − (ref_t − logp_t) − 1      (the k3 estimator of KL(π_θ‖π_ref):
//            non-negative, unbiased, lower variance than logp − ref; only when refLogp is given)
//   loss_t = pg_t + klCoef·kl_t
//   loss   = Σ m_t·loss_t / Σ m_t        (token-level mean over the whole batch, as DAPO does;
//                                          0 when Σ m_t = 0)
// Gradient w.r.t. logp_t (the clipped branch is constant in logp, so its gradient is 0):
//   dpg_t  = −A_t·r_t   if r_t·A_t ≤ clip(r_t)·A_t  (the unclipped term is the min), else 0
//   dkl_t  = 1 − exp(ref_t − logp_t)
//   dLogp_t = m_t·(dpg_t + klCoef·dkl_t) / Σ m_t
// Reported (all token-level means over masked-in tokens):
//   clipFraction = share of tokens where the clipped term is strictly the min (gradient cut off)
//   meanRatio    = mean r_t
//   kl           = mean (logp_t − ref_t), the plain log-ratio, 0 without refLogp

export interface PolicyLossOptions {
  clipLow: number;
  clipHigh: number;
  klCoef: number;
  /** Reference-policy logprobs of the same tokens; needed when klCoef > 0. */
  refLogp?: ArrayLike<number>;
}

export interface PolicyLossResult {
  loss: number;
  /** dLoss/dlogp_t for each token. */
  dLogp: Float64Array;
  clipFraction: number;
  meanRatio: number;
  kl: number;
}

export function policyLoss(
  logp: ArrayLike<number>,
  oldLogp: ArrayLike<number>,
  advantages: ArrayLike<number>,
  mask: ArrayLike<number>,
  opts: PolicyLossOptions,
): PolicyLossResult {
  const n = logp.length;
  for (const [what, arr] of [['oldLogp', oldLogp], ['advantages', advantages], ['mask', mask]] as const) {
    if (arr.length !== n) throw new Error(`policyLoss: ${what} has ${arr.length} entries, logp has ${n}`);
  }
  const ref = opts.refLogp;
  if (opts.klCoef !== 0 && !ref) throw new Error('policyLoss: klCoef > 0 needs refLogp');
  if (ref && ref.length !== n) throw new Error(`policyLoss: refLogp has ${ref.length} entries, logp has ${n}`);
  const dLogp = new Float64Array(n);
  let weight = 0;
  for (let t = 0; t < n; t++) weight += mask[t];
  if (weight === 0) return { loss: 0, dLogp, clipFraction: 0, meanRatio: 0, kl: 0 };
  let loss = 0;
  let clipped = 0;
  let ratioSum = 0;
  let klSum = 0;
  for (let t = 0; t < n; t++) {
    const m = mask[t];
    if (m === 0) continue;
    const a = advantages[t];
    const r = Math.exp(logp[t] - oldLogp[t]);
    const unclippedTerm = r * a;
    const clippedTerm = Math.min(Math.max(r, 1 - opts.clipLow), 1 + opts.clipHigh) * a;
    let lt: number;
    let dt: number;
    if (unclippedTerm <= clippedTerm) {
      lt = -unclippedTerm;
      dt = -unclippedTerm;
    } else {
      lt = -clippedTerm;
      dt = 0;
      clipped += m;
    }
    if (ref) {
      const d = ref[t] - logp[t];
      lt += opts.klCoef * (Math.exp(d) - d - 1);
      dt += opts.klCoef * (1 - Math.exp(d));
      klSum += m * -d;
    }
    loss += m * lt;
    dLogp[t] = (m * dt) / weight;
    ratioSum += m * r;
  }
  return { loss: loss / weight, dLogp, clipFraction: clipped / weight, meanRatio: ratioSum / weight, kl: klSum / weight };
}
