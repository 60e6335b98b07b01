//! What every SIP call of the sidecar shares: the SIP socket, the RTP port
//! pool, the region's trunks (in priority order, each host resolved as RFC
//! 3263 says and kept fresh by its TTL: [`crate::sip::dns`]), the
//! `[telephony]` config and the guard on tenants' engine URLs. One call's
//! task is [`crate::call_task::sip`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use voxline_shared::sidecar_link::MessageOffer;

use crate::config;
use crate::engine::guard::AllowedHosts;
use crate::media::PortAllocator;
use crate::random::OsRandom;
use crate::sip::auth::Credentials;
use crate::sip::dns::resolver::{DnsLookup, HickoryLookup, NoLookup};
use crate::sip::dns::table::{run_refresher, TrunkSource, TrunkTable};
use crate::sip::dns::{Families, Request};
use crate::sip::endpoint::EndpointConfig;
use crate::sip::session_timer::SessionTimerConfig;
use crate::sip::text_message::{self, reasons, Imdn, MessageEnd, MessageSpec};
use crate::sip::transaction::Timers;
use crate::sip::udp::{DriverError, InboundRequest, SipUdp, Trunk};

/// What every call of this sidecar shares.
pub struct Telephony {
    pub(crate) sip: SipUdp,
    pub(crate) ports: Arc<PortAllocator>,
    /// The configured trunks and their addresses (refreshed in the background).
    trunk_table: Arc<TrunkTable>,
    /// The DNS refresher's task, stopped with us.
    refresher: Option<tokio::task::AbortHandle>,
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
            "Telephony(sip {}, {} trunks resolved)",
            self.sip.local_addr(),
            self.trunk_table.resolved_count()
        )
    }
}

impl Drop for Telephony {
    fn drop(&mut self) {
        if let Some(task) = &self.refresher {
            task.abort();
        }
    }
}

/// tokio's clock as a std instant (paused time in tests moves it).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// `t`'s endpoint settings; `addr` is filled per resolved address.
fn trunk_template(t: &config::Trunk) -> Trunk {
    let credentials = match (&t.username, &t.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: String::from_utf8_lossy(p.expose()).into_owned(),
            realm: t.realm.clone(),
        }),
        _ => None,
    };
    Trunk {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        domain: Some(t.host.clone()),
        uri_without_port: false,
        credentials,
        in_dialog_from_trunk_only: t.in_dialog_from_trunk_only(),
        require_100rel: t.require_100rel,
        session_timer: (t.session_expires_seconds > 0).then_some(SessionTimerConfig {
            expires_s: t.session_expires_seconds,
            min_se_s: t.min_se_seconds,
            ms_per_s: 1_000,
        }),
    }
}

impl Telephony {
    /// Binds the SIP socket and resolves the trunks (in priority order; a
    /// host name as RFC 3263 says, through `dns_servers` or the system's
    /// name servers). A trunk that does not resolve yet is logged and
    /// retried in the background; none resolving is an error.
    /// `engine_allowed_hosts`: `[engine] allowed_hosts` from the config.
    pub async fn start(
        cfg: &config::Telephony,
        engine_allowed_hosts: AllowedHosts,
    ) -> Result<Telephony, String> {
        let first = cfg
            .trunks
            .first()
            .ok_or("no [[telephony.trunks]] configured")?;
        let families = Families::reachable_from(cfg.bind_ip);
        let mut sources = Vec::new();
        for t in &cfg.trunks {
            let request = Request::new(&t.host, t.port, t.transport.into(), families)
                .map_err(|e| format!("trunk `{}`: {e}", t.name))?;
            sources.push(TrunkSource {
                name: t.name.clone(),
                template: trunk_template(t),
                request,
            });
        }
        let needs_dns = sources.iter().any(|s| !s.request.is_literal());
        let lookup: Arc<dyn DnsLookup> = if needs_dns {
            Arc::new(HickoryLookup::new(&cfg.dns_servers).map_err(|e| e.to_string())?)
        } else {
            Arc::new(NoLookup)
        };
        let trunk_table = Arc::new(TrunkTable::new(sources, now()));
        trunk_table.refresh_due(lookup.as_ref(), now).await;
        if trunk_table.resolved_count() == 0 {
            return Err("no trunk could be resolved (see the log)".into());
        }
        let refresher = needs_dns.then(|| {
            tokio::spawn(run_refresher(Arc::downgrade(&trunk_table), lookup)).abort_handle()
        });
        let mut endpoint = EndpointConfig::new(SocketAddr::new(cfg.bind_ip, cfg.sip_port));
        // Texts are taken from the addresses resolved now (a trunk with a
        // host name takes them from anywhere unless `in_dialog_from_trunk_only`).
        endpoint.inbound_trunks = trunk_table.trunks(&mut OsRandom);
        let (sip, inbound) = SipUdp::bind_with(endpoint)
            .await
            .map_err(|e| format!("cannot bind SIP on {}:{}: {e}", cfg.bind_ip, cfg.sip_port))?;
        let ports = PortAllocator::new(cfg.bind_ip, cfg.rtp_port_min..=cfg.rtp_port_max);
        tracing::info!(
            sip = %sip.local_addr(),
            trunks = cfg.trunks.len(),
            resolved = trunk_table.resolved_count(),
            "telephony ready"
        );
        Ok(Telephony {
            sip,
            ports,
            trunk_table,
            refresher,
            from_number: first.from_number.clone(),
            cfg: cfg.clone(),
            engine_allowed_hosts,
            inbound: Mutex::new(Some(inbound)),
        })
    }

    /// The trunks one call or text tries, in order: configured priority,
    /// then each trunk's addresses (SRV priority, SRV weights drawn now).
    /// Never waits for DNS.
    pub fn trunks(&self) -> Vec<Trunk> {
        self.trunk_table.trunks(&mut OsRandom)
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
            trunks: self.trunks(),
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
