// Builds Snorky's JavaScript client from js/src/ into snorky/static/:
//
//   snorky.mjs   the ES module        (import Snorky from "/snorky.mjs")
//   snorky.js    the classic script   (<script src="/snorky.js">: window.Snorky)
//   snorky.d.ts  the type declarations (js/src/snorky.d.ts)
//
// Usage: node js/build.mjs [--outdir DIR]
//
// The built files are committed, so that `pip install` ships them without
// Node; tests/test_js_client.py builds into a temporary folder and checks that
// they are identical. The last line printed gives the sizes, minified and
// gzipped, as JSON.

import { readFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);

function parseArgs(argv) {
  const args = { outdir: path.join(root, "snorky", "static") };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--outdir" && i + 1 < argv.length) {
      args.outdir = path.resolve(argv[++i]);
    } else {
      throw new Error(`unknown argument: ${argv[i]} (usage: node js/build.mjs [--outdir DIR])`);
    }
  }
  return args;
}

async function packageVersion() {
  const text = await readFile(path.join(root, "snorky", "version.py"), "utf8");
  const match = /^__version__ = "([^"]+)"/m.exec(text);
  if (!match) {
    throw new Error("no __version__ in snorky/version.py");
  }
  return match[1];
}

async function bundle(entry, format, version, minify) {
  const result = await esbuild.build({
    entryPoints: [path.join(here, "src", entry)],
    absWorkingDir: here,
    bundle: true,
    format,
    target: "es2020",
    platform: "neutral",
    minify,
    write: false,
    charset: "utf8",
    legalComments: "none",
    define: { __SNORKY_VERSION__: JSON.stringify(version) },
    banner: minify
      ? {}
      : {
          js:
            `/* Snorky ${version}: the JavaScript client (${format === "esm" ? "ES module" : "classic script"}).\n` +
            ` * Built by js/build.mjs from js/src/; do not edit. License: MPL-2.0. */`,
        },
  });
  return result.outputFiles[0].text;
}

async function main() {
  const { outdir } = parseArgs(process.argv.slice(2));
  const version = await packageVersion();
  await mkdir(outdir, { recursive: true });

  const builds = { "snorky.mjs": ["index.js", "esm"], "snorky.js": ["classic.js", "iife"] };
  const sizes = {};
  for (const [name, [entry, format]] of Object.entries(builds)) {
    const code = await bundle(entry, format, version, false);
    await writeFile(path.join(outdir, name), code);
    const minified = await bundle(entry, format, version, true);
    sizes[name] = {
      bytes: Buffer.byteLength(code),
      minified: Buffer.byteLength(minified),
      gzipped: gzipSync(minified, { level: 9 }).length,
    };
    console.log(
      `${name}: ${sizes[name].bytes} bytes; minified ${sizes[name].minified}; minified and gzipped ${sizes[name].gzipped}`,
    );
  }

  const declarations = await readFile(path.join(here, "src", "snorky.d.ts"), "utf8");
  await writeFile(
    path.join(outdir, "snorky.d.ts"),
    `// Snorky ${version}: type declarations of the JavaScript client.\n` +
      `// Copied by js/build.mjs from js/src/snorky.d.ts; do not edit.\n\n` +
      declarations,
  );
  console.log(JSON.stringify({ sizes }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
