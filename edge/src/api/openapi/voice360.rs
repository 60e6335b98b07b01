//! The Voice360 v3 paths (docs/dialects.md "Voice360", seed
//! `voice360-api-v3.txt`) under the `voice360` tag, and its webhook bodies.
//! They answer in Voice360's envelope, so they are written whole here; the
//! paths, access, messages, error codes and limits come from
//! `dialects::voice360` (exhaustive matches on [`Operation`], [`V360Error`]
//! and [`EventType`]: a new one does not compile until it is documented).

use super::patterns::E164_PATTERN;
use crate::dialects::voice360::{
    self as v360, Access, Caller, EventType, NumberStatus, Operation, Strategy, V360Error,
};
use crate::messages::MessageStatus;
use serde_json::{json, Map, Value};

pub(super) const TAG: &str = "voice360";
pub(super) const SCHEME: &str = "voice360ApiKey";

const CALL_ID_PATTERN: &str = "^call_[0-9a-f]{22}$";
const MESSAGE_ID_PATTERN: &str = "^msg_[0-9a-f]{22}$";
const EXTENSION_PATTERN: &str = "^[0-9]{2,16}$";
/// `ok_body` and the error bodies: RFC 3339, whole seconds, UTC.
const TIMESTAMP_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$";

/// One of each operation (path parameters are samples). `template` is an
/// exhaustive match, so a new operation needs a path here to compile.
pub(super) const OPERATIONS: [Operation; 10] = [
    Operation::UserAvailability,
    Operation::ListQueues,
    Operation::GetQueue { queue_id: 1 },
    Operation::QueuesAvailability,
    Operation::QueueAvailability { queue_id: 1 },
    Operation::ListNumbers,
    Operation::UserNumbers,
    Operation::UserProfile,
    Operation::OutboundCall,
    Operation::SendSms,
];

/// (method, path template) of an operation.
pub(super) fn template(op: Operation) -> (&'static str, &'static str) {
    match op {
        Operation::UserAvailability => ("GET", "/v3/voice/{account_id}/availability"),
        Operation::ListQueues => ("GET", "/v3/voice/{account_id}/queues"),
        Operation::GetQueue { .. } => ("GET", "/v3/voice/{account_id}/queues/{queue_id}"),
        Operation::QueuesAvailability => ("GET", "/v3/voice/{account_id}/availability/queues"),
        Operation::QueueAvailability { .. } => (
            "GET",
            "/v3/voice/{account_id}/availability/queues/{queue_id}",
        ),
        Operation::ListNumbers => ("GET", "/v3/voice/{account_id}/numbers"),
        Operation::UserNumbers => ("GET", "/v3/voice/{account_id}/user/numbers"),
        Operation::UserProfile => ("GET", "/v3/voice/{account_id}/user/profile"),
        Operation::OutboundCall => ("POST", "/v3/voice/{account_id}/call/outbound"),
        Operation::SendSms => ("POST", "/v3/voice/{account_id}/sms/send"),
    }
}

pub(super) fn tag() -> Value {
    json!({"name": TAG, "description": "Dialect: the Voice360 API v3 (seed document `voice360-api-v3.txt`) at `/v3/voice/{account_id}/...`, where `account_id` is a tenant's `voice360_account` (admin API). Users, queues and keys are the tenant's directory (`/admin/tenants/{tenant_id}/directory/...`, `/voice360-keys`), numbers its phone numbers; `POST /call/outbound` from an AI agent's extension places that agent's call on the same pipeline as `POST /v1/calls`, from a person's extension their click-to-call. Every answer is Voice360's envelope: `{result, error: false, message, timestamp}` or `{result: null, error: true, message, error_code, details?, timestamp}`."})
}

pub(super) fn security_schemes() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(SCHEME.into(), json!({"type": "apiKey", "in": "header", "name": v360::HEADER_KEY,
        "description": format!("Voice360: `{key}: <key>`, minted by `POST /admin/tenants/{{tenant_id}}/voice360-keys`. Two kinds: a **developer key** (`{dev}` + 48 hex digits) acts for the whole account; a **user key** (48 hex digits, no prefix) for one directory user. Developer key only: `POST /call/outbound`, `GET /numbers`. User key only: `GET /user/numbers`, `GET /user/profile`. Either: `POST /sms/send`. Without a key or with a developer key (a user key is refused): `GET /availability`, `/queues`, `/queues/{{queue_id}}`, `/availability/queues`, `/availability/queues/{{queue_id}}`; without a key they answer the public view (availability without `channels`, queues with `pk`, `name`, `queue_name`, `extension` only), limited to {public} requests a minute per client address (`CF-Connecting-IP`). With a key: {per_key} requests a minute per key. Admitted answers carry `{limit}` and `{remaining}`; over the limit: 429 `RATE_LIMITED` with `Retry-After`. A missing key where one is needed: 401 `AUTH_REQUIRED`; an unknown, revoked or malformed key (at most {max} visible ASCII characters), or one of another account: 403 `AUTH_INVALID_KEY` (and it counts against the client address: after too many, 429); a key of the wrong kind, or of a disabled tenant or one without `api_access`: 403 `AUTH_INVALID`.",
            key = v360::HEADER_KEY, dev = v360::DEVELOPER_KEY_PREFIX,
            public = v360::PUBLIC_LIMIT_PER_MINUTE, per_key = v360::KEY_LIMIT_PER_MINUTE,
            limit = v360::HEADER_RATE_LIMIT, remaining = v360::HEADER_RATE_REMAINING,
            max = v360::MAX_KEY_CHARS)}));
    m
}

// ---- answers ----

fn string() -> Value {
    json!({"type": "string"})
}

fn count() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn pk() -> Value {
    json!({"type": "integer", "minimum": 1})
}

/// A contact's id: ours (`con_...`).
fn contact_id() -> Value {
    json!({"type": "string", "pattern": "^con_[0-9a-f]{10,40}$", "description": "The contact's id (`/v1/contacts/{contact_id}`)."})
}

fn nullable_string() -> Value {
    json!({"type": ["string", "null"]})
}

fn closed(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties})
}

fn envelope(op: Operation, result: Value) -> Value {
    closed(
        &["result", "error", "message", "timestamp"],
        json!({"result": result, "error": {"const": false}, "message": {"const": op.message()},
               "timestamp": {"type": "string", "pattern": TIMESTAMP_PATTERN}}),
    )
}

fn availability_user() -> Value {
    closed(
        &[
            "pk",
            "presence_id",
            "callerID",
            "first_name",
            "last_name",
            "devices_registered",
        ],
        json!({"pk": pk(), "presence_id": {"type": "string", "pattern": EXTENSION_PATTERN, "description": "The user's extension."},
            "callerID": string(), "first_name": string(), "last_name": string(),
            "devices_registered": {"type": "boolean", "description": "Online: a device of the user is registered (an AI agent: its agent exists and is enabled)."},
            "channels": {"type": "array", "description": "The user's calls now; with a developer key only (not in the public view).",
                "items": closed(&["to", "from", "call_seconds", "direction"], json!({
                    "to": string(), "from": string(), "call_seconds": count(),
                    "direction": {"enum": [v360::Direction::Inbound.as_str(), v360::Direction::Outbound.as_str()]}}))}}),
    )
}

fn queue(with_members: bool) -> Value {
    let yes_no = || json!({"enum": ["yes", "no"]});
    let config = [
        "strategy",
        "musiconhold",
        "timeout",
        "retry",
        "wrapuptime",
        "maxlen",
        "joinempty",
        "leavewhenempty",
        "ringinuse",
    ];
    let strategies: Vec<&str> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
    let mut props = json!({"pk": pk(), "name": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "The `pk` as text."},
        "queue_name": string(), "extension": {"type": "string", "pattern": EXTENSION_PATTERN},
        "strategy": {"enum": strategies}, "musiconhold": string(), "timeout": count(), "retry": count(),
        "wrapuptime": count(), "maxlen": count(), "joinempty": yes_no(), "leavewhenempty": yes_no(), "ringinuse": yes_no()});
    let mut dependent: Vec<&str> = config.to_vec();
    if with_members {
        dependent.push("assigned_users");
        let member = |kind: &str, user_id: Value, ai_agent_id: Value| {
            closed(
                &["type", "user_id", "ai_agent_id", "presence_id", "callerID"],
                json!({"type": {"const": kind}, "user_id": user_id, "ai_agent_id": ai_agent_id,
                       "presence_id": {"type": "string", "pattern": EXTENSION_PATTERN}, "callerID": string()}),
            )
        };
        props["assigned_users"] = json!({"type": "array", "items": {"oneOf": [
            member("user", pk(), json!({"type": "null"})),
            member("ai_agent", json!({"type": "null"}), json!({"type": "string", "pattern": "^agt_"}))]}});
    }
    let mut schema = closed(&["pk", "name", "queue_name", "extension"], props);
    schema["description"] = json!("The public view has the first four fields only; a developer key sees the configuration too.");
    schema["dependentRequired"] = json!({"strategy": dependent});
    schema
}

fn queue_availability() -> Value {
    closed(
        &[
            "pk",
            "name",
            "queue_name",
            "extension",
            "is_ready",
            "agents_online",
            "agents_available",
            "agents_on_call",
            "active_calls",
        ],
        json!({"pk": pk(), "name": {"type": "string", "pattern": "^[1-9][0-9]*$"}, "queue_name": string(),
            "extension": {"type": "string", "pattern": EXTENSION_PATTERN},
            "is_ready": {"type": "boolean", "description": "At least one member online."},
            "agents_online": count(), "agents_available": {"type": "integer", "minimum": 0, "description": "Online and not on a call."},
            "agents_on_call": count(), "active_calls": count()}),
    )
}

fn number() -> Value {
    closed(
        &[
            "pk",
            "number",
            "friendly_name",
            "sms_enabled",
            "mms_enabled",
        ],
        json!({"pk": pk(), "number": {"type": "string", "pattern": E164_PATTERN}, "friendly_name": string(),
               "sms_enabled": {"type": "boolean"}, "mms_enabled": {"type": "boolean"}}),
    )
}

fn result_schema(op: Operation) -> Value {
    match op {
        Operation::UserAvailability => json!({"type": "array", "items": availability_user()}),
        Operation::ListQueues => json!({"type": "array", "items": queue(false)}),
        Operation::GetQueue { .. } => queue(true),
        Operation::QueuesAvailability => json!({"type": "array", "items": queue_availability()}),
        Operation::QueueAvailability { .. } => queue_availability(),
        Operation::ListNumbers | Operation::UserNumbers => {
            json!({"type": "array", "items": number()})
        }
        Operation::UserProfile => closed(
            &[
                "pk",
                "asterisk_user_id",
                "presence_id",
                "callerID",
                "first_name",
                "last_name",
                "email",
                "voicemail_enabled",
                "forward_enabled",
                "forward_number",
                "time_zone",
            ],
            json!({"pk": pk(), "asterisk_user_id": {"type": "integer", "minimum": 0, "description": "The id of the user's SIP endpoint."},
                "presence_id": {"type": "string", "pattern": EXTENSION_PATTERN}, "callerID": string(),
                "first_name": string(), "last_name": string(), "email": {"type": "string", "description": "Empty when the user has none."},
                "voicemail_enabled": {"type": "boolean"}, "forward_enabled": {"type": "boolean"},
                "forward_number": {"type": ["string", "null"]}, "time_zone": {"type": "string", "description": "IANA time zone."}}),
        ),
        Operation::OutboundCall => closed(
            &["call_id", "status", "from", "to", "timestamp"],
            json!({"call_id": {"type": "string", "pattern": CALL_ID_PATTERN, "description": "The native call (`GET /v1/calls/{call_id}`)."},
                "status": {"const": "initiating"}, "from": {"type": "string", "pattern": EXTENSION_PATTERN},
                "to": {"type": "string", "pattern": E164_PATTERN}, "timestamp": {"type": "string", "pattern": TIMESTAMP_PATTERN}}),
        ),
        Operation::SendSms => {
            let statuses: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
            closed(
                &["message_id", "status", "from", "to", "body", "timestamp"],
                json!({"message_id": {"type": "string", "pattern": MESSAGE_ID_PATTERN, "description": "The native message (`GET /v1/messages/{message_id}`)."},
                    "status": {"enum": statuses, "description": "Where the message is (`queued` until a sidecar's trunk takes it; `SMS_SENT` follows)."},
                    "from": {"type": "string", "pattern": E164_PATTERN}, "to": {"type": "string", "pattern": E164_PATTERN},
                    "body": {"type": "string", "minLength": 1, "maxLength": v360::MAX_SMS_CHARS},
                    "timestamp": {"type": "string", "pattern": TIMESTAMP_PATTERN}}),
            )
        }
    }
}

/// One of each error (sample fields); `details_schema` and `answered_on` are
/// exhaustive matches over them.
pub(super) fn error_samples() -> Vec<V360Error> {
    vec![
        V360Error::bad(
            "to",
            "to must be a phone number in E.164 format, e.g. +15551234567",
        ),
        V360Error::BadRequest {
            field: None,
            message: "The request body is not valid JSON".into(),
        },
        V360Error::AuthRequired,
        V360Error::AuthInvalidKey {
            provided_key: v360::key_hint("v360_dev_0123456789abcdef"),
        },
        V360Error::AuthInvalid {
            key_type: "user",
            required: "developer",
        },
        V360Error::NotFound { what: "queue" },
        V360Error::MethodNotAllowed { allow: "GET" },
        V360Error::RateLimited {
            limit: v360::KEY_LIMIT_PER_MINUTE,
            retry_after_seconds: 12,
        },
        V360Error::Internal,
        V360Error::ServiceUnavailable {
            retry_after_seconds: Some(1),
        },
        V360Error::ServiceUnavailable {
            retry_after_seconds: None,
        },
    ]
}

fn details_schema(e: &V360Error) -> Option<Value> {
    match e {
        V360Error::BadRequest { .. } => Some(closed(
            &["field"],
            json!({"field": {"type": "string", "description": "The body member or query parameter at fault."}}),
        )),
        V360Error::AuthInvalidKey { .. } => Some(closed(
            &["provided_key", "help"],
            json!({"provided_key": {"type": "string", "pattern": "^[!-~]{0,8}xxx\\.\\.\\.$", "description": "At most 8 leading characters of the key sent (never more than half), then `xxx...`."},
                   "help": {"const": v360::HELP}}),
        )),
        V360Error::AuthInvalid { .. } => Some(closed(
            &["key_type", "required"],
            json!({"key_type": string(), "required": string()}),
        )),
        V360Error::RateLimited { .. } => Some(closed(
            &["limit", "window_seconds", "retry_after"],
            json!({"limit": {"type": "integer", "minimum": 1}, "window_seconds": {"const": v360::RATE_WINDOW_SECONDS},
                   "retry_after": count()}),
        )),
        V360Error::AuthRequired
        | V360Error::NotFound { .. }
        | V360Error::MethodNotAllowed { .. }
        | V360Error::Internal
        | V360Error::ServiceUnavailable { .. } => None,
    }
}

/// Whether `op`'s path can answer `e` (edge/src/api/voice360.rs).
fn answered_on(op: Operation, e: &V360Error) -> bool {
    match e {
        // Bodies and the numbers query; the other operations read neither.
        V360Error::BadRequest { .. } => matches!(
            op,
            Operation::ListNumbers | Operation::OutboundCall | Operation::SendSms
        ),
        V360Error::AuthRequired => op.access().admit(Caller::Anonymous).is_err(),
        V360Error::AuthInvalidKey { .. }
        | V360Error::AuthInvalid { .. }
        | V360Error::NotFound { .. }
        | V360Error::MethodNotAllowed { .. }
        | V360Error::RateLimited { .. }
        | V360Error::Internal
        | V360Error::ServiceUnavailable { .. } => true,
    }
}

fn not_found_text(op: Operation) -> &'static str {
    match op {
        Operation::GetQueue { .. } | Operation::QueueAvailability { .. } => {
            "no such account (without a key; a key of another account is 403), or no such queue"
        }
        Operation::UserProfile => "no such account, or the key's user is gone",
        Operation::OutboundCall => "no such account, or no user has the `from` extension",
        _ => "no such account (without a key; a key of another account is 403)",
    }
}

fn status_text(op: Operation, status: u16) -> String {
    let (method, _) = template(op);
    match status {
        400 => "`BAD_REQUEST`: the body or query; `details.field` names the member or parameter (none for a body that is not a JSON object).".into(),
        401 => "`AUTH_REQUIRED`: no `X-API-Key`.".into(),
        403 => "`AUTH_INVALID_KEY`: an unknown, revoked or malformed key, or one of another account; `AUTH_INVALID`: a key of the wrong kind for this endpoint, or of a disabled account.".into(),
        404 => format!("`NOT_FOUND`: {}.", not_found_text(op)),
        405 => format!("`METHOD_NOT_ALLOWED`: this path called with another method than {method}, with `Allow: {method}`."),
        429 => "`RATE_LIMITED`: over the key's or the client address's limit, or the address sent too many invalid keys (or, for a call, the agent's and tenant's call limits).".into(),
        500 => "`INTERNAL_ERROR`: a stored record could not be read.".into(),
        _ => "`SERVICE_UNAVAILABLE`: storage is unavailable for now; `Retry-After` when known.".into(),
    }
}

fn header(description: &str, required: bool) -> Value {
    json!({"description": description, "required": required, "schema": {"type": "integer", "minimum": 0}})
}

fn rate_headers() -> Map<String, Value> {
    let mut h = Map::new();
    h.insert(
        v360::HEADER_RATE_LIMIT.into(),
        header("Requests allowed per minute.", true),
    );
    h.insert(
        v360::HEADER_RATE_REMAINING.into(),
        header("Requests left in this minute.", true),
    );
    h
}

/// The error answers of `op`, one per status: `error_code` lists that
/// status's codes, `details` their shapes.
fn error_responses(op: Operation, responses: &mut Map<String, Value>) {
    let mut by_status: std::collections::BTreeMap<u16, Vec<V360Error>> = Default::default();
    for e in error_samples().into_iter().filter(|e| answered_on(op, e)) {
        by_status.entry(e.status()).or_default().push(e);
    }
    for (status, errors) in by_status {
        let mut codes: Vec<&str> = errors.iter().map(|e| e.parts().1).collect();
        codes.dedup();
        let mut details: Vec<Value> = errors.iter().filter_map(details_schema).collect();
        details.dedup();
        let mut props = json!({"result": {"type": "null"}, "error": {"const": true}, "message": string(),
            "error_code": {"enum": codes}, "timestamp": {"type": "string", "pattern": TIMESTAMP_PATTERN}});
        match details.len() {
            0 => {}
            1 => props["details"] = details.remove(0),
            _ => props["details"] = json!({"oneOf": details}),
        }
        let schema = closed(
            &["result", "error", "message", "error_code", "timestamp"],
            props,
        );
        let first = &errors[0];
        let example: Value =
            serde_json::from_str(&first.body(1_705_314_600_000)).unwrap_or(Value::Null);
        let mut answer = json!({"description": status_text(op, status),
            "content": {"application/json": {"schema": schema, "example": example}}});
        let mut headers = Map::new();
        match status {
            405 => {
                headers.insert(
                    "Allow".into(),
                    json!({"required": true, "schema": {"const": template(op).0}}),
                );
            }
            429 => {
                headers.insert(
                    "Retry-After".into(),
                    header("Seconds until the limit's window ends.", true),
                );
                headers.extend(rate_headers());
            }
            503 => {
                headers.insert(
                    "Retry-After".into(),
                    header("Seconds to wait, when known.", false),
                );
            }
            _ => {}
        }
        if !headers.is_empty() {
            answer["headers"] = Value::Object(headers);
        }
        responses.insert(status.to_string(), answer);
    }
}

// ---- requests ----

fn numbers_query() -> Vec<Value> {
    let statuses: Vec<&str> = NumberStatus::ALL.iter().map(|s| s.as_str()).collect();
    let p = |name: &str, schema: Value, description: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description});
    vec![
        p("number", json!({"type": "string", "maxLength": crate::dialects::phone::MAX_INPUT_CHARS}),
          "Only this number: E.164, read leniently (spaces, dashes, parentheses; a leading space is read as the `+` an unencoded `?number=+1555...` decodes to)."),
        p("owner_id", json!({"type": "integer", "minimum": 0}), "Only numbers routed to this user (`pk`)."),
        p("status", json!({"enum": statuses}), "Only numbers in this status."),
        p("sms_assigned_user_id", json!({"type": "integer", "minimum": 0}), "Only numbers whose texts go to this user (`pk`)."),
        p("ai_agent_id", json!({"type": "string", "minLength": 1, "maxLength": 64}), "Only numbers routed to this AI agent (`agt_...`)."),
    ]
}

fn request_body(op: Operation) -> Option<Value> {
    let phone = |d: &str| {
        json!({"type": "string", "maxLength": crate::dialects::phone::MAX_INPUT_CHARS,
               "description": format!("{d} E.164, read leniently: spaces, dashes, dots and parentheses are dropped and a leading `00` becomes `+`.")})
    };
    let schema = match op {
        Operation::OutboundCall => json!({"type": "object", "required": ["from", "to"],
            "description": format!("Unknown members are ignored (the document's clients spread an `options` object into the body); at most {} bytes.", v360::MAX_BODY_BYTES),
            "properties": {
                "from": {"type": "string", "pattern": "^\\s*[0-9]{2,16}\\s*$", "description": "The calling extension (2-16 digits): an AI agent's (a person's is refused: 400 on `from`)."},
                "to": phone("The number to call."),
                "caller_id": {"type": ["string", "null"], "maxLength": crate::dialects::phone::MAX_INPUT_CHARS,
                    "description": "The number the callee is shown: one of the account's active numbers (400 otherwise), read as `to`. Null, empty or absent: the trunk's."},
                "recording": {"type": ["boolean", "null"], "description": "Record the call (default false)."}}}),
        Operation::SendSms => json!({"type": "object", "required": ["from", "to", "message"],
            "description": format!("Unknown members are ignored; at most {} bytes.", v360::MAX_BODY_BYTES),
            "properties": {
                "from": phone("One of the account's numbers with SMS enabled (with a user key: one of the user's)."),
                "to": phone("The recipient."),
                "message": {"type": "string", "minLength": 1, "maxLength": v360::MAX_SMS_CHARS, "pattern": "\\S",
                    "description": format!("1-{} characters (Unicode scalar values, not GSM-7 septets or bytes); not blank; no control characters but line feed, carriage return and tab.", v360::MAX_SMS_CHARS)}}}),
        _ => return None,
    };
    Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}))
}

// ---- operations ----

fn summary(op: Operation) -> (&'static str, &'static str, &'static str) {
    match op {
        Operation::UserAvailability => ("voice360UserAvailability", "Voice360: users' availability",
            "Every directory user (people and AI agents) with their extension and whether they are online. With a developer key each carries `channels` (their calls now); the public view leaves it out."),
        Operation::ListQueues => ("voice360ListQueues", "Voice360: call queues",
            "The account's queues: the public view has `pk`, `name`, `queue_name`, `extension`; a developer key sees the configuration too."),
        Operation::GetQueue { .. } => ("voice360GetQueue", "Voice360: one call queue",
            "As in the list; with a developer key also `assigned_users` (its members, people and AI agents)."),
        Operation::QueuesAvailability => ("voice360QueuesAvailability", "Voice360: every queue's availability",
            "Counts only, so the public view is the whole answer. `is_ready` and `agents_available` are derived from the counts."),
        Operation::QueueAvailability { .. } => ("voice360QueueAvailability", "Voice360: one queue's availability",
            "As in the list."),
        Operation::ListNumbers => ("voice360ListNumbers", "Voice360: the account's phone numbers",
            "All filters must hold; unknown query parameters are ignored, a repeated or empty one is 400."),
        Operation::UserNumbers => ("voice360UserNumbers", "Voice360: the key's user's phone numbers",
            "Numbers routed to the user or whose texts go to them."),
        Operation::UserProfile => ("voice360UserProfile", "Voice360: the key's user's profile", "The directory user the key belongs to."),
        Operation::OutboundCall => ("voice360OutboundCall", "Voice360: place a call from an extension",
            "A call from an AI agent's extension is that agent's call on the native pipeline (`POST /v1/calls`'s validation, limits and record); from a person's extension it is their click-to-call (`POST /v1/calls` with `from_extension`: their phones ring first, then `to` is dialled and bridged; without `caller_id` their own number is shown). `caller_id` is the SIP From user. A native refusal keeps its meaning: a call to this number already live is 400 on `to` (the document has no 409)."),
        Operation::SendSms => ("voice360SendSms", "Voice360: send a text message",
            "A native text message (`POST /v1/messages`) sent through a sidecar's trunk."),
    }
}

fn security(op: Operation) -> Value {
    match op.access() {
        Access::PublicOrDeveloper => json!([{SCHEME: []}, {}]),
        Access::Developer | Access::User | Access::UserOrDeveloper => json!([{SCHEME: []}]),
    }
}

fn operation(op: Operation) -> Value {
    let (id, summary, what) = summary(op);
    let access = match op.access() {
        Access::PublicOrDeveloper => "Without a key (the public view) or a developer key.",
        Access::Developer => "Developer key only.",
        Access::User => "User key only.",
        Access::UserOrDeveloper => "A user key or a developer key.",
    };
    let mut responses = Map::new();
    let ok = json!({"description": op.message(), "headers": rate_headers(),
        "content": {"application/json": {"schema": envelope(op, result_schema(op))}}});
    responses.insert("200".into(), ok);
    error_responses(op, &mut responses);
    let mut o = json!({"operationId": id, "tags": [TAG], "summary": summary,
        "description": format!("{what} {access}"), "security": security(op), "responses": responses});
    if op == Operation::ListNumbers {
        o["parameters"] = json!(numbers_query());
    }
    if let Some(body) = request_body(op) {
        o["requestBody"] = body;
    }
    o
}

fn path_parameters(path: &str) -> Vec<Value> {
    let mut ps = vec![json!({"name": "account_id", "in": "path", "required": true,
        "description": "The account: a tenant's `voice360_account` (1-64 of `A-Z a-z 0-9 - _`). Another shape answers 404.",
        "schema": {"type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{}}}$", v360::MAX_ACCOUNT_ID_CHARS)}})];
    if path.contains("{queue_id}") {
        ps.push(json!({"name": "queue_id", "in": "path", "required": true,
            "description": "A queue's `pk` (1-18 digits, no leading zero). Another shape answers 404.",
            "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}}));
    }
    ps
}

/// (path, path item) of each Voice360 operation (one method per path).
pub(super) fn paths() -> Vec<(&'static str, Value)> {
    OPERATIONS
        .iter()
        .map(|op| {
            let (method, path) = template(*op);
            let mut item = json!({"parameters": path_parameters(path)});
            item[method.to_ascii_lowercase()] = operation(*op);
            (path, item)
        })
        .collect()
}

// ---- webhooks ----

/// The `metadata` of the events the edge sends; `None`: not sent yet.
pub(super) fn metadata_schema(event: EventType) -> Option<(Value, &'static str)> {
    let user_id = || json!({"type": "string", "pattern": "^[1-9][0-9]*$", "description": "A directory user's `pk` as text."});
    let call_id = || json!({"type": "string", "pattern": CALL_ID_PATTERN, "description": "The native call id."});
    let numbers = || json!({"type": "array", "items": string()});
    Some(match event {
        EventType::UserDial => (
            closed(&["dialed_number", "from_user_id", "uniqueid"],
                json!({"dialed_number": string(), "from_user_id": user_id(), "uniqueid": call_id()})),
            "A call placed from a directory user's extension (`POST /call/outbound`), when it is created.",
        ),
        EventType::UserHangup => (
            closed(&["dialed_number", "from_user_id", "uniqueid", "duration"],
                json!({"dialed_number": string(), "from_user_id": user_id(), "uniqueid": call_id(),
                       "duration": {"type": "integer", "minimum": 0, "description": "Seconds talked; 0 unanswered."}})),
            "The end of a call placed from a directory user's extension, answered or not.",
        ),
        EventType::CallEnded => (
            closed(&["caller_id_number", "dnis", "uniqueid", "call_direction", "to_user_id", "duration"],
                json!({"caller_id_number": {"type": ["string", "null"], "description": "Outbound: our caller ID, null when the trunk's is not known; inbound: the caller."},
                    "dnis": {"type": "string", "description": "The number dialled (inbound: ours)."}, "uniqueid": call_id(),
                    "call_direction": {"enum": [v360::Direction::Inbound.as_str(), v360::Direction::Outbound.as_str()]},
                    "to_user_id": {"type": ["string", "null"], "pattern": "^[1-9][0-9]*$", "description": "Our side's user: who placed an outbound call (null for one not placed from an extension); who took an inbound one (the person rung, or the queue member who answered; null when none did)."},
                    "duration": count()})),
            "The end of every call of the tenant, answered or not.",
        ),
        EventType::TranscriptionFinished => (
            closed(&["uniqueid", "transcription", "provider", "model", "total_tokens", "success"],
                json!({"uniqueid": call_id(),
                    "transcription": {"type": ["string", "null"], "description": "AWS Call Analytics–style JSON, as a string (`JobStatus`, `Transcript`, `ConversationCharacteristics`, `CallRecap`, ...); null when nothing was transcribed."},
                    "provider": {"type": "string", "description": "The call's engine."}, "model": string(),
                    "total_tokens": count(), "success": {"type": "boolean"},
                    "error": {"type": "string", "description": "Why, when `success` is false."}})),
            "After an answered call's transcript is saved.",
        ),
        EventType::SmsSent => (
            closed(&["from_number", "to_number", "body", "message_id", "sms_sent_by_user_id"],
                json!({"from_number": string(), "to_number": numbers(), "body": string(), "message_id": string(),
                       "sms_sent_by_user_id": {"type": ["string", "null"], "description": "Null: the record does not say which user's key sent it."}})),
            "The trunk took an outbound text message.",
        ),
        EventType::SmsReceived => (
            closed(&["from_number", "to_number", "body", "message_id"],
                json!({"from_number": string(), "to_number": string(), "body": string(), "message_id": string()})),
            "A text message to one of the account's numbers arrived.",
        ),
        EventType::SmsDelivered => (
            closed(&["to_number", "message_id", "status"],
                json!({"to_number": numbers(), "message_id": string(), "status": {"const": "delivered"}})),
            "The carrier reported an outbound text message delivered.",
        ),
        EventType::ContactCreated => (
            closed(&["contact_id", "phone", "first_name", "last_name", "email"],
                json!({"contact_id": contact_id(), "phone": string(), "first_name": nullable_string(),
                       "last_name": nullable_string(), "email": nullable_string()})),
            "A contact was created (`POST /v1/contacts`).",
        ),
        EventType::ContactUpdated => (
            closed(&["contact_id", "updated_fields", "phone"],
                json!({"contact_id": contact_id(),
                       "updated_fields": {"type": "array", "minItems": 1, "items": {"enum": ["phone", "first_name", "last_name", "email"]},
                           "description": "The fields whose value changed (a change of `metadata` alone is not sent)."},
                       "phone": string()})),
            "A contact's phone, name or email changed (`PATCH /v1/contacts/{contact_id}`).",
        ),
        EventType::ContactDeleted => (
            closed(&["contact_id", "phone"], json!({"contact_id": contact_id(), "phone": string()})),
            "A contact was deleted.",
        ),
        EventType::UserAnswer => (
            closed(&["caller_id_number", "to_user_id", "uniqueid"],
                json!({"caller_id_number": {"type": "string", "description": "The caller."}, "to_user_id": user_id(), "uniqueid": call_id()})),
            "A person's phone answered an inbound call (a number routed to them, or a queue's member), when the sidecar reports their leg `answered`.",
        ),
        EventType::QueueEnter => (
            closed(&["queue_id", "queuecall_id", "uniqueid", "queuename", "callerid_number", "callerid_name"],
                json!({"queue_id": queue_id(), "queuecall_id": call_id(), "uniqueid": call_id(), "queuename": queue_id(),
                       "callerid_number": string(), "callerid_name": {"type": ["string", "null"], "description": "Null: the caller's name is not known."}})),
            "A caller entered a queue (answered and waiting), when the sidecar reports it.",
        ),
        EventType::QueueMemberDial => (
            closed(&["App-Name", "to_user_id", "from_user_id", "uniqueid", "caller_id_number", "dnis", "queuecall_id"],
                json!({"App-Name": {"const": v360::APP_QUEUE}, "to_user_id": user_id(), "from_user_id": {"type": "null"},
                       "uniqueid": call_id(), "caller_id_number": string(), "dnis": {"type": "string", "description": "The number called."}, "queuecall_id": call_id()})),
            "A queue member's phone is being rung for a caller in the queue.",
        ),
        EventType::QueueMemberAnswer => (
            closed(&["App-Name", "to_user_id", "caller_id_number", "uniqueid", "dnis", "queuecall_id"],
                json!({"App-Name": {"const": v360::APP_QUEUE}, "to_user_id": user_id(), "caller_id_number": string(),
                       "uniqueid": call_id(), "dnis": string(), "queuecall_id": call_id()})),
            "A queue member answered a caller in the queue.",
        ),
        EventType::QueueMemberDialHangup => (
            closed(&["App-Name", "to_user_id", "from_user_id", "uniqueid", "caller_id_number", "dnis", "queuecall_id", "duration"],
                json!({"App-Name": {"const": v360::APP_QUEUE}, "to_user_id": user_id(), "from_user_id": {"type": "null"},
                       "uniqueid": call_id(), "caller_id_number": string(), "dnis": string(), "queuecall_id": call_id(),
                       "duration": {"type": "integer", "minimum": 0, "description": "Seconds the member's leg talked; 0 unanswered."}})),
            "A queue member's leg ended (unanswered, or after talking).",
        ),
        EventType::QueueHangup => (
            closed(&["App-Name", "queue_id", "queuecall_id", "uniqueid", "queuename", "duration", "dnis", "dialed_number", "caller_id_number"],
                json!({"App-Name": {"const": v360::APP_QUEUE}, "queue_id": queue_id(), "queuecall_id": call_id(), "uniqueid": call_id(),
                       "queuename": queue_id(), "duration": {"type": "number", "minimum": 0, "description": "Seconds the caller waited, with hundredths."},
                       "dnis": string(), "dialed_number": string(), "caller_id_number": string()})),
            "A caller left a queue: a member answered, the longest wait passed, or they hung up.",
        ),
        EventType::QueueNoAnswer => (
            queue_wait(),
            "A ring round of a queue ended with no member answering.",
        ),
        EventType::QueueHangupTimeout => (
            queue_wait(),
            "A caller waited a queue's longest wait (`max_wait_seconds`) with nobody answering; its overflow follows.",
        ),
        EventType::QueueHangupAbandoned => (
            queue_wait(),
            "A caller hung up while waiting in a queue.",
        ),
        EventType::IncomingExternalCall => (
            closed(&["caller_id_number", "caller_id_name", "dnis", "uniqueid"],
                json!({"caller_id_number": {"type": "string", "description": "The caller."},
                       "caller_id_name": {"type": ["string", "null"], "description": "Null: the caller's name is not known (the trunk's INVITE gives the edge none)."},
                       "dnis": {"type": "string", "description": "Our number called."}, "uniqueid": call_id()})),
            "An external call to one of the account's numbers came in and the edge created its call (routed to an AI agent, a person or a queue), before anyone answers; once per call. A call refused (unknown number, no route, nobody to ring, at capacity) sends nothing.",
        ),
    })
}

/// The body schema of `event`'s webhook: Voice360's envelope around its metadata.
pub(super) fn event_body_schema(event: EventType) -> Option<Value> {
    let (metadata, _) = metadata_schema(event)?;
    Some(closed(
        &["event_name", "account_id", "timestamp", "metadata"],
        json!({"event_name": {"const": event.as_str()},
               "account_id": {"type": "string", "description": "The tenant's `voice360_account` (else its id)."},
               "timestamp": {"type": "integer", "minimum": 0, "description": "Unix seconds when rendered."},
               "metadata": metadata}),
    ))
}

/// A queue's `pk` as text (Voice360's `queue_id` and `queuename`).
fn queue_id() -> Value {
    json!({"type": "string", "pattern": "^[1-9][0-9]*$", "description": "The queue's `pk` as text (its `name` in `/queues`)."})
}

/// `QUEUE_NO_ANSWER`, `QUEUE_HANGUP_TIMEOUT`, `QUEUE_HANGUP_ABANDONED`.
fn queue_wait() -> Value {
    closed(
        &["caller_id_number", "queue_name", "queue_id", "wait_time"],
        json!({"caller_id_number": string(), "queue_name": {"type": "string", "description": "The queue's name."},
               "queue_id": queue_id(), "wait_time": {"type": "integer", "minimum": 0, "description": "Whole seconds the caller has waited."}}),
    )
}

/// `voice360.<EVENT>` for the document's `webhooks`.
pub(super) fn webhooks() -> Map<String, Value> {
    let mut out = Map::new();
    for event in EventType::ALL {
        let (Some((_, what)), Some(schema)) = (metadata_schema(event), event_body_schema(event))
        else {
            continue;
        };
        let name = event.as_str();
        out.insert(format!("voice360.{name}"), json!({"post": {
            "operationId": format!("webhook_voice360_{}", name.to_ascii_lowercase()),
            "summary": format!("Voice360 `{name}` (endpoint `format` `voice360`, `voice360_event` `{name}`)"),
            "description": format!("{what} Sent to each enabled `voice360` endpoint listening for `{name}` (one event type per endpoint). `{sig}`: `sha256=` then the lowercase hex HMAC-SHA256 of the raw body keyed with the endpoint's secret string (UTF-8 bytes); a rotation ends the old secret at once. Retried per the endpoint's `retry_schedule` ({lo} to {hi} retries), each attempt waiting at most 15 s. Delivered at least once through a queue: any 2xx ends it; 410 Gone disables the endpoint; redirects are not followed.",
                sig = v360::HEADER_SIGNATURE, lo = v360::RETRIES_RANGE.0, hi = v360::RETRIES_RANGE.1),
            "parameters": [{"name": v360::HEADER_SIGNATURE, "in": "header", "required": true,
                "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema}}},
            "responses": {"2XX": {"description": "Received; no further attempts."}, "410": {"description": "Gone: the endpoint is disabled."}}
        }}));
    }
    out
}
