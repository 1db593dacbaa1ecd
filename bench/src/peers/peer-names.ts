/** Names shared by the peers' producers and worker processes. */
export const GRAPHILE_TASK = 'bench_handle';
export const PG_BOSS_QUEUE = 'bench_handle';
