#!/usr/bin/env node
// Where the partition streams of PetCover's four streams land on a Redis
// Cluster of 3, 6 or 9 masters (slots split evenly, as `redis-cli --cluster
// create` does). Every key of one partition stream (the stream, its
// `{<stream>}:meta` and `{<stream>}:dedupe`) hashes to the stream key's slot.
// Usage: node bench/scaling/cluster-slots.js [partitions per stream...]
const path = require('node:path');
const keySlot = require(require.resolve('cluster-key-slot', { paths: [path.dirname(require.resolve('ioredis', { paths: [path.join(__dirname, '..')] }))] }));

const STREAMS = ['stream:contracting:signature_events', 'stream:contracting:package_changes', 'stream:contracting:contract_changes', 'stream:enrollment:pet_changes'];
const partitionName = (stream, p, count) => (count <= 1 ? stream : `${stream}:p${p}`);
const counts = process.argv.slice(2).map(Number);
for (const masters of [3, 6, 9]) {
  const master = (slot) => Math.min(masters - 1, Math.floor(slot / Math.ceil(16384 / masters)));
  for (const partitions of counts.length ? counts : [1, 4, 8, 16, 64]) {
    const perMaster = new Array(masters).fill(0);
    for (const stream of STREAMS) {
      for (let p = 0; p < partitions; p += 1) {
        const key = partitionName(stream, p, partitions);
        const slot = keySlot(key);
        if (keySlot(`{${key}}:meta`) !== slot || keySlot(`{${key}}:dedupe`) !== slot) throw new Error(`${key}: keys in different slots`);
        perMaster[master(slot)] += 1;
      }
    }
    const total = STREAMS.length * partitions;
    console.log(`masters=${masters} partitions/stream=${partitions} partition streams=${total} per master=[${perMaster.join(', ')}] busiest=${(Math.max(...perMaster) / total * 100).toFixed(0)}% (even: ${(100 / masters).toFixed(0)}%)`);
  }
}
