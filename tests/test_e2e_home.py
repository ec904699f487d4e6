"""The first minutes in a real browser (Playwright + Debian's Chromium against `streamlit run`): a cold
server shows a pretrained model's text from the home page's one-click try within 20 s; the Generate
page generates on Ctrl+Enter, copies a text, stops a long generation keeping its text, and shows it
again after a reload; every page in the light and the dark theme (screenshots in test-output/themes/)."""
import re
import time
from pathlib import Path

import pytest
from test_e2e_app import ARGS, CHROMIUM, expect, settle
from test_e2e_workspace import start_server, stop_server

from textgen_core.pretrained import PRETRAINED_DIR

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "themes"
BUNDLED = {"TEXTGEN_PRETRAINED_DIR": str(PRETRAINED_DIR)}
PAGES = ["Home", "Corpus", "Train", "Compare", "Recipes", "Generate", "Inspect", "Models", "Runs"]
HEADINGS = {"Home": "Welcome"}
CODE = "[data-testid=stCode] code"
SONG = ("O bury me not on the lone prairie,\nThese words came low and mournfully\n"
        "From the pallid lips of a youth who lay\nOn his dying bed at the close of day.\n\n") * 40

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-home")
    process, url = start_server(tmp / "runs", tmp / "server.log", **BUNDLED)
    try:
        yield url
    finally:
        stop_server(process)
        log_text = (tmp / "server.log").read_text(errors="replace")
        assert "Traceback" not in log_text, log_text[-3000:]


def new_page(browser, scheme: str = "light", **options):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=scheme, **options).new_page()
    page.set_default_timeout(30_000)
    return page


def wait_for_text(page, chars: int = 50, nth: int = 0) -> str:
    """The ``nth`` code block's text, once it holds at least ``chars`` characters."""
    page.wait_for_function("([sel, n, chars]) => { const c = document.querySelectorAll(sel)[n];"
                           "return c && c.innerText.trim().length >= chars; }", arg=[CODE, nth, chars], timeout=30_000)
    return page.locator(CODE).nth(nth).inner_text()


def test_a_cold_server_shows_pretrained_text_within_20_s(browser, tmp_path):
    page = new_page(browser)   # the browser is up already: the clock is the server's
    started = time.monotonic()
    process, url = start_server(tmp_path / "runs", tmp_path / "server.log", **BUNDLED)
    try:
        page.goto(url)
        opened = time.monotonic()
        page.get_by_role("heading", name="Welcome").wait_for()
        settle(page, 100)   # drawn: what a person sees before clicking
        page.get_by_role("button", name="Generate").click()
        text = wait_for_text(page)
        done = time.monotonic()
    finally:
        stop_server(process)
    print(f"cold start: {done - started:.1f} s from `streamlit run` to text, {done - opened:.1f} s from the page load")
    assert done - started < 20, done - started
    assert len(text) >= 50 and not page.get_by_test_id("stException").count()


def test_generate_on_ctrl_enter_copy_stop_and_find_it_again(server, browser):
    page = new_page(browser, permissions=["clipboard-read", "clipboard-write"])
    page.goto(f"{server}/generate")
    page.get_by_role("heading", name="Generate", exact=True).wait_for()
    settle(page)
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill("ROMEO:")
    prompt.press("Control+Enter")   # the prompt's form submits: no click
    page.get_by_text("Download the text").wait_for()
    text = page.locator(CODE).first.inner_text()
    assert text.startswith("ROMEO:") and len(text) > 200, text

    page.locator("[data-testid=stCode]").first.hover()   # the copy button shows on hover
    page.locator("[data-testid=stCode]").first.get_by_role("button", name="Copy to clipboard").click()
    assert page.evaluate("navigator.clipboard.readText()").strip() == text.strip()

    page.get_by_role("slider", name="Length (tokens)").press("End")   # 2,000 tokens at each of three
    settle(page)
    page.get_by_label("Several temperatures", exact=True).check(force=True)
    settle(page)
    prompt.press("Control+Enter")
    wait_for_text(page, 20)
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped before the end: this is the text made until then.").wait_for()
    settle(page)
    kept = page.locator(f"{CODE}:visible").all_inner_texts()
    assert 1 <= len(kept) <= 3 and any(len(t) < len("ROMEO:") + 2000 for t in kept), [len(t) for t in kept]
    page.reload()   # the same address: the stopped generation comes back from the workspace
    page.get_by_text("Stopped before the end: this is the text made until then.").wait_for()
    expect(page.locator(f"{CODE}:visible")).to_have_text(kept)
    expect(page.get_by_text(re.compile(r"Earlier generations in this workspace \(1\)"))).to_be_visible()


def luminance(css: str) -> float:
    """The relative luminance (WCAG) of a CSS rgb()/rgba() colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def colours(page, selector: str) -> tuple[str, str]:
    """(text colour, background colour) of the first element matching ``selector``; a transparent
    background is the nearest opaque one of its ancestors."""
    return tuple(page.evaluate("""sel => {
        let el = document.querySelector(sel);
        const color = getComputedStyle(el).color;
        while (el && /rgba\\(.*, 0\\)|transparent/.test(getComputedStyle(el).backgroundColor)) el = el.parentElement;
        return [color, el ? getComputedStyle(el).backgroundColor : 'rgb(255, 255, 255)']; }""", selector))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_reads_in_both_themes(server, browser, tmp_path, scheme):
    SHOTS.mkdir(parents=True, exist_ok=True)
    corpus = tmp_path / "song.txt"
    corpus.write_text(SONG, encoding="utf-8")
    page = new_page(browser, scheme)
    page.goto(server)
    page.get_by_role("heading", name="Welcome").wait_for()
    settle(page)
    page.get_by_role("button", name="Generate").click()   # a text on the page, in the theme's colours
    wait_for_text(page)
    for name in PAGES:
        if name != "Home":
            page.get_by_test_id("stSidebar").get_by_role("link", name=name, exact=True).click()
        page.get_by_role("heading", name=HEADINGS.get(name, name), exact=True).wait_for()
        settle(page, 200)
        if name == "Corpus":   # an upload: the tokenizer preview's coloured pieces are drawn
            page.locator("input[type=file]").set_input_files(str(corpus))
            page.get_by_text("distinct characters").wait_for()
            settle(page)
            ink, paper = colours(page, ".tok")
            assert contrast(ink, paper) >= 4.5, (name, ink, paper)
        if name == "Generate":
            page.get_by_role("button", name="Generate", exact=True).click()
            page.get_by_text("Download the text").wait_for()
            settle(page)
        if name == "Inspect":   # the heat map and its legend
            page.locator(".tgi-map").first.wait_for()
            settle(page)
            for part in (".tgi-legend", ".tgi-map"):
                ink, paper = colours(page, part)
                assert contrast(ink, paper) >= 4.5, (name, part, ink, paper)
        height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
        page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 40, 4000))})
        page.wait_for_timeout(150)   # the whole page in the picture: the app scrolls inside its main element
        page.screenshot(path=str(SHOTS / f"{scheme}-{name.lower()}.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})
        app = luminance(page.evaluate("getComputedStyle(document.querySelector('.stApp')).backgroundColor"))
        assert (app < 0.1) if scheme == "dark" else (app > 0.8), (name, app)
        ink, paper = colours(page, "h1")
        assert contrast(ink, paper) >= 7, (name, ink, paper)
        assert page.get_by_test_id("stException").count() == 0, name
