//! Why a dialect request was not placed, in one vocabulary every dialect
//! module translates into its vendor's error (each has a total `From<&Refusal>`).

/// Why a dialect request was not placed, in the pipeline's words; each dialect
/// answers it in its own (see each module's `refusal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The dialect's credential headers are absent.
    MissingCredentials,
    /// Unknown, revoked or mismatched credential (or the tenant is gone).
    InvalidCredentials,
    /// The tenant is disabled or its API access is switched off.
    AccessDisabled,
    /// Storage failed while looking up the credential's agent.
    AgentLookupFailed,
    AgentDisabled,
    /// No agent to place the call with (deleted, unknown id, no default).
    AgentNotConfigured,
    /// VoiceB's request HMAC does not match.
    InvalidSignature,
    /// The body or a field is not acceptable; the message says why.
    InvalidRequest(String),
    /// A call from this agent to this number is already queued, scheduled or live.
    CallInProgress,
    /// A rate limit, the failed-credential limit or the concurrency cap; retry after this many seconds.
    RateLimited {
        retry_after_seconds: u64,
    },
    /// Our failure (storage, sealing); the call was not placed.
    Internal,
}

impl Refusal {
    /// The native pipeline's error, as a dialect must tell it. A total match:
    /// a new native code does not compile until it is decided here.
    pub fn from_native(e: &crate::error::ApiError) -> Refusal {
        use crate::error::ErrorCode as E;
        match e.code {
            E::MissingCredentials => Refusal::MissingCredentials,
            E::InvalidCredentials
            | E::InvalidSignature
            | E::ReplayedRequest
            | E::InvalidRequestSignature
            | E::SignatureVersionUnsupported
            | E::ApiKeyNotFound
            | E::DialectKeyNotFound
            | E::PromptNotFound
            | E::TenantNotFound => Refusal::InvalidCredentials,
            E::TenantDisabled | E::ApiAccessDisabled => Refusal::AccessDisabled,
            E::AgentDisabled => Refusal::AgentDisabled,
            E::AgentNotFound | E::UnknownAgent | E::AgentRequired => Refusal::AgentNotConfigured,
            E::CallInProgress => Refusal::CallInProgress,
            E::RateLimited | E::TooManyFailedAttempts | E::ConcurrencyLimitReached => {
                Refusal::RateLimited {
                    retry_after_seconds: crate::limits::CONCURRENCY_RETRY_AFTER_SECONDS,
                }
            }
            // A text's `from` that cannot send texts: the request is wrong.
            E::UnknownNumber | E::NumberNotSmsCapable => {
                Refusal::InvalidRequest(e.message.clone())
            }
            E::InvalidJson
            | E::UnknownField
            | E::InvalidParameter
            | E::InvalidCursor
            | E::PayloadTooLarge
            | E::UnsupportedMediaType
            | E::MissingField
            | E::InvalidType
            | E::InvalidValue
            | E::UnknownVariable
            | E::ValueTooLong
            | E::OutOfRange
            | E::InvalidPhoneNumber
            | E::InvalidEmail
            | E::InvalidLanguage
            | E::InvalidTimestamp
            | E::ScheduleInPast
            | E::MetadataTooLarge
            | E::InvalidUrl
            | E::UnknownExtension
            | E::UnknownQueue
            | E::OutsideCallingWindow
            | E::IdempotencyKeyReused
            | E::IdempotencyKeyInFlight => Refusal::InvalidRequest(e.message.clone()),
            E::InvalidRecordingManifest
            | E::RecordingChecksumMismatch
            | E::UnsupportedProtocolVersion
            | E::HttpsRequired
            | E::RegionMismatch
            | E::NotFound
            | E::CallNotFound
            | E::MessageNotFound
            | E::NumberNotFound
            | E::SidecarNotFound
            | E::WebhookNotFound
            | E::DeliveryNotFound
            | E::RecordingNotFound
            | E::InvalidRecordingLink
            | E::MethodNotAllowed
            | E::LeaseNotHeld
            | E::SidecarNotRegistered
            | E::RecordingNotHeld
            | E::CallNotHeld
            | E::RecordingNotRequested
            | E::WebhookDisabled
            | E::NotRedeliverable
            // Admin API only (CodeB users and hosts): never on a dialect path.
            | E::UserNotFound
            | E::UserExists
            | E::CodebHostTaken
            // Admin API only (numbers, directory, Voice360 keys).
            | E::DirectoryUserNotFound
            | E::QueueNotFound
            | E::Voice360KeyNotFound
            | E::NumberTaken
            | E::Voice360AccountTaken
            | E::ExtensionTaken
            | E::DirectoryFull
            // Native API only (transfers, contacts): no dialect path reaches them.
            | E::CallNotAnswered
            | E::CallEnded
            | E::CallNotTransferable
            | E::TransferInProgress
            | E::ContactNotFound
            | E::ContactExists
            | E::ContactsFull
            // Native API only (campaigns).
            | E::CampaignNotFound
            | E::CampaignStateConflict
            | E::InvalidContacts
            | E::EngineKeysUnavailable
            | E::SecretsUnavailable
            | E::InternalError
            | E::StorageUnavailable => Refusal::Internal,
        }
    }
}
