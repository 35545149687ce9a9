// The README's run command as a newcomer meets it: ./scripts/run in a fresh copy of
// the repository (what a clone of this working tree holds) in a scratch directory.
// It must print the address to open and a key file; that key signs in through the
// API and in Chromium, ./keygen works against what it started, Ctrl-C stops all of
// it, a second run reuses the state and the key, and a taken port is named.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { sign, createPrivateKey } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test as nodeTest } from "node:test";

import { chromium } from "playwright-core";

import { chromiumFlags, root, waitUntil, web } from "./stack.mjs";

const test = (name, fn) => nodeTest(name, { timeout: 600_000 }, fn);

let clone;
let ports;
const runs = [];

/** A free port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The files a clone of this working tree holds, copied with their modes. */
function copyWorkingTree(to) {
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
  })
    .split("\0")
    .filter(Boolean);
  for (const file of files) {
    const from = join(root, file);
    if (!existsSync(from)) continue; // deleted, not yet committed
    mkdirSync(dirname(join(to, file)), { recursive: true });
    copyFileSync(from, join(to, file));
    chmodSync(join(to, file), statSync(from).mode);
  }
}

/** The environment a newcomer's shell has, with this run's ports. */
function runEnv() {
  const daemon = `http://127.0.0.1:${ports.daemon}`;
  return {
    ...process.env,
    // The daemon is built once per machine: share the build with this checkout.
    CARGO_TARGET_DIR: process.env.CARGO_TARGET_DIR ?? join(root, "target"),
    CHATSENDER__LISTEN: `127.0.0.1:${ports.daemon}`,
    CHATSENDER__APPSERVICE__ADDRESS: daemon,
    CHATSENDER__AUTH__ORIGIN: daemon,
    CHATSENDER__HOMESERVER__URL: `http://127.0.0.1:${ports.synapse}`,
    CHATSENDER_FIRST_USER: "newcomer",
    CI: "",
  };
}

/** Starts ./scripts/run; resolves with what it printed once it says where to go. */
function startRun() {
  const child = spawn("./scripts/run", [], { cwd: clone, env: runEnv(), stdio: ["ignore", "pipe", "pipe"] });
  const run = { child, out: "", err: "", exited: null };
  child.stdout.on("data", (d) => (run.out += d));
  child.stderr.on("data", (d) => (run.err += d));
  run.done = new Promise((resolve) => child.once("exit", (code, signal) => resolve((run.exited = { code, signal }))));
  runs.push(run);
  return run;
}

async function printed(run) {
  await waitUntil(
    "./scripts/run prints where to sign in",
    async () => {
      if (run.exited) throw new Error(`./scripts/run exited ${JSON.stringify(run.exited)}:\n${run.err}\n${run.out}`);
      return /Ctrl-C stops/.test(run.out);
    },
    540_000,
  ).catch((error) => {
    throw new Error(`${error.message}\n--- stderr:\n${run.err}\n--- stdout:\n${run.out}`);
  });
  const url = /^ {2}Open +(\S+)$/m.exec(run.out)?.[1];
  const key = /^ {2}Sign in +with the key file (\S+)$/m.exec(run.out)?.[1];
  assert.ok(url && key, `the address and the key file in:\n${run.out}`);
  return { url, key };
}

/** Ctrl-C: SIGINT to the script; it stops what it started. */
async function interrupt(run) {
  run.child.kill("SIGINT");
  await run.done;
  await waitUntil("Synapse has stopped", async () => !existsSync(join(clone, "data/synapse/synapse.pid")), 30_000);
  for (const port of [ports.daemon, ports.synapse]) {
    await waitUntil(`port ${port} is free again`, () => portFree(port), 30_000);
  }
}

function portFree(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

async function loginThroughApi(url, keyFile) {
  const key = createPrivateKey(readFileSync(keyFile, "utf8"));
  const publicKey = key.export({ format: "jwk" }).x; // base64url of the 32 bytes
  const challenge = await (
    await fetch(`${url}/api/v1/auth/challenge`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ public_key: Buffer.from(publicKey, "base64url").toString("base64") }),
    })
  ).json();
  assert.ok(challenge.challenge_id, JSON.stringify(challenge));
  const signature = sign(null, Buffer.from(challenge.message), key).toString("base64");
  const session = await fetch(`${url}/api/v1/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ challenge_id: challenge.challenge_id, signature }),
  });
  assert.equal(session.status, 200);
  const { access_token: token } = await session.json();
  const me = await (await fetch(`${url}/api/v1/me`, { headers: { Authorization: `Bearer ${token}` } })).json();
  return me;
}

before(async () => {
  clone = mkdtempSync(join(tmpdir(), "chatsender-quickstart-"));
  copyWorkingTree(clone);
  ports = { daemon: await freePort(), synapse: await freePort() };
});

after(async () => {
  for (const run of runs) if (!run.exited) await interrupt(run).catch(() => run.child.kill("SIGKILL"));
  rmSync(clone, { recursive: true, force: true });
});

test("the run command starts everything and prints an address and a key that sign in", async () => {
  const run = startRun();
  const { url, key } = await printed(run);
  assert.equal(url, `http://127.0.0.1:${ports.daemon}`);
  assert.ok(key.startsWith(join(clone, "keys")), key);

  const me = await loginThroughApi(url, key);
  assert.equal(me.user_id, "@chatsender_newcomer:localhost");

  const listed = JSON.parse(
    execFileSync("./keygen", ["list", "--json"], { cwd: clone, env: runEnv(), encoding: "utf8" }),
  );
  assert.deepEqual(
    listed.map((k) => k.user_id),
    ["@chatsender_newcomer:localhost"],
    "./keygen sees what the run command made",
  );

  const profile = mkdtempSync(join(tmpdir(), "chatsender-quickstart-browser-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: chromiumFlags,
    viewport: { width: 1440, height: 900 },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(30_000);
    await page.goto(url);
    await page.locator("input[type=file]").setInputFiles(key);
    await page.getByRole("navigation", { name: "Conversations" }).waitFor();
    await page.getByText("No conversations yet").waitFor();
    mkdirSync(join(web, "test-results/screenshots"), { recursive: true });
    await page.screenshot({ path: join(web, "test-results/screenshots/quickstart-signed-in-1440-light.png") });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }

  await interrupt(run);
  assert.equal(run.exited.code, 130, `Ctrl-C ends the run:\n${run.err}`);
});

test("a second run reuses the state and the key", async () => {
  const first = readFileSync(join(clone, "data/first-key"), "utf8");
  const run = startRun();
  const { url, key } = await printed(run);
  assert.equal(key, join(clone, first.trim()));
  assert.doesNotMatch(run.err, /Making a first key/);
  const listed = JSON.parse(
    execFileSync("./keygen", ["list", "--json"], { cwd: clone, env: runEnv(), encoding: "utf8" }),
  );
  assert.equal(listed.length, 1, "no second key");
  const me = await loginThroughApi(url, key);
  assert.equal(me.user_id, "@chatsender_newcomer:localhost");
  await interrupt(run);
});

test("a taken port is named, and nothing is left running", async () => {
  const squatter = createServer();
  await new Promise((resolve) => squatter.listen(ports.daemon, "127.0.0.1", resolve));
  try {
    const run = startRun();
    const { code } = await run.done;
    assert.notEqual(code, 0);
    assert.match(run.err, new RegExp(`port ${ports.daemon} \\(the daemon, listen in config.yaml\\) is taken`));
    assert.ok(await portFree(ports.synapse), "Synapse was not left running");
  } finally {
    await new Promise((resolve) => squatter.close(resolve));
  }
});
