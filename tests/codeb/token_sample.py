# CodeB's "Step 1 — Mint a Bearer token" in Python, as the document prints it
# (codeb-outbound-ai-rest.txt; the web page lost its line breaks, put back).
# The e2e suite runs a copy with only the host and the password filled in.
import requests
r = requests.post(
    "https://phone.yourtenant.com/oidc.ashx/token",
    data={
        "grant_type": "password",
        "username": "alice",
        "password": "YOUR_PASSWORD",
        "scope": "openid",
    },
    timeout=10,
)
r.raise_for_status()
token = r.json()["access_token"]
print(token)
