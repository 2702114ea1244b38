"""Open a Snakemake report in headless Chromium and look at every figure in it.

Used by the workflow tests and by hand (``python tests/report_check.py report.html shots/``):
the landing page's text, then for each category of the report's results every file entry opened
with its "view" button, where the figure itself must be displayed as a decoded image. Needs
``selenium`` and Chromium with its driver (Debian: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import base64
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


class OpenReport:
    """A Snakemake report open in one headless Chromium session (a context manager): its landing
    page as the browser drew it on opening, and every figure of every result category, each shown
    with its "view" button and left through the report's own breadcrumb links (no reload)."""

    def __init__(self, report: str | Path, workdir: str | Path | None = None):
        self.url = Path(report).resolve().as_uri()
        self.workdir = Path(report).parent if workdir is None else Path(workdir)  # where the report's paths start

    def __enter__(self) -> OpenReport:
        from selenium.webdriver.common.by import By

        self.driver = _driver()
        try:
            self.driver.get(self.url)
            _wait(self.driver, "//*[contains(text(), 'tinylang study')]")  # the workflow description, drawn
            self.landing_page = self.driver.find_element(By.TAG_NAME, "body").text
        except BaseException:
            self.driver.quit()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.driver.quit()

    def screenshot(self, path: str | Path) -> None:
        self.driver.save_screenshot(str(path))

    def shown_figures(self, screenshots: str | Path | None = None) -> dict[str, tuple[int, int]]:
        """``{file name: (width, height)}`` of the image the browser displayed for every figure
        (natural size: 0 would mean it did not decode), with a screenshot of each in ``screenshots``.
        The image must carry that figure's own bytes: the page keeps the last one shown."""
        from selenium.webdriver.common.by import By

        driver, shown = self.driver, {}
        _wait(driver, RESULTS_MENU)
        for category in [span.text for span in driver.find_elements(By.XPATH, RESULTS_MENU)]:
            _wait(driver, f"//li/a/span[normalize-space(text())='{category}']")[0].click()
            _wait(driver, "//tr/td[1]")
            names = [cell.text for cell in driver.find_elements(By.XPATH, "//tr/td[1]") if cell.text.endswith(".png")]
            for name in names:
                row = _wait(driver, f"//tr[td[normalize-space(text())='{name}']]")[0]
                row.find_element(By.XPATH, ".//a[@iconname='eye']").click()
                shown[Path(name).name] = self._displayed_image(self.workdir / name)
                if screenshots is not None:
                    Path(screenshots).mkdir(parents=True, exist_ok=True)
                    self.screenshot(Path(screenshots) / f"{Path(name).stem}.png")
                _wait(driver, f"//a[normalize-space(.)='{category}']")[0].click()  # back to the category
            _wait(driver, "//a[normalize-space(.)='Results']")[0].click()  # back to the list of categories
        return shown

    def _displayed_image(self, png: Path) -> tuple[int, int]:
        payload = "," + base64.b64encode(png.read_bytes()).decode()  # a data URI's header, then this
        find = ("return Array.from(document.images).filter(image => image.src.startsWith('data:image/png')"
                " && image.src.endsWith(arguments[0]))")
        image = _wait_until(self.driver, lambda d: d.execute_script(find, payload))[0]
        _wait_until(self.driver, lambda d: d.execute_script("return arguments[0].complete", image))
        size = self.driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
        return (int(size[0]), int(size[1])) if image.is_displayed() else (0, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("screenshots", nargs="?")
    parser.add_argument("--workdir", help="the folder the report's file paths start from (default: the report's)")
    args = parser.parse_args(argv)
    if args.screenshots:
        Path(args.screenshots).mkdir(parents=True, exist_ok=True)
    with OpenReport(args.report, args.workdir) as report:
        print(report.landing_page)
        if args.screenshots:
            report.screenshot(Path(args.screenshots) / "landing_page.png")
        for name, size in report.shown_figures(args.screenshots).items():
            print(f"{name}: {size[0]}x{size[1]}")


if __name__ == "__main__":
    main()
