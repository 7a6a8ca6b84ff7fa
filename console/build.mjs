// Bundles the console (src/main.js) with esbuild into dist/console/, beside its static files.
// dist/ is what Firebase Hosting serves (console/firebase.json) and dist/console/ what the API serves at
// /console/ locally: the URL path is the file's path under dist/ either way.
// @jobrelay/client is bundled from its TypeScript source; every import of firebase, the library's
// included, resolves to this package's one copy of the SDK.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const OUT = "dist/console";
const STATIC = ["index.html", "style.css"];

// Overwritten in place, not removed first: the API may be serving dist/ meanwhile.
await mkdir(OUT, { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  sourcemap: true,
  outfile: `${OUT}/main.js`,
  logLevel: "warning",
  alias: {
    "@jobrelay/client": here("../clients/web/src/index.ts"),
    firebase: here("node_modules/firebase"),
  },
});
await Promise.all(STATIC.map((name) => copyFile(name, `${OUT}/${name}`)));
console.log(`built ${OUT}/`);
