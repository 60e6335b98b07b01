//! What every SIP call of the sidecar shares: the SIP socket, the RTP port
//! pool, the region's trunks (in priority order), the `[telephony]` config and
//! the guard on tenants' engine URLs. One call's task is
//! [`crate::call_task::sip`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use voxline_shared::sidecar_link::MessageOffer;

use crate::config;
use crate::engine::guard::AllowedHosts;
use crate::media::PortAllocator;
use crate::sip::auth::Credentials;
use crate::sip::call::IdentityHeader;
use crate::sip::endpoint::EndpointConfig;
use crate::sip::session_timer::SessionTimerConfig;
use crate::sip::text_message::{self, reasons, Imdn, MessageEnd, MessageSpec};
use crate::sip::transaction::Timers;
use crate::sip::udp::{DriverError, InboundRequest, SipUdp, Trunk};

/// What a SIGHUP may change (see [`Telephony::reload`]): the trunks and
/// the per-call limits. A call loads it once when it is placed and keeps
/// that snapshot to its end.
#[derive(Debug, Clone)]
pub struct DialPlan {
    /// Resolved, in priority order.
    pub trunks: Vec<Trunk>,
    /// The first trunk's caller ID.
    pub from_number: String,
    /// `[telephony]` as in force: the reloadable keys (trunks, ring and
    /// failover timeouts, redirects, codecs) from the latest good config,
    /// the rest (sockets, addresses, recordings) as at start.
    pub cfg: config::Telephony,
}

/// What every call of this sidecar shares.
pub struct Telephony {
    pub(crate) sip: SipUdp,
    pub(crate) ports: Arc<PortAllocator>,
    /// Swapped whole by [`Telephony::reload`]; readers never wait.
    dial_plan: arc_swap::ArcSwap<DialPlan>,
    /// `[telephony]` as at start (what a reload cannot change).
    pub(crate) cfg: config::Telephony,
    /// The operator's exceptions to the guard on tenants' engine URLs.
    pub(crate) engine_allowed_hosts: AllowedHosts,
    /// The texts the trunks send us, until the lease driver takes them.
    inbound: Mutex<Option<mpsc::Receiver<InboundRequest>>>,
}

impl std::fmt::Debug for Telephony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Telephony(sip {}, {} trunks)",
            self.sip.local_addr(),
            self.dial_plan.load().trunks.len()
        )
    }
}

/// Resolves the configured trunks (in the order given: `finish` sorted
/// them by priority) into what the SIP endpoint dials.
pub async fn resolve_trunks(cfg: &config::Telephony) -> Result<Vec<Trunk>, String> {
    let mut trunks = Vec::new();
    for t in &cfg.trunks {
        let addr = tokio::net::lookup_host((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("trunk `{}`: cannot resolve {}: {e}", t.name, t.host))?
            .next()
            .ok_or_else(|| format!("trunk `{}`: {} has no address", t.name, t.host))?;
        let credentials = match (&t.username, &t.password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: String::from_utf8_lossy(p.expose()).into_owned(),
                realm: t.realm.clone(),
            }),
            _ => None,
        };
        trunks.push(Trunk {
            addr,
            domain: Some(t.host.clone()),
            credentials,
            in_dialog_from_trunk_only: t.in_dialog_from_trunk_only(),
            require_100rel: t.require_100rel,
            session_timer: (t.session_expires_seconds > 0).then_some(SessionTimerConfig {
                expires_s: t.session_expires_seconds,
                min_se_s: t.min_se_seconds,
                ms_per_s: 1_000,
            }),
            identity: match t.identity_header {
                config::IdentityHeaderKind::None => IdentityHeader::None,
                config::IdentityHeaderKind::Pai => IdentityHeader::PAssertedIdentity,
                config::IdentityHeaderKind::Rpid => IdentityHeader::RemotePartyId,
            },
        });
    }
    Ok(trunks)
}

impl Telephony {
    /// Binds the SIP socket and resolves the trunks (in priority order).
    /// `engine_allowed_hosts`: `[engine] allowed_hosts` from the config.
    pub async fn start(
        cfg: &config::Telephony,
        engine_allowed_hosts: AllowedHosts,
    ) -> Result<Telephony, String> {
        let first = cfg
            .trunks
            .first()
            .ok_or("no [[telephony.trunks]] configured")?;
        let trunks = resolve_trunks(cfg).await?;
        let mut endpoint = EndpointConfig::new(SocketAddr::new(cfg.bind_ip, cfg.sip_port));
        endpoint.inbound_trunks = trunks.clone();
        endpoint.public = cfg
            .public_ip
            .map(|ip| SocketAddr::new(ip, cfg.public_sip_port.unwrap_or(0)));
        let (sip, inbound) = SipUdp::bind_with(endpoint)
            .await
            .map_err(|e| format!("cannot bind SIP on {}:{}: {e}", cfg.bind_ip, cfg.sip_port))?;
        let ports = PortAllocator::new(cfg.bind_ip, cfg.rtp_port_min..=cfg.rtp_port_max);
        tracing::info!(sip = %sip.local_addr(), trunks = trunks.len(), "telephony ready");
        Ok(Telephony {
            sip,
            ports,
            dial_plan: arc_swap::ArcSwap::from_pointee(DialPlan {
                trunks,
                from_number: first.from_number.clone(),
                cfg: cfg.clone(),
            }),
            cfg: cfg.clone(),
            engine_allowed_hosts,
            inbound: Mutex::new(Some(inbound)),
        })
    }

    /// The dial plan in force now (a snapshot: a reload does not change it).
    pub fn dial_plan(&self) -> Arc<DialPlan> {
        self.dial_plan.load_full()
    }

    /// SIGHUP: rebuilds the dial plan from `new` (a config already checked)
    /// and swaps it in. New calls and texts use it; calls in progress keep
    /// the plan they were placed with. Keys that need a restart (sockets,
    /// addresses, RTP range, recordings) keep their start values, and are
    /// named in the answer when `new` changes them. Inbound texts are still
    /// taken from the trunk addresses known at start (the SIP endpoint's).
    /// On error nothing changes.
    pub async fn reload(&self, new: &config::Telephony) -> Result<Vec<&'static str>, String> {
        let first = new
            .trunks
            .first()
            .ok_or("no [[telephony.trunks]] in the new config: keeping the old ones")?;
        let trunks = resolve_trunks(new).await?;
        let old = &self.cfg;
        let mut cfg = new.clone();
        let mut kept = Vec::new();
        macro_rules! keep {
            ($($field:ident),*) => {$(
                if cfg.$field != old.$field {
                    kept.push(stringify!($field));
                    cfg.$field = old.$field.clone();
                }
            )*};
        }
        keep!(
            bind_ip,
            public_ip,
            public_sip_port,
            sip_port,
            rtp_port_min,
            rtp_port_max
        );
        // The spool path main() settled at start (the file may name none).
        cfg.recordings_dir = old.recordings_dir.clone();
        let plan = DialPlan {
            trunks,
            from_number: first.from_number.clone(),
            cfg,
        };
        tracing::info!(
            trunks = plan.trunks.len(),
            ring_timeout_s = plan.cfg.ring_timeout_seconds,
            "dial plan reloaded"
        );
        self.dial_plan.store(Arc::new(plan));
        Ok(kept)
    }

    /// The texts the trunks send us (once: the lease driver takes them).
    pub fn take_inbound(&self) -> Option<mpsc::Receiver<InboundRequest>> {
        self.inbound.lock().ok()?.take()
    }

    /// Sends one text through the trunks (in priority order; the next only
    /// after a 503) and returns how it ended. `now_ms`: unix ms (the CPIM
    /// `DateTime` when `text_imdn` is on). The IMDN Message-ID, when one was
    /// asked for, is the offer's `message_id`.
    pub async fn send_message(&self, offer: &MessageOffer, now_ms: u64) -> MessageEnd {
        let spec = MessageSpec {
            trunks: self.dial_plan.load().trunks.clone(),
            to_user: offer.to.clone(),
            from_user: offer.from.clone(),
            body: offer.body.clone(),
            imdn: self.cfg.text_imdn.then(|| Imdn {
                message_id: offer.message_id.clone(),
                date_time: text_message::rfc3339_utc(now_ms),
            }),
            timers: Timers::default(),
        };
        match self.sip.send_message(spec).await {
            Ok(end) => end,
            Err(DriverError::NoTrunk) => MessageEnd::failed(reasons::NO_TRUNK, None),
            Err(e) => {
                tracing::warn!(message_id = %offer.message_id, error = %e, "text not sent");
                MessageEnd::failed(reasons::TRANSPORT, None)
            }
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.sip.local_addr()
    }
}
