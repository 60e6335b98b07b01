// The Node.js sample of the VoiceB document (voiceb-click-to-call.txt, "Code
// Samples"), as written there; only this comment is ours. tests/dialects.rs runs
// it with API_KEY, SECRET_KEY and ENDPOINT set, as the document says.
const axios = require('axios');
const crypto = require('crypto');
const API_KEY = process.env.API_KEY;
const SECRET_KEY = process.env.SECRET_KEY;
const ENDPOINT = process.env.ENDPOINT;
function generateSignature(secret, data) {
return crypto.createHmac('sha256', secret).update(data).digest('hex');
}
async function makeRequest() {
const body = {
phone: '+34612345678',
};
const textBody = JSON.stringify(body);
const signature = generateSignature(SECRET_KEY, textBody);
try {
const response = await axios.post(ENDPOINT, body, {
headers: {
'api-key': API_KEY,
'signature': signature,
'Content-Type': 'application/json',
},
});
console.log('Response:', response.data);
} catch (error) {
console.error('Error making request:', error.response ? error.response.data : error.message);
}
}
makeRequest();
