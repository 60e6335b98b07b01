//! The operations and schemas of campaigns (`/v1/campaigns`) and of the
//! `campaign.completed` event.

use super::builders::*;
use super::patterns::{E164_PATTERN, IDEMPOTENCY_KEY_PATTERN};
use crate::api::campaigns::{CAMPAIGN_NAME_MAX, MAX_ROWS_REPORTED};
use crate::api::router::RouteId;
use crate::campaigns::{
    CampaignStatus, CALLS_PER_MINUTE, COUNT_NAMES, MAX_CONCURRENT_CALLS, MAX_CONTACTS,
};
use crate::error::ErrorCode;
use crate::limits::{
    CALL_NAME_MAX, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, MAX_CAMPAIGN_BODY_BYTES, MAX_METADATA_BYTES,
    MAX_SECONDS, RETRIES, RETRY_DELAY_MINUTES,
};
use crate::traffic;
use crate::webhooks::events::WebhookEvent;
use serde_json::{json, Map, Value};

const CSV_DOC: &str = "A CSV upload (`Content-Type: text/csv`, RFC 4180, UTF-8): a header row naming a `phone` column (required), optionally `name`, and any other columns, which become each contact's `metadata` (a string per non-empty cell, keyed by the lower-cased header). The campaign's settings are then the query parameters (`calling_window` as URL-encoded JSON); with a JSON body they may be given there or in the query string, once.";

/// The operation of a campaign route; `None` for every other route.
pub(super) fn operation(id: RouteId) -> Option<Value> {
    use ErrorCode as E;
    let campaigns = |id: &str, summary: &str, description: &str| {
        op(id, "campaigns", Auth::ApiKey, summary, description)
    };
    let action = |op_id: &str, summary: &str, description: &str| {
        campaigns(op_id, summary, description)
            .body("HangupRequest", false)
            .ok(200, "The campaign as it is now.", "Campaign")
            .errors(&[E::CampaignNotFound, E::CampaignStateConflict])
            .build()
    };
    Some(match id {
        RouteId::CreateCampaign => {
            let mut built = campaigns(
                "createCampaign",
                "Create a campaign",
                &format!("Creates a campaign (status `created`: nothing is dialled until `start`) from up to {MAX_CONTACTS} contacts, as JSON (`contacts`) or as a CSV upload. {CSV_DOC} Every contact is checked: when any row is invalid nothing is created and the answer is 422 `invalid_contacts` with `error.rows` (at most {MAX_ROWS_REPORTED}: `row`, `code`, `field`, `message`; a JSON contact's row is its 1-based position in `contacts`, a CSV row its line in the file, the header being line 1). A number given twice is an invalid row (a campaign dials each number once). Bodies up to {MAX_CAMPAIGN_BODY_BYTES} bytes (413 beyond)."),
            )
            .body("CreateCampaignRequest", true)
            .query(json!([
                {"name": "Idempotency-Key", "in": "header", "required": false,
                 "description": "As for `POST /v1/calls`: the same key and request answer the first campaign again with `Idempotent-Replayed: true`.",
                 "schema": {"type": "string", "minLength": 1, "maxLength": traffic::IDEMPOTENCY_KEY_MAX, "pattern": IDEMPOTENCY_KEY_PATTERN}},
                {"name": "name", "in": "query", "required": false, "description": "The campaign's `name`. Every setting may come as a query parameter (a CSV upload's only way) or, with a JSON body, in the body: once (both: 422 `invalid_value`).", "schema": {"type": "string", "maxLength": CAMPAIGN_NAME_MAX}},
                {"name": "agent_id", "in": "query", "required": false, "description": "`agent_id`.", "schema": id_schema("agt")},
                {"name": "calling_window", "in": "query", "required": false, "description": "`calling_window` as JSON text.", "schema": {"type": "string"}},
                {"name": "max_concurrent_calls", "in": "query", "required": false, "description": "As the body field.", "schema": int_range(MAX_CONCURRENT_CALLS)},
                {"name": "calls_per_minute", "in": "query", "required": false, "description": "As the body field.", "schema": int_range(CALLS_PER_MINUTE)},
                {"name": "max_seconds", "in": "query", "required": false, "description": "As the body field.", "schema": int_range(MAX_SECONDS)},
                {"name": "retries", "in": "query", "required": false, "description": "As the body field.", "schema": int_range(RETRIES)},
                {"name": "retry_delay_minutes", "in": "query", "required": false, "description": "As the body field.", "schema": int_range(RETRY_DELAY_MINUTES)},
                {"name": "record", "in": "query", "required": false, "description": "`true` or `false`.", "schema": {"type": "boolean"}}
            ]))
            .ok_with_headers(201, "The campaign (or, with `Idempotent-Replayed: true`, a replay of the first answer to this `Idempotency-Key`).", "Campaign", json!({"Location": {"description": "The campaign's URL, `/v1/campaigns/{campaign_id}`.", "schema": {"type": "string"}}}))
            .errors(&[
                E::InvalidParameter,
                E::MissingField,
                E::InvalidValue,
                E::ValueTooLong,
                E::OutOfRange,
                E::InvalidContacts,
                E::UnknownAgent,
                E::AgentRequired,
                E::AgentDisabled,
                E::IdempotencyKeyReused,
                E::IdempotencyKeyInFlight,
            ])
            .build();
            built["requestBody"]["content"]["text/csv"] = json!({"schema": {"type": "string", "contentMediaType": "text/csv", "description": CSV_DOC}});
            built
        }
        RouteId::ListCampaigns => campaigns(
            "listCampaigns",
            "List campaigns",
            "The tenant's campaigns, newest first, each with its counts. Unknown or repeated query parameters are refused with 400 `invalid_parameter`.",
        )
        .query(json!([
            {"name": "limit", "in": "query", "required": false, "description": "Page size.",
             "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}},
            {"name": "cursor", "in": "query", "required": false, "description": "`next_cursor` of the previous page.",
             "schema": {"type": "string", "minLength": 1}}
        ]))
        .ok(200, "A page of campaigns.", "CampaignList")
        .errors(&[E::InvalidParameter, E::InvalidCursor])
        .build(),
        RouteId::GetCampaign => campaigns(
            "getCampaign",
            "Get a campaign",
            "The campaign, with `counts`: its contacts per state and call outcome, exact (kept in the campaign's Durable Object).",
        )
        .ok(200, "The campaign.", "Campaign")
        .errors(&[E::CampaignNotFound])
        .build(),
        RouteId::StartCampaign => action(
            "startCampaign",
            "Start a campaign",
            "A `created` campaign starts dialling (`running`): one call per `60 / calls_per_minute` seconds, at most `max_concurrent_calls` in flight, only inside its `calling_window`. Starting a running campaign answers it unchanged; any other status is 409 `campaign_state_conflict`.",
        ),
        RouteId::PauseCampaign => action(
            "pauseCampaign",
            "Pause a campaign",
            "A `running` campaign stops placing new calls (`paused`); calls in flight go on and are counted when they end. Pausing a paused campaign answers it unchanged.",
        ),
        RouteId::ResumeCampaign => action(
            "resumeCampaign",
            "Resume a campaign",
            "A `paused` campaign (by you, or by the edge with `paused_reason`) dials again (`running`). Resuming a running campaign answers it unchanged.",
        ),
        RouteId::CancelCampaign => action(
            "cancelCampaign",
            "Cancel a campaign",
            "Stops the campaign for good (`cancelled`): contacts not dialled yet are `skipped`; calls in flight go on (hang them up with `POST /v1/calls/{call_id}/hangup`). `campaign.completed` is sent once the last of them has ended. Cancelling a cancelled campaign answers it unchanged; a `completed` one is 409 `campaign_state_conflict`.",
        ),
        _ => return None,
    })
}

fn counts() -> Value {
    let mut props = Map::new();
    for name in COUNT_NAMES {
        let what = match *name {
            "total" => "Every contact of the campaign.",
            "pending" => "Not dialled yet.",
            "in_flight" => "Its call is being placed, or placed and not ended (queued, scheduled for a retry, dialing, ringing or in progress).",
            "not_placed" => "The call API refused the contact's call (e.g. `call_in_progress`: another call of the agent to the number was live).",
            "skipped" => "Never dialled: the campaign was cancelled first.",
            _ => "Its call ended with this status.",
        };
        props.insert(
            name.to_string(),
            json!({"type": "integer", "minimum": 0, "description": what}),
        );
    }
    json!({"type": "object", "description": "The campaign's contacts by state; every contact is in exactly one besides `total`.",
        "required": COUNT_NAMES, "properties": props})
}

fn campaign_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", id_schema("cmp")),
        ("object", object_const("campaign")),
        ("name", nullable(string_max(CAMPAIGN_NAME_MAX))),
        (
            "status",
            json!({"type": "string", "enum": CampaignStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "description": "`created` (not started), `running`, `paused`, `completed` (every contact dialled and every call ended), `cancelled`."}),
        ),
        ("agent_id", id_schema("agt")),
        (
            "calling_window",
            json!({"anyOf": [schema_ref("CallingWindow"), {"type": "null"}], "description": "When the campaign's calls may start; null: any time (the agent's own window still applies to each call)."}),
        ),
        (
            "max_concurrent_calls",
            json!({"type": "integer", "minimum": MAX_CONCURRENT_CALLS.0, "maximum": MAX_CONCURRENT_CALLS.1}),
        ),
        (
            "calls_per_minute",
            json!({"type": "integer", "minimum": CALLS_PER_MINUTE.0, "maximum": CALLS_PER_MINUTE.1}),
        ),
        ("max_seconds", json!({"type": "integer"})),
        ("retries", json!({"type": "integer"})),
        ("retry_delay_minutes", json!({"type": "integer"})),
        ("record", json!({"type": "boolean"})),
        (
            "paused_reason",
            nullable(
                json!({"type": "string", "enum": ["agent_deleted", "agent_disabled", "tenant_deleted", "tenant_disabled"],
                "description": "Set when the edge paused the campaign because none of its calls could be placed; `resume` once fixed."}),
            ),
        ),
        ("counts", counts()),
        ("created_at", timestamp()),
        ("started_at", nullable(timestamp())),
        ("cancelled_at", nullable(timestamp())),
        (
            "finished_at",
            nullable(with_description(
                timestamp(),
                "When the campaign finished and `campaign.completed` was sent.",
            )),
        ),
        ("updated_at", timestamp()),
    ]
}

pub(super) fn schemas(add: &mut Map<String, Value>) {
    let mut put = |name: &str, v: Value| {
        add.insert(name.to_string(), v);
    };
    put(
        "Campaign",
        record(
            "A campaign: contacts dialled by one agent at a pacing rate. Every call it places is an ordinary call carrying `campaign_id`.",
            campaign_fields(),
        ),
    );
    put(
        "CampaignList",
        list_of("A page of campaigns, newest first.", "Campaign"),
    );
    put(
        "CampaignContact",
        input(
            "One contact: its call is placed with this phone, name and metadata.",
            vec![
                ("phone", json!({"type": "string", "pattern": E164_PATTERN})),
                ("name", nullable(string_max(CALL_NAME_MAX))),
                (
                    "metadata",
                    nullable(
                        json!({"type": "object", "description": format!("Your JSON object, given to the call; at most {MAX_METADATA_BYTES} bytes serialized.")}),
                    ),
                ),
            ],
            &["phone"],
        ),
    );
    put(
        "CreateCampaignRequest",
        input(
            "A new campaign; null is the same as absent.",
            vec![
                ("contacts", json!({"type": "array", "minItems": 1, "maxItems": MAX_CONTACTS, "items": schema_ref("CampaignContact"),
                    "description": "Every number at most once."})),
                ("name", nullable(string_max(CAMPAIGN_NAME_MAX))),
                ("agent_id", nullable(with_description(id_schema("agt"), "Default: the tenant's default agent."))),
                ("calling_window", json!({"anyOf": [schema_ref("CallingWindow"), {"type": "null"}], "description": "Calls start only inside it; the campaign waits for its next start outside."})),
                ("max_concurrent_calls", with_description(int_range(MAX_CONCURRENT_CALLS), "Calls of the campaign in flight at most (the tenant's `max_concurrent_calls` applies too).")),
                ("calls_per_minute", with_description(int_range(CALLS_PER_MINUTE), "Pacing: calls started per minute at most.")),
                ("max_seconds", int_range(MAX_SECONDS)),
                ("retries", with_description(int_range(RETRIES), "Each call's own retries: the only way a number is dialled again.")),
                ("retry_delay_minutes", int_range(RETRY_DELAY_MINUTES)),
                ("record", json!({"type": "boolean", "default": false})),
            ],
            &["contacts"],
        ),
    );
    put(
        "WebhookCampaignEvent",
        record(
            "The body POSTed for `campaign.completed`, signed like every event.",
            vec![
                (
                    "id",
                    json!({"type": "string", "pattern": "^evt_", "description": "Equals the `webhook-id` header."}),
                ),
                (
                    "type",
                    json!({"type": "string", "const": WebhookEvent::CampaignCompleted.as_str()}),
                ),
                ("timestamp", timestamp()),
                ("data", schema_ref("Campaign")),
            ],
        ),
    );
}
