// make bench's BullMQ case: `node e2e.js worker <redis-url> <jobs> <concurrency>` runs
// no-op jobs until <jobs> are done; `node e2e.js produce <redis-url> <jobs>` adds
// them with addBulk, 100 a call (SharQ's batch size), over 100 queue names' worth of
// data. Each prints its own CPU seconds (user + system) as its last line.
'use strict';
const { Queue, Worker } = require('bullmq');

const [mode, url, jobs, concurrency] = process.argv.slice(2);
const total = Number(jobs);
const parsed = new URL(url);
const connection = { host: parsed.hostname, port: Number(parsed.port), maxRetriesPerRequest: null };
const NAME = 'e2e';

function cpuSeconds() {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
}

async function work() {
  let done = 0;
  const worker = new Worker(NAME, async () => null, {
    connection, concurrency: Number(concurrency), removeOnComplete: { count: 0 }, removeOnFail: { count: 0 },
  });
  worker.on('completed', () => {
    done += 1;
    if (done === total) {
      console.log(`cpu ${cpuSeconds()}`);
      worker.close().then(() => process.exit(0));
    }
  });
  await worker.waitUntilReady();
  console.log('ready');
}

async function produce() {
  const queue = new Queue(NAME, { connection });
  for (let start = 0; start < total; start += 100) {
    const batch = [];
    for (let n = start; n < Math.min(start + 100, total); n += 1) {
      batch.push({ name: `q${n % 100}`, data: n, opts: { jobId: `j${n}` } });
    }
    await queue.addBulk(batch);
  }
  console.log(`cpu ${cpuSeconds()}`);
  await queue.close();
}

(mode === 'worker' ? work() : produce()).catch((error) => {
  console.error(error);
  process.exit(1);
});
