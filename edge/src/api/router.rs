//! The route table: the one list of what the API serves. The OpenAPI test
//! checks the spec against it, so a route cannot exist undocumented.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Health,
    OpenApi,
    /// The operator console's page (`crate::console`), no credentials: its script asks for them.
    Console,
    /// The console's script or style sheet.
    ConsoleAsset,
    CreateCall,
    ListCalls,
    GetCall,
    GetTranscript,
    /// The transcript as a file: `transcript.txt` or `transcript.json`.
    GetTranscriptAs,
    GetRecording,
    /// A call's recording through a signed link (`recording_links`), without an API key.
    GetRecordingByLink,
    HangupCall,
    /// Hand an AI call's callee to a number or a person (issue 16).
    TransferCall,
    /// Send a text message.
    CreateMessage,
    ListMessages,
    GetMessage,
    CreateContact,
    ListContacts,
    GetContact,
    UpdateContact,
    DeleteContact,
    CreateCampaign,
    ListCampaigns,
    GetCampaign,
    StartCampaign,
    PauseCampaign,
    ResumeCampaign,
    CancelCampaign,
    CreateTenant,
    GetTenant,
    UpdateTenant,
    CreateAgent,
    ListAgents,
    GetAgent,
    UpdateAgent,
    DeleteAgent,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    CreateDialectKey,
    ListDialectKeys,
    RevokeDialectKey,
    PutPrompt,
    ListPrompts,
    GetPrompt,
    DeletePrompt,
    CreateUser,
    ListUsers,
    GetUser,
    UpdateUser,
    DeleteUser,
    PutNumber,
    ListNumbers,
    GetNumber,
    DeleteNumber,
    CreateDirectoryUser,
    ListDirectoryUsers,
    UpdateDirectoryUser,
    DeleteDirectoryUser,
    CreateQueue,
    ListQueues,
    UpdateQueue,
    DeleteQueue,
    CreateVoice360Key,
    ListVoice360Keys,
    RevokeVoice360Key,
    SetSipPassword,
    CreateWebhook,
    ListWebhooks,
    GetWebhook,
    UpdateWebhook,
    DeleteWebhook,
    RotateWebhookSecret,
    /// Send the endpoint a `webhook.test` event.
    TestWebhook,
    ListDeliveries,
    GetDelivery,
    RedeliverDelivery,
    CreateSidecar,
    ListSidecars,
    RevokeSidecar,
}

/// (method, path pattern, route). `{name}` matches one non-empty segment;
/// `literal.{name}` a segment that starts with `literal.` and goes on.
pub const ROUTES: &[(&str, &str, RouteId)] = &[
    ("GET", "/healthz", RouteId::Health),
    ("GET", "/v1/openapi.json", RouteId::OpenApi),
    ("GET", "/console", RouteId::Console),
    ("GET", "/console/{asset}", RouteId::ConsoleAsset),
    ("POST", "/v1/calls", RouteId::CreateCall),
    ("GET", "/v1/calls", RouteId::ListCalls),
    ("GET", "/v1/calls/{call_id}", RouteId::GetCall),
    (
        "GET",
        "/v1/calls/{call_id}/transcript",
        RouteId::GetTranscript,
    ),
    (
        "GET",
        "/v1/calls/{call_id}/transcript.{format}",
        RouteId::GetTranscriptAs,
    ),
    (
        "GET",
        "/v1/calls/{call_id}/recording",
        RouteId::GetRecording,
    ),
    ("POST", "/v1/calls/{call_id}/hangup", RouteId::HangupCall),
    (
        "POST",
        "/v1/calls/{call_id}/transfer",
        RouteId::TransferCall,
    ),
    ("POST", "/v1/messages", RouteId::CreateMessage),
    ("GET", "/v1/messages", RouteId::ListMessages),
    ("GET", "/v1/messages/{message_id}", RouteId::GetMessage),
    ("POST", "/v1/contacts", RouteId::CreateContact),
    ("GET", "/v1/contacts", RouteId::ListContacts),
    ("GET", "/v1/contacts/{contact_id}", RouteId::GetContact),
    ("PATCH", "/v1/contacts/{contact_id}", RouteId::UpdateContact),
    (
        "DELETE",
        "/v1/contacts/{contact_id}",
        RouteId::DeleteContact,
    ),
    ("POST", "/v1/campaigns", RouteId::CreateCampaign),
    ("GET", "/v1/campaigns", RouteId::ListCampaigns),
    ("GET", "/v1/campaigns/{campaign_id}", RouteId::GetCampaign),
    (
        "POST",
        "/v1/campaigns/{campaign_id}/start",
        RouteId::StartCampaign,
    ),
    (
        "POST",
        "/v1/campaigns/{campaign_id}/pause",
        RouteId::PauseCampaign,
    ),
    (
        "POST",
        "/v1/campaigns/{campaign_id}/resume",
        RouteId::ResumeCampaign,
    ),
    (
        "POST",
        "/v1/campaigns/{campaign_id}/cancel",
        RouteId::CancelCampaign,
    ),
    (
        "GET",
        "/v1/recordings/{tenant_id}/{call_id}",
        RouteId::GetRecordingByLink,
    ),
    ("POST", "/admin/tenants", RouteId::CreateTenant),
    ("GET", "/admin/tenants/{tenant_id}", RouteId::GetTenant),
    ("PATCH", "/admin/tenants/{tenant_id}", RouteId::UpdateTenant),
    (
        "POST",
        "/admin/tenants/{tenant_id}/agents",
        RouteId::CreateAgent,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/agents",
        RouteId::ListAgents,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/agents/{agent_id}",
        RouteId::GetAgent,
    ),
    (
        "PATCH",
        "/admin/tenants/{tenant_id}/agents/{agent_id}",
        RouteId::UpdateAgent,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/agents/{agent_id}",
        RouteId::DeleteAgent,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/api-keys",
        RouteId::CreateApiKey,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/api-keys",
        RouteId::ListApiKeys,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/api-keys/{key_id}",
        RouteId::RevokeApiKey,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/dialect-keys",
        RouteId::CreateDialectKey,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/dialect-keys",
        RouteId::ListDialectKeys,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/dialect-keys/{dialect_key_id}",
        RouteId::RevokeDialectKey,
    ),
    (
        "PUT",
        "/admin/tenants/{tenant_id}/prompts/{slug}",
        RouteId::PutPrompt,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/prompts",
        RouteId::ListPrompts,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/prompts/{slug}",
        RouteId::GetPrompt,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/prompts/{slug}",
        RouteId::DeletePrompt,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/users",
        RouteId::CreateUser,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/users",
        RouteId::ListUsers,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/users/{username}",
        RouteId::GetUser,
    ),
    (
        "PATCH",
        "/admin/tenants/{tenant_id}/users/{username}",
        RouteId::UpdateUser,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/users/{username}",
        RouteId::DeleteUser,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/webhooks",
        RouteId::CreateWebhook,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/webhooks",
        RouteId::ListWebhooks,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/webhooks/{webhook_id}",
        RouteId::GetWebhook,
    ),
    (
        "PATCH",
        "/admin/tenants/{tenant_id}/webhooks/{webhook_id}",
        RouteId::UpdateWebhook,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/webhooks/{webhook_id}",
        RouteId::DeleteWebhook,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/webhooks/{webhook_id}/rotate",
        RouteId::RotateWebhookSecret,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/webhooks/{webhook_id}/test",
        RouteId::TestWebhook,
    ),
    ("GET", "/v1/webhooks/deliveries", RouteId::ListDeliveries),
    (
        "GET",
        "/v1/webhooks/deliveries/{delivery_id}",
        RouteId::GetDelivery,
    ),
    (
        "POST",
        "/v1/webhooks/deliveries/{delivery_id}/redeliver",
        RouteId::RedeliverDelivery,
    ),
    ("POST", "/admin/sidecars", RouteId::CreateSidecar),
    ("GET", "/admin/sidecars", RouteId::ListSidecars),
    (
        "DELETE",
        "/admin/sidecars/{sidecar_id}",
        RouteId::RevokeSidecar,
    ),
    (
        "PUT",
        "/admin/tenants/{tenant_id}/numbers/{number}",
        RouteId::PutNumber,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/numbers",
        RouteId::ListNumbers,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/numbers/{number}",
        RouteId::GetNumber,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/numbers/{number}",
        RouteId::DeleteNumber,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/directory/users",
        RouteId::CreateDirectoryUser,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/directory/users",
        RouteId::ListDirectoryUsers,
    ),
    (
        "PUT",
        "/admin/tenants/{tenant_id}/directory/users/{pk}",
        RouteId::UpdateDirectoryUser,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/directory/users/{pk}",
        RouteId::DeleteDirectoryUser,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/directory/users/{pk}/sip-password",
        RouteId::SetSipPassword,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/directory/queues",
        RouteId::CreateQueue,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/directory/queues",
        RouteId::ListQueues,
    ),
    (
        "PUT",
        "/admin/tenants/{tenant_id}/directory/queues/{pk}",
        RouteId::UpdateQueue,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/directory/queues/{pk}",
        RouteId::DeleteQueue,
    ),
    (
        "POST",
        "/admin/tenants/{tenant_id}/voice360-keys",
        RouteId::CreateVoice360Key,
    ),
    (
        "GET",
        "/admin/tenants/{tenant_id}/voice360-keys",
        RouteId::ListVoice360Keys,
    ),
    (
        "DELETE",
        "/admin/tenants/{tenant_id}/voice360-keys/{voice360_key_id}",
        RouteId::RevokeVoice360Key,
    ),
];
// The sidecar link (`/v1/sidecar/*`, HMAC-signed, see `sidecar_link`) is
// routed before this table: it is the sidecars' protocol, not the public API.

#[derive(Debug, PartialEq, Eq)]
pub enum Match<'p> {
    Found(RouteId, Vec<&'p str>),
    /// The path exists for these other methods.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

fn match_pattern<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(g)) if p.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                params.push(g);
            }
            (Some(p), Some(g)) if p.contains('{') => {
                let literal = &p[..p.find('{').unwrap_or(0)];
                match g.strip_prefix(literal) {
                    Some(rest) if !rest.is_empty() => params.push(rest),
                    _ => return None,
                }
            }
            (Some(p), Some(g)) if p == g => {}
            _ => return None,
        }
    }
}

pub fn route<'p>(method: &str, path: &'p str) -> Match<'p> {
    let mut allowed = Vec::new();
    for (m, pattern, id) in ROUTES {
        if let Some(params) = match_pattern(pattern, path) {
            if m.eq_ignore_ascii_case(method) {
                return Match::Found(*id, params);
            }
            allowed.push(*m);
        }
    }
    if allowed.is_empty() {
        Match::NotFound
    } else {
        Match::WrongMethod(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_params_methods_and_nothing_else() {
        assert_eq!(
            route("POST", "/v1/calls"),
            Match::Found(RouteId::CreateCall, vec![])
        );
        assert_eq!(route("GET", "/v1/calls/call_1/x"), Match::NotFound);
        assert_eq!(
            route("POST", "/v1/calls/call_1/hangup"),
            Match::Found(RouteId::HangupCall, vec!["call_1"])
        );
        assert_eq!(
            route("POST", "/v1/calls/call_1/transfer"),
            Match::Found(RouteId::TransferCall, vec!["call_1"])
        );
        assert_eq!(
            route("GET", "/v1/calls/call_1/transcript.txt"),
            Match::Found(RouteId::GetTranscriptAs, vec!["call_1", "txt"])
        );
        assert_eq!(
            route("GET", "/v1/calls/call_1/transcript"),
            Match::Found(RouteId::GetTranscript, vec!["call_1"])
        );
        assert_eq!(
            route("GET", "/v1/calls/call_1/transcript."),
            Match::NotFound
        );
        assert_eq!(
            route("GET", "/v1/calls/call_1/transcripts.txt"),
            Match::NotFound
        );
        assert_eq!(
            route("DELETE", "/v1/calls"),
            Match::WrongMethod(vec!["POST", "GET"])
        );
        assert_eq!(route("GET", "/v1/calls/"), Match::NotFound);
        assert_eq!(route("GET", "/v1/callsx"), Match::NotFound);
        assert_eq!(
            route("DELETE", "/admin/tenants/t/api-keys/k"),
            Match::Found(RouteId::RevokeApiKey, vec!["t", "k"])
        );
    }

    #[test]
    fn every_route_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.0 == b.0 && a.1 == b.1),
                    "duplicate route {} {}",
                    a.0,
                    a.1
                );
            }
        }
    }
}
