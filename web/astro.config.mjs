// ChatSender's web client: a static site (no server runtime), one page that mounts
// the Preact app from one external module script, so the strict Content-Security-Policy
// (no inline script or style) holds.
import preact from "@astrojs/preact";
import tailwindcss from "@tailwindcss/vite";
import { defineConfig } from "astro/config";

export default defineConfig({
  output: "static",
  integrations: [preact()],
  build: {
    // Styles as files, never inline <style> (the CSP has no 'unsafe-inline').
    inlineStylesheets: "never",
    assets: "_astro",
  },
  vite: {
    plugins: [tailwindcss()],
    // `npm run dev` (port 4321) talks to a daemon on 8000 (CHATSENDER_API to change it);
    // that daemon's auth.origin must then be http://127.0.0.1:4321.
    server: {
      proxy: { "/api": process.env.CHATSENDER_API ?? "http://127.0.0.1:8000" },
    },
    build: {
      // No data: URIs for scripts or fonts; everything is a file of its own.
      assetsInlineLimit: 0,
    },
  },
  devToolbar: { enabled: false },
  server: { host: "127.0.0.1" },
});
