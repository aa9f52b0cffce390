"""The web pages in real headless Chromium (Debian's chromium + chromium-driver),
driven over WebDriver by selenium: open the dashboard, submit an invalid report
and see the field error (with the typed text kept), submit a valid one and land
on its page, acknowledge it there and see the status change; at 1280 px and at
390 px wide. Screenshots go to OUT_DIR.

usage: web_chromium.py BASE_URL OUT_DIR
"""

import re
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from selenium.common.exceptions import WebDriverException


def browser(width: int) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
        "--window-size=1280,900",
    ]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAIL - {what}")
    print(f"ok   - {what}")


def emulate(d: webdriver.Chrome, width: int, height: int) -> None:
    # Headless Chromium will not size a window below 500 px; emulate the viewport instead.
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600,
    })


def shot(d: webdriver.Chrome, out: Path, name: str, width: int) -> None:
    # the whole page, at the tested width
    h = d.execute_script("return document.documentElement.scrollHeight")
    emulate(d, width, min(max(h, 600), 4000))
    p = out / f"{name}.png"
    d.save_screenshot(str(p))
    emulate(d, width, 900)
    print(f"     screenshot {p}")


def run(base: str, out: Path, width: int) -> None:
    d = browser(width)
    emulate(d, width, 900)
    # A form post navigates: an element looked up while the old document is being replaced
    # fails with "Node ... does not belong to the document" (a WebDriverException, not a stale
    # reference). A wait retries through that; it still fails with a timeout if the page never
    # gets there.
    wait = WebDriverWait(d, 10, ignored_exceptions=(WebDriverException,))
    try:
        tag = f"{width}px"
        d.get(base + "/")
        check(d.find_element(By.TAG_NAME, "h1").text == "Open incidents", f"[{tag}] dashboard opens")
        check(d.execute_script("return window.innerWidth") == width, f"[{tag}] viewport is {width} px wide")

        d.get(base + "/report-incident")
        Select(d.find_element(By.ID, "incident_type")).select_by_value("security")
        desc = f"Chatbot showed another customer's order history <{tag}>"
        d.find_element(By.ID, "description").send_keys(desc)
        d.find_element(By.ID, "reporter_email").send_keys("not-an-address")
        d.find_element(By.ID, "affected_system").send_keys("support-bot")
        d.find_element(By.ID, "submit-report").click()
        err = wait.until(ec.visibility_of_element_located((By.ID, "reporter_email-error")))
        check("e-mail" in err.text.lower() or "address" in err.text.lower(),
              f"[{tag}] invalid e-mail shows the field error: {err.text!r}")
        check(d.find_element(By.ID, "description").get_attribute("value") == desc,
              f"[{tag}] the typed description is kept (and its '<' escaped, not markup)")
        check(d.find_element(By.ID, "affected_system").get_attribute("value") == "support-bot",
              f"[{tag}] the typed system is kept")
        shot(d, out, f"report-invalid-{tag}", width)

        email = d.find_element(By.ID, "reporter_email")
        email.clear()
        email.send_keys("oncall@example.com")
        d.find_element(By.ID, "submit-report").click()
        wait.until(ec.url_matches(r"/incidents/INC-"))
        inc = re.search(r"/incidents/(INC-[0-9A-F-]+)", d.current_url).group(1)
        check(d.find_element(By.ID, "status").text == "new", f"[{tag}] landed on {inc}, status new")
        shot(d, out, f"incident-new-{tag}", width)

        d.find_element(By.ID, "responder").send_keys("alice@example.com")
        d.find_element(By.ID, "acknowledge").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "acknowledged"))
        check(d.find_element(By.ID, "status").text == "acknowledged", f"[{tag}] acknowledge changes the status")
        rows = d.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
        check(any("acknowledged" in r.text for r in rows), f"[{tag}] the timeline shows the acknowledgement")
        shot(d, out, f"incident-acknowledged-{tag}", width)

        d.get(base + "/")
        check(inc in d.find_element(By.ID, "incidents").text, f"[{tag}] the dashboard lists {inc}")
        for page in ("/", f"/incidents/{inc}", "/report-incident"):
            d.get(base + page)
            fits = d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
            check(fits, f"[{tag}] {page} needs no horizontal scrolling")
        d.get(base + "/")
        shot(d, out, f"dashboard-{tag}", width)

        d.get(base + "/audit")
        check("intact" in d.find_element(By.ID, "audit").text, f"[{tag}] the audit page verifies the chain")
    finally:
        d.quit()


def main() -> None:
    base, out = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        run(base, out, width)
    print("web pages ok in Chromium")


if __name__ == "__main__":
    main()
