"""Open a Snakemake report in headless Chromium and look at every figure in it.

Used by the workflow tests and by hand (``python tests/report_check.py report.html shots/``):
for each category of the report's results, every file entry is opened with its "view" button
and the figure must be displayed as a decoded image. Needs ``selenium`` and Chromium with its
driver (Debian: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")


def browser_available() -> bool:
    """Whether selenium, Chromium and chromedriver are all installed."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def _driver():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")), options=options)


RESULTS_MENU = "//li[normalize-space(.)='Results']/following-sibling::li/a/span"
TIMEOUT_S = 20  # waiting for the report's scripts to draw an element


def _wait_until(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT_S, poll_frequency=0.05).until(condition)


def _wait(driver, xpath: str) -> list:
    """The elements at ``xpath`` as soon as there is one (instead of sleeping a fixed time)."""
    from selenium.webdriver.common.by import By

    return _wait_until(driver, lambda d: d.find_elements(By.XPATH, xpath))


def landing_page(report: str | Path, screenshot: str | Path | None = None) -> str:
    """The text the report shows when it opens (its landing page), with a screenshot of it."""
    from selenium.webdriver.common.by import By

    driver = _driver()
    try:
        driver.get(Path(report).resolve().as_uri())
        _wait(driver, "//*[contains(text(), 'tinylang study')]")  # the workflow description, drawn
        text = driver.find_element(By.TAG_NAME, "body").text
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return text


def shown_figures(report: str | Path, screenshots: str | Path | None = None) -> dict[str, tuple[int, int]]:
    """Open every figure of every result category of the report; return ``{file name: (width,
    height)}`` of the image the browser displayed (natural size: 0 would mean it did not decode)."""
    from selenium.webdriver.common.by import By

    driver = _driver()
    url = Path(report).resolve().as_uri()

    def open_category(name: str) -> None:  # the report keeps no history: start from the top each time
        driver.get(url)
        _wait(driver, f"//li/a/span[normalize-space(text())='{name}']")[0].click()
        _wait(driver, "//tr/td[1]")

    shown: dict[str, tuple[int, int]] = {}
    try:
        driver.get(url)
        _wait(driver, RESULTS_MENU)
        categories = [span.text for span in driver.find_elements(
            By.XPATH, RESULTS_MENU)]
        for category in categories:
            open_category(category)
            names = [cell.text for cell in driver.find_elements(By.XPATH, "//tr/td[1]") if cell.text.endswith(".png")]
            for name in names:
                open_category(category)
                row = driver.find_element(By.XPATH, f"//tr[td[normalize-space(text())='{name}']]")
                row.find_element(By.XPATH, ".//a[@iconname='eye']").click()
                image = _wait(driver, "//img[starts-with(@src, 'data:image/png')]")[0]
                _wait_until(driver, lambda d, image=image: d.execute_script("return arguments[0].complete", image))
                size = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
                shown[Path(name).name] = (int(size[0]), int(size[1])) if image.is_displayed() else (0, 0)
                if screenshots is not None:
                    Path(screenshots).mkdir(parents=True, exist_ok=True)
                    driver.save_screenshot(str(Path(screenshots) / f"{Path(name).stem}.png"))
    finally:
        driver.quit()
    return shown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("screenshots", nargs="?")
    args = parser.parse_args(argv)
    if args.screenshots:
        Path(args.screenshots).mkdir(parents=True, exist_ok=True)
    print(landing_page(args.report, args.screenshots and Path(args.screenshots) / "landing_page.png"))
    for name, size in shown_figures(args.report, args.screenshots).items():
        print(f"{name}: {size[0]}x{size[1]}")


if __name__ == "__main__":
    main()
