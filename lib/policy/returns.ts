/** Monte-Carlo discounted returns (MATH §10): G_t = Σ_{k≥t} γ^{k−t} r_k, computed backwards. */
export function discountedReturns(rewards: ArrayLike<number>, gamma: number, bootstrap = 0): Float64Array {
  if (!(gamma >= 0 && gamma <= 1)) throw new RangeError(`gamma must be in [0, 1], got ${gamma}`);
  const G = new Float64Array(rewards.length);
  let acc = bootstrap;
  for (let t = rewards.length - 1; t >= 0; t--) {
    acc = rewards[t] + gamma * acc;
    G[t] = acc;
  }
  return G;
}
