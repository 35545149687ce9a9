// Where the browser keeps the key between visits: IndexedDB. A WebCrypto key is
// stored as the non-extractable CryptoKey itself; nothing here is ever sent anywhere.

import type { StoredKey } from "./keys";

/** The key of this browser, with what the sign-in screen needs to know of it. */
export interface SavedKey {
  key: StoredKey;
  /** Made here (its holder waits for the operator to add it) or imported from a file. */
  createdHere: boolean;
  /** The name its holder gave when creating it (for the `keygen add` command). */
  name?: string;
}

const DATABASE = "chatsender";
const STORE = "keys";
const CURRENT = "current";

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB is not available"));
  });
}

async function run<T>(mode: IDBTransactionMode, work: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
  } finally {
    db.close();
  }
}

/** The key kept in this browser, if any. */
export async function loadKey(): Promise<SavedKey | undefined> {
  return (await run("readonly", (s) => s.get(CURRENT))) as SavedKey | undefined;
}

/** Keeps `saved` as this browser's key (replacing any other). */
export async function saveKey(saved: SavedKey): Promise<void> {
  await run("readwrite", (s) => s.put(saved, CURRENT));
}

/** Forgets this browser's key. */
export async function forgetKey(): Promise<void> {
  await run("readwrite", (s) => s.delete(CURRENT));
}
