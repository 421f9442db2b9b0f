// make bench's BullMQ case: `node e2e.js worker <redis-url> <jobs> <concurrency> [keep|remove]`
// runs no-op jobs until <jobs> are done (completed jobs kept, BullMQ's default, or
// removed); `node e2e.js produce <redis-url> <jobs> [in-flight]` adds them with
// addBulk, 100 a call (SharQ's batch size), over 100 queue names' worth of data,
// <in-flight> calls at a time (default 1). Each prints its own CPU seconds (user +
// system) as its last line.
'use strict';
const { Queue, Worker } = require('bullmq');

const [mode, url, jobs, option, completed] = process.argv.slice(2);
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
  const settings = { connection, concurrency: Number(option) };
  if (completed === 'remove') {
    Object.assign(settings, { removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } });
  }
  const worker = new Worker(NAME, async () => null, settings);
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
  let next = 0;
  async function sender() {
    while (next < total) {
      const start = next;
      next += 100;
      const batch = [];
      for (let n = start; n < Math.min(start + 100, total); n += 1) {
        batch.push({ name: `q${n % 100}`, data: n, opts: { jobId: `j${n}` } });
      }
      await queue.addBulk(batch);
    }
  }
  await Promise.all(Array.from({ length: Number(option || 1) }, sender));
  console.log(`cpu ${cpuSeconds()}`);
  await queue.close();
}

(mode === 'worker' ? work() : produce()).catch((error) => {
  console.error(error);
  process.exit(1);
});
