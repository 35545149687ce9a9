// Prints what a signed-in user downloads (the page's scripts, their imports and its
// styles, gzipped) against the 80 KB budget; fails the build over it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = 80 * 1024;
const dist = new URL("../dist/", import.meta.url).pathname;
const html = readFileSync(join(dist, "index.html"), "utf8");
const seen = new Set();
const queue = [...html.matchAll(/(?:src|href)="(\/_astro\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
while (queue.length) {
  const path = queue.shift();
  if (seen.has(path)) continue;
  seen.add(path);
  if (!path.endsWith(".js")) continue;
  const code = readFileSync(join(dist, path), "utf8");
  // Static imports only: a dynamic import() (the fallback signer) loads only when needed.
  for (const m of code.matchAll(/(?:^|[;}\s])import\s*(?:[\w$*{}\s,]+from\s*)?["'](\.\/[^"']+)["']/g)) {
    queue.push(join("/_astro", m[1]));
  }
}
let total = 0;
const rows = [...seen].sort().map((path) => {
  const size = gzipSync(readFileSync(join(dist, path))).length;
  total += size;
  return `  ${(size / 1024).toFixed(1).padStart(6)} KB  ${path}`;
});
console.log(`web: a signed-in user loads ${(total / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB):`);
console.log(rows.join("\n"));
if (total > BUDGET) {
  console.error(`web: over the budget by ${((total - BUDGET) / 1024).toFixed(1)} KB`);
  process.exit(1);
}
