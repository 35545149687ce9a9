// Signing in: a key file (picked, dropped or pasted), or a key made in this browser
// that the operator adds, after which the browser signs in by itself.

import { useSignal } from "@preact/signals";
import { useEffect } from "preact/hooks";

import { hasWebCryptoEd25519, publicKeyText } from "../lib/keys";
import { createKeyHere, notice, phase, saved, signInWithPem, signOut } from "../lib/state";
import { Copy, Key, Lock, Upload } from "./icons";
import { Button, ErrorLine } from "./ui";

function Card({ children, title }: { children: preact.ComponentChildren; title: string }) {
  return (
    <main class="flex min-h-full items-center justify-center p-4">
      <section
        aria-labelledby="signin-title"
        class="w-full max-w-md rounded-2xl border border-line bg-surface p-6 shadow-sm sm:p-8"
      >
        <div class="mb-5 flex items-center gap-3">
          <span class="inline-flex size-10 items-center justify-center rounded-xl bg-accent text-accent-ink">
            <Key />
          </span>
          <div>
            <p class="text-[13px] font-medium text-muted">ChatSender</p>
            <h1 id="signin-title" class="text-xl font-semibold">
              {title}
            </h1>
          </div>
        </div>
        {children}
      </section>
    </main>
  );
}

/** A warning when this page cannot keep the key as well as it should. */
function WeakKeyStoreNote() {
  const weak = useSignal(false);
  useEffect(() => {
    void hasWebCryptoEd25519().then((ok) => (weak.value = !ok));
  }, []);
  if (!weak.value) return null;
  return (
    <p class="mb-4 rounded-lg bg-amber-50 px-3 py-2 text-[13px] text-amber-900 dark:bg-amber-950/40 dark:text-amber-200">
      This page is not served over https, so the browser cannot lock your key away: it is kept as
      plain bytes. Use the https address when you can.
    </p>
  );
}

function KeyFile() {
  const busy = useSignal(false);
  const dragging = useSignal(false);
  const pasted = useSignal("");
  const use = async (text: string) => {
    busy.value = true;
    try {
      await signInWithPem(text);
    } finally {
      busy.value = false;
    }
  };
  const readFile = async (file: File | undefined) => {
    if (!file) return;
    if (file.size > 64 * 1024) {
      notice.value = "That file is far too large to be a key. Choose the .pem file the operator gave you.";
      return;
    }
    await use(await file.text());
  };
  return (
    <div class="space-y-4">
      <label
        class={`flex cursor-pointer flex-col items-center gap-2 rounded-xl border-2 border-dashed px-4 py-6 text-center transition-colors duration-150 ${
          dragging.value ? "border-accent bg-accent-soft" : "border-line hover:border-accent"
        }`}
        onDragOver={(e) => {
          e.preventDefault();
          dragging.value = true;
        }}
        onDragLeave={() => (dragging.value = false)}
        onDrop={(e) => {
          e.preventDefault();
          dragging.value = false;
          void readFile(e.dataTransfer?.files[0]);
        }}
      >
        <Upload class="text-accent" />
        <span class="font-medium">Choose your key file</span>
        <span class="text-[13px] text-muted">or drop it here (a .pem file)</span>
        <input
          type="file"
          accept=".pem,.key,.txt,application/x-pem-file"
          class="sr-only"
          disabled={busy.value}
          onChange={(e) => void readFile(e.currentTarget.files?.[0])}
        />
      </label>
      <details class="group rounded-lg border border-line">
        <summary class="cursor-pointer px-3 py-2.5 text-[13px] font-medium text-muted">
          Or paste the key
        </summary>
        <form
          class="space-y-2 px-3 pb-3"
          onSubmit={(e) => {
            e.preventDefault();
            void use(pasted.value);
          }}
        >
          <label class="sr-only" for="pasted-key">
            Private key (PEM)
          </label>
          <textarea
            id="pasted-key"
            rows={4}
            spellcheck={false}
            autocomplete="off"
            placeholder="-----BEGIN PRIVATE KEY-----"
            class="w-full rounded-lg border border-line bg-canvas px-3 py-2 font-mono text-[13px]"
            value={pasted.value}
            onInput={(e) => (pasted.value = e.currentTarget.value)}
          />
          <Button type="submit" disabled={busy.value || !pasted.value.trim()} class="w-full">
            Sign in
          </Button>
        </form>
      </details>
      {busy.value && (
        <p class="text-[13px] text-muted" role="status">
          Signing in…
        </p>
      )}
    </div>
  );
}

function CreateKey({ onCancel }: { onCancel: () => void }) {
  const name = useSignal("");
  const busy = useSignal(false);
  return (
    <form
      class="space-y-3"
      onSubmit={async (e) => {
        e.preventDefault();
        busy.value = true;
        try {
          await createKeyHere(name.value);
        } catch (error) {
          notice.value = `This browser could not make a key: ${error instanceof Error ? error.message : String(error)}`;
        } finally {
          busy.value = false;
        }
      }}
    >
      <p class="text-[13px] text-muted">
        The key is made and kept in this browser; the operator adds its public half, then you are
        signed in here.
      </p>
      <label class="block">
        <span class="text-[13px] font-medium">Your name (the operator uses it for your account)</span>
        <input
          class="mt-1 w-full rounded-lg border border-line bg-canvas px-3 py-2"
          value={name.value}
          maxLength={64}
          pattern="[a-z0-9._=\-/]*"
          title="lowercase letters, digits and . _ = - /"
          placeholder="e.g. alice"
          onInput={(e) => (name.value = e.currentTarget.value.toLowerCase())}
        />
      </label>
      <div class="flex gap-2">
        <Button variant="secondary" onClick={onCancel} class="flex-1">
          Back
        </Button>
        <Button type="submit" disabled={busy.value} class="flex-1">
          Create key
        </Button>
      </div>
    </form>
  );
}

/** The key made here, the command for the operator, and the quiet retrying. */
function Waiting() {
  const key = saved.value;
  const copied = useSignal(false);
  if (!key) return null;
  const publicKey = publicKeyText(key.key);
  const command = `./keygen add ${publicKey}${key.name ? ` --name ${key.name}` : ""}`;
  return (
    <Card title="Waiting for the operator">
      <div class="space-y-4">
        <p class="flex items-center gap-2 text-[13px] text-muted" role="status">
          <span class="size-2 shrink-0 animate-pulse rounded-full bg-amber-500" aria-hidden="true" />
          Your key is ready. Once the operator adds it, you are signed in here automatically.
        </p>
        <div>
          <p class="mb-1 text-[13px] font-medium">Send the operator this command:</p>
          <div class="flex items-start gap-2 rounded-lg bg-canvas p-3">
            <code class="flex-1 break-all font-mono text-[13px]" data-testid="keygen-command">
              {command}
            </code>
            <button
              type="button"
              class="inline-flex size-9 shrink-0 items-center justify-center rounded-md text-muted hover:bg-surface hover:text-ink"
              aria-label="Copy the command"
              onClick={async () => {
                await navigator.clipboard?.writeText(command);
                copied.value = true;
              }}
            >
              <Copy />
            </button>
          </div>
          <p class="mt-1 text-[13px] text-muted" aria-live="polite">
            {copied.value ? "Copied." : "It holds only the public half of your key."}
          </p>
        </div>
        {notice.value && <ErrorLine>{notice.value}</ErrorLine>}
        <Button variant="secondary" class="w-full" onClick={() => void signOut(true)}>
          Forget this key and start over
        </Button>
      </div>
    </Card>
  );
}

export function SignIn() {
  const creating = useSignal(false);
  if (phase.value === "waiting") return <Waiting />;
  return (
    <Card title={creating.value ? "Create a key in this browser" : "Sign in with your key"}>
      <WeakKeyStoreNote />
      {notice.value && (
        <div class="mb-4">
          <ErrorLine>{notice.value}</ErrorLine>
        </div>
      )}
      {creating.value ? (
        <CreateKey onCancel={() => (creating.value = false)} />
      ) : (
        <>
          <KeyFile />
          <div class="my-5 flex items-center gap-3 text-[13px] text-muted">
            <span class="h-px flex-1 bg-line" />
            no key yet?
            <span class="h-px flex-1 bg-line" />
          </div>
          <Button variant="secondary" class="w-full" onClick={() => (creating.value = true)}>
            Create a key in this browser
          </Button>
        </>
      )}
      <p class="mt-5 flex items-start gap-2 text-[13px] text-muted">
        <Lock class="mt-0.5 shrink-0" width="16" height="16" />
        Your key is your password: a file only you hold. It never leaves this device; the browser
        signs a one-time challenge with it.
      </p>
    </Card>
  );
}
