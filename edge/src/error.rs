//! The one error type of the edge API. Every failure a client can see is an
//! [`ApiError`]: an HTTP status, a stable machine code, a human message, and the
//! offending field when there is one. Codes never change meaning once shipped.

use serde_json::json;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal, $doc:literal)),+ $(,)?) => {
        /// Stable machine codes, rendered as `error.code`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $(ErrorCode::$variant => $code),+ } }
            pub fn http_status(self) -> u16 { match self { $(ErrorCode::$variant => $status),+ } }
            /// One line for docs and the OpenAPI description.
            pub fn describe(self) -> &'static str { match self { $(ErrorCode::$variant => $doc),+ } }
        }
    };
}

error_codes! {
    InvalidJson => ("invalid_json", 400, "The body is not valid JSON (or is empty)."),
    UnknownField => ("unknown_field", 400, "The body has a field this endpoint does not know; `field` names it."),
    InvalidParameter => ("invalid_parameter", 400, "A query parameter is malformed or out of range; `field` names it."),
    InvalidCursor => ("invalid_cursor", 400, "The pagination cursor was not issued by this API for this query."),
    InvalidRecordingManifest => ("invalid_recording_manifest", 400, "Sidecar link: a recording upload's manifest is missing or malformed, or does not match the call or the body."),
    RecordingChecksumMismatch => ("recording_checksum_mismatch", 400, "Sidecar link: the uploaded recording's bytes do not match the manifest's length or SHA-256."),
    UnsupportedProtocolVersion => ("unsupported_protocol_version", 400, "Sidecar link: the message's protocol_version is not one this edge speaks."),
    MissingCredentials => ("missing_credentials", 401, "No `Authorization: Bearer ...` header."),
    InvalidCredentials => ("invalid_credentials", 401, "The API key or admin token is unknown or revoked."),
    InvalidSignature => ("invalid_signature", 401, "Sidecar link: the request signature is missing, malformed, stale or wrong."),
    ReplayedRequest => ("replayed_request", 401, "This signed request was already accepted once (an API request's `X-Signature`, or a sidecar link nonce); sign each request anew."),
    InvalidRequestSignature => ("invalid_request_signature", 401, "This API key requires signed requests: `X-Signature` is missing, malformed, more than 300 s away from now, or does not match the method, path and query, and body."),
    SignatureVersionUnsupported => ("signature_version_unsupported", 401, "The request is signed with a scheme this edge does not accept (`v1`, which binds neither method nor path): sign with `v2` (an API key's `X-Signature`, or the sidecar link's `x-voxline-signature`; upgrade the sidecar)."),
    HttpsRequired => ("https_required", 403, "Sidecar link: outside development the edge takes the link over HTTPS only (plain http is refused before anything is read)."),
    RegionMismatch => ("region_mismatch", 403, "Sidecar link: the sidecar spoke for a region it does not belong to."),
    InvalidRecordingLink => ("invalid_recording_link", 403, "A recording link's `expires` or `signature` is missing, malformed, wrong or expired (nothing says whether the call exists); ask for a fresh link."),
    TenantDisabled => ("tenant_disabled", 403, "The tenant owning this key is disabled."),
    ApiAccessDisabled => ("api_access_disabled", 403, "API access is switched off for the tenant owning this key (`api_access: false`); its calls and webhooks go on."),
    DialectKeyNotFound => ("dialect_key_not_found", 404, "No dialect credential with this id for this tenant."),
    PromptNotFound => ("prompt_not_found", 404, "No saved prompt with this slug for this tenant."),
    NotFound => ("not_found", 404, "No such route."),
    CallNotFound => ("call_not_found", 404, "No call with this id for this tenant."),
    ContactNotFound => ("contact_not_found", 404, "No contact with this id for this tenant."),
    CampaignNotFound => ("campaign_not_found", 404, "No campaign with this id for this tenant."),
    MessageNotFound => ("message_not_found", 404, "No text message with this id for this tenant (sidecar link: no message with the delivery report's IMDN `Message-ID`)."),
    TenantNotFound => ("tenant_not_found", 404, "No tenant with this id."),
    AgentNotFound => ("agent_not_found", 404, "No agent with this id for this tenant."),
    ApiKeyNotFound => ("api_key_not_found", 404, "No API key with this id for this tenant."),
    SidecarNotFound => ("sidecar_not_found", 404, "No sidecar with this id."),
    WebhookNotFound => ("webhook_not_found", 404, "No webhook endpoint with this id for this tenant."),
    DeliveryNotFound => ("delivery_not_found", 404, "No webhook delivery with this id for this tenant."),
    UserNotFound => ("user_not_found", 404, "No CodeB user with this username for this tenant."),
    NumberNotFound => ("number_not_found", 404, "Admin API: the tenant has no phone number like this (E.164 in the path, `+` written as is or as `%2B`). Sidecar link: the text message's `to` is no tenant's number that takes texts (unknown, `sms_enabled` off, or not active)."),
    DirectoryUserNotFound => ("directory_user_not_found", 404, "No directory user with this `pk` for this tenant."),
    QueueNotFound => ("queue_not_found", 404, "No call queue with this `pk` for this tenant."),
    Voice360KeyNotFound => ("voice360_key_not_found", 404, "No Voice360 API key with this id for this tenant."),
    RecordingNotFound => ("recording_not_found", 404, "The call has no stored recording (not requested, not answered, or not uploaded yet); the message says which."),
    MethodNotAllowed => ("method_not_allowed", 405, "The route exists but not for this HTTP method."),
    LeaseNotHeld => ("lease_not_held", 409, "Sidecar link: the lease expired or was re-leased; do not dial that call."),
    SidecarNotRegistered => ("sidecar_not_registered", 410, "Sidecar link: register again (unknown, or presumed dead)."),
    AgentDisabled => ("agent_disabled", 409, "The agent exists but is disabled; enable it or pick another."),
    CallNotHeld => ("call_not_held", 409, "Sidecar link: a tool call or a post-call transcript names a call (attempt) this sidecar does not hold."),
    RecordingNotHeld => ("recording_not_held", 409, "Sidecar link: a recording was uploaded by a sidecar that did not hold that attempt of the call."),
    RecordingNotRequested => ("recording_not_requested", 409, "Sidecar link: a recording was uploaded for a call placed without `record: true`."),
    UserExists => ("user_exists", 409, "The tenant already has a CodeB user with this username."),
    NumberTaken => ("number_taken", 409, "Another tenant holds this phone number."),
    Voice360AccountTaken => ("voice360_account_taken", 409, "Another tenant is served as this `voice360_account`."),
    ExtensionTaken => ("extension_taken", 409, "Another user or queue of the tenant has this extension."),
    DirectoryFull => ("directory_full", 409, "The tenant's directory holds the most users, queues or keys it may (2,000 each)."),
    CodebHostTaken => ("codeb_host_taken", 409, "Another tenant is served at this `codeb_host`."),
    ContactExists => ("contact_exists", 409, "Another contact of the tenant has this `phone`; the message names it (update that one, or delete it first)."),
    ContactsFull => ("contacts_full", 409, "The tenant keeps the most contacts it may (100,000); delete some first."),
    CampaignStateConflict => ("campaign_state_conflict", 409, "The campaign's status does not allow this action (start a campaign not `created`, pause one not `running`, resume one not `paused`, cancel a `completed` one); the message names its status."),
    WebhookDisabled => ("webhook_disabled", 409, "The webhook endpoint (of the delivery, or to be sent a test event) is disabled or was deleted; enable it (PATCH) first."),
    NotRedeliverable => ("not_redeliverable", 409, "The delivery log entry is a customer tool's request (`kind: tool_call`), made once during its call; it is not sent again."),
    PayloadTooLarge => ("payload_too_large", 413, "The request body is larger than the endpoint accepts."),
    UnsupportedMediaType => ("unsupported_media_type", 415, "The body must be sent as `Content-Type: application/json`."),
    MissingField => ("missing_field", 422, "A required field is absent or null; `field` names it."),
    InvalidType => ("invalid_type", 422, "A field has the wrong JSON type; `field` names it."),
    InvalidValue => ("invalid_value", 422, "A field's value is not one of those allowed; `field` names it."),
    ValueTooLong => ("value_too_long", 422, "A string field is longer than allowed; `field` names it."),
    OutOfRange => ("out_of_range", 422, "A number or date is outside its allowed range; `field` names it."),
    InvalidPhoneNumber => ("invalid_phone_number", 422, "The number is not E.164 (`+` then 7 to 15 digits, no spaces)."),
    InvalidEmail => ("invalid_email", 422, "The email address is malformed."),
    InvalidLanguage => ("invalid_language", 422, "The language is not a well-formed BCP-47 tag (e.g. `en-US`)."),
    InvalidTimestamp => ("invalid_timestamp", 422, "The timestamp is not RFC 3339 in UTC (e.g. `2026-01-02T15:04:05Z`)."),
    ScheduleInPast => ("schedule_in_past", 422, "`schedule_at` must be in the future."),
    MetadataTooLarge => ("metadata_too_large", 422, "`metadata` is larger than allowed once serialized."),
    InvalidContacts => ("invalid_contacts", 422, "Some contacts of a new campaign are invalid: `error.rows` lists them (at most 100), each with its `row` number, `code`, `field` and `message`; nothing was created."),
    UnknownAgent => ("unknown_agent", 422, "`agent_id` names no agent of this tenant."),
    UnknownExtension => ("unknown_extension", 422, "`from_extension` (a call) or `extension` (a transfer) names no person of this tenant's directory (an AI agent's extension is not one: give its `agent_id`)."),
    UnknownQueue => ("unknown_queue", 422, "`queue` (a transfer) names no call queue of this tenant (its `pk`)."),
    UnknownVariable => ("unknown_variable", 422, "The call's prompt has a `{{placeholder}}` the call does not fill (not `name`, `phone`, a `metadata.KEY` with a string, number or boolean, or one of its `variables`); the message names it."),
    UnknownNumber => ("unknown_number", 422, "The number (`from` of a text, `caller_number` of a call) is not one of this tenant's active phone numbers."),
    NumberNotSmsCapable => ("number_not_sms_capable", 422, "`from` is this tenant's number but cannot send texts now (`sms_enabled` is off, or it is not `active`)."),
    AgentRequired => ("agent_required", 422, "No `agent_id` given and the tenant has no default agent."),
    InvalidUrl => ("invalid_url", 422, "The URL is malformed or not allowed (https only; plain http only for loopback in local dev)."),
    IdempotencyKeyInFlight => ("idempotency_key_in_flight", 409, "A request with this `Idempotency-Key` is still being processed; retry shortly."),
    CallInProgress => ("call_in_progress", 409, "A call from this agent (or, `from_extension`, this person) to this number is already queued, scheduled or live; the message names it."),
    CallNotAnswered => ("call_not_answered", 409, "The call is not answered yet (queued, scheduled, dialing or ringing): only a call in progress can be transferred."),
    CallEnded => ("call_ended", 409, "The call has ended (or its hangup was requested): it cannot be transferred."),
    CallNotTransferable => ("call_not_transferable", 409, "The call cannot be transferred: it rings a person rather than an AI agent, or the sidecar holding it cannot be reached now; the message says which."),
    TransferInProgress => ("transfer_in_progress", 409, "A transfer of this call is under way (its outcome is not in yet) or has completed; `transfer_request` on the call says which."),
    IdempotencyKeyReused => ("idempotency_key_reused", 422, "This `Idempotency-Key` was used with a different request (method, path or body)."),
    OutsideCallingWindow => ("outside_calling_window", 422, "The call would start outside its agent's `calling_window` and the request said `outside_window: reject`; the message names the next window start."),
    RateLimited => ("rate_limited", 429, "Too many requests; retry after `Retry-After` seconds."),
    TooManyFailedAttempts => ("too_many_failed_attempts", 429, "Too many requests with wrong credentials (an unknown or revoked API key, a wrong admin token) from this client address; retry after `Retry-After` seconds."),
    ConcurrencyLimitReached => ("concurrency_limit_reached", 429, "The tenant's `max_concurrent_calls` are taken (calls in flight plus calls already due) and the request said `on_concurrency_limit: reject`."),
    EngineKeysUnavailable => ("engine_keys_unavailable", 503, "This deployment has no `VOXLINE_SEALING_KEY` secret, so it cannot keep engine API keys; leave `engine_api_key` out (the sidecar's own key is used) or ask the operator."),
    SecretsUnavailable => ("secrets_unavailable", 503, "This deployment has no usable `VOXLINE_SEALING_KEY` secret: sidecar, webhook and request-signing secrets are only ever stored sealed, so it can neither mint nor use them; ask the operator."),
    InternalError => ("internal_error", 500, "An unexpected error on our side; it has been logged."),
    StorageUnavailable => ("storage_unavailable", 503, "Storage did not answer; retry with backoff."),
}

/// A client-visible failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    /// `{"error":{"code":..,"message":..,"field":..}}` — the one error shape.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": {"code": self.code.as_str(), "message": self.message, "field": self.field}})
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(_) => ApiError::new(
                ErrorCode::StorageUnavailable,
                "storage did not answer; retry with backoff",
            ),
            crate::store::StoreError::Corrupt(_) => ApiError::new(
                ErrorCode::InternalError,
                "a stored record could not be read",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {}", c.as_str());
            assert!(c
                .as_str()
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'));
            assert!(c.as_str().starts_with(|ch: char| ch.is_ascii_lowercase()));
            assert!((400..600).contains(&c.http_status()));
            assert!(!c.describe().is_empty());
        }
    }

    #[test]
    fn error_shape_has_code_message_and_field() {
        let e = ApiError::field(ErrorCode::OutOfRange, "max_seconds", "too big");
        assert_eq!(
            e.to_json(),
            json!({"error":{"code":"out_of_range","message":"too big","field":"max_seconds"}})
        );
        assert_eq!(
            ApiError::new(ErrorCode::NotFound, "x").to_json()["error"]["field"],
            serde_json::Value::Null
        );
    }
}
