//! What every SIP call of the sidecar shares: the SIP socket (and TCP/TLS
//! connections to the trunks that use them), the RTP port
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
use crate::sip::stream::StreamOptions;
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
        let mut streams = StreamOptions {
            keepalive: (cfg.sip_keepalive_seconds > 0)
                .then(|| std::time::Duration::from_secs(cfg.sip_keepalive_seconds.into())),
            ..StreamOptions::default()
        };
        for t in &cfg.trunks {
            let transport = crate::sip::transport::Transport::from(t.transport);
            // 0 (a config not loaded from a file): the transport's port.
            let port = if t.port == 0 {
                transport.default_port()
            } else {
                t.port
            };
            let addr = tokio::net::lookup_host((t.host.as_str(), port))
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
            let tls_name = (transport == crate::sip::transport::Transport::Tls)
                .then(|| t.tls_server_name.clone().unwrap_or_else(|| t.host.clone()));
            if let Some(name) = &tls_name {
                let tls = crate::transport::tls::client_config(t.ca_cert.as_deref())
                    .map_err(|e| format!("trunk `{}`: {e}", t.name))?;
                // Two TLS trunks of one name share a configuration: the first's.
                streams
                    .tls
                    .entry(name.clone())
                    .or_insert_with(|| std::sync::Arc::new(tls));
            }
            trunks.push(Trunk {
                transport,
                tls_name,
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
                srtp: t.srtp,
            });
            if t.srtp_keys_exposed() {
                tracing::warn!(trunk = %t.name, transport = ?t.transport, srtp = ?t.srtp, "SRTP keys travel in clear in the SIP messages to this trunk (SDES in SDP): use transport = \"tls\" in production");
            }
        }
        let mut endpoint = EndpointConfig::new(SocketAddr::new(cfg.bind_ip, cfg.sip_port));
        endpoint.inbound_trunks = trunks.clone();
        endpoint.public = cfg
            .public_ip
            .map(|ip| SocketAddr::new(ip, cfg.public_sip_port.unwrap_or(0)));
        let (sip, inbound) = SipUdp::bind_with_streams(endpoint, streams)
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
}
