"""The demo's QC page and group report opened in a real browser (headless Chromium via Selenium),
checked as a person would: every image decoded, the tables' numbers those of the TSVs, every link
resolving, no console errors, nothing fetched from outside a copied folder, and a narrow window
still usable. `.ci/run` installs Debian's chromium and chromium-driver; without them these tests
skip, saying so.
"""
import shutil

import pytest

from gado_bids.outputs.group_tables import read_table
from gado_bids.outputs.naming import group_paths

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install "
                               "-e '.[test]')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed "
    "(.ci/run installs them): the pages are not opened in a browser")


@pytest.fixture(scope="module")
def pages(demo_group_run, tmp_path_factory):
    """The HTML pages alone, copied to a new folder: they must need nothing beside themselves."""
    result, output = demo_group_run
    assert result.returncode == 0, result.stderr
    folder = tmp_path_factory.mktemp("pages")
    for page in output.glob("*.html"):
        shutil.copyfile(page, folder / page.name)
    return folder, output


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--window-size=1300,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _open(browser, path):
    browser.get_log("browser")  # forget the previous page's messages
    browser.get_log("performance")
    browser.get(path.as_uri())
    browser.execute_script("return document.readyState")


def _check_images_links_console(browser, folder):
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images
    for image in images:
        assert browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", image), \
            image.get_attribute("alt")
    for link in browser.find_elements(By.TAG_NAME, "a"):
        target = link.get_attribute("href")
        if "#" in target:
            anchor = target.split("#", 1)[1]
            assert browser.find_elements(By.ID, anchor), target
        else:
            assert target.startswith("file://") and (folder / target.rsplit("/", 1)[1]).is_file(), \
                target
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    fetched = [entry["message"] for entry in browser.get_log("performance")
               if '"Network.requestWillBeSent"' in entry["message"]]
    assert fetched and all('"url":"file://' in m or '"url":"data:' in m for m in fetched)


def _no_page_wide_scrolling(browser):
    return browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_group_report_in_a_browser(pages, browser):
    folder, output = pages
    _open(browser, folder / "group_report.html")
    _check_images_links_console(browser, folder)
    tables = browser.find_elements(By.TAG_NAME, "table")
    sessions = tables[-1].find_elements(By.TAG_NAME, "tr")
    similarity = read_table(group_paths(output)["similarity"])
    assert len(sessions) - 1 == len(similarity) == 3
    for row, expected in zip(sessions[1:], similarity):
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == expected["participant_id"]
        assert cells[5:11] == [expected[f"{m}_{i}"] for i in ("ce", "synthetic")
                               for m in ("MAE", "PSNR", "SSIM")]
    statistics = read_table(group_paths(output)["statistics"])
    psnr = next(r for r in statistics if r["subset"] == "all" and r["table"] == "similarity"
                and r["measure"] == "PSNR")
    assert f"{psnr['synthetic_mean']} ± {psnr['synthetic_sd']}" in tables[0].text
    qc_link = tables[-1].find_elements(By.TAG_NAME, "a")[0]
    qc_link.click()  # a session's images, then its QC page
    figure_link = browser.find_element(By.CSS_SELECTOR, "figure a")
    figure_link.click()
    assert browser.title.startswith("gadosynth sub-0")
    browser.set_window_size(800, 1000)
    _open(browser, folder / "group_report.html")
    assert _no_page_wide_scrolling(browser)
    browser.set_window_size(1300, 1000)


def test_participant_qc_page_in_a_browser(pages, browser):
    folder, _ = pages
    for page in sorted(folder.glob("sub-*.html")):
        _open(browser, page)
        _check_images_links_console(browser, folder)
        headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
        assert headings and all(h.endswith("_T1w.nii.gz") for h in headings)
        facts = browser.find_element(By.TAG_NAME, "table").text
        assert "WeightsSha256" in facts and "Formulation" in facts
    browser.set_window_size(800, 1000)
    _open(browser, sorted(folder.glob("sub-*.html"))[0])
    assert _no_page_wide_scrolling(browser)
    browser.set_window_size(1300, 1000)
