// The real stack for the browser tests: the Synapse that ./scripts/test started, a
// ChatSender daemon of its own (one of the test registrations, on a fresh SQLite
// database) serving web/dist, `chatsender keygen`, a matrix-nio user, and Chromium.
//
// Run on its own (`node e2e/stack.mjs`) it starts the daemon and prints its address,
// for looking at the client by hand.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "../..");
export const web = resolve(here, "..");

/** What ./scripts/test set up (target/test-env/env.json). */
export function testEnv() {
  const path = process.env.CHATSENDER_TEST_ENV ?? join(root, "target/test-env/env.json");
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`${path}: ${error.message}. The browser tests need the Synapse that ./scripts/test starts.`);
  }
}

/** Chromium's switches for headless runs here (no sandbox: the tests may run as root). */
export const chromiumFlags = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const binary = () => join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug/chatsender");

/** Waits until `check` returns something truthy, polling; fails after `ms`. */
export async function waitUntil(what, check, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A daemon on test registration `slot`, serving web/dist, on a fresh database. */
export async function startDaemon(slot) {
  const env = testEnv();
  const config = join(env.dir, `slot${slot}.yaml`);
  const listen = /^listen: (.+)$/m.exec(readFileSync(config, "utf8"))[1].trim();
  const scratch = mkdtempSync(join(tmpdir(), "chatsender-e2e-"));
  const url = `http://${listen}`;
  const vars = {
    ...process.env,
    CHATSENDER__DATABASE__URL: `sqlite://${join(scratch, "chatsender.db")}`,
    CHATSENDER__WEB__STATIC_DIR: join(web, "dist"),
    CHATSENDER__AUTH__ORIGIN: url,
    CHATSENDER__REDIS__URL: "",
    RUST_LOG: process.env.RUST_LOG ?? "warn",
  };
  const child = spawn(binary(), ["-c", config, "serve"], { env: vars, stdio: ["ignore", "inherit", "inherit"] });
  await waitUntil("the daemon is ready", async () => (await fetch(`${url}/ready`)).ok);
  const keygen = (...args) =>
    execFileSync(binary(), ["-c", config, "keygen", ...args], { env: vars, encoding: "utf8" });
  return {
    url,
    scratch,
    keygen,
    /** `keygen generate --name NAME`: the key's JSON, with its PEM file. */
    generate(name) {
      const [key] = JSON.parse(keygen("generate", "1", "--json", "--name", name, "--out", join(scratch, "keys")));
      return { ...key, pem: readFileSync(key.private_key_file, "utf8") };
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

/** An ordinary Matrix user registered on the test Synapse. */
export async function registerMatrixUser(prefix) {
  const env = testEnv();
  const username = `${prefix}${Math.random().toString(16).slice(2, 10)}`;
  const response = await fetch(`${env.synapse_url}/_matrix/client/v3/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password: "correct horse battery staple", auth: { type: "m.login.dummy" } }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`registering ${username}: ${JSON.stringify(body)}`);
  return { userId: body.user_id, token: body.access_token };
}

/** matrix-nio steered one command at a time (tests/matrix-client/nio_user.py). */
export function startNio(user) {
  const env = testEnv();
  const child = spawn(
    env.nio_python,
    [join(root, "tests/matrix-client/nio_user.py"), "--homeserver", env.synapse_url, "--user-id", user.userId, "--token", user.token],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async ask(command) {
      child.stdin.write(`${JSON.stringify(command)}\n`);
      const { value, done } = await lines.next();
      if (done) throw new Error(`matrix-nio ended before answering ${JSON.stringify(command)}`);
      const answer = JSON.parse(value);
      if (answer.error) throw new Error(`matrix-nio: ${answer.error}`);
      return answer;
    },
    stop() {
      child.kill();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const daemon = await startDaemon(Number(process.env.SLOT ?? 4));
  const alice = daemon.generate("alice");
  console.log(`ChatSender at ${daemon.url}; a key for alice: ${alice.private_key_file}`);
  process.on("SIGINT", () => void daemon.stop().then(() => process.exit(0)));
}
