// Keys: reading the private key file `keygen generate` writes (PKCS#8 PEM, Ed25519),
// creating a key in the browser, and signing. With WebCrypto (a secure context:
// https, localhost) the key is a non-extractable CryptoKey; elsewhere @noble/ed25519
// signs with the key's bytes, loaded only then.

import { encodeBase64 } from "./b64";

/** What went wrong with a key file, said for the person holding it. */
export class KeyFileError extends Error {}

/** A key as the browser keeps it (in IndexedDB). */
export type StoredKey =
  | { kind: "webcrypto"; privateKey: CryptoKey; publicKey: Uint8Array }
  | { kind: "bytes"; seed: Uint8Array; publicKey: Uint8Array };

const ED25519_OID = [0x06, 0x03, 0x2b, 0x65, 0x70];
const PKCS8_V1_PREFIX = [
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, ...ED25519_OID, 0x04, 0x22, 0x04, 0x20,
];

/** One DER element: its tag and content, and where the next one starts. */
function element(der: Uint8Array, at: number): { tag: number; content: Uint8Array; next: number } {
  if (at + 2 > der.length) throw new KeyFileError("The key file is cut short.");
  const tag = der[at];
  let length = der[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes < 1 || bytes > 2) throw new KeyFileError("The key file is not a valid key.");
    length = 0;
    for (let i = 0; i < bytes; i++) length = (length << 8) | der[start + i];
    start += bytes;
  }
  if (start + length > der.length) throw new KeyFileError("The key file is cut short.");
  return { tag, content: der.subarray(start, start + length), next: start + length };
}

/** The 32-byte seed of the Ed25519 private key in a PKCS#8 PEM text. */
export function parsePrivateKeyPem(text: string): Uint8Array {
  const kind = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
  if (kind === undefined) {
    throw new KeyFileError(
      "This is not a key file. Choose the .pem file the operator gave you; it starts with -----BEGIN PRIVATE KEY-----.",
    );
  }
  if (kind === "PUBLIC KEY") {
    throw new KeyFileError(
      "This is a public key. Signing in needs the private key file (<key id>.pem) the operator gave you.",
    );
  }
  if (kind === "ENCRYPTED PRIVATE KEY") {
    throw new KeyFileError(
      "This key file is encrypted. Decrypt it first: openssl pkey -in key.pem -out plain.pem",
    );
  }
  if (kind !== "PRIVATE KEY") {
    throw new KeyFileError(`This is a ${kind.toLowerCase()}, not a ChatSender key (PKCS#8, Ed25519).`);
  }
  const body = /-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/.exec(text)?.[1];
  if (body === undefined) throw new KeyFileError("The key file is cut short: its END line is missing.");
  let der: Uint8Array;
  try {
    der = Uint8Array.from(atob(body.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw new KeyFileError("The key file is damaged: its body is not base64.");
  }
  const outer = element(der, 0);
  if (outer.tag !== 0x30) throw new KeyFileError("The key file is not a valid key.");
  const version = element(outer.content, 0);
  const algorithm = element(outer.content, version.next);
  const oid = element(algorithm.content, 0);
  const isEd25519 =
    oid.tag === 0x06 && oid.content.length === 3 && oid.content.every((b, i) => b === ED25519_OID[2 + i]);
  if (!isEd25519) throw new KeyFileError("This is not an Ed25519 key; ChatSender keys are Ed25519.");
  const wrapped = element(outer.content, algorithm.next);
  const seed = element(wrapped.content, 0);
  if (wrapped.tag !== 0x04 || seed.tag !== 0x04 || seed.content.length !== 32) {
    throw new KeyFileError("The key file is not a valid Ed25519 private key.");
  }
  return seed.content.slice();
}

/** The PKCS#8 encoding of a seed, as WebCrypto imports it. */
export function pkcs8(seed: Uint8Array): Uint8Array<ArrayBuffer> {
  const der = new Uint8Array(PKCS8_V1_PREFIX.length + 32);
  der.set(PKCS8_V1_PREFIX);
  der.set(seed, PKCS8_V1_PREFIX.length);
  return der;
}

const ED25519 = { name: "Ed25519" };
let webCrypto: Promise<boolean> | undefined;

/** Whether this browser signs with Ed25519 in WebCrypto (only in a secure context). */
export function hasWebCryptoEd25519(): Promise<boolean> {
  webCrypto ??= (async () => {
    if (!globalThis.crypto?.subtle) return false;
    try {
      await crypto.subtle.generateKey(ED25519, false, ["sign", "verify"]);
      return true;
    } catch {
      return false;
    }
  })();
  return webCrypto;
}

function fromBase64Url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

async function noble() {
  return (await import("./noble")).ed;
}

/** Turns a key file's seed into the key the browser keeps; the seed is wiped. */
export async function importSeed(seed: Uint8Array): Promise<StoredKey> {
  try {
    if (await hasWebCryptoEd25519()) {
      const der = pkcs8(seed);
      // The public key comes out of a throwaway extractable copy; the kept key is not.
      const copy = await crypto.subtle.importKey("pkcs8", der, ED25519, true, ["sign"]);
      const jwk = await crypto.subtle.exportKey("jwk", copy);
      const privateKey = await crypto.subtle.importKey("pkcs8", der, ED25519, false, ["sign"]);
      der.fill(0);
      return { kind: "webcrypto", privateKey, publicKey: fromBase64Url(jwk.x ?? "") };
    }
    const ed = await noble();
    return { kind: "bytes", seed: seed.slice(), publicKey: ed.getPublicKey(seed) };
  } finally {
    seed.fill(0);
  }
}

/** A new key, made in this browser. */
export async function createKey(): Promise<StoredKey> {
  if (await hasWebCryptoEd25519()) {
    const pair = (await crypto.subtle.generateKey(ED25519, false, ["sign", "verify"])) as CryptoKeyPair;
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return { kind: "webcrypto", privateKey: pair.privateKey, publicKey };
  }
  const ed = await noble();
  const { secretKey, publicKey } = ed.keygen();
  return { kind: "bytes", seed: secretKey, publicKey };
}

/** Signs `message` (its UTF-8 bytes) with the key. */
export async function sign(key: StoredKey, message: string): Promise<Uint8Array> {
  const bytes = new TextEncoder().encode(message);
  if (key.kind === "webcrypto") {
    return new Uint8Array(await crypto.subtle.sign(ED25519, key.privateKey, bytes));
  }
  return (await noble()).sign(bytes, key.seed);
}

/** The key's public half as the operator types it (`./keygen add …`). */
export function publicKeyText(key: StoredKey): string {
  return encodeBase64(key.publicKey);
}
