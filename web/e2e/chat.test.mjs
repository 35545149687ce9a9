// The web client end to end, in Debian's Chromium driven by playwright-core, against a
// real daemon serving web/dist and the real Synapse of ./scripts/test: signing in
// with a key file and with a key made in the browser, two people talking live with
// typing and unread counts, a matrix-nio user on the other side, a message written
// offline, paging back through history, the keyboard, a reload, a new display name,
// leaving a group, a revocation; axe-core on every screen, and screenshots of each at 375 px and
// 1440 px, light and dark, in web/test-results/screenshots/.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test as nodeTest } from "node:test";

import { chromium } from "playwright-core";

import { chromiumFlags, registerMatrixUser, startDaemon, startNio, waitUntil, web } from "./stack.mjs";

const SHOTS = join(web, "test-results/screenshots");
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const SLOT = Number(process.env.CHATSENDER_E2E_SLOT ?? 1);
const WAIT = 30_000;

/** Each step gets two minutes at most: a hang fails it instead of the whole run. */
const test = (name, fn) => nodeTest(name, { timeout: 120_000 }, fn);

let daemon;
const contexts = [];
/** Errors any page raised (script errors, CSP violations): there must be none. */
const pageErrors = [];

before(async () => {
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  daemon = await startDaemon(SLOT);
});

after(async () => {
  people.carol?.stop();
  for (const context of contexts) await context.close().catch(() => {});
  await daemon?.stop();
});

/** A fresh Chromium profile for one person. */
async function person(name, viewport = { width: 1440, height: 900 }) {
  const dir = mkdtempSync(join(tmpdir(), `chatsender-${name}-`));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: chromiumFlags,
    viewport,
    colorScheme: "light",
    reducedMotion: "reduce",
  });
  contexts.push(context);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) pageErrors.push(`${name}: ${m.text()}`);
  });
  await page.goto(daemon.url);
  return page;
}

/** Switches the colour scheme (the pages run with reduced motion: no transitions to
 *  wait for). */
async function scheme(page, colorScheme) {
  await page.emulateMedia({ colorScheme });
}

/** axe-core on the page as it is: no violation of impact serious or critical. */
async function audit(page, screen) {
  for (const colorScheme of ["light", "dark"]) {
    await scheme(page, colorScheme);
    await page.evaluate(AXE);
    const violations = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const result = await axe.run(document, { resultTypes: ["violations"] });
      return result.violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    });
    assert.deepEqual(violations, [], `axe on “${screen}” (${colorScheme})`);
  }
  await scheme(page, "light");
}

/** Screenshots of the screen at 375 px and 1440 px, light and dark. */
async function shoot(page, screen) {
  const original = page.viewportSize();
  for (const [width, height] of [
    [375, 812],
    [1440, 900],
  ]) {
    await page.setViewportSize({ width, height });
    for (const colorScheme of ["light", "dark"]) {
      await scheme(page, colorScheme);
      await page.screenshot({ path: join(SHOTS, `${screen}-${width}-${colorScheme}.png`) });
    }
  }
  await scheme(page, "light");
  await page.setViewportSize(original);
}

/** Audits the screen and photographs it. */
async function screen(page, name) {
  await audit(page, name);
  await shoot(page, name);
}

/** A message in the open conversation. */
const message = (page, text) =>
  page.getByLabel("Messages").getByText(text, typeof text === "string" ? { exact: true } : {});

async function signInWithFile(page, key) {
  const file = join(daemon.scratch, `${key.key_id}.upload.pem`);
  writeFileSync(file, key.pem);
  await page.locator("input[type=file]").setInputFiles(file);
  await page.getByRole("navigation", { name: "Conversations" }).waitFor();
}

const people = {};

test("a key file signs in, and the browser keeps the key as a non-extractable CryptoKey", async () => {
  const alice = daemon.generate("alice");
  const page = await person("alice");
  await page.getByRole("heading", { name: "Sign in with your key" }).waitFor();
  await screen(page, "sign-in");
  await signInWithFile(page, alice);
  await page.getByText("No conversations yet").waitFor();
  await screen(page, "conversations-empty");
  const kept = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("chatsender");
        open.onsuccess = () => {
          const get = open.result.transaction("keys").objectStore("keys").get("current");
          get.onsuccess = () =>
            resolve({ kind: get.result.key.kind, extractable: get.result.key.privateKey.extractable });
          get.onerror = () => reject(get.error);
        };
        open.onerror = () => reject(open.error);
      }),
  );
  assert.deepEqual(kept, { kind: "webcrypto", extractable: false });
  people.alice = { page, key: alice };
});

test("a wrong file is refused with a message that says what it is", async () => {
  const page = await person("stranger");
  // Dropped on the page, as from a file manager.
  const text = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
  const dropped = await page.evaluateHandle((pem) => {
    const data = new DataTransfer();
    data.items.add(new File([pem], "public.pem", { type: "application/x-pem-file" }));
    return data;
  }, text);
  const zone = page.locator("label", { hasText: "or drop it here" });
  await zone.dispatchEvent("dragover", { dataTransfer: dropped });
  await zone.dispatchEvent("drop", { dataTransfer: dropped });
  await page.getByRole("alert").filter({ hasText: "This is a public key" }).waitFor();
  await screen(page, "sign-in-wrong-file");
  // A well-formed key the server does not know.
  await page.getByText("Or paste the key").click();
  const unknown = daemon.generate("unknown");
  daemon.keygen("revoke", unknown.fingerprint, "--yes");
  await page.getByLabel("Private key (PEM)").fill(unknown.pem);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "does not accept this key" }).waitFor();
});

test("two people start a conversation and talk live, with typing shown", async () => {
  const bob = daemon.generate("bob");
  const page = await person("bob");
  await page.getByText("Or paste the key").click();
  await page.getByLabel("Private key (PEM)").fill(bob.pem);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Conversations" }).waitFor();
  people.bob = { page, key: bob };
  const alice = people.alice.page;

  await alice.getByRole("button", { name: "New conversation" }).first().click();
  const dialog = alice.getByRole("dialog");
  await dialog.getByRole("searchbox").fill("bob");
  await dialog.getByRole("checkbox").first().check();
  await screen(alice, "new-conversation");
  await alice.getByRole("button", { name: "Start conversation" }).click();
  await alice.getByRole("heading", { name: "bob", level: 1 }).waitFor();

  await page.getByRole("button", { name: "Accept" }).waitFor();
  await screen(page, "invite");
  await page.getByRole("button", { name: "Accept" }).click();
  await page.getByRole("heading", { name: "alice", level: 1 }).waitFor();

  await alice.getByRole("textbox", { name: "Message" }).fill("Hello Bob");
  await alice.getByRole("textbox", { name: "Message" }).press("Enter");
  await message(page, "Hello Bob").waitFor();

  await page.getByRole("textbox", { name: "Message" }).pressSequentially("Hi Al");
  await alice.getByText("bob is typing…").waitFor();
  await page.getByRole("textbox", { name: "Message" }).pressSequentially("ice");
  await page.getByRole("textbox", { name: "Message" }).press("Shift+Enter");
  await page.getByRole("textbox", { name: "Message" }).pressSequentially("How are you?");
  await page.getByRole("textbox", { name: "Message" }).press("Enter");
  await message(alice, /^Hi Alice\s+How are you\?$/).waitFor();
  await alice.getByText("Seen by bob").waitFor();
  await screen(alice, "conversation");
});

test("unread counts show in the list and the title, and clear on reading", async () => {
  const bob = people.bob.page;
  await bob.setViewportSize({ width: 375, height: 812 });
  await bob.getByRole("button", { name: "Back to conversations" }).click();
  const alice = people.alice.page;
  for (const text of ["Are you there?", "Lunch at noon"]) {
    await alice.getByRole("textbox", { name: "Message" }).fill(text);
    await alice.getByRole("textbox", { name: "Message" }).press("Enter");
  }
  await bob.getByLabel("2 unread").waitFor();
  await waitUntil("the title counts 2 unread", async () => (await bob.title()) === "(2) ChatSender");
  await screen(bob, "conversations-unread");
  await bob.getByRole("button", { name: /alice/ }).click();
  await message(bob, "Lunch at noon").waitFor();
  await waitUntil("the title is clear", async () => (await bob.title()) === "ChatSender");
  await bob.getByRole("button", { name: "Back to conversations" }).click();
  assert.equal(await bob.getByLabel(/unread$/).count(), 0);
  await bob.setViewportSize({ width: 1440, height: 900 });
});

test("an ordinary Matrix client (matrix-nio) talks with the browser", async () => {
  const alice = people.alice.page;
  const carol = await registerMatrixUser("carol");
  const nio = startNio(carol);
  people.carol = nio;
  {
    await alice.getByRole("button", { name: "Members and invites" }).click();
    await alice.getByRole("dialog").waitFor();
    await screen(alice, "members");
    await alice.getByPlaceholder("@someone:example.org").fill(carol.userId);
    await alice.getByRole("button", { name: "Invite", exact: true }).click();
    await alice.getByText(`Invited ${carol.userId}.`).waitFor();
    await alice.keyboard.press("Escape");
    const room = decodeURIComponent(new URL(alice.url()).hash.slice("#room=".length));
    await nio.ask({ cmd: "join", room });
    await nio.ask({ cmd: "send", room, body: "hello from nio" });
    await message(alice, "hello from nio").waitFor();
    await alice.getByRole("textbox", { name: "Message" }).fill("Welcome, Carol");
    await alice.getByRole("textbox", { name: "Message" }).press("Enter");
    await nio.ask({ cmd: "wait_message", room, body: "Welcome, Carol" });
    people.room = room;
  }
});

test("a message written offline shows as not sent, and goes by itself once back online", async () => {
  const alice = people.alice.page;
  const bob = people.bob.page;
  await bob.getByRole("button", { name: /alice/ }).click();
  await alice.context().setOffline(true);
  await alice.getByText("You are offline").waitFor();
  await alice.getByRole("textbox", { name: "Message" }).fill("written offline");
  await alice.getByRole("textbox", { name: "Message" }).press("Enter");
  await alice.getByRole("alert").filter({ hasText: "Not sent" }).waitFor();
  await screen(alice, "send-failed");
  await alice.context().setOffline(false);
  await message(bob, "written offline").waitFor();
  await message(alice, "written offline").waitFor();
  await alice.getByRole("alert").filter({ hasText: "Not sent" }).waitFor({ state: "detached" });
  const copies = await bob.getByLabel("Messages").getByText("written offline", { exact: true }).count();
  assert.equal(copies, 1, "sent once");
});

test("scrolling up pages in older messages and keeps the reader's place", async () => {
  const alice = people.alice.page;
  for (let i = 1; i <= 70; i++) {
    await people.carol.ask({ cmd: "send", room: people.room, body: `older ${i}` });
  }
  await alice.reload();
  await message(alice, "older 70").waitFor();
  const list = alice.getByLabel("Messages");
  const first = () => list.locator("ol > li").first().innerText();
  const before = await first();
  assert.ok(!before.includes("Hello Bob"), "the first page holds only the newest messages");
  const anchor = list.locator("ol > li").first();
  await anchor.evaluate((li) => li.setAttribute("data-anchor", "1"));
  await list.evaluate((el) => (el.scrollTop = 0));
  await waitUntil("older messages come in above", async () => (await first()) !== before);
  const kept = await list.locator("[data-anchor]").boundingBox();
  const box = await list.boundingBox();
  assert.ok(kept && box && kept.y >= box.y - 1 && kept.y < box.y + box.height, "the reader's message stays in view");
  await waitUntil("the start of the conversation is reached", async () => {
    await list.evaluate((el) => (el.scrollTop = 0));
    return (await list.getByText("This is the start of the conversation.").count()) > 0;
  });
  const texts = await list.locator("ol > li p.whitespace-pre-wrap").allInnerTexts();
  assert.equal(new Set(texts).size, texts.length, "no message twice");
  assert.equal(texts[0], "Hello Bob", "down to the first message");
});

test("a reload keeps the session and the key", async () => {
  const alice = people.alice.page;
  await alice.reload();
  await message(alice, "older 70").waitFor();
  await alice.getByRole("button", { name: "Settings" }).click();
  await alice.getByRole("dialog").waitFor();
  await screen(alice, "settings");
  await alice.keyboard.press("Escape");
  await alice.getByRole("dialog").waitFor({ state: "detached" });
});

test("a key created in the browser signs in once the operator adds it", async () => {
  const page = await person("dave");
  await page.getByRole("button", { name: "Create a key in this browser" }).click();
  await page.getByLabel(/Your name/).fill("dave");
  await screen(page, "create-key");
  await page.getByRole("button", { name: "Create key" }).click();
  const command = await page.getByTestId("keygen-command").textContent();
  const match = /^\.\/keygen add (\S+) --name dave$/.exec(command ?? "");
  assert.ok(match, `the command to give the operator: ${command}`);
  await screen(page, "waiting-for-operator");
  daemon.keygen("add", match[1], "--name", "dave");
  await page.getByRole("navigation", { name: "Conversations" }).waitFor();
});

test("the keyboard moves between conversations and the filter narrows the list", async () => {
  const alice = people.alice.page;
  await alice.getByRole("button", { name: "New conversation" }).first().click();
  const dialog = alice.getByRole("dialog");
  await dialog.getByRole("searchbox").fill("dave");
  await dialog.getByRole("checkbox").first().check();
  await dialog.getByLabel(/Group name/).fill("Book club");
  await dialog.getByRole("button", { name: "Start conversation" }).click();
  await alice.getByRole("heading", { name: "Book club", level: 1 }).waitFor();
  await alice.keyboard.press("Alt+ArrowDown");
  await alice.getByRole("heading", { name: /bob/, level: 1 }).waitFor();
  await alice.keyboard.press("Alt+ArrowUp");
  await alice.getByRole("heading", { name: "Book club", level: 1 }).waitFor();
  await alice.keyboard.press("Control+k");
  await alice.keyboard.type("book");
  assert.equal(await alice.getByLabel("Filter conversations").inputValue(), "book", "Ctrl+K put the typing in the filter");
  const list = alice.getByRole("navigation", { name: "Conversations" });
  await waitUntil("the filter leaves one conversation", async () => (await list.locator("li button[data-room]").count()) === 1);
  await alice.keyboard.press("Escape");
  await alice.getByLabel("Filter conversations").fill("");
});

test("a new display name shows to the others, and leaving a group takes it off the list", async () => {
  const alice = people.alice.page;
  await alice.getByRole("button", { name: "Settings" }).click();
  const settings = alice.getByRole("dialog");
  await settings.getByLabel("Display name").fill("Alice Liddell");
  await settings.getByRole("button", { name: "Save name" }).click();
  await settings.getByText("Saved.").waitFor();
  await alice.keyboard.press("Escape");
  await alice.getByText("Alice Liddell", { exact: true }).first().waitFor();
  const bobList = people.bob.page.getByRole("navigation", { name: "Conversations" });
  await bobList.getByRole("button", { name: /Alice Liddell/ }).waitFor();

  const list = alice.getByRole("navigation", { name: "Conversations" });
  await list.getByRole("button", { name: /Book club/ }).click();
  await alice.getByRole("button", { name: "Members and invites" }).click();
  await alice.getByRole("button", { name: "Leave conversation" }).click();
  await screen(alice, "leave-confirm");
  await alice.getByRole("button", { name: "Stay" }).click();
  await alice.getByRole("button", { name: "Leave conversation" }).click();
  await alice.getByRole("button", { name: "Leave", exact: true }).click();
  await alice.getByRole("dialog").waitFor({ state: "detached" });
  await list.getByRole("button", { name: /Book club/ }).waitFor({ state: "detached" });
  await list.getByRole("button", { name: /bob/ }).waitFor();
});

test("revoking a key signs that browser out at its next action, saying why", async () => {
  const bob = people.bob.page;
  await bob.getByRole("button", { name: /Alice Liddell/ }).click();
  daemon.keygen("revoke", people.bob.key.fingerprint, "--yes");
  await bob.getByRole("textbox", { name: "Message" }).fill("still here?");
  await bob.getByRole("textbox", { name: "Message" }).press("Enter");
  await bob.getByRole("alert").filter({ hasText: "no longer accepted" }).waitFor();
  await bob.getByRole("heading", { name: "Sign in with your key" }).waitFor();
  await screen(bob, "signed-out-revoked");
});

test("no page raised a script error or a Content-Security-Policy violation", () => {
  assert.deepEqual(pageErrors, []);
});
