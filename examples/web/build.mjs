// Bundles src/main.js with esbuild and copies the static files into dist/.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";

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
});
await Promise.all(STATIC.map((name) => copyFile(name, `dist/${name}`)));
console.log("built dist/");
