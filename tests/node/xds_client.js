'use strict';
/*
 * A proxyless Node gRPC client (@grpc/grpc-js-xds) driven by the test suite.
 *
 * Usage: GRPC_XDS_BOOTSTRAP=bootstrap.json node xds_client.js TARGET [MAX_SECONDS]
 *
 * Prints JSON lines on stdout. The first is {"event":"ready", versions...}. Then one command per
 * stdin line:
 *   call N [TARGET]  makes N unary calls of /echo.Echo/Who (raw bytes, wait-for-ready, 5 s
 *            deadline each) on one long-lived channel per target (TARGET by default) and prints
 *            {"event":"calls","answers":[...]}; a failed call is "error: <CODE>: <details>" (an
 *            xDS NACK shows up here as UNAVAILABLE with the client's validation message).
 *   try N [TARGET]   the same, failing fast (no wait-for-ready, 2 s deadline).
 * EOF ends the process, and so does MAX_SECONDS (default 120): {"event":"timeout"}, exit 3.
 * An invalid bootstrap is {"event":"bootstrap_error","message":...}, exit 4.
 */

const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');
const readline = require('node:readline');

const METHOD = '/echo.Echo/Who';
const CALL_DEADLINE_MS = 5000;
const TRY_DEADLINE_MS = 2000;

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function codeName(code) {
  const entry = Object.entries(grpc.status).find(([, value]) => value === code);
  return entry ? entry[0] : String(code);
}

function callOnce(client, failFast) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + (failFast ? TRY_DEADLINE_MS : CALL_DEADLINE_MS));
    client.makeUnaryRequest(
      METHOD,
      (value) => value,
      (value) => value,
      Buffer.alloc(0),
      new grpc.Metadata({ waitForReady: !failFast }),
      { deadline },
      (error, reply) => {
        if (error) {
          resolve(`error: ${codeName(error.code)}: ${error.details}`);
        } else {
          resolve(reply.toString());
        }
      },
    );
  });
}

async function handle(clientFor, line) {
  const [command, argument, target] = line.trim().split(/\s+/, 3);
  if (command === 'call' || command === 'try') {
    const count = Number.parseInt(argument || '1', 10);
    const client = clientFor(target);
    const answers = [];
    for (let i = 0; i < count; i += 1) {
      answers.push(await callOnce(client, command === 'try'));
    }
    emit({ event: 'calls', answers });
  } else if (command) {
    emit({ event: 'error', message: `unknown command ${JSON.stringify(command)}` });
  }
}

function main() {
  const target = process.argv[2];
  const maxSeconds = Number(process.argv[3] || '120');
  if (!target) {
    process.stderr.write('usage: node xds_client.js TARGET [MAX_SECONDS]\n');
    process.exit(2);
  }
  // grpc-js-xds reads the bootstrap lazily and, when it is invalid, only fails the calls: read it
  // here (its own reader, of the pinned version) so an invalid one is reported.
  try {
    require('@grpc/grpc-js-xds/build/src/xds-bootstrap').loadBootstrapInfo();
  } catch (error) {
    emit({ event: 'bootstrap_error', message: error.message });
    process.exit(4);
  }
  xds.register();
  const clients = new Map();
  const clientFor = (wanted) => {
    const name = wanted || target;
    if (!clients.has(name)) {
      clients.set(name, new grpc.Client(name, grpc.credentials.createInsecure()));
    }
    return clients.get(name);
  };
  clientFor(target);
  const timer = setTimeout(() => {
    emit({ event: 'timeout', seconds: maxSeconds });
    process.exit(3);
  }, maxSeconds * 1000);
  emit({
    event: 'ready',
    node: process.version,
    grpc_js: require('@grpc/grpc-js/package.json').version,
    grpc_js_xds: require('@grpc/grpc-js-xds/package.json').version,
  });
  // Commands run one after another, in the order they arrive.
  let queue = Promise.resolve();
  const input = readline.createInterface({ input: process.stdin });
  input.on('line', (line) => {
    queue = queue.then(() => handle(clientFor, line));
  });
  input.on('close', () => {
    queue.then(() => {
      clearTimeout(timer);
      clients.forEach((client) => client.close());
      process.exit(0);
    });
  });
}

main();
