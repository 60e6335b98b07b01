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
use crate::sip::endpoint::{uri_host, EndpointConfig};
use crate::sip::register::{RegisterConfig, RegistrationStatus};
use crate::sip::session_timer::SessionTimerConfig;
use crate::sip::text_message::{self, reasons, Imdn, MessageEnd, MessageSpec};
use crate::sip::transaction::Timers;
use crate::sip::udp::{DriverError, InboundRequest, SipUdp, Trunk};

/// What every call of this sidecar shares.
pub struct Telephony {
    pub(crate) sip: SipUdp,
    pub(crate) ports: Arc<PortAllocator>,
    pub(crate) trunks: Vec<Trunk>,
    pub(crate) from_number: String,
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
            self.trunks.len()
        )
    }
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
        let mut trunks = Vec::new();
        let mut registrations = Vec::new();
        for t in &cfg.trunks {
            // Through an outbound proxy, the proxy is what must resolve.
            let proxy = match &t.outbound_proxy {
                Some(p) => Some(
                    config::parse_host_port(p).map_err(|e| format!("trunk `{}`: {e}", t.name))?,
                ),
                None => None,
            };
            let (hop_host, hop_port) = proxy.clone().unwrap_or((t.host.clone(), t.port));
            let addr = resolve(&t.name, &hop_host, hop_port).await?;
            let outbound_route = proxy.map(|(h, p)| format!("<sip:{};lr>", uri_host(&h, p)));
            let credentials = match (&t.username, &t.password) {
                (Some(u), Some(p)) => Some(Credentials {
                    username: t.auth_username.clone().unwrap_or_else(|| u.clone()),
                    password: String::from_utf8_lossy(p.expose()).into_owned(),
                    realm: t.realm.clone(),
                }),
                _ => None,
            };
            if let (true, Some(user)) = (t.register, &t.username) {
                let (reg_host, reg_port) = match &t.registrar {
                    Some(r) => config::parse_host_port(r)
                        .map_err(|e| format!("trunk `{}`: {e}", t.name))?,
                    None => (t.host.clone(), t.port),
                };
                let dest = match &outbound_route {
                    Some(_) => addr,
                    None => resolve(&t.name, &reg_host, reg_port).await?,
                };
                // Local address and Contact: the endpoint's, set when it binds.
                let mut r = RegisterConfig::new(
                    &t.name,
                    dest,
                    user,
                    &uri_host(&t.host, t.port),
                    SocketAddr::new(cfg.bind_ip, cfg.sip_port),
                );
                r.registrar_uri = format!("sip:{}", uri_host(&reg_host, reg_port));
                r.route = outbound_route.clone();
                r.credentials = credentials.clone();
                r.expires_s = t.register_expires_seconds;
                registrations.push(r);
            }
            trunks.push(Trunk {
                addr,
                // With a proxy, `addr` has the proxy's port: the Request-URI keeps the trunk's.
                domain: Some(if outbound_route.is_some() {
                    uri_host(&t.host, t.port)
                } else {
                    t.host.clone()
                }),
                outbound_route,
                registration: t.register.then(|| t.name.clone()),
                credentials,
                in_dialog_from_trunk_only: t.in_dialog_from_trunk_only(),
                require_100rel: t.require_100rel,
                session_timer: (t.session_expires_seconds > 0).then_some(SessionTimerConfig {
                    expires_s: t.session_expires_seconds,
                    min_se_s: t.min_se_seconds,
                    ms_per_s: 1_000,
                }),
            });
        }
        let mut endpoint = EndpointConfig::new(SocketAddr::new(cfg.bind_ip, cfg.sip_port));
        endpoint.inbound_trunks = trunks.clone();
        endpoint.registrations = registrations;
        let (sip, inbound) = SipUdp::bind_with(endpoint)
            .await
            .map_err(|e| format!("cannot bind SIP on {}:{}: {e}", cfg.bind_ip, cfg.sip_port))?;
        let ports = PortAllocator::new(cfg.bind_ip, cfg.rtp_port_min..=cfg.rtp_port_max);
        tracing::info!(sip = %sip.local_addr(), trunks = trunks.len(), "telephony ready");
        Ok(Telephony {
            sip,
            ports,
            trunks,
            from_number: first.from_number.clone(),
            cfg: cfg.clone(),
            engine_allowed_hosts,
            inbound: Mutex::new(Some(inbound)),
        })
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
            trunks: self.trunks.clone(),
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

    /// Where the trunks' registrations stand (for health and metrics;
    /// empty when no trunk registers or the SIP driver stopped).
    pub async fn registrations(&self) -> Vec<RegistrationStatus> {
        self.sip.registrations().await.unwrap_or_default()
    }

    /// Removes the registered bindings (shutdown), waiting at most `within`.
    pub async fn unregister(&self, within: std::time::Duration) {
        if self.trunks.iter().any(|t| t.registration.is_some())
            && !self.sip.unregister(within).await
        {
            tracing::warn!("un-REGISTER not confirmed in time");
        }
    }
}

/// The first address of `host:port`.
async fn resolve(trunk: &str, host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("trunk `{trunk}`: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("trunk `{trunk}`: {host} has no address"))
}
