// Bundles src/main.js with esbuild and copies the static files into dist/.
// @jobrelay/client is bundled from its TypeScript source (clients/web/src); every import of firebase,
// the library's included, resolves to this example's one copy of the SDK (two copies of Firestore in
// one page do not recognise each other's instances).
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

const STATIC = ["index.html", "style.css"];

// Files are overwritten in place, not removed first: a test may be serving dist/ meanwhile.
await mkdir("dist", { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  sourcemap: true,
  outfile: "dist/main.js",
  logLevel: "warning",
  alias: {
    "@jobrelay/client": here("../../clients/web/src/index.ts"),
    firebase: here("node_modules/firebase"),
  },
});
await Promise.all(STATIC.map((name) => copyFile(name, `dist/${name}`)));
console.log("built dist/");
