//! The edge's records and their public JSON form; the KV key layout of the
//! configuration (calls live in each tenant's `CallStore`, see `calls::store`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use voxline_shared::analysis::{AnalysisPlan, CallAnalysis};
use voxline_shared::sidecar_link::{AmdMode, AnsweredBy, FirstSpeaker};
use voxline_shared::{CallStatus, EndedReason};

use crate::engine_keys::StoredSecret;

/// KV key layout. Tenant-scoped records carry the tenant in the key, so a
/// lookup with another tenant's id simply finds nothing (404, never 403).
pub mod keys {
    pub fn tenant(tid: &str) -> String {
        format!("tenant/{tid}")
    }
    pub fn agent(tid: &str, aid: &str) -> String {
        format!("agent/{tid}/{aid}")
    }
    pub fn agents_prefix(tid: &str) -> String {
        format!("agent/{tid}/")
    }
    /// API key lookup by hash of the clear key (the only auth path).
    pub fn api_key_by_hash(hash: &str) -> String {
        format!("apikey/{hash}")
    }
    /// API key by id, for listing and revoking; holds the hash, not the key.
    pub fn api_key(tid: &str, kid: &str) -> String {
        format!("apikeyid/{tid}/{kid}")
    }
    pub fn api_keys_prefix(tid: &str) -> String {
        format!("apikeyid/{tid}/")
    }
    pub fn webhook(tid: &str, wid: &str) -> String {
        format!("webhook/{tid}/{wid}")
    }
    pub fn webhooks_prefix(tid: &str) -> String {
        format!("webhook/{tid}/")
    }
    /// The webhook delivery log; ids sort newest first.
    pub fn webhook_delivery(tid: &str, did: &str) -> String {
        format!("whdlv/{tid}/{did}")
    }
    pub fn webhook_deliveries_prefix(tid: &str) -> String {
        format!("whdlv/{tid}/")
    }
    pub fn sidecar(sid: &str) -> String {
        format!("sidecar/{sid}")
    }
    pub const SIDECARS_PREFIX: &str = "sidecar/";
    /// A dialect credential by SHA-256 of its token (the only auth path); the
    /// dialect is in the key so one token string can never serve two dialects.
    pub fn dialect_key_by_hash(dialect: crate::dialects::Dialect, hash: &str) -> String {
        format!("dialectkey/{}/{hash}", dialect.name())
    }
    /// A dialect credential by id, for listing and revoking; holds the hash, not the token.
    pub fn dialect_key(tid: &str, kid: &str) -> String {
        format!("dialectkeyid/{tid}/{kid}")
    }
    pub fn dialect_keys_prefix(tid: &str) -> String {
        format!("dialectkeyid/{tid}/")
    }
    /// The tenant a CodeB host name serves (`Tenant.codeb_host`); written and
    /// removed by the admin API, so like all KV it may be up to 60 s stale.
    pub fn codeb_host(host: &str) -> String {
        format!("codebhost/{host}")
    }
    /// A CodeB tenant user ([`super::CodebUser`]) by its lowercase username.
    /// The tenant a Voice360 `{account_id}` names (`Tenant.voice360_account`):
    /// read to route a request, never to decide who holds the account (the
    /// claims object does).
    pub fn voice360_account(account: &str) -> String {
        format!("voice360acct/{account}")
    }
    pub fn codeb_user(tid: &str, username: &str) -> String {
        format!("user/{tid}/{username}")
    }
    pub fn codeb_users_prefix(tid: &str) -> String {
        format!("user/{tid}/")
    }
    /// A saved prompt, by its slug (CodeB's `systemPrompt: "reminder"`).
    pub fn prompt(tid: &str, slug: &str) -> String {
        format!("prompt/{tid}/{slug}")
    }
    pub fn prompts_prefix(tid: &str) -> String {
        format!("prompt/{tid}/")
    }
}

/// A tenant's saved prompt (`prompt/{tenant}/{slug}`): instructions a request
/// names by slug instead of sending them (CodeB's `systemPrompt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPrompt {
    pub slug: String,
    pub text: String,
    pub created_at: String,
    pub updated_at: String,
}

impl SavedPrompt {
    pub fn to_public(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["object"] = serde_json::json!("prompt");
        v
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub default_agent_id: Option<String>,
    pub disabled: bool,
    pub created_at: String,
    /// Enforced by the tenant's `RateLimiter` Durable Object.
    #[serde(default)]
    pub rate_limits: crate::traffic::RateLimits,
    /// Calls leased or live at once (None: unlimited); enforced by the region's queue.
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
    /// Off: every API key and dialect credential of the tenant is refused (403),
    /// while its calls, webhooks and the admin API go on (BuildVoiceAI's
    /// "Enable/Disable API access" switch; `disabled` stops everything).
    #[serde(default = "yes")]
    pub api_access: bool,
    /// The host name (optionally `:port`) the CodeB dialect serves this tenant
    /// at: CodeB isolates tenants per domain. Indexed in KV (`keys::codeb_host`).
    #[serde(default)]
    pub codeb_host: Option<String>,
    /// The `{account_id}` Voice360 clients name this tenant by
    /// (`/v3/voice/{account_id}/...`): unique across tenants (a claim).
    #[serde(default)]
    pub voice360_account: Option<String>,
}

fn yes() -> bool {
    true
}

/// The tenant as CodeB's answers and webhooks name it (`"tenant"`): its
/// `codeb_host` when set, else its id.
pub fn codeb_tenant_name(tenant: &Tenant) -> String {
    tenant
        .codeb_host
        .clone()
        .unwrap_or_else(|| tenant.id.clone())
}

/// A CodeB tenant user (`user/{tenant}/{username}`), who trades a username
/// and password for an access token at `/oidc.ashx/token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodebUser {
    /// 1-64 of `a-z 0-9 . _ @ -` (lowercased on input).
    pub username: String,
    /// A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`): the
    /// parameters travel with the hash, so they can be raised later.
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl CodebUser {
    /// What the admin API shows: never the hash.
    pub fn to_public(&self) -> serde_json::Value {
        serde_json::json!({
            "object": "user",
            "username": self.username,
            "disabled": self.disabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

/// Which speech engine runs the conversation (one list with the sidecar).
pub use voxline_shared::EngineKind as Engine;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub system_prompt: Option<String>,
    pub voice: Option<String>,
    pub language: String,
    pub default_engine: Engine,
    pub model: Option<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Overrides the tenant's `per_number` rate limit for this agent's calls.
    #[serde(default)]
    pub per_number_limit: Option<crate::traffic::RateLimit>,
    /// New calls of this agent per client address (None: only the tenant's `per_ip`
    /// applies); Calldock's "rate limit for a phone number/IP based on your agent settings".
    #[serde(default)]
    pub per_ip_limit: Option<crate::traffic::RateLimit>,
    /// When this agent's calls may start (None: any time).
    #[serde(default)]
    pub calling_window: Option<crate::calling_window::CallingWindow>,
    /// The engine API key for this agent's calls, sealed (see `engine_keys`); never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_api_key_sealed: Option<String>,
    #[serde(default)]
    pub engine_base_url: Option<String>,
    /// For this agent's calls, unless a call sets its own (None: 30 s).
    #[serde(default)]
    pub silence_timeout_seconds: Option<u32>,
    /// Who speaks first once a call is answered: the agent greets at the
    /// answer (`agent`, the default), or waits for the callee's first words
    /// (`callee`). Agents stored before it are `agent`.
    #[serde(default)]
    pub first_speaker: FirstSpeaker,
    /// Post-call analysis of this agent's calls (None: none; see
    /// `voxline_shared::analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisPlan>,
    /// Answering-machine detection for this agent's calls, unless a call
    /// sets its own (issue 18): `off` (agents stored before it), `hangup`,
    /// `leave_message`, `continue`.
    #[serde(default)]
    pub amd: AmdMode,
    /// `leave_message`'s words (None: the agent speaks its own greeting).
    #[serde(default)]
    pub amd_message: Option<String>,
    /// Customer tools the engine may call mid-call (issue 18); the edge
    /// POSTs each call to the tool's URL (`api::tool_calls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<AgentTool>,
    /// Signs the tools' requests (Standard Webhooks, `whsec_...`), sealed;
    /// minted when the agent first gets tools, shown once then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_secret: Option<StoredSecret>,
    /// The extensions of the tenant's people this agent's `transfer` tool
    /// may reach (issue 16): resolved when a call is placed and offered
    /// to the sidecar as `transfer_people`; no other extension is reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfer_extensions: Vec<String>,
}

/// One customer tool of an agent: what the model sees (name, description,
/// parameters) and where the edge sends its calls (url, timeout_ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A JSON Schema object.
    pub parameters: Value,
    pub url: String,
    /// How long the edge waits for the tool's answer.
    #[serde(default = "default_tool_timeout_ms")]
    pub timeout_ms: u32,
}

fn default_tool_timeout_ms() -> u32 {
    crate::limits::TOOL_TIMEOUT_MS.2 as u32
}

impl AgentTool {
    /// What the sidecar's engine declares (no URL: it never leaves the edge).
    pub fn offered(&self) -> voxline_shared::sidecar_link::OfferedTool {
        voxline_shared::sidecar_link::OfferedTool {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
        }
    }
}

/// Stored under `apikeyid/{tenant}/{key}`; the hash links to the auth record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: Option<String>,
    pub prefix: String,
    pub hash: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Requests with this key must carry `X-Signature` (see `request_signing`).
    #[serde(default)]
    pub require_signature: bool,
}

impl ApiKeyInfo {
    /// The public form never includes the hash.
    pub fn to_public(&self) -> Value {
        json!({"id": self.id, "object": "api_key", "name": self.name, "prefix": self.prefix,
               "require_signature": self.require_signature, "created_at": self.created_at, "revoked_at": self.revoked_at})
    }
}

/// Stored under `apikey/{hash}`: what an authenticated request learns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyAuth {
    pub key_id: String,
    pub tenant_id: String,
    /// Set when the key requires signed requests. Sealed (HMAC is symmetric,
    /// so it must be opened to verify); shown to the client once, at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<StoredSecret>,
}

/// A dialect credential as listed (`dialectkeyid/{tenant}/{id}`): never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialectKeyInfo {
    pub id: String,
    pub dialect: crate::dialects::Dialect,
    /// The agent the credential places calls for (VoiceB, Calldock); None: the
    /// tenant's (BuildVoiceAI, with `agent_id` in the body or the default agent).
    pub agent_id: Option<String>,
    pub name: Option<String>,
    /// The token's first characters, to tell keys apart in a listing.
    pub prefix: String,
    pub hash: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// BuildVoiceAI signs its webhooks with the token that placed the call, so
    /// that dialect's token is also kept sealed (never listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_token: Option<StoredSecret>,
}

impl DialectKeyInfo {
    pub fn to_public(&self) -> Value {
        json!({"id": self.id, "object": "dialect_key", "dialect": self.dialect, "agent_id": self.agent_id,
               "name": self.name, "prefix": self.prefix, "created_at": self.created_at, "revoked_at": self.revoked_at})
    }
}

/// Stored under `dialectkey/{dialect}/{hash}`: what an authenticated dialect request learns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialectKeyAuth {
    pub key_id: String,
    pub tenant_id: String,
    pub agent_id: Option<String>,
    /// VoiceB's API Secret (the request HMAC's key), sealed: HMAC is symmetric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_secret: Option<StoredSecret>,
}

/// The dialect credential a call was placed with: its webhooks are rendered in
/// that dialect, and BuildVoiceAI's are signed with that very token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedWith {
    pub dialect: crate::dialects::Dialect,
    pub key_id: String,
}

/// Delay after failed attempt n (seconds): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_RETRY_SCHEDULE: [u32; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// An endpoint's retry schedule unless it sets one.
pub fn default_retry_schedule() -> Vec<u32> {
    DEFAULT_RETRY_SCHEDULE.to_vec()
}

/// What an endpoint receives and how it is signed: the native events
/// (Standard Webhooks), or a dialect's post-call webhooks (docs/dialects.md;
/// one per call, two for CodeB; the bodies are `webhooks::post_call`'s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Endpoints written before formats existed read as native.
    #[default]
    Native,
    BuildVoiceAi,
    Calldock,
    Codeb,
    /// Voice360: one event type per endpoint (`voice360_event`).
    Voice360,
}

impl WebhookFormat {
    pub const ALL: [WebhookFormat; 5] = [
        WebhookFormat::Native,
        WebhookFormat::BuildVoiceAi,
        WebhookFormat::Calldock,
        WebhookFormat::Codeb,
        WebhookFormat::Voice360,
    ];
    /// The names, in the order of [`WebhookFormat::ALL`] (as serde writes them).
    pub const NAMES: [&'static str; 5] =
        ["native", "buildvoiceai", "calldock", "codeb", "voice360"];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Native => "native",
            WebhookFormat::BuildVoiceAi => "buildvoiceai",
            WebhookFormat::Calldock => "calldock",
            WebhookFormat::Codeb => "codeb",
            WebhookFormat::Voice360 => "voice360",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookFormat> {
        WebhookFormat::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// A dialect's format: sent the call's end only (not subscribed events).
    pub fn is_dialect(self) -> bool {
        self != WebhookFormat::Native
    }

    /// The delays retries follow. BuildVoiceAI's are its document's, whatever
    /// the endpoint's own schedule says (30 s, 5 min, 30 min, then dropped);
    /// the other formats follow the endpoint's `retry_schedule`.
    pub fn retry_schedule(self, own: &[u32]) -> &[u32] {
        match self {
            WebhookFormat::BuildVoiceAi => &crate::dialects::buildvoiceai::RETRY_SCHEDULE,
            WebhookFormat::Native
            | WebhookFormat::Calldock
            | WebhookFormat::Codeb
            | WebhookFormat::Voice360 => own,
        }
    }

    /// Whether a receiver's longer `Retry-After` delays the next attempt
    /// (not for BuildVoiceAI, whose document fixes the retry times).
    pub fn honours_retry_after(self) -> bool {
        self != WebhookFormat::BuildVoiceAi
    }

    /// How long an attempt waits for the answer before it counts as failed.
    pub fn attempt_timeout_ms(self) -> u64 {
        match self {
            WebhookFormat::BuildVoiceAi => {
                u64::from(crate::dialects::buildvoiceai::RESPONSE_TIMEOUT_SECONDS) * 1000
            }
            WebhookFormat::Native
            | WebhookFormat::Calldock
            | WebhookFormat::Codeb
            | WebhookFormat::Voice360 => DEFAULT_ATTEMPT_TIMEOUT_MS,
        }
    }
}

/// A delivery attempt is abandoned (and counted as failed) after this,
/// unless its endpoint's format says otherwise.
pub const DEFAULT_ATTEMPT_TIMEOUT_MS: u64 = 15_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    /// Empty means every event.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Sealed; opened to sign deliveries (Standard Webhooks is symmetric).
    pub secret: StoredSecret,
    pub created_at: String,
    /// Seconds to wait after each failed attempt; one retry per entry.
    #[serde(default = "default_retry_schedule")]
    pub retry_schedule: Vec<u32>,
    /// Why the edge disabled it (410 Gone), if it did.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// After a rotation, the old secret (sealed) keeps signing until this time.
    #[serde(default)]
    pub previous_secret: Option<StoredSecret>,
    #[serde(default)]
    pub previous_secret_expires_ms: Option<u64>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Only calls of this agent (None: every call of the tenant).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// A `voice360` endpoint's one event type ("Event Type": `CALL_ENDED`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice360_event: Option<String>,
}

impl WebhookEndpoint {
    /// The delays its retries follow (see [`WebhookFormat::retry_schedule`]).
    pub fn effective_retry_schedule(&self) -> &[u32] {
        self.format.retry_schedule(&self.retry_schedule)
    }

    pub fn to_public(&self) -> Value {
        let overlap_until = self
            .previous_secret
            .as_ref()
            .and(self.previous_secret_expires_ms)
            .map(crate::ids::rfc3339_ms);
        json!({"id": self.id, "object": "webhook_endpoint", "url": self.url, "format": self.format,
               "agent_id": self.agent_id, "events": self.events, "voice360_event": self.voice360_event,
               "enabled": self.enabled, "disabled_reason": self.disabled_reason, "retry_schedule": self.effective_retry_schedule(),
               "previous_secret_expires_at": overlap_until, "created_at": self.created_at,
               "updated_at": self.updated_at.as_ref().unwrap_or(&self.created_at)})
    }
}

/// A media sidecar's credentials. The HMAC secret is stored sealed and
/// opened to verify its signatures (symmetric); it is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarRecord {
    pub id: String,
    pub region: String,
    pub secret: StoredSecret,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl SidecarRecord {
    pub fn to_public(&self) -> Value {
        json!({"id": self.id, "object": "sidecar", "region": self.region, "created_at": self.created_at,
               "revoked_at": self.revoked_at})
    }
}

/// Who placed a call: we dialled out (`outbound`, the API's calls) or a
/// caller dialled one of the tenant's numbers (`inbound`, issue 16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    #[default]
    Outbound,
    Inbound,
}

impl CallDirection {
    pub const NAMES: [&'static str; 2] = ["outbound", "inbound"];
}

/// A call as stored and as returned by `GET /v1/calls/{id}`. Settings are
/// resolved against the agent when the call is created, so later agent edits
/// do not change calls already accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub id: String,
    pub status: CallStatus,
    pub phone: String,
    pub name: Option<String>,
    /// The caller-ID label the callee is shown (the SIP From display-name);
    /// none: the trunk's.
    #[serde(default)]
    pub caller_name: Option<String>,
    pub email: Option<String>,
    /// Where the transcript and outcome are emailed when the call ends
    /// (`mail`); not the callee's `email`.
    #[serde(default)]
    pub transcript_email: Option<String>,
    pub metadata: Option<Metadata>,
    pub agent_id: String,
    pub system_prompt: Option<String>,
    pub voice: Option<String>,
    pub language: String,
    pub engine: Engine,
    pub model: Option<String>,
    pub max_seconds: u32,
    pub retries: u32,
    pub retry_delay_minutes: u32,
    pub schedule_at: Option<String>,
    /// A stereo WAV recording was requested.
    #[serde(default)]
    pub record: bool,
    /// The dispatch region whose sidecars dial this call.
    pub region: String,
    /// Attempts started so far (1 once first dialled).
    pub attempts: u32,
    /// When the current/last attempt was handed to a sidecar.
    #[serde(default)]
    pub dispatched_at: Option<String>,
    #[serde(default)]
    pub ringing_at: Option<String>,
    #[serde(default)]
    pub answered_at: Option<String>,
    /// Set while waiting to redial after an unsuccessful attempt.
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    /// The SIP final response code of the last attempt, when it failed with one.
    #[serde(default)]
    pub sip_code: Option<u16>,
    pub created_at: String,
    pub updated_at: String,
    pub hangup_requested_at: Option<String>,
    pub ended_at: Option<String>,
    pub ended_reason: Option<EndedReason>,
    /// Why `schedule_at` is not what the client asked for, if it was moved.
    #[serde(default)]
    pub scheduled_reason: Option<ScheduledReason>,
    /// Where the engine connects (the call's or its agent's), when not the default.
    #[serde(default)]
    pub engine_base_url: Option<String>,
    /// An engine API key came with the call or its agent. The key itself is
    /// only in the queued offer, sealed.
    #[serde(default)]
    pub engine_api_key_set: bool,
    /// Hang up after this long with neither side speaking (the call's, else its agent's, else 30).
    #[serde(default = "default_silence_timeout")]
    pub silence_timeout_seconds: u32,
    /// Set when a dialect's credential placed the call (not in the public JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_with: Option<PlacedWith>,
    /// The caller ID number (E.164, one of the tenant's numbers) the callee
    /// is shown, when not the trunk's (`caller_number`, Voice360's
    /// `caller_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_number: Option<String>,
    /// The directory user (`pk`) whose extension placed the call (Voice360's
    /// `from`; not in the public JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_user: Option<u64>,
    /// The campaign that placed the call (`cmp_...`; public, null otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// The campaign contact's row the call is for (not in the public JSON):
    /// its notices name the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_row: Option<u32>,
    /// Its agent's `first_speaker` when the call was placed (for the offer;
    /// not in the public JSON).
    #[serde(default, skip_serializing_if = "FirstSpeaker::is_agent")]
    pub first_speaker: FirstSpeaker,
    /// `outbound` (stored before inbound calls existed: read as such) or
    /// `inbound`: then `phone` is the caller and `caller_number` the
    /// tenant's number that was called.
    #[serde(default)]
    pub direction: CallDirection,
    /// Its agent's `analysis` when the call was placed (not in the public JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_plan: Option<AnalysisPlan>,
    /// The post-call analysis, once an answered call with a plan has ended
    /// (public, null otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CallAnalysis>,
    /// Answering-machine detection (the call's `amd`, else its agent's;
    /// calls stored before it: `off`).
    #[serde(default)]
    pub amd: AmdMode,
    /// `leave_message`'s words (the call's, else its agent's).
    #[serde(default)]
    pub amd_message: Option<String>,
    /// Who answered, as detection decided (null: not detected, or not
    /// answered).
    #[serde(default)]
    pub answered_by: Option<AnsweredBy>,
    /// From the answer to that decision, in ms.
    #[serde(default)]
    pub amd_decision_ms: Option<u64>,
    /// An inbound call to a person (issue 16): the directory user (`pk`)
    /// whose phones it rings; its `agent_id` is then empty (no AI answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rings_user: Option<u64>,
    /// An inbound call put in a queue (issue 16): which (not in the public
    /// JSON; its availability's `active_calls`, its Voice360 events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<CallQueue>,
    /// The person whose leg answered an inbound call (the one rung, a queue
    /// member; issue 16), from the sidecar's `leg` event (not in the public
    /// JSON; their availability, Voice360's `to_user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_user: Option<u64>,
    /// The last transfer the API asked for (`POST /v1/calls/{id}/transfer`,
    /// issue 16) and how it went; public (null when none was asked). Not
    /// `transfer`: `call.transferred` has that, the event's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_request: Option<CallTransfer>,
}

/// The queue an inbound call waits in, as the call keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallQueue {
    pub pk: u64,
    /// Its `name` (the friendly one: Voice360's `queue_name`).
    pub name: String,
    /// The caller has left the queue (connected to a member, timed out or
    /// hung up), as the sidecar's `queue` events said: no longer waiting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left: bool,
}

/// How long a requested transfer counts as under way without word from its
/// sidecar (its `transferred` or `transfer_failed`): longer than a sidecar
/// takes (a REFER's 45 s then 30 s of ringing, or a warm transfer's 30 s of
/// ringing and a briefing of up to 1,000 characters, about 80 s spoken),
/// so a second transfer is not sent while the first may still complete;
/// and then a sidecar too old to know the command no longer blocks one.
pub const TRANSFER_PENDING_MS: u64 = 180_000;

/// Where a transfer the API asked for is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Sent to the sidecar holding the call; no outcome yet.
    Requested,
    /// The callee was handed over (`call.transferred`).
    Completed,
    /// It did not happen; `error` says why, and the call goes on.
    Failed,
}

impl TransferStatus {
    pub const ALL: [TransferStatus; 3] = [
        TransferStatus::Requested,
        TransferStatus::Completed,
        TransferStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Requested => "requested",
            TransferStatus::Completed => "completed",
            TransferStatus::Failed => "failed",
        }
    }
}

/// A transfer the API asked for, on its call's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTransfer {
    /// `xfr_...`.
    pub id: String,
    pub status: TransferStatus,
    /// The number asked for, or null for a person.
    pub destination: Option<String>,
    /// The person's extension, or null for a number.
    pub extension: Option<String>,
    /// The queue's `pk` (a transfer to a queue), else null.
    #[serde(default)]
    pub queue: Option<u64>,
    pub mode: voxline_shared::sidecar_link::TransferMode,
    pub requested_at: String,
    /// When it completed or failed.
    pub ended_at: Option<String>,
    /// `refer`, `bridge`, `warm` or `queue` (completed).
    pub method: Option<String>,
    /// A `transfer_errors` code (failed).
    pub error: Option<String>,
    /// The destination's final SIP answer, when it failed with one.
    pub sip_code: Option<u16>,
}

impl CallTransfer {
    /// Whether it still counts as under way at `now_ms` (requested, and
    /// neither answered nor older than [`TRANSFER_PENDING_MS`]).
    pub fn is_pending(&self, now_ms: u64) -> bool {
        self.status == TransferStatus::Requested
            && crate::ids::parse_rfc3339_utc_ms(&self.requested_at)
                .is_none_or(|at| now_ms < at.saturating_add(TRANSFER_PENDING_MS))
    }
}

/// A call's `metadata`: the client's JSON object as text, exactly as given
/// (insignificant whitespace aside), so key order, big integers, `-0` and
/// `1.50` come back unchanged in the API and in webhooks.
///
/// Stored and passed between the Worker and its objects as a JSON string
/// holding that text: a nested JSON value would be re-read as numbers and a
/// sorted map on the way (the call store's answers are tagged enums, which
/// serde buffers). Records written before hold a JSON object; it is read too.
#[derive(Debug, Clone)]
pub struct Metadata(Box<RawValue>);

impl Metadata {
    /// `text` if it is one JSON object, with the whitespace between tokens removed.
    pub fn from_json_text(text: &str) -> Option<Metadata> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let compact = compact_json(text);
        // Checks it is JSON; the text kept is ours, not the parser's.
        serde_json::from_str::<Map<String, Value>>(&compact).ok()?;
        RawValue::from_string(compact).ok().map(Metadata)
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// As a `Value` (keys sorted, numbers as serde_json reads them), for
    /// the sidecar's offer, whose protocol types it as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object, or its text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Metadata, E> {
                Metadata::from_json_text(v)
                    .ok_or_else(|| E::custom("metadata text is not a JSON object"))
            }
            // A record written before metadata was kept as text.
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Metadata, A::Error> {
                let m = Map::<String, Value>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Metadata::from_json_text(&Value::Object(m).to_string())
                    .ok_or_else(|| serde::de::Error::custom("metadata is not a JSON object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `text` without the whitespace between JSON tokens (strings untouched).
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// A stored record's public JSON text: its fields with `object` set,
/// `hidden` (internal fields) left out, `always` present (null when unset),
/// and `metadata` as the client wrote it (see [`Metadata`]).
pub fn public_record_json<T: Serialize>(
    record: &T,
    object: &str,
    hidden: &[&str],
    always: &[&str],
    metadata: Option<&Metadata>,
) -> String {
    let mut fields = match serde_json::to_value(record) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    fields.insert("object".into(), json!(object));
    for name in hidden {
        fields.remove(*name);
    }
    for name in always {
        fields.entry(*name).or_insert(Value::Null);
    }
    object_with_raw(&fields, "metadata", metadata.map(Metadata::raw))
}

/// The JSON text of `fields` plus `name` set to `raw` verbatim (null when
/// None); a `name` already in `fields` is replaced.
pub fn object_with_raw(fields: &Map<String, Value>, name: &str, raw: Option<&RawValue>) -> String {
    struct With<'a>(&'a Map<String, Value>, &'a str, Option<&'a RawValue>);
    impl Serialize for With<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(None)?;
            for (k, v) in self.0.iter().filter(|(k, _)| k.as_str() != self.1) {
                m.serialize_entry(k, v)?;
            }
            m.serialize_entry(self.1, &self.2)?;
            m.end()
        }
    }
    // Cannot fail: string keys, and values that are JSON already.
    serde_json::to_string(&With(fields, name, raw)).unwrap_or_default()
}

/// Vapi's and Retell's default too.
pub const DEFAULT_SILENCE_TIMEOUT_SECONDS: u32 = 30;

fn default_silence_timeout() -> u32 {
    DEFAULT_SILENCE_TIMEOUT_SECONDS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledReason {
    /// Placed (or scheduled) outside the agent's calling window: moved to its next start.
    CallingWindow,
}

impl CallRecord {
    /// The public JSON text of the call, `metadata` exactly as the client
    /// gave it (a `Value` would sort its keys and rewrite its numbers).
    pub fn to_public_json(&self) -> String {
        // `caller_number` and `campaign_id` always present: null means the
        // trunk's number, no campaign.
        public_record_json(
            self,
            "call",
            &[
                "placed_with",
                "from_user",
                "queue",
                "answered_user",
                "campaign_row",
                "first_speaker",
                "analysis_plan",
            ],
            &[
                "caller_number",
                "campaign_id",
                "analysis",
                "transfer_request",
            ],
            self.metadata.as_ref(),
        )
    }

    /// Whether directory person `user_pk` is on this call (a live one):
    /// they placed it (click-to-call, or from their extension), their leg
    /// answered it, or it rings them now.
    pub fn has_user(&self, user_pk: u64) -> bool {
        self.from_user == Some(user_pk)
            || self.answered_user == Some(user_pk)
            || (self.rings_user == Some(user_pk) && self.answered_user.is_none())
    }

    /// A listing row: what `GET /v1/calls` shows of each call.
    pub fn summary(&self) -> Value {
        json!({"id": self.id, "object": "call", "status": self.status, "direction": self.direction, "phone": self.phone, "agent_id": self.agent_id,
               "created_at": self.created_at, "updated_at": self.updated_at, "ended_reason": self.ended_reason})
    }
}

/// A plain queued call for unit tests; tests change the fields they care about.
#[cfg(test)]
pub fn test_call(status: CallStatus) -> CallRecord {
    CallRecord {
        id: "call_1".into(),
        status,
        phone: "+14155550100".into(),
        name: None,
        caller_name: None,
        email: None,
        transcript_email: None,
        metadata: None,
        agent_id: "agt_1".into(),
        system_prompt: None,
        voice: None,
        language: "en-US".into(),
        engine: Engine::Local,
        model: None,
        max_seconds: 300,
        retries: 0,
        retry_delay_minutes: 5,
        schedule_at: None,
        record: false,
        region: "local".into(),
        attempts: 0,
        dispatched_at: None,
        ringing_at: None,
        answered_at: None,
        next_attempt_at: None,
        sip_code: None,
        created_at: "2026-11-25T14:50:00.123Z".into(),
        updated_at: "2026-11-25T14:50:00.123Z".into(),
        hangup_requested_at: None,
        ended_at: None,
        ended_reason: None,
        scheduled_reason: None,
        engine_base_url: None,
        engine_api_key_set: false,
        silence_timeout_seconds: DEFAULT_SILENCE_TIMEOUT_SECONDS,
        placed_with: None,
        caller_number: None,
        from_user: None,
        campaign_id: None,
        campaign_row: None,
        first_speaker: FirstSpeaker::Agent,
        direction: CallDirection::Outbound,
        analysis_plan: None,
        analysis: None,
        amd: AmdMode::Off,
        amd_message: None,
        answered_by: None,
        amd_decision_ms: None,
        rings_user: None,
        queue: None,
        answered_user: None,
        transfer_request: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_row_is_a_small_summary_of_the_call() {
        let rec = CallRecord {
            system_prompt: Some("p".repeat(20_000)),
            ended_reason: Some(EndedReason::HangupRequested),
            ..test_call(CallStatus::Queued)
        };
        let s = rec.summary();
        assert!(s.to_string().len() < 1024);
        assert_eq!(
            (
                s["status"].as_str(),
                s["ended_reason"].as_str(),
                s["object"].as_str()
            ),
            (Some("queued"), Some("hangup_requested"), Some("call"))
        );
        let public: Value = serde_json::from_str(&rec.to_public_json()).unwrap();
        assert_eq!(public["object"], "call");
    }

    #[test]
    fn metadata_is_kept_as_given_and_old_records_still_read() {
        let given = r#"{"b":1,"a":12345678901234567890123,"z":-0,"n":1.50,"s":"x \" y"}"#;
        let m = Metadata::from_json_text(given).unwrap();
        assert_eq!(m.as_str(), given);
        assert_eq!(
            Metadata::from_json_text("{ \"b\" : [1, 2],\n \"a\": \" sp ace \" }")
                .unwrap()
                .as_str(),
            r#"{"b":[1,2],"a":" sp ace "}"#
        );
        for bad in ["[1]", "1", "{", r#"{"a":1}x"#, ""] {
            assert!(Metadata::from_json_text(bad).is_none(), "{bad}");
        }
        let rec = CallRecord {
            metadata: Some(m),
            ..test_call(CallStatus::Queued)
        };
        let public = rec.to_public_json();
        assert!(
            public.contains(&format!(r#""metadata":{given}"#)),
            "{public}"
        );
        // Round trip through storage, and through a tagged enum (serde buffers it).
        let stored = serde_json::to_string(&rec).unwrap();
        assert_eq!(serde_json::from_str::<CallRecord>(&stored).unwrap(), rec);
        #[derive(Serialize, Deserialize)]
        #[serde(tag = "t")]
        enum Tagged {
            R { record: CallRecord },
        }
        let Tagged::R { record } = serde_json::from_str(
            &serde_json::to_string(&Tagged::R {
                record: rec.clone(),
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(record.to_public_json(), public);
        // A record written before: metadata as a JSON object.
        let mut old: Value = serde_json::from_str(&stored).unwrap();
        old["metadata"] = json!({"crm": 7, "a": [1]});
        let from_text: CallRecord = serde_json::from_str(&old.to_string()).unwrap();
        assert_eq!(from_text.metadata.unwrap().as_str(), r#"{"a":[1],"crm":7}"#);
        let from_value: CallRecord = serde_json::from_value(old).unwrap();
        assert_eq!(
            from_value.metadata.unwrap().as_str(),
            r#"{"a":[1],"crm":7}"#
        );
    }
}
