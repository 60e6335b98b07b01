//! wasm32-only: the Worker's handles on its Durable Objects (the client
//! side of `call_store`, `dispatch_queue` and `rate_limiter`), apart from the
//! objects so that one object may call another without an import circle.
//! Each object takes one request enum and answers its answer enum
//! ([`ObjectRequest`]), sent by the one helper [`send`].

use crate::calls::store::{CallStoreAnswer, CallStoreRequest, CallStoreTransport};
use crate::dispatch::port::{DispatchQueueAnswer, DispatchQueueRequest, DispatchQueues};
use crate::dispatch::queue::{CancelVerdict, EnqueueVerdict};
use crate::dispatch::queued_call::QueuedCall;
use crate::dispatch::sidecar_link::SidecarEnvelope;
use crate::store::StoreError;
use crate::traffic::{
    Admission, Admitted, LocalFuture, RateLimit, RateLimiterAnswer, RateLimiterRequest,
    RateVerdict, StoredResponse, Traffic,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{Env, Method, Request, RequestInit};

/// Durable Object bindings (`wrangler.toml`).
pub const CALL_STORE_BINDING: &str = "CALL_STORE";
pub const DISPATCH_QUEUE_BINDING: &str = "DISPATCH";
pub const RATE_LIMITER_BINDING: &str = "RATE_LIMITER";
pub const DIRECTORY_BINDING: &str = "DIRECTORY";
pub const CAMPAIGN_BINDING: &str = "CAMPAIGN";
/// The region a `DispatchQueue` object serves, sent with every request to it.
pub const REGION_HEADER: &str = "x-voxline-region";

/// What the Worker (or a region's queue) sends to a tenant's object.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub tenant_id: String,
    pub request: CallStoreRequest,
}

/// A request to a Durable Object: its namespace and the type of its answer.
pub(crate) trait ObjectRequest: Serialize {
    type Answer: DeserializeOwned;
    /// The namespace's binding (`wrangler.toml`).
    const BINDING: &'static str;
    /// The object kind, for errors.
    const KIND: &'static str;
}

impl ObjectRequest for Envelope {
    type Answer = CallStoreAnswer;
    const BINDING: &'static str = CALL_STORE_BINDING;
    const KIND: &'static str = "call store";
}

impl ObjectRequest for DispatchQueueRequest {
    type Answer = DispatchQueueAnswer;
    const BINDING: &'static str = DISPATCH_QUEUE_BINDING;
    const KIND: &'static str = "dispatch queue";
}

impl ObjectRequest for RateLimiterRequest {
    type Answer = RateLimiterAnswer;
    const BINDING: &'static str = RATE_LIMITER_BINDING;
    const KIND: &'static str = "rate limiter";
}

impl ObjectRequest for crate::directory::DirectoryRequest {
    type Answer = crate::directory::DirectoryAnswer;
    const BINDING: &'static str = DIRECTORY_BINDING;
    const KIND: &'static str = "directory";
}

/// What the Worker (or a call store) sends to a campaign's object.
#[derive(Serialize, Deserialize)]
pub(crate) struct CampaignEnvelope {
    pub campaign_id: String,
    pub request: crate::campaigns::CampaignRequest,
}

impl ObjectRequest for CampaignEnvelope {
    type Answer = crate::campaigns::CampaignAnswer;
    const BINDING: &'static str = CAMPAIGN_BINDING;
    const KIND: &'static str = "campaign";
}

/// The Worker's (and the call stores') handle on the campaigns' objects.
pub struct WorkersCampaigns<'a>(pub &'a Env);

impl crate::campaigns::Campaigns for WorkersCampaigns<'_> {
    fn send<'a>(
        &'a self,
        campaign_id: &'a str,
        request: crate::campaigns::CampaignRequest,
    ) -> LocalFuture<'a, std::result::Result<crate::campaigns::CampaignAnswer, StoreError>> {
        Box::pin(async move {
            let envelope = CampaignEnvelope {
                campaign_id: campaign_id.to_string(),
                request,
            };
            send(self.0, campaign_id, &[], &envelope).await
        })
    }
}

/// The Worker's handle on the tenants' directories (and the claims object).
pub struct WorkersDirectory<'a>(pub &'a Env);

impl crate::directory::Directory for WorkersDirectory<'_> {
    fn send<'a>(
        &'a self,
        object: &'a str,
        request: crate::directory::DirectoryRequest,
    ) -> LocalFuture<'a, std::result::Result<crate::directory::DirectoryAnswer, StoreError>> {
        Box::pin(async move { send(self.0, object, &[], &request).await })
    }
}

/// Sends `request` to the object called `name` in its namespace and decodes
/// its answer. An object that cannot be reached or answers other than 200 is
/// `Unavailable`; an answer that does not decode is `Corrupt`.
pub(crate) async fn send<R: ObjectRequest>(
    env: &Env,
    name: &str,
    headers: &[(&str, &str)],
    request: &R,
) -> std::result::Result<R::Answer, StoreError> {
    let kind = R::KIND;
    let unavailable = |e: worker::Error| StoreError::Unavailable(format!("{kind} {name}: {e}"));
    let body = serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let stub = env
        .durable_object(R::BINDING)
        .and_then(|ns| ns.id_from_name(name)?.get_stub())
        .map_err(unavailable)?;
    let sent_headers = worker::Headers::new();
    for (k, v) in headers {
        sent_headers.set(k, v).map_err(unavailable)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(sent_headers)
        .with_body(Some(body.into()));
    // The object reads the request from the body; the URL is a formality.
    let req = Request::new_with_init("https://object/", &init).map_err(unavailable)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
    if resp.status_code() != 200 {
        let text = resp.text().await.unwrap_or_default();
        return Err(StoreError::Unavailable(format!(
            "{kind} {name} answered {}: {text}",
            resp.status_code()
        )));
    }
    resp.json::<R::Answer>()
        .await
        .map_err(|e| StoreError::Corrupt(format!("{kind} {name} answer: {e}")))
}

fn unexpected<A: std::fmt::Debug>(kind: &str, a: A) -> StoreError {
    StoreError::Corrupt(format!("unexpected {kind} answer {a:?}"))
}

/// The Worker's (and the dispatch queues') handle on the tenants' call stores.
pub struct WorkersCalls<'a>(pub &'a Env);

impl CallStoreTransport for WorkersCalls<'_> {
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        request: CallStoreRequest,
    ) -> LocalFuture<'a, std::result::Result<CallStoreAnswer, StoreError>> {
        Box::pin(async move {
            let envelope = Envelope {
                tenant_id: tenant_id.to_string(),
                request,
            };
            send(self.0, tenant_id, &[], &envelope).await
        })
    }
}

/// The Worker's handle on the dispatch queues.
pub struct WorkersDispatchQueues<'a>(pub &'a Env);

impl WorkersDispatchQueues<'_> {
    async fn send(
        &self,
        region: &str,
        request: &DispatchQueueRequest,
    ) -> std::result::Result<DispatchQueueAnswer, StoreError> {
        send(self.0, region, &[(REGION_HEADER, region)], request).await
    }
}

impl DispatchQueues for WorkersDispatchQueues<'_> {
    async fn enqueue(
        &self,
        region: &str,
        call: &QueuedCall,
    ) -> std::result::Result<EnqueueVerdict, StoreError> {
        let request = DispatchQueueRequest::Enqueue {
            call: Box::new(call.clone()),
        };
        match self.send(region, &request).await? {
            DispatchQueueAnswer::Enqueued { outcome } => Ok(outcome),
            a => Err(unexpected("dispatch queue", a)),
        }
    }

    async fn cancel(
        &self,
        region: &str,
        call_id: &str,
    ) -> std::result::Result<CancelVerdict, StoreError> {
        let request = DispatchQueueRequest::Cancel {
            call_id: call_id.to_string(),
        };
        match self.send(region, &request).await? {
            DispatchQueueAnswer::Cancel { outcome } => Ok(outcome),
            a => Err(unexpected("dispatch queue", a)),
        }
    }

    async fn transfer(
        &self,
        region: &str,
        command: &voxline_shared::sidecar_link::Command,
    ) -> std::result::Result<crate::dispatch::queue::TransferVerdict, StoreError> {
        let request = DispatchQueueRequest::Transfer {
            command: command.clone(),
        };
        match self.send(region, &request).await? {
            DispatchQueueAnswer::Transfer { outcome } => Ok(outcome),
            a => Err(unexpected("dispatch queue", a)),
        }
    }

    async fn enqueue_message(
        &self,
        region: &str,
        message: &crate::dispatch::message_line::QueuedMessage,
    ) -> std::result::Result<crate::dispatch::message_line::EnqueueMessageVerdict, StoreError> {
        let request = DispatchQueueRequest::EnqueueMessage {
            message: message.clone(),
        };
        match self.send(region, &request).await? {
            DispatchQueueAnswer::EnqueuedMessage { outcome } => Ok(outcome),
            a => Err(unexpected("dispatch queue", a)),
        }
    }

    async fn sidecar(
        &self,
        region: &str,
        envelope: &SidecarEnvelope,
    ) -> std::result::Result<(u16, Value), StoreError> {
        let request = DispatchQueueRequest::Sidecar {
            envelope: envelope.clone(),
        };
        match self.send(region, &request).await? {
            DispatchQueueAnswer::Sidecar { status, body } => Ok((status, body)),
            a => Err(unexpected("dispatch queue", a)),
        }
    }

    async fn sidecar_status(
        &self,
        region: &str,
    ) -> std::result::Result<Vec<crate::dispatch::queue::SidecarStatus>, StoreError> {
        match self
            .send(region, &DispatchQueueRequest::SidecarStatus)
            .await?
        {
            DispatchQueueAnswer::SidecarStatus { sidecars } => Ok(sidecars),
            a => Err(unexpected("dispatch queue", a)),
        }
    }
}

/// The Worker's handle on the tenants' `RateLimiter` objects.
pub struct WorkersTraffic<'a>(pub &'a Env);

impl Traffic for WorkersTraffic<'_> {
    fn admit<'a>(
        &'a self,
        tenant_id: &'a str,
        a: &'a Admission,
    ) -> LocalFuture<'a, std::result::Result<Admitted, StoreError>> {
        Box::pin(async move {
            let request = RateLimiterRequest::Admit {
                admission: a.clone(),
            };
            match send(self.0, tenant_id, &[], &request).await? {
                RateLimiterAnswer::Admitted { admitted } => Ok(admitted),
                a => Err(unexpected("rate limiter", a)),
            }
        })
    }

    fn complete<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
        response: &'a StoredResponse,
    ) -> LocalFuture<'a, std::result::Result<(), StoreError>> {
        Box::pin(async move {
            let request = RateLimiterRequest::Complete {
                key: key.to_string(),
                response: response.clone(),
            };
            match send(self.0, tenant_id, &[], &request).await? {
                RateLimiterAnswer::Done => Ok(()),
                a => Err(unexpected("rate limiter", a)),
            }
        })
    }

    fn release<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
    ) -> LocalFuture<'a, std::result::Result<(), StoreError>> {
        Box::pin(async move {
            let request = RateLimiterRequest::Release {
                key: key.to_string(),
            };
            match send(self.0, tenant_id, &[], &request).await? {
                RateLimiterAnswer::Done => Ok(()),
                a => Err(unexpected("rate limiter", a)),
            }
        })
    }

    fn auth_attempt<'a>(
        &'a self,
        scope: &'a str,
        limit: RateLimit,
        failed: bool,
    ) -> LocalFuture<'a, std::result::Result<RateVerdict, StoreError>> {
        Box::pin(async move {
            // The address's own object: its name is the scope (`authfail:...`),
            // which no tenant id (`ten_...`) can be.
            let request = RateLimiterRequest::AuthAttempt {
                scope: scope.to_string(),
                limit,
                failed,
            };
            match send(self.0, scope, &[], &request).await? {
                RateLimiterAnswer::AuthAttempt { verdict } => Ok(verdict),
                a => Err(unexpected("rate limiter", a)),
            }
        })
    }

    fn issue_token<'a>(
        &'a self,
        tenant_id: &'a str,
        token: &'a crate::traffic::tokens::IssueToken,
    ) -> LocalFuture<'a, std::result::Result<bool, StoreError>> {
        Box::pin(async move {
            let request = RateLimiterRequest::IssueToken {
                token: token.clone(),
            };
            match send(self.0, tenant_id, &[], &request).await? {
                RateLimiterAnswer::TokenIssued { issued } => Ok(issued),
                a => Err(unexpected("rate limiter", a)),
            }
        })
    }

    fn check_token<'a>(
        &'a self,
        tenant_id: &'a str,
        token_hash: &'a str,
    ) -> LocalFuture<'a, std::result::Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let request = RateLimiterRequest::CheckToken {
                token_hash: token_hash.to_string(),
            };
            match send(self.0, tenant_id, &[], &request).await? {
                RateLimiterAnswer::TokenChecked { username } => Ok(username),
                a => Err(unexpected("rate limiter", a)),
            }
        })
    }

    fn set_user_credential<'a>(
        &'a self,
        tenant_id: &'a str,
        username: &'a str,
        credential: Option<&'a str>,
    ) -> LocalFuture<'a, std::result::Result<(), StoreError>> {
        Box::pin(async move {
            let request = RateLimiterRequest::SetUserCredential {
                username: username.to_string(),
                credential: credential.map(str::to_string),
            };
            match send(self.0, tenant_id, &[], &request).await? {
                RateLimiterAnswer::Done => Ok(()),
                a => Err(unexpected("rate limiter", a)),
            }
        })
    }
}
