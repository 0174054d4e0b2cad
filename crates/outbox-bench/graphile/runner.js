// The Graphile Worker baseline of outbox-bench: enqueue N no-op jobs, then time one worker
// process draining them, tuned as Graphile Worker's performance page advises (24 concurrent
// jobs, a pool of 25, a local queue of 500, results completed without batching delay).
// Usage: node runner.js CONNECTION_STRING N   → prints "rate <jobs per second>"
"use strict";
const { run, makeWorkerUtils } = require("graphile-worker");

async function main() {
  const [connectionString, n] = [process.argv[2], Number(process.argv[3])];
  const utils = await makeWorkerUtils({ connectionString });
  await utils.migrate();
  // In statements of 1,000 jobs: one statement enqueuing 100,000 (each add_job notifies)
  // ran for minutes at full CPU in the server.
  await utils.withPgClient(async (c) => {
    for (let left = n; left > 0; left -= 1000) {
      await c.query(
        "SELECT graphile_worker.add_job('noop', '{}'::json) FROM generate_series(1, $1)",
        [Math.min(left, 1000)],
      );
    }
  });
  await utils.release();
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  // Timed from the start of the runner, as the relay's drain is from the start of its worker.
  const started = process.hrtime.bigint();
  const runner = await run({
    preset: {
      worker: {
        connectionString,
        concurrentJobs: 24,
        maxPoolSize: 25,
        localQueue: { size: 500 },
        completeJobBatchDelay: 0,
        pollInterval: 1000,
      },
    },
    noHandleSignals: true,
    logger: new (require("graphile-worker").Logger)(() => () => {}),
    taskList: {
      noop: async () => {
        done += 1;
        if (done === n) finish();
      },
    },
  });
  await finished;
  // Until the last completion is written, as the relay's drain is timed.
  const pg = require("pg");
  const client = new pg.Client({ connectionString });
  await client.connect();
  for (;;) {
    const r = await client.query("SELECT count(*)::int AS left FROM graphile_worker.jobs");
    if (r.rows[0].left === 0) break;
    await new Promise((r) => setTimeout(r, 2));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await client.end();
  console.log(`rate ${(n / seconds).toFixed(0)}`);
  await runner.stop();
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
