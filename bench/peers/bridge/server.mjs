// Benchmark peer: a matrix-appservice-bridge appservice whose controller only counts events.
//
//   node server.mjs --port P --hs-token T --as-token A --homeserver URL
//
// Listens on 127.0.0.1:P and prints `ready` once listening. On SIGTERM or SIGINT it prints
// `events N` (how many events its onEvent was called with) and exits 0.
// No stores (no files written) and no homeserver request at startup: URL may have nothing behind it.
import { parseArgs } from "node:util";
import { AppServiceRegistration, Bridge, Logger } from "matrix-appservice-bridge";

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    "hs-token": { type: "string" },
    "as-token": { type: "string" },
    homeserver: { type: "string" },
  },
  strict: true,
});
for (const name of ["port", "hs-token", "as-token", "homeserver"]) {
  if (!args[name]) {
    process.stderr.write(`missing --${name}\nusage: node server.mjs --port P --hs-token T --as-token A --homeserver URL\n`);
    process.exit(2);
  }
}
const port = Number(args.port);

// Warnings and errors only: the bridge's per-request access log (morgan) goes to info.
Logger.configure({ console: "warn" });

const registration = new AppServiceRegistration(`http://127.0.0.1:${port}`);
registration.setId("chatsender-bench-bridge");
registration.setHomeserverToken(args["hs-token"]);
registration.setAppServiceToken(args["as-token"]);
registration.setSenderLocalpart("benchbridge");
registration.addRegexPattern("users", "@benchbridge_.*:localhost", true);

let count = 0;
const bridge = new Bridge({
  homeserverUrl: args.homeserver,
  domain: "localhost",
  registration,
  disableStores: true, // no user/room/activity/event stores, implies disableContext
  logRequestOutcome: false,
  controller: {
    onEvent(_request) {
      count++;
    },
    onLog(text, isError) {
      if (isError) process.stderr.write(`${text}\n`);
    },
  },
});

function stop() {
  process.stdout.write(`events ${count}\n`);
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

// run() = initialise() (registration, bot-sdk objects, no network without bridgeEncryption)
// + listen() (matrix-appservice's express server).
await bridge.run(port, undefined, "127.0.0.1");
process.stdout.write("ready\n");
