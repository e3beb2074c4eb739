// ONNX Runtime (npm onnxruntime-node, CPU) on the benchmark's workload:
// rows of 128 tokens, a 20-row prompt, 2 labels; 2 intra-op threads.
// usage: node bench/ort/bench_ort.js MODEL.onnx D_MODEL PIECES LABEL_ID,LABEL_ID [--quick]
// (PIECES: token ids are drawn below it)
// prints {"classify_rows_per_s": {"1": ..., "8": ..., "32": ...}}
const path = require('path');
const modules = path.resolve(process.env.ORT_MODULES || 'node_modules');
const ort = require(path.join(modules, 'onnxruntime-node'));

async function rowsPerSecond(session, batch, dModel, pieces, labels, reps) {
  const T = 128;
  const ids = new BigInt64Array(batch * T);
  for (let i = 0; i < ids.length; i++) ids[i] = BigInt(3 + ((i * 7919) % (pieces - 3)));
  for (let r = 0; r < batch; r++) ids[r * T + T - 1] = 1n;
  const feeds = {
    ids: new ort.Tensor('int64', ids, [batch, T]),
    mask: new ort.Tensor('int64', new BigInt64Array(batch * T).fill(1n), [batch, T]),
    prompt: new ort.Tensor('float32', new Float32Array(20 * dModel).map((_, i) => ((i * 37) % 100) / 100 - 0.5), [20, dModel]),
    labels: new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [2]),
  };
  await session.run(feeds);                              // warm-up
  const times = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  return batch / times[Math.floor(times.length / 2)];
}

async function main() {
  const model = process.argv[2];
  const dModel = parseInt(process.argv[3], 10);
  const pieces = parseInt(process.argv[4], 10);
  const labels = process.argv[5].split(',').map((x) => parseInt(x, 10));
  const quick = process.argv[6] === '--quick';
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const out = { classify_rows_per_s: {}, onnxruntime: require(path.join(modules, 'onnxruntime-node', 'package.json')).version };
  for (const batch of [1, 8, 32])
    out.classify_rows_per_s[String(batch)] = await rowsPerSecond(session, batch, dModel, pieces, labels, quick ? 1 : (batch < 8 ? 15 : 7));
  console.log(JSON.stringify(out, null, 2));
}
main().catch((e) => { console.error(e); process.exit(1); });
