// TeX -> MathML with KaTeX, at build time (tools/site/build.py). stdin: JSON [[tex, display], ...];
// stdout: JSON [{mathml, error}, ...]. Chromium draws MathML natively: the pages carry no maths JavaScript.
const katex = require("katex");
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(([tex, display]) => {
    const opts = { output: "mathml", displayMode: display, strict: "ignore", trust: false };
    try {
      return { mathml: katex.renderToString(tex, { ...opts, throwOnError: true }), error: null };
    } catch (e) {
      return { mathml: katex.renderToString(tex, { ...opts, throwOnError: false }), error: String(e.message || e) };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
