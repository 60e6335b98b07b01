# CodeB's "Step 2 — POST the call" in Python, as the document prints it
# (codeb-outbound-ai-rest.txt; the web page lost its line breaks, put back).
# The e2e suite runs a copy with only the host filled in; CODEB_TOKEN and
# AI_API_KEY come from the environment, as the sample expects.
import requests, os
TOKEN = os.environ["CODEB_TOKEN"]
payload = {
    "phone": "+4915157610183",
    "displayName": "Reminder",
    "email": "ops@yourcompany.example",
    "systemPrompt": (
        "You are calling Alex to confirm the dentist appointment tomorrow "
        "at 14:00. Be brief and warm. If they answer YES, say goodbye. "
        "If NO, offer to reschedule for the same time next week."
    ),
    "apiKey": os.environ["AI_API_KEY"],
    "voice": "Aoede",
    "language": "en-US",
    "maxSeconds": 180,
    "retries": 2,
    "retryDelayMinutes": 10,
}
r = requests.post(
    "https://phone.yourtenant.com/api.ashx/v1/calls",
    headers={"Authorization": f"Bearer {TOKEN}"},
    json=payload,
    timeout=15,
)
r.raise_for_status()
call_id = r.json()["callId"]
print("queued", call_id)
