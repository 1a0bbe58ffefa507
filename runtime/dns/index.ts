export { DnsWeightError, listWeights, setWeight } from './weight';
export type { WeightChange, WeightRequest, WeightResult } from './weight';
