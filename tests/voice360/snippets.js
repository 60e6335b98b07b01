// Voice360's fetch examples, as the document prints them (voice360-api-v3.txt:
// "SMS Services", "Phone Numbers"), verbatim between the markers. The e2e
// suite runs a copy with the base URL and the keys filled in, naming the
// example to run: node snippets.js sendSMS|getAccountNumbers|getActiveNumbers|getUserNumbers
// ---- the document's examples, verbatim ----
const sendSMS = async () => {
  const response = await fetch('https://api.voice360.app/v3/voice/61/sms/send', {
    method: 'POST',
    headers: {
      'X-API-Key': 'your_api_key',
      'Content-Type': 'application/json'
    },
    body: JSON.stringify({
      from: '+15559876543',
      to: '+15551234567',
      message: 'Hello from Voice360!'
    })
  });

  const result = await response.json();
  console.log(result);
};
const getAccountNumbers = async () => {
  const response = await fetch('https://api.voice360.app/v3/voice/61/numbers', {
    method: 'GET',
    headers: {
      'X-API-Key': 'v360_dev_your_developer_key'
    }
  });

  const result = await response.json();
  console.log('Account numbers:', result.result);
};

// With filters
const getActiveNumbers = async () => {
  const response = await fetch('https://api.voice360.app/v3/voice/61/numbers?status=active', {
    method: 'GET',
    headers: {
      'X-API-Key': 'v360_dev_your_developer_key'
    }
  });

  const result = await response.json();
  console.log('Active numbers:', result.result);
};
const getUserNumbers = async () => {
  const response = await fetch('https://api.voice360.app/v3/voice/61/user/numbers', {
    method: 'GET',
    headers: {
      'X-API-Key': 'your_api_key'
    }
  });

  const result = await response.json();
  console.log('My phone numbers:', result.result);
};
// ---- end of the examples ----

const examples = { sendSMS, getAccountNumbers, getActiveNumbers, getUserNumbers };
examples[process.argv[2]]().catch((e) => { console.error(e); process.exit(1); });
