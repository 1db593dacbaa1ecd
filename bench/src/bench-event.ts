/** The one event type every bench producer emits; its payload is `{ seq }`. */
export const BENCH_EVENT_TYPE = 'BenchEventHappened';
