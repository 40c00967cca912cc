// An external reflection client: the npm package grpc-js-reflection-client
// (over @grpc/grpc-js) against a piperpc server on a unix socket, with both
// protocol versions. It lists the services and methods, rebuilds the
// service from the descriptors alone and calls a method with it.
//
//   node reflection_client.js SERVER greeter|echo
'use strict';
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const { GrpcReflection } = require('grpc-js-reflection-client');

const KINDS = {
  greeter: {
    service: 'helloworld.Greeter',
    methods: ['SayHello'],
    input: 'helloworld.HelloRequest',
    output: 'helloworld.HelloReply',
    call: ['SayHello', { name: 'node' }, (r) => assert.strictEqual(r.message, 'Hello node')],
  },
  echo: {
    service: 'bench.Echo',
    methods: ['Unary', 'ServerStream', 'ClientStream', 'Bidi'],
    input: 'bench.Payload',
    output: 'bench.Payload',
    call: ['Unary', { data: Buffer.from([0, 1, 2, 255]) },
      (r) => assert.deepStrictEqual(Buffer.from(r.data), Buffer.from([0, 1, 2, 255]))],
  },
};
const BUILTIN = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection'];

function lookup(obj, dotted) {
  return dotted.split('.').reduce((o, k) => (o ? o[k] : undefined), obj);
}

async function check(target, kind, version) {
  const k = KINDS[kind];
  const creds = grpc.credentials.createInsecure();
  const c = new GrpcReflection(target, creds, {}, version);
  const services = await c.listServices();
  assert.deepStrictEqual([...services].sort(), [k.service, ...BUILTIN].sort(),
    `${version} list: ${services}`);
  const methods = (await c.listMethods(k.service)).map((m) => m.name);
  assert.deepStrictEqual(methods, k.methods, `${version} methods: ${methods}`);
  // Unknown names: the library turns the NOT_FOUND error_response into an
  // exception that carries the server's message.
  await assert.rejects(c.getDescriptorBySymbol(k.service + 'Nope'),
    (e) => String(e.message || e).includes('symbol not found'));
  await assert.rejects(c.getDescriptorByFileName('no/such.proto'),
    (e) => String(e.message || e).includes('file not found'));
  const ext = await c.getAllExtensionNumbersOfType(k.input);
  assert.strictEqual(ext.base_type_name, k.input);
  assert.deepStrictEqual(ext.extension_number, []);
  // A client built from the reflected descriptors alone.
  const pkg = (await c.getDescriptorBySymbol(k.service)).getPackageObject({});
  const Client = lookup(pkg, k.service);
  assert.ok(Client, `${k.service} not in the package object`);
  const def = Client.service[k.call[0]];
  assert.strictEqual(def.path, `/${k.service}/${k.call[0]}`);
  assert.strictEqual(`${k.service.split('.')[0]}.${def.requestType.type.name}`, k.input);
  assert.strictEqual(`${k.service.split('.')[0]}.${def.responseType.type.name}`, k.output);
  const client = new Client(target, creds);
  const [method, request, verify] = k.call;
  const reply = await new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10000 },
      (err, r) => (err ? reject(err) : resolve(r)));
  });
  verify(reply);
  client.close();
  console.log(`${version}: ${services.length} services; ${k.service}: ` +
    `${methods.join(', ')}; ${method} called: ok`);
}

async function main() {
  const [server, kind] = process.argv.slice(2);
  if (!KINDS[kind]) throw new Error('usage: reflection_client.js SERVER greeter|echo');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prpc-node-refl-'));
  const target = `unix:${path.join(dir, 'r.sock')}`;
  const p = spawn(server, ['--listen', target], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => p.on('exit', (code, sig) => resolve([code, sig])));
  await new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: p.stdout });
    rl.on('line', (line) => { if (line.trim().endsWith('ready')) resolve(); });
    p.on('exit', () => reject(new Error(`${server} exited before ready`)));
  });
  try {
    await check(target, kind, 'v1');
    await check(target, kind, 'v1alpha');
  } finally {
    p.kill('SIGTERM');
    const [code, sig] = await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    assert.strictEqual(code, 0, `${server} exited with ${code} ${sig || ''}`);
  }
}

main().then(() => process.exit(0), (e) => {
  console.error('FAIL:', e && e.stack ? e.stack : e);
  process.exit(1);
});
