// Renders Vega-Lite specs to SVG with the vendored scripts, in Node, with no browser and no network.
// Usage: node render_vega.js VENDOR_DIR < specs.json   (a JSON list of Vega-Lite specs)
// Prints a JSON list with, per spec, {svg, warnings} or {error}.
"use strict";
const fs = require("fs");
const path = require("path");
const vm = require("vm");

const vendor = process.argv[2];
// The UMD builds see no `module` or `define` in this context, so they set globals, as in a browser page.
for (const name of ["vega.min.js", "vega-lite.min.js"]) {
  vm.runInThisContext(fs.readFileSync(path.join(vendor, name), "utf8"), { filename: name });
}

async function render(spec) {
  const warnings = [];
  const logger = {
    level() { return this; },
    error(...args) { warnings.push(["error", ...args].join(" ")); return this; },
    warn(...args) { warnings.push(args.join(" ")); return this; },
    info() { return this; },
    debug() { return this; },
  };
  try {
    const compiled = vegaLite.compile(spec, { logger }).spec;
    const view = new vega.View(vega.parse(compiled), { renderer: "none", logger });
    const svg = await view.toSVG();
    view.finalize();
    return { svg, warnings };
  } catch (error) {
    return { error: String(error && error.stack || error), warnings };
  }
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", async () => {
  const results = [];
  for (const spec of JSON.parse(input)) results.push(await render(spec));
  process.stdout.write(JSON.stringify(results));
});
