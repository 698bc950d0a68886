"""Drives `precept review` in headless Chromium the way a reviewer does (ReviewBrowserTests).

usage: review_browser.py URL
Labels three items with the keyboard (a, b, t), edits one revision, adds a note and undoes it,
reloads, and checks that what was done is still there. Checks that markup in model text stays
text. Prints one JSON line with what it saw; exits non-zero on the first failed check.
"""
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

url = sys.argv[1]
options = webdriver.ChromeOptions()
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 20)
seen = {}


def check(condition, message):
    if not condition:
        print(json.dumps({"failed": message, "seen": seen}))
        driver.quit()
        sys.exit(1)


def ready():
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def press(keys):
    ActionChains(driver).send_keys(keys).perform()


def then_status(action, wanted):
    """Does `action`, then waits for a new status line containing `wanted` (set after the re-render)."""
    before = text("status")
    action()
    wait.until(lambda d: text("status") != before and wanted in text("status"))


def text(element_id):
    # Read in one script call: the page re-renders, so a found element can go stale.
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.textContent : ''", element_id)


def current_record():
    return driver.find_element(By.ID, "item").get_attribute("data-record")


driver.get(url)
ready()
# Markup in a prompt is shown as text and never runs.
prompt_boxes = driver.find_elements(By.CSS_SELECTOR, "#item .box")
seen["first_prompt"] = prompt_boxes[0].text
check("<script>" in prompt_boxes[0].text, "the prompt's <script> is shown as text")
check(driver.execute_script("return window.injected === undefined"), "markup in model text did not run")
check(driver.execute_script("return document.querySelectorAll('script').length === 1 && document.querySelectorAll('img').length === 0"),
      "no element anywhere on the page was made from model text")

# Three verdicts with the keyboard: A better, next, B better, next, tie.
labelled = []
for key in ("a", "b", "t"):
    record = current_record()
    then_status(lambda: press(key), "saved label")
    labelled.append(record)
    press("j")
    wait.until(lambda d: current_record() != record)
seen["labelled"] = labelled

# Edit the current (fourth) item's revision: e, replace the text, Ctrl+Enter.
edited_record = current_record()
press("e")
editor = wait.until(lambda d: d.find_element(By.ID, "editor"))
editor.send_keys(Keys.CONTROL, "a")
editor.send_keys("Edited in the browser test.")
then_status(lambda: editor.send_keys(Keys.CONTROL, Keys.ENTER), "saved label")
wait.until(lambda d: "Edited in the browser test." in text("text-a"))
seen["edited"] = edited_record

# A note, then undo: the note goes, the edit stays.
press("n")
editor = wait.until(lambda d: d.find_element(By.ID, "editor"))
editor.send_keys("a note to take back")
then_status(lambda: editor.send_keys(Keys.CONTROL, Keys.ENTER), "saved label")
check("a note to take back" in text("human"), "the note is shown")
then_status(lambda: press("u"), "undid label")
check("a note to take back" not in text("human"), "undo took the note back")

# Reload: everything is still there.
driver.refresh()
ready()
badges = {li.get_attribute("data-record"): li.find_element(By.CSS_SELECTOR, ".v").text
          for li in driver.find_elements(By.CSS_SELECTOR, "#list li")}
seen["badges"] = badges
check([badges[r] for r in labelled] == ["A", "B", "TIE"], "the three verdicts persisted")
for li in driver.find_elements(By.CSS_SELECTOR, "#list li"):
    if li.get_attribute("data-record") == edited_record:
        li.click()
        break
wait.until(lambda d: current_record() == edited_record)
check("Edited in the browser test." in text("text-a"), "the edit persisted")
check("a note to take back" not in text("human"), "the undone note stays gone")

# The filter for items not yet reviewed hides the three verdicts.
driver.find_element(By.ID, "f-unreviewed").click()
wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#list li")) == len(badges) - 3)
seen["unreviewed_shown"] = len(driver.find_elements(By.CSS_SELECTOR, "#list li"))
print(json.dumps({"ok": True, "seen": seen}))
driver.quit()
