//! The admin operations and schemas of phone numbers, the tenant directory
//! (users with extensions, call queues) and Voice360 API keys.

use super::builders::*;
use super::patterns::E164_PATTERN;
use crate::api::router::RouteId;
use crate::error::ErrorCode;
use serde_json::{json, Map, Value};

const EXTENSION_PATTERN: &str = "^[0-9]{2,16}$";

/// The operation of a directory route; `None` for every other route.
pub(super) fn operation(id: RouteId) -> Option<Value> {
    use ErrorCode as E;
    let admin = |id: &str, summary: &str, description: &str| {
        op(id, "admin", Auth::Admin, summary, description)
    };
    let body_errors = [
        E::MissingField,
        E::InvalidValue,
        E::ValueTooLong,
        E::OutOfRange,
    ];
    Some(match id {
        RouteId::PutNumber => admin(
            "putNumber",
            "Add or change a phone number",
            "Adds the number (E.164 in the path; `+` as is or `%2B`) to the tenant (201) or replaces its settings (200). A number is one tenant's: another tenant's number is 409 `number_taken` (decided in a Durable Object, exactly). `route` is where inbound calls go (an agent, a directory user or a queue of the tenant); `sms_enabled` lets texts be sent from and received on it. Stored in KV, so a change may take up to 60 s to reach every location.",
        )
        .body("PutNumberRequest", true)
        .ok(200, "The number's new settings.", "PhoneNumber")
        .ok(201, "The number, added.", "PhoneNumber")
        .errors(&[E::TenantNotFound, E::InvalidPhoneNumber, E::NumberTaken])
        .errors(&body_errors)
        .build(),
        RouteId::ListNumbers => admin("listNumbers", "List phone numbers", "All phone numbers of the tenant.")
            .ok(200, "The numbers.", "PhoneNumberList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::GetNumber => admin("getNumber", "Get a phone number", "One number of the tenant.")
            .ok(200, "The number.", "PhoneNumber")
            .errors(&[E::TenantNotFound, E::NumberNotFound])
            .build(),
        RouteId::DeleteNumber => admin("deleteNumber", "Release a phone number", "The number leaves the tenant; another tenant may then add it.")
            .ok(200, "The released number.", "PhoneNumberDeleted")
            .errors(&[E::TenantNotFound, E::NumberNotFound])
            .build(),
        RouteId::CreateDirectoryUser => admin(
            "createDirectoryUser",
            "Add a directory user",
            "A person (their SIP phones ring) or one of the tenant's AI agents (`kind: ai_agent` with `agent_id`), with an extension unique among the tenant's users and queues (409 `extension_taken`). Voice360 clients see users in `/availability` and `/user/profile`; a call `from` an AI agent's extension is that agent's call, from a person's their click-to-call (issue 16).",
        )
        .body("DirectoryUserRequest", true)
        .ok(201, "The user, with its allocated `pk`.", "DirectoryUser")
        .errors(&[E::TenantNotFound, E::ExtensionTaken, E::UnknownAgent, E::InvalidEmail, E::InvalidPhoneNumber, E::DirectoryFull])
        .errors(&body_errors)
        .build(),
        RouteId::ListDirectoryUsers => admin("listDirectoryUsers", "List directory users", "All users of the tenant's directory, in `pk` order.")
            .ok(200, "The users.", "DirectoryUserList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::UpdateDirectoryUser => admin("updateDirectoryUser", "Replace a directory user", "Replaces every field of the user (the same body as create); its `pk` and SIP endpoint id stay.")
            .body("DirectoryUserRequest", true)
            .ok(200, "The user.", "DirectoryUser")
            .errors(&[E::TenantNotFound, E::DirectoryUserNotFound, E::ExtensionTaken, E::UnknownAgent, E::InvalidEmail, E::InvalidPhoneNumber])
            .errors(&body_errors)
            .build(),
        RouteId::DeleteDirectoryUser => admin("deleteDirectoryUser", "Delete a directory user", "The user leaves every queue, and their Voice360 keys stop working at once.")
            .ok(200, "The deleted user's pk.", "DirectoryItemDeleted")
            .errors(&[E::TenantNotFound, E::DirectoryUserNotFound])
            .build(),
        RouteId::CreateQueue => admin("createQueue", "Add a call queue", "A call queue with its members (directory users, in order) and Asterisk-style settings; its extension is unique among the tenant's users and queues.")
            .body("QueueRequest", true)
            .ok(201, "The queue, with its allocated `pk`.", "Queue")
            .errors(&[E::TenantNotFound, E::ExtensionTaken, E::DirectoryFull, E::UnknownAgent])
            .errors(&body_errors)
            .build(),
        RouteId::ListQueues => admin("listQueues", "List call queues", "All call queues of the tenant, in `pk` order.")
            .ok(200, "The queues.", "QueueList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::UpdateQueue => admin("updateQueue", "Replace a call queue", "Replaces every field of the queue (the same body as create).")
            .body("QueueRequest", true)
            .ok(200, "The queue.", "Queue")
            .errors(&[E::TenantNotFound, E::QueueNotFound, E::ExtensionTaken, E::UnknownAgent])
            .errors(&body_errors)
            .build(),
        RouteId::DeleteQueue => admin("deleteQueue", "Delete a call queue", "The queue goes; numbers routed to it answer no more.")
            .ok(200, "The deleted queue's pk.", "DirectoryItemDeleted")
            .errors(&[E::TenantNotFound, E::QueueNotFound])
            .build(),
        RouteId::CreateVoice360Key => admin(
            "createVoice360Key",
            "Mint a Voice360 API key",
            "A developer key (`v360_dev_` then 48 hex digits: the whole account) or a user key (48 hex digits: one directory user's own profile, numbers and texts), sent by Voice360 clients as `X-API-Key`. The key is in this response only; the edge keeps its SHA-256 in the tenant's directory, so revoking is immediate.",
        )
        .body("CreateVoice360KeyRequest", true)
        .ok(201, "The key, with its clear text.", "Voice360KeyCreated")
        .errors(&[E::TenantNotFound, E::DirectoryFull])
        .errors(&body_errors)
        .build(),
        RouteId::ListVoice360Keys => admin("listVoice360Keys", "List Voice360 API keys", "All live Voice360 keys of the tenant, without their text.")
            .ok(200, "The keys.", "Voice360KeyList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::SetSipPassword => admin(
            "setSipPassword",
            "Set a person's SIP password",
            "Gives the user a new random SIP password for their phones and shows it in this answer only (the edge keeps only its Digest HA1s, MD5 and SHA-256, over `username:realm:password`). Phones register with the sidecar as `sip.username` (`<pk>.<tenant id>`) in realm `voxline`; those registered with the previous password must register again. A person only (an `ai_agent` user is 422 `invalid_value`).",
        )
        .ok(201, "The user, with the new password in `sip.password`.", "DirectoryUserWithSipPassword")
        .errors(&[E::TenantNotFound, E::DirectoryUserNotFound, E::InvalidValue])
        .build(),
        RouteId::RevokeVoice360Key => admin("revokeVoice360Key", "Revoke a Voice360 API key", "The key stops working at once.")
            .ok(200, "The revoked key's id.", "Voice360KeyRevoked")
            .errors(&[E::TenantNotFound, E::Voice360KeyNotFound])
            .build(),
        _ => return None,
    })
}

fn string(pattern: &str, description: &str) -> Value {
    json!({"type": "string", "pattern": pattern, "description": description})
}

fn pk(description: &str) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": crate::directory::MAX_PK, "description": description})
}

/// A request body's fields: those not `required` may be null (null means
/// absent, as everywhere in the API).
fn request_fields<'a>(fields: Vec<(&'a str, Value)>, required: &[&str]) -> Vec<(&'a str, Value)> {
    fields
        .into_iter()
        .map(|(name, schema)| {
            let already = schema["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("null")));
            if required.contains(&name) || already {
                (name, schema)
            } else {
                (name, nullable(schema))
            }
        })
        .collect()
}

/// A name people read: not blank.
fn name_schema(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S", "description": description})
}

fn number_route() -> Value {
    json!({"description": "Where inbound calls to the number go.", "oneOf": [
        {"type": "object", "additionalProperties": false, "required": ["kind", "agent_id"], "properties": {
            "kind": {"const": "agent"}, "agent_id": id_schema("agt")}},
        {"type": "object", "additionalProperties": false, "required": ["kind", "user_id"], "properties": {
            "kind": {"const": "user"}, "user_id": pk("A directory user's pk.")}},
        {"type": "object", "additionalProperties": false, "required": ["kind", "queue_id"], "properties": {
            "kind": {"const": "queue"}, "queue_id": pk("A queue's pk.")}}
    ]})
}

fn user_fields() -> Vec<(&'static str, Value)> {
    let opt = nullable;
    vec![
        (
            "kind",
            json!({"type": "string", "enum": ["person", "ai_agent"], "default": "person"}),
        ),
        ("agent_id", opt(id_schema("agt"))),
        (
            "extension",
            string(
                EXTENSION_PATTERN,
                "2 to 16 digits, unique among the tenant's users and queues.",
            ),
        ),
        (
            "first_name",
            name_schema("First name (for an AI agent: its name); not blank."),
        ),
        (
            "last_name",
            with_description(string_max(100), "Last name; may be empty."),
        ),
        (
            "caller_id",
            with_description(
                string_max(100),
                "Display name on calls (`callerID`); defaults to the first and last name.",
            ),
        ),
        (
            "email",
            opt(
                json!({"type": "string", "maxLength": 254, "pattern": super::patterns::EMAIL_PATTERN}),
            ),
        ),
        (
            "voicemail_enabled",
            json!({"type": "boolean", "default": false}),
        ),
        (
            "forward_enabled",
            json!({"type": "boolean", "default": false}),
        ),
        ("forward_number", opt(string(E164_PATTERN, "E.164."))),
        (
            "time_zone",
            json!({"type": "string", "maxLength": crate::calling_window::TIME_ZONE_MAX, "enum": crate::calling_window::time_zone_names(), "default": "UTC", "description": "An IANA time zone name, spelled exactly as in the time zone database."}),
        ),
    ]
}

fn queue_fields() -> Vec<(&'static str, Value)> {
    let secs = |d: i64| json!({"type": "integer", "minimum": 0, "maximum": 86_400, "default": d});
    vec![
        (
            "name",
            name_schema("The queue's name for people (`queue_name`); not blank."),
        ),
        (
            "extension",
            string(
                EXTENSION_PATTERN,
                "2 to 16 digits, unique among the tenant's users and queues.",
            ),
        ),
        (
            "strategy",
            json!({"type": "string", "enum": ["ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear"], "default": "ringall"}),
        ),
        (
            "musiconhold",
            json!({"type": "string", "maxLength": 64, "default": "default"}),
        ),
        ("timeout", secs(20)),
        ("retry", secs(5)),
        ("wrapuptime", secs(0)),
        (
            "maxlen",
            json!({"type": "integer", "minimum": 0, "maximum": 10_000, "default": 0, "description": "0: unlimited."}),
        ),
        (
            "joinempty",
            json!({"type": "boolean", "default": true, "description": "false: a caller nobody can be rung for (no member with a phone registered with the sidecar asking, all on a call or wrapping up) is refused, 480 `user_unavailable`."}),
        ),
        (
            "leavewhenempty",
            json!({"type": "boolean", "default": false, "description": "true: a caller nobody can be rung for is not put in the queue: an `agent` overflow answers them at once (as that agent's own number would; not a queue call), any other overflow (or an agent gone or disabled) refuses them, 480 `user_unavailable`. Decided before `joinempty`. Callers already waiting stay until `max_wait_seconds`."}),
        ),
        ("ringinuse", json!({"type": "boolean", "default": false})),
        (
            "members",
            json!({"type": "array", "maxItems": 200, "items": pk("A directory user's pk."), "description": "Directory users, in order. A call to a number routed to the queue (issue 16) rings the people among them with a phone registered with the sidecar that has the call (at most 50), leaving out those on a live call unless `ringinuse` and those whose call ended less than `wrapuptime` seconds ago, ordered by `strategy`: `ringall` all at once; `linear` as listed; `rrmemory` round robin, one turn per call (kept by the directory, so concurrent calls take different turns); `leastrecent` the longest idle first (by the end of their latest call among the tenant's latest 100); `fewestcalls` fewest calls of this queue answered first (among the same); `random`. Each rings `timeout` seconds, `retry` seconds apart."}),
        ),
        (
            "max_wait_seconds",
            json!({"type": "integer", "minimum": crate::api::directory::MAX_WAIT_SECONDS.0, "maximum": crate::api::directory::MAX_WAIT_SECONDS.1,
                "default": crate::directory::DEFAULT_MAX_WAIT_SECONDS, "description": "The longest a caller waits before the `overflow`."}),
        ),
        (
            "announce_every_seconds",
            json!({"type": "integer", "minimum": crate::api::directory::ANNOUNCE_EVERY_SECONDS.0, "maximum": crate::api::directory::ANNOUNCE_EVERY_SECONDS.1,
                "default": 0, "description": "Tell a waiting caller their position every this many seconds; 0: only when they enter."}),
        ),
        ("overflow", queue_overflow()),
    ]
}

/// A queue's `overflow`.
fn queue_overflow() -> Value {
    json!({"description": "What happens to a caller nobody answered within `max_wait_seconds`: `agent` (that AI agent of the tenant answers the caller; 422 `unknown_agent` if it is not one), `voicemail` (the caller leaves a message: the call's recording, `ended_reason` `voicemail`) or `hangup` (the call ends `no_answer`, `ended_reason` `queue_timeout`). Default: `{\"kind\": \"hangup\"}`.",
        "default": {"kind": "hangup"}, "oneOf": [
        {"type": "object", "additionalProperties": false, "required": ["kind", "agent_id"], "properties": {
            "kind": {"const": "agent"}, "agent_id": id_schema("agt")}},
        {"type": "object", "additionalProperties": false, "required": ["kind"], "properties": {"kind": {"const": "voicemail"}}},
        {"type": "object", "additionalProperties": false, "required": ["kind"], "properties": {"kind": {"const": "hangup"}}}
    ]})
}

pub(super) fn schemas(add: &mut Map<String, Value>) {
    let mut put = |name: &str, v: Value| {
        add.insert(name.to_string(), v);
    };
    put(
        "PhoneNumber",
        record(
            "One phone number of the tenant.",
            vec![
                ("object", object_const("phone_number")),
                ("number", string(E164_PATTERN, "E.164.")),
                ("pk", pk("The number's id in the tenant (Voice360's `pk`).")),
                ("tenant_id", id_schema("ten")),
                ("name", nullable(string_max(100))),
                (
                    "status",
                    json!({"type": "string", "enum": crate::numbers::NumberStatus::NAMES}),
                ),
                ("route", nullable(number_route())),
                ("sms_enabled", json!({"type": "boolean"})),
                ("mms_enabled", json!({"type": "boolean"})),
                (
                    "sms_user_id",
                    nullable(pk("The directory user who receives its texts.")),
                ),
                ("created_at", timestamp()),
                ("updated_at", timestamp()),
            ],
        ),
    );
    put(
        "PhoneNumberList",
        list_of("All phone numbers of a tenant.", "PhoneNumber"),
    );
    put(
        "PhoneNumberDeleted",
        record(
            "A released number.",
            vec![
                ("object", object_const("phone_number")),
                ("number", string(E164_PATTERN, "E.164.")),
                ("deleted", json!({"const": true})),
            ],
        ),
    );
    put(
        "PutNumberRequest",
        input(
            "A number's settings (all optional; absent ones take their defaults).",
            vec![
                ("name", nullable(string_max(100))),
                (
                    "status",
                    nullable(
                        json!({"type": "string", "enum": crate::numbers::NumberStatus::NAMES, "default": "active"}),
                    ),
                ),
                ("route", nullable(number_route())),
                (
                    "sms_enabled",
                    nullable(json!({"type": "boolean", "default": false})),
                ),
                (
                    "mms_enabled",
                    nullable(json!({"type": "boolean", "default": false})),
                ),
                (
                    "sms_user_id",
                    nullable(pk("A directory user of the tenant.")),
                ),
            ],
            &[],
        ),
    );
    let mut user = vec![
        ("object", object_const("directory_user")),
        ("pk", pk("The user's id in the tenant.")),
        (
            "sip_endpoint_id",
            pk("The user's SIP endpoint id (Voice360's `asterisk_user_id`)."),
        ),
    ];
    user.extend(user_fields());
    user.push(("created_at", timestamp()));
    user.push(("updated_at", timestamp()));
    let sip_account = |password: bool| {
        let mut fields = vec![
            (
                "username",
                string(
                    "^[1-9][0-9]{0,15}\\.ten_[0-9a-f]{10,40}$",
                    "The SIP username (`<pk>.<tenant id>`) the user's phones register with.",
                ),
            ),
            (
                "realm",
                object_const(voxline_shared::sidecar_link::phone_accounts::REALM),
            ),
            ("password_set_at", timestamp()),
        ];
        if password {
            fields.push((
                "password",
                json!({"type": "string", "pattern": "^[A-Za-z0-9]{24}$", "description": "The SIP password. Shown only in this response."}),
            ));
        }
        record(
            "The user's SIP phone account (a person's, once a password was set).",
            fields,
        )
    };
    let registration = record(
        "A live registration of one of the user's phones.",
        vec![
            (
                "contact",
                json!({"type": "string", "description": "The phone's Contact URI."}),
            ),
            (
                "sidecar_id",
                json!({"type": "string", "description": "The sidecar the phone registered with (it is reached through it)."}),
            ),
            ("region", json!({"type": "string"})),
            (
                "source",
                json!({"type": "string", "description": "Where the REGISTER came from (`ip:port`)."}),
            ),
            (
                "transport",
                json!({"type": "string", "enum": ["udp", "tcp", "tls"]}),
            ),
            ("expires_at", timestamp()),
        ],
    );
    user.push(("sip", nullable(sip_account(false))));
    user.push((
        "registrations",
        json!({"type": "array", "items": registration, "description": "The user's phones registered now (expired ones left out): a person is available while one is registered."}),
    ));
    let mut with_password = user.clone();
    if let Some(slot) = with_password.iter_mut().find(|(k, _)| *k == "sip") {
        slot.1 = sip_account(true);
    }
    put(
        "DirectoryUser",
        record("A user of the tenant's directory.", user),
    );
    put(
        "DirectoryUserWithSipPassword",
        record(
            "A directory user with their new SIP password.",
            with_password,
        ),
    );
    put(
        "DirectoryUserList",
        list_of("All users of a tenant's directory.", "DirectoryUser"),
    );
    put(
        "DirectoryUserRequest",
        input(
            "A directory user (create and replace take the whole user).",
            request_fields(user_fields(), &["extension", "first_name"]),
            &["extension", "first_name"],
        ),
    );
    let mut queue = vec![
        ("object", object_const("queue")),
        ("pk", pk("The queue's id in the tenant.")),
    ];
    queue.extend(queue_fields());
    queue.push(("created_at", timestamp()));
    queue.push(("updated_at", timestamp()));
    put("Queue", record("A call queue of the tenant.", queue));
    put(
        "QueueList",
        list_of("All call queues of a tenant.", "Queue"),
    );
    put(
        "QueueRequest",
        input(
            "A call queue (create and replace take the whole queue).",
            request_fields(queue_fields(), &["name", "extension"]),
            &["name", "extension"],
        ),
    );
    put(
        "DirectoryItemDeleted",
        record(
            "A deleted directory user or queue.",
            vec![
                (
                    "object",
                    json!({"type": "string", "enum": ["directory_user", "queue"]}),
                ),
                ("pk", pk("Its id.")),
                ("deleted", json!({"const": true})),
            ],
        ),
    );
    let key = || {
        vec![
            ("object", object_const("voice360_key")),
            ("id", id_schema("v360k")),
            (
                "kind",
                json!({"type": "string", "enum": ["user", "developer"]}),
            ),
            ("user_pk", nullable(pk("The user a user key belongs to."))),
            ("name", nullable(string_max(100))),
            ("created_at", timestamp()),
        ]
    };
    put(
        "Voice360Key",
        record("A Voice360 API key (its text is only shown once).", key()),
    );
    put(
        "Voice360KeyList",
        list_of("All Voice360 keys of a tenant.", "Voice360Key"),
    );
    let mut created = key();
    created.push(("key", json!({"type": "string", "pattern": "^(v360_dev_)?[0-9a-f]{48}$", "description": "The clear key, for `X-API-Key`. Shown only in this response."})));
    put(
        "Voice360KeyCreated",
        record("A new Voice360 key, with its clear text.", created),
    );
    put(
        "Voice360KeyRevoked",
        record(
            "A revoked Voice360 key.",
            vec![
                ("object", object_const("voice360_key")),
                ("id", id_schema("v360k")),
                ("revoked", json!({"const": true})),
            ],
        ),
    );
    put(
        "CreateVoice360KeyRequest",
        input(
            "A new Voice360 key.",
            vec![
                (
                    "kind",
                    json!({"type": "string", "enum": ["user", "developer"]}),
                ),
                (
                    "user_pk",
                    nullable(pk("Required for a user key; refused for a developer key.")),
                ),
                ("name", nullable(string_max(100))),
            ],
            &["kind"],
        ),
    );
}

/// `Tenant.voice360_account`.
pub(super) fn account_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": crate::dialects::voice360::MAX_ACCOUNT_ID_CHARS, "pattern": "^[A-Za-z0-9_-]+$",
        "description": "The `{account_id}` Voice360 clients put in their paths (`/v3/voice/{account_id}/...`) for this tenant. Unique among tenants (409 `voice360_account_taken`, decided exactly in a Durable Object); indexed in KV, so a change may take up to 60 s to reach every location."})
}
