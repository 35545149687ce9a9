// Mounts the app (one external module script: the page has no inline script).

import { render } from "preact";

import { App } from "./components/App";
import { boot, watchBrowser } from "./lib/state";

const root = document.getElementById("app");
if (root) {
  render(<App />, root);
  watchBrowser();
  void boot();
}
