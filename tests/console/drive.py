"""Drives the voxline console in headless Chromium (Debian's chromium + chromedriver,
python3-selenium), for tests/console.rs.

Protocol with the Rust suite: environment CONSOLE_URL, CONSOLE_KEY, CONSOLE_ADMIN,
CONSOLE_TENANT, CONSOLE_AGENT (the agent to edit), CONSOLE_SIDECAR (the sidecar whose
load to read), CONSOLE_SHOTS (where the screenshots go). Prints `READY` once logged in
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
from selenium.webdriver.common.keys import Keys

URL = os.environ["CONSOLE_URL"]
KEY = os.environ["CONSOLE_KEY"]
ADMIN = os.environ["CONSOLE_ADMIN"]
TENANT = os.environ["CONSOLE_TENANT"]
AGENT = os.environ["CONSOLE_AGENT"]
SIDECAR = os.environ["CONSOLE_SIDECAR"]
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
    except Exception:
        # What the page said before it failed (script errors, refused requests).
        for e in driver.get_log("browser"):
            log(f"page {e['level']}: {e['message']}")
        log("page text: " + driver.find_element(By.TAG_NAME, "body").text[:1500].replace("\n", " | "))
        raise
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

    edit_agent(driver, result)
    test_send(driver, result)
    sidecar_load(driver, result)

    for page, title, height in [("agents", "Agents", 900), ("webhooks", "Webhook endpoints", 800),
                                ("sidecars", "Sidecars", 900)]:
        driver.get(URL + f"/console#/{page}")
        wait(f"the {page} page", lambda: driver.find_element(By.TAG_NAME, "h1").text == title
             and driver.find_elements(By.CSS_SELECTOR, "main section, main table"))
        result[f"{page}_text"] = driver.find_element(By.ID, "main").text[:2000]
        shot(driver, page, height)


def edit_agent(driver, result):
    """A refused value is shown next to its field; then a keyboard-only save."""
    driver.get(URL + "/console#/agents")
    fid = f"agent-{AGENT}"
    silence = wait("the agent form", lambda: driver.find_element(By.ID, f"{fid}-silence_timeout_seconds"))
    silence.clear()
    silence.send_keys("5")
    click(driver, "the save button", f'form[data-agent="{AGENT}"] button.save-agent')
    error = wait("the field's error", lambda: driver.find_element(By.ID, f"{fid}-silence_timeout_seconds-error").text)
    refused = {"error": error, "aria_invalid": silence.get_attribute("aria-invalid"),
               "focused": driver.switch_to.active_element.get_attribute("id"),
               "described_by": silence.get_attribute("aria-describedby")}
    silence = driver.find_element(By.ID, f"{fid}-silence_timeout_seconds")
    silence.clear()
    silence.send_keys("45")
    name = driver.find_element(By.ID, f"{fid}-name")
    name.clear()
    name.send_keys("Appointment reminders (edited)")
    name.send_keys(Keys.ENTER)  # the form's implicit submission: no mouse
    wait("the saved agent", lambda: driver.find_elements(By.CSS_SELECTOR, f'section[data-agent-id="{AGENT}"][data-saved="true"]'))
    section = driver.find_element(By.CSS_SELECTOR, f'section[data-agent-id="{AGENT}"]')
    result["agent_edit"] = {"refused": refused, "title": section.find_element(By.TAG_NAME, "h2").text,
                            "silence_shown": driver.find_element(By.ID, f"{fid}-silence_timeout_seconds").get_attribute("value"),
                            "name_shown": driver.find_element(By.ID, f"{fid}-name").get_attribute("value")}


def test_send(driver, result):
    """The endpoint's test event, followed until the log says how it went."""
    driver.get(URL + "/console#/webhooks")
    click(driver, "the test-send button", "button.test-send")
    item = wait("the test delivery's outcome", lambda: driver.find_element(By.CSS_SELECTOR, "#test-deliveries li[data-final]"),
                seconds=30)
    wait("its attempt", lambda: "HTTP" in item.text, seconds=10)
    result["test_send"] = {"delivery_id": item.get_attribute("data-delivery-id"), "status": item.get_attribute("data-final"),
                           "text": item.text}
    shot(driver, "webhooks-test", 800)


def sidecar_load(driver, result):
    """The sidecar's calls against its capacity and its plotted lease turnarounds."""
    driver.get(URL + "/console#/sidecars")
    row = f'tr[data-sidecar-id="{SIDECAR}"]'
    load = wait("the sidecar's load", lambda: driver.find_element(By.CSS_SELECTOR, row + " td.load").text)
    plot = f'figure[data-sidecar-plot="{SIDECAR}"]'
    wait("a plotted turnaround", lambda: driver.find_elements(By.CSS_SELECTOR, plot + " circle"), seconds=20)
    result["sidecar_load"] = {"load": load, "points": len(driver.find_elements(By.CSS_SELECTOR, plot + " circle")),
                              "caption": driver.find_element(By.CSS_SELECTOR, plot + " figcaption").text}


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        log(f"FAILED {type(e).__name__}: {e}")
        sys.exit(1)
