# The Python sample of the VoiceB document (voiceb-click-to-call.txt, "Code
# Samples"), as written there, with the indentation its web page lost put back;
# only these comments are ours. tests/dialects.rs runs it with API_KEY,
# SECRET_KEY and ENDPOINT set, as the document says.
import os
import hmac
import hashlib
import requests
import json
API_KEY = os.getenv('API_KEY')
SECRET_KEY = os.getenv('SECRET_KEY')
ENDPOINT = os.getenv('ENDPOINT')
def generate_signature(secret, data):
    return hmac.new(secret.encode(), data.encode(), hashlib.sha256).hexdigest()
def make_request():
    body = {
    'phone': '+34612345678',
    }
    text_body = json.dumps(body)
    signature = generate_signature(SECRET_KEY, text_body)
    headers = {
    'api-key': API_KEY,
    'signature': signature,
    'Content-Type': 'application/json',
    }
    response = requests.post(ENDPOINT, headers=headers, data=text_body)
    print('Response:', response.json())
if __name__ == '__main__':
    make_request()
