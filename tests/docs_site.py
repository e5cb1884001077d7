"""``make docs``' browser check of the built site (#25 item 3): serve build/site on
localhost and drive Debian's headless Chromium through it (Selenium, /usr/bin/chromedriver).

- navigation: every entry of mkdocs.yml's nav is a link in the page's navbar; clicking it
  opens a page whose title is the entry's (the home page's: the site's name) and whose
  body has a heading;
- search: typing a block kind's name into the search box lists its block reference
  entry (``blocks.html#<kind>``), for every kind of the catalog; its link opens it;
- links: every page reachable from the home page is crawled; every internal ``href`` and
  ``src`` must answer 200 and every ``#fragment`` must name an id on its page; a script,
  stylesheet or image from outside the site is an error (the site works offline);
  outside links (``<a href="https://...">``) are listed, not followed.

Usage: python -m tests.docs_site [SITE_DIR]; exits 1 on any failure.
"""

from __future__ import annotations

import functools
import http.server
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: the flags machines/python.md gives for a closed network (no background connections)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _nav() -> list[tuple[str, str]]:
    """(title, page) of every nav entry of mkdocs.yml."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return [next(iter(entry.items())) for entry in config["nav"]]


def _driver(profile: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def check_navigation(driver: Any, base: str) -> list[str]:
    from selenium.webdriver.common.by import By

    failures = []
    for title, page in _nav():
        driver.get(base)
        links = [a for a in driver.find_elements(By.CSS_SELECTOR, "a.nav-link") if a.text == title]
        if not links:
            failures.append(f"nav: no navbar link '{title}'")
            continue
        links[0].click()
        heading = driver.find_elements(By.CSS_SELECTOR, "div[role=main] h1, main h1, h1")
        expected = page.replace(".md", ".html")
        # mkdocs titles a page "<nav title> - <site name>", the home page by the site name
        wanted = "vitgraph" if page == "index.md" else f"{title} - vitgraph"
        if not driver.current_url.endswith(expected) or driver.title != wanted:
            failures.append(f"nav: '{title}' opened {driver.current_url} ({driver.title!r})")
        elif not heading or not heading[0].text.strip():
            failures.append(f"nav: '{title}' ({expected}) has no heading")
    return failures


def _result_links(driver: Any) -> list[str]:
    """The search results' targets, read in one script: the results list is re-rendered on
    every key, so elements found one call earlier may be gone (stale) by the next."""
    script = "return Array.from(document.querySelectorAll('#mkdocs-search-results a'), a => a.href)"
    return list(driver.execute_script(script))


def check_search(driver: Any, base: str, kinds: list[str]) -> list[str]:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    failures = []
    driver.get(base)
    driver.find_element(By.CSS_SELECTOR, "a[data-bs-target='#mkdocs_search_modal']").click()
    box = WebDriverWait(driver, 10).until(
        ec.visibility_of_element_located((By.ID, "mkdocs-search-query"))
    )
    # mkdocs' search listens to the box only once its worker has built the index (seconds
    # on a loaded machine): keys typed before then are dropped, so retype until it answers
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        box.clear()
        box.send_keys(kinds[0])
        try:
            WebDriverWait(driver, 2).until(lambda d: _result_links(d))
            break
        except Exception:  # not ready yet
            continue
    for kind in kinds:
        box.clear()
        box.send_keys(kind)
        target = f"blocks.html#{kind}"
        try:
            WebDriverWait(driver, 10).until(
                lambda d, t=target: any(href.endswith(t) for href in _result_links(d))
            )
        except Exception:  # a timeout: what the results held instead
            shown = _result_links(driver)
            failures.append(f"search: '{kind}' did not list {target} (listed {shown[:3]})")
    # the result opens the entry
    kind = kinds[0]
    box.clear()
    box.send_keys(kind)
    stale = (StaleElementReferenceException, StopIteration)  # re-rendered, or not listed yet
    link = WebDriverWait(driver, 10, ignored_exceptions=stale).until(
        lambda d: next(
            a
            for a in d.find_elements(By.CSS_SELECTOR, "#mkdocs-search-results a")
            if (a.get_attribute("href") or "").endswith(f"blocks.html#{kind}")
        )
    )
    link.click()
    time.sleep(0.2)
    if not driver.find_elements(By.ID, kind) or not driver.current_url.endswith(f"#{kind}"):
        failures.append(f"search: the result for '{kind}' opened {driver.current_url}")
    return failures


def check_links(driver: Any, base: str) -> tuple[list[str], int, int, list[str]]:
    """(failures, pages crawled, internal references checked, outside links)."""
    host = urlparse(base).netloc
    pages, queue, seen_refs = {base + "index.html"}, [base + "index.html"], set()
    ids: dict[str, set[str]] = {}
    failures, outside = [], set()
    checked = 0

    def fetch(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = answer.read().decode("utf-8", "replace")
                return answer.status, body
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    while queue:
        page = queue.pop()
        driver.get(page)
        refs = driver.execute_script(
            "return Array.from(document.querySelectorAll('[href],[src]')).map(e => "
            "[e.tagName, e.getAttribute('href') !== null ? 'href' : 'src', "
            "e.href || e.src || '', e.getAttribute('href') || e.getAttribute('src')])"
        )
        for tag, attr, absolute, raw in refs:
            if raw.startswith(("mailto:", "javascript:", "data:")) or raw == "#":
                continue
            url = absolute if isinstance(absolute, str) and absolute else urljoin(page, raw)
            if urlparse(url).netloc != host:
                if tag == "A":
                    outside.add(url)
                else:
                    failures.append(f"{page}: <{tag.lower()} {attr}={raw}> comes from outside")
                continue
            target, fragment = urldefrag(url)
            if (target, fragment) in seen_refs:
                continue
            seen_refs.add((target, fragment))
            checked += 1
            if target not in ids:
                status, body = fetch(target)
                if status != 200:
                    failures.append(f"{page}: {raw} -> HTTP {status}")
                    ids[target] = set()
                    continue
                parser = _Ids()
                parser.feed(body)
                ids[target] = parser.ids
            if fragment and fragment not in ids[target]:
                failures.append(f"{page}: {raw} -> no id '{fragment}' on {target}")
            if tag == "A" and target.endswith(".html") and target not in pages:
                pages.add(target)
                queue.append(target)
    return failures, len(pages), checked, sorted(outside)


def main() -> int:
    site = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "site"
    kinds = [
        row["kind"] for row in json.loads((ROOT / "vitgraph" / "block_catalog.json").read_text())
    ]
    server, base = _serve(site)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vitgraph-docs-chromium-") as profile:
        driver = _driver(profile)
        try:
            version = driver.capabilities.get("browserVersion", "?")
            nav = check_navigation(driver, base)
            search = check_search(driver, base, kinds)
            links, pages, checked, outside = check_links(driver, base)
        finally:
            driver.quit()
            server.shutdown()
    failures = nav + search + links
    for failure in failures:
        print(f"FAIL {failure}")
    print(
        f"docs site check (headless Chromium {version}, {time.perf_counter() - start:.0f} s): "
        f"navigation {len(_nav()) - len(nav)}/{len(_nav())} entries open their page; search "
        f"finds {len(kinds) - len(search)}/{len(kinds)} block kinds; {pages} pages crawled, "
        f"{checked} internal links and sources checked, {len(links)} broken; outside links "
        f"(not followed) {len(outside)}: {', '.join(outside) or 'none'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
