// An independent xDS client: @grpc/grpc-js-xds resolves xds:///<service> through Mesh's control
// plane (bootstrap in GRPC_XDS_BOOTSTRAP) and calls demo.inventory.v1.Inventory/Reserve in a loop.
// One JSON line per call on stdout: {"at": <ms since epoch>, "instance": "...", "caller": "...", "error": null|"..."}.
// XDS_CREDENTIALS=xds uses XdsChannelCredentials (gRFC A29): mTLS as the control plane's CDS says, with the
// certificates of the bootstrap's file_watcher provider; otherwise plaintext.
// METADATA="name=value" sends that header with every call (header routes).
// Stops when stdin closes, after MAX_SECONDS, or after MAX_CALLS — whichever comes first.
'use strict';
const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');
const protoLoader = require('@grpc/proto-loader');

const [target, protoPath] = process.argv.slice(2);
if (!target || !protoPath || !process.env.GRPC_XDS_BOOTSTRAP) {
  console.error('usage: GRPC_XDS_BOOTSTRAP=bootstrap.json node xds-client.js xds:///inventory path/to/inventory.proto');
  process.exit(2);
}
const maxSeconds = Number(process.env.MAX_SECONDS || 60);
const maxCalls = Number(process.env.MAX_CALLS || 20000);
const intervalMs = Number(process.env.INTERVAL_MS || 20);
const metadata = new grpc.Metadata();
if (process.env.METADATA) {
  const eq = process.env.METADATA.indexOf('=');
  metadata.set(process.env.METADATA.slice(0, eq), process.env.METADATA.slice(eq + 1));
}

xds.register();
const definition = protoLoader.loadSync(protoPath, { keepCase: false, defaults: true });
const Inventory = grpc.loadPackageDefinition(definition).demo.inventory.v1.Inventory;
const credentials = process.env.XDS_CREDENTIALS === 'xds'
  ? new xds.XdsChannelCredentials(grpc.credentials.createInsecure())
  : grpc.credentials.createInsecure();
const client = new Inventory(target, credentials);

let stopping = false;
let calls = 0;
const started = Date.now();
process.stdin.on('end', () => { stopping = true; });
process.stdin.on('close', () => { stopping = true; });
process.stdin.resume();

function callOnce() {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    client.reserve({ sku: 'node', quantity: 1 }, metadata, { deadline }, (err, reply) => {
      const line = { at: Date.now(), instance: reply ? reply.instance : null, caller: reply ? reply.caller || null : null, error: err ? `${grpc.status[err.code]}: ${err.details}` : null };
      process.stdout.write(JSON.stringify(line) + '\n');
      resolve();
    });
  });
}

(async () => {
  console.error(`xds-client: calling ${target}`);
  while (!stopping && calls < maxCalls && Date.now() - started < maxSeconds * 1000) {
    calls++;
    await callOnce();
    if (intervalMs > 0) {
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
  client.close();
  console.error(`xds-client: done after ${calls} calls`);
  process.exit(0);
})();
