"""Drives the voxline console in headless Chromium (Debian's chromium + chromedriver,
python3-selenium), for tests/console.rs.

Protocol with the Rust suite: environment CONSOLE_URL, CONSOLE_KEY, CONSOLE_ADMIN,
CONSOLE_TENANT, CONSOLE_SHOTS (where the screenshots go). Prints `READY` once logged in
and watching the calls list, then reads one line from stdin: the id of the call the
suite placed. Every wait is bounded; the last line is `RESULT <json>` (exit 0) or a
failure (exit 1).
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL = os.environ["CONSOLE_URL"]
KEY = os.environ["CONSOLE_KEY"]
ADMIN = os.environ["CONSOLE_ADMIN"]
TENANT = os.environ["CONSOLE_TENANT"]
SHOTS = os.environ["CONSOLE_SHOTS"]
TERMINAL = {"completed", "failed", "busy", "no_answer", "cancelled"}


def log(msg):
    print(msg, flush=True)


def wait(what, fn, seconds=30.0, every=0.1):
    """fn() until it returns something truthy; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    last_error = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
        except Exception as e:  # stale elements while the page re-renders
            last_error = e
        time.sleep(every)
    raise AssertionError(f"never: {what} (last error: {last_error})")


def click(driver, what, css):
    """Clicks `css` once it is there; again if a live refresh replaced it first."""
    def go():
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True
    wait(what, go, seconds=30)


def shot(driver, name, height=1000):
    driver.set_window_size(1280, height)
    time.sleep(0.3)  # let a resize re-layout before the picture
    path = os.path.join(SHOTS, f"{name}.png")
    driver.save_screenshot(path)
    log(f"screenshot {path}")


def main():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--window-size=1280,1000",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(20)
    result = {}
    try:
        run(driver, result)
        logs = driver.get_log("browser")
        csp = [e["message"] for e in logs if "Content Security Policy" in e["message"]]
        errors = [e["message"] for e in logs if e["level"] == "SEVERE"
                  and "Failed to load resource" not in e["message"]]
        result["csp_violations"] = csp
        result["script_errors"] = errors
        log("RESULT " + json.dumps(result))
    finally:
        driver.quit()


def run(driver, result):
    # Log in.
    driver.get(URL + "/console")
    wait("the login form", lambda: driver.find_element(By.ID, "login-form"))
    shot(driver, "login", 700)
    driver.find_element(By.ID, "login-key").send_keys(KEY)
    driver.find_element(By.ID, "login-admin").send_keys(ADMIN)
    driver.find_element(By.ID, "login-tenant").send_keys(TENANT)
    driver.find_element(By.ID, "login-submit").click()
    wait("the calls table", lambda: driver.find_element(By.ID, "calls-table"))
    result["stored_in_session"] = driver.execute_script(
        "return sessionStorage.getItem('voxline.console') !== null && localStorage.length === 0")
    result["url_after_login"] = driver.current_url
    log("READY")

    # Watch the call the suite places, live on the list.
    call_id = sys.stdin.readline().strip()
    seen = []

    def status_of_call():
        cells = driver.find_elements(By.CSS_SELECTOR, f'tr[data-call-id="{call_id}"] .status')
        if cells:
            s = cells[0].text
            if not seen or seen[-1] != s:
                seen.append(s)
                log(f"list shows {call_id}: {s}")
            return s in TERMINAL
        return False

    wait("the call to end on the list", status_of_call, seconds=90)
    result["statuses_seen"] = seen
    wait("the answer-rate plot", lambda: "answered" in driver.find_element(By.ID, "answer-rate").text)
    shot(driver, "calls", 1000)

    # The call's page: recording, waveform, transcript.
    click(driver, "the call's link", f'tr[data-call-id="{call_id}"] a')
    wait("the recording to load", lambda: driver.execute_script(
        "const a = document.getElementById('recording'); return a && a.readyState >= 2 && a.duration > 0"), seconds=60)
    decoded = wait("the waveform decoded", lambda: driver.find_element(By.ID, "waveform").get_attribute("data-decoded-seconds"))
    result["waveform_seconds"] = float(decoded)
    result["audio_duration"] = driver.execute_script("return document.getElementById('recording').duration")
    played = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "document.getElementById('recording').play().then(() => done('ok'), e => done(String(e)));")
    result["play"] = played
    t0 = driver.execute_script("return document.getElementById('recording').currentTime")
    wait("currentTime to advance while playing", lambda: driver.execute_script(
        "return document.getElementById('recording').currentTime") > t0 + 0.5, seconds=20)
    result["played_to"] = driver.execute_script(
        "const a = document.getElementById('recording'); a.pause(); return a.currentTime")

    # Seek from the transcript turn that starts latest.
    turns = driver.find_elements(By.CSS_SELECTOR, "#transcript button.turn")
    result["turns_shown"] = [{"role": b.get_attribute("data-role"), "start_ms": int(b.get_attribute("data-start-ms")),
                              "text": b.text} for b in turns]
    latest = max(range(len(turns)), key=lambda i: int(turns[i].get_attribute("data-start-ms")))
    before = driver.execute_script("return document.getElementById('recording').currentTime")
    after = driver.execute_script(
        "const b = arguments[0]; b.click(); return document.getElementById('recording').currentTime", turns[latest])
    result["seek"] = {"turn": latest, "start_ms": int(turns[latest].get_attribute("data-start-ms")),
                      "before": before, "after": after}
    wait("the seeked turn to be marked current", lambda: "current" in (
        driver.find_elements(By.CSS_SELECTOR, "#transcript button.turn")[latest].get_attribute("class")), seconds=10)
    driver.execute_script("document.getElementById('recording').pause()")

    # Redeliver a webhook and see the new attempt.
    rows = wait("the call's webhook deliveries", lambda: driver.find_elements(By.CSS_SELECTOR, "#deliveries-table tbody tr"), seconds=30)
    delivery_id = rows[0].get_attribute("data-delivery-id")
    sel = f'#deliveries-table tr[data-delivery-id="{delivery_id}"]'
    wait("the first attempt", lambda: driver.find_elements(By.CSS_SELECTOR, sel + " li[data-attempt]"), seconds=30)
    attempts_before = len(driver.find_elements(By.CSS_SELECTOR, sel + " li[data-attempt]"))
    click(driver, "the redeliver button", sel + " button.redeliver")
    wait("the redelivery's attempt", lambda: len(driver.find_elements(By.CSS_SELECTOR, sel + " li[data-attempt]")) > attempts_before,
         seconds=30)
    new_attempt = driver.find_elements(By.CSS_SELECTOR, sel + " li[data-attempt]")[-1].text
    result["redelivery"] = {"delivery_id": delivery_id, "attempts_before": attempts_before, "new_attempt": new_attempt}
    driver.execute_script("window.scrollTo(0, 0)")
    shot(driver, "call", 1500)

    # Mint a key, then revoke it.
    driver.get(URL + "/console#/keys")
    name = wait("the mint form", lambda: driver.find_element(By.ID, "key-name"))
    name.send_keys("console-e2e")
    driver.find_element(By.ID, "mint").click()
    minted = wait("the minted key", lambda: driver.find_element(By.ID, "minted-key").text)
    key_id = wait("the key's id", lambda: [r.get_attribute("data-key-id") for r in
                                            driver.find_elements(By.CSS_SELECTOR, "#keys-table tbody tr")
                                            if r.find_elements(By.CSS_SELECTOR, ".revoke")
                                            and r.find_element(By.CSS_SELECTOR, "td").text == "console-e2e"])[0]
    click(driver, "the revoke button", f'button.revoke[data-key="{key_id}"]')
    wait("the confirmation", lambda: driver.switch_to.alert).accept()
    wait("the key shown revoked", lambda: driver.find_element(
        By.CSS_SELECTOR, f'#keys-table tr[data-key-id="{key_id}"] td.revoked').text)
    result["minted"] = {"id": key_id, "key": minted}
    shot(driver, "keys", 900)  # after the revocation: the key in the picture is dead

    for page, title, height in [("agents", "Agents", 900), ("webhooks", "Webhook endpoints", 800),
                                ("sidecars", "Sidecars", 700)]:
        driver.get(URL + f"/console#/{page}")
        wait(f"the {page} page", lambda: driver.find_element(By.TAG_NAME, "h1").text == title
             and driver.find_elements(By.CSS_SELECTOR, "main section, main table"))
        result[f"{page}_text"] = driver.find_element(By.ID, "main").text[:2000]
        shot(driver, page, height)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        log(f"FAILED {type(e).__name__}: {e}")
        sys.exit(1)
