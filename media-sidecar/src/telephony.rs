//! What every SIP call of the sidecar shares: the SIP socket (and TCP/TLS
//! connections to the trunks that use them), the RTP port pool, the region's
//! trunks (in priority order, each host resolved as RFC 3263 says and kept
//! fresh by its TTL: [`crate::sip::dns`]) and their registrations, the
//! `[telephony]` config and the guard on tenants' engine URLs. One call's
//! task is [`crate::call_task::sip`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use voxline_shared::sidecar_link::MessageOffer;

use crate::config;
use crate::engine::guard::AllowedHosts;
use crate::media::PortAllocator;
use crate::random::OsRandom;
use crate::sip::auth::Credentials;
use crate::sip::call::IdentityHeader;
use crate::sip::dns::resolver::{DnsLookup, HickoryLookup, NoLookup};
use crate::sip::dns::table::{run_refresher, TrunkSource, TrunkTable};
use crate::sip::dns::{Families, Request};
use crate::sip::endpoint::{uri_host, EndpointConfig};
use crate::sip::register::{RegisterConfig, RegistrationStatus};
use crate::sip::session_timer::SessionTimerConfig;
use crate::sip::stream::StreamOptions;
use crate::sip::text_message::{self, reasons, Imdn, MessageEnd, MessageSpec};
use crate::sip::transaction::Timers;
use crate::sip::udp::{DriverError, InboundRequest, SipUdp, Trunk};

/// What a SIGHUP may change (see [`Telephony::reload`]): the trunks and
/// the per-call limits. A call loads it once when it is placed and keeps
/// that snapshot to its end.
pub struct DialPlan {
    /// The configured trunks and their addresses (refreshed in the
    /// background while the plan lives: [`crate::sip::dns`]).
    trunk_table: Arc<TrunkTable>,
    /// The DNS refresher's task, stopped with the plan.
    refresher: Option<tokio::task::AbortHandle>,
    /// The first trunk's caller ID.
    pub from_number: String,
    /// `[telephony]` as in force: the reloadable keys (trunks, ring and
    /// failover timeouts, redirects, codecs) from the latest good config,
    /// the rest (sockets, addresses, recordings) as at start.
    pub cfg: config::Telephony,
}

impl DialPlan {
    /// The trunks one call or text tries, in order: configured priority,
    /// then each trunk's addresses (SRV priority, SRV weights drawn now).
    /// Never waits for DNS.
    pub fn trunks(&self) -> Vec<Trunk> {
        self.trunk_table.trunks(&mut OsRandom)
    }

    /// Configured trunks with at least one address.
    pub fn resolved_count(&self) -> usize {
        self.trunk_table.resolved_count()
    }
}

impl std::fmt::Debug for DialPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialPlan")
            .field("trunks", &self.cfg.trunks.len())
            .field("resolved", &self.resolved_count())
            .field("from_number", &self.from_number)
            .finish()
    }
}

impl Drop for DialPlan {
    fn drop(&mut self) {
        if let Some(task) = &self.refresher {
            task.abort();
        }
    }
}

/// The trunks of a `[telephony]`, resolved (or being resolved) for the endpoint.
pub struct ResolvedTrunks {
    table: Arc<TrunkTable>,
    refresher: Option<tokio::task::AbortHandle>,
    /// The trunks that register, in config order.
    registrations: Vec<RegisterConfig>,
    /// The TLS client configuration per trunk certificate name.
    tls: HashMap<String, Arc<rustls::ClientConfig>>,
}

/// What every call of this sidecar shares.
pub struct Telephony {
    pub(crate) sip: SipUdp,
    pub(crate) ports: Arc<PortAllocator>,
    /// Swapped whole by [`Telephony::reload`]; readers never wait.
    dial_plan: arc_swap::ArcSwap<DialPlan>,
    /// The names of the trunks that register, and of the TLS trunks'
    /// certificates, as at start: a reload cannot change them (the SIP
    /// endpoint holds them).
    registered_trunks: Vec<String>,
    tls_names: Vec<String>,
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
            "Telephony(sip {}, {} trunks resolved)",
            self.sip.local_addr(),
            self.dial_plan.load().resolved_count()
        )
    }
}

impl ResolvedTrunks {
    /// What a reload cannot change: the names of the trunks that register,
    /// and the TLS trunks' certificate names (sorted).
    fn fixed_names(&self) -> (Vec<String>, Vec<String>) {
        let registered = self.registrations.iter().map(|r| r.name.clone()).collect();
        let mut tls: Vec<String> = self.tls.keys().cloned().collect();
        tls.sort();
        (registered, tls)
    }
}

/// tokio's clock as a std instant (paused time in tests moves it).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Resolves the configured trunks (in the order given: `finish` sorted
/// them by priority) into what the SIP endpoint dials: a host name as RFC
/// 3263 says, through `dns_servers` or the system's name servers, kept
/// fresh by a background task. A trunk that does not resolve yet is logged
/// and retried in the background; none resolving is an error. `local`: our
/// SIP address (registrations' Contact until the endpoint binds).
pub async fn resolve_trunks(
    cfg: &config::Telephony,
    local: SocketAddr,
) -> Result<ResolvedTrunks, String> {
    let families = Families::reachable_from(cfg.bind_ip);
    let mut tls = HashMap::new();
    let mut sources = Vec::new();
    let mut registrations = Vec::new();
    for t in &cfg.trunks {
        let (template, request, registration) = trunk_of(t, local, families).await?;
        if let Some(name) = &template.tls_name {
            let client = crate::transport::tls::client_config(t.ca_cert.as_deref())
                .map_err(|e| format!("trunk `{}`: {e}", t.name))?;
            // Two TLS trunks of one name share a configuration: the first's.
            tls.entry(name.clone()).or_insert_with(|| Arc::new(client));
        }
        if t.srtp_keys_exposed() {
            tracing::warn!(trunk = %t.name, transport = ?t.transport, srtp = ?t.srtp, "SRTP keys travel in clear in the SIP messages to this trunk (SDES in SDP): use transport = \"tls\" in production");
        }
        sources.push(TrunkSource {
            name: t.name.clone(),
            template,
            request,
        });
        registrations.extend(registration);
    }
    let needs_dns = sources.iter().any(|s| !s.request.is_literal());
    let lookup: Arc<dyn DnsLookup> = if needs_dns {
        Arc::new(HickoryLookup::new(&cfg.dns_servers).map_err(|e| e.to_string())?)
    } else {
        Arc::new(NoLookup)
    };
    let table = Arc::new(TrunkTable::new(sources, now()));
    table.refresh_due(lookup.as_ref(), now).await;
    if table.resolved_count() == 0 {
        return Err("no trunk could be resolved (see the log)".into());
    }
    let refresher = needs_dns
        .then(|| tokio::spawn(run_refresher(Arc::downgrade(&table), lookup)).abort_handle());
    Ok(ResolvedTrunks {
        table,
        refresher,
        registrations,
        tls,
    })
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
        let local = SocketAddr::new(cfg.bind_ip, cfg.sip_port);
        let resolved = resolve_trunks(cfg, local).await?;
        let streams = StreamOptions {
            keepalive: (cfg.sip_keepalive_seconds > 0)
                .then(|| std::time::Duration::from_secs(cfg.sip_keepalive_seconds.into())),
            tls: resolved.tls.clone(),
            ..StreamOptions::default()
        };
        let (registered_trunks, tls_names) = resolved.fixed_names();
        let mut endpoint = EndpointConfig::new(local);
        // Texts are taken from the addresses resolved now (a trunk with a
        // host name takes them from anywhere unless `in_dialog_from_trunk_only`).
        endpoint.inbound_trunks = resolved.table.trunks(&mut OsRandom);
        endpoint.public = cfg
            .public_ip
            .map(|ip| SocketAddr::new(ip, cfg.public_sip_port.unwrap_or(0)));
        let registering = resolved.registrations.len();
        endpoint.registrations = resolved.registrations;
        endpoint.registrar = cfg.registrar.endpoint_config();
        let (sip, inbound) = SipUdp::bind_with_streams(endpoint, streams)
            .await
            .map_err(|e| format!("cannot bind SIP on {}:{}: {e}", cfg.bind_ip, cfg.sip_port))?;
        let ports = PortAllocator::new(cfg.bind_ip, cfg.rtp_port_min..=cfg.rtp_port_max);
        tracing::info!(
            sip = %sip.local_addr(),
            trunks = cfg.trunks.len(),
            resolved = resolved.table.resolved_count(),
            registering,
            "telephony ready"
        );
        Ok(Telephony {
            sip,
            ports,
            dial_plan: arc_swap::ArcSwap::from_pointee(DialPlan {
                trunk_table: resolved.table,
                refresher: resolved.refresher,
                from_number: first.from_number.clone(),
                cfg: cfg.clone(),
            }),
            registered_trunks,
            tls_names,
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
        let resolved = resolve_trunks(new, self.sip.local_addr()).await?;
        // The endpoint's registrations and the driver's TLS configurations
        // are fixed at start.
        if resolved.fixed_names() != (self.registered_trunks.clone(), self.tls_names.clone()) {
            return Err(
                "trunks that register, or TLS trunks' certificate names, changed: that needs a restart; keeping the old trunks"
                    .into(),
            );
        }
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
            rtp_port_max,
            registrar
        );
        // The spool path main() settled at start (the file may name none).
        cfg.recordings_dir = old.recordings_dir.clone();
        let plan = DialPlan {
            trunk_table: resolved.table,
            refresher: resolved.refresher,
            from_number: first.from_number.clone(),
            cfg,
        };
        tracing::info!(
            trunks = plan.cfg.trunks.len(),
            resolved = plan.resolved_count(),
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
            trunks: self.dial_plan.load().trunks(),
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
        if !self.registered_trunks.is_empty() && !self.sip.unregister(within).await {
            tracing::warn!("un-REGISTER not confirmed in time");
        }
    }
}

/// One configured trunk as the endpoint dials it: its settings (`addr` is
/// filled per address its next hop resolves to), the DNS request for that
/// next hop (the trunk, or its outbound proxy), and its registration if it
/// registers (`local`: our SIP address, fixed by the endpoint once bound).
async fn trunk_of(
    t: &config::Trunk,
    local: SocketAddr,
    families: Families,
) -> Result<(Trunk, Request, Option<RegisterConfig>), String> {
    let transport = crate::sip::transport::Transport::from(t.transport);
    // Where the port matters beyond DNS (a proxy's Route, the registrar):
    // the configured one, else the transport's.
    let port = t.port.unwrap_or(transport.default_port());
    // Through an outbound proxy, the proxy is what must resolve.
    let proxy = match &t.outbound_proxy {
        Some(p) => {
            Some(config::parse_host_port(p).map_err(|e| format!("trunk `{}`: {e}", t.name))?)
        }
        None => None,
    };
    let request = match &proxy {
        Some((h, p)) => Request::new(h, Some(*p), t.transport.into(), families),
        None => Request::new(&t.host, t.port, t.transport.into(), families),
    }
    .map_err(|e| format!("trunk `{}`: {e}", t.name))?;
    let outbound_route = proxy
        .as_ref()
        .map(|(h, p)| format!("<sip:{};lr>", uri_host(h, *p)));
    let credentials = match (&t.username, &t.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: t.auth_username.clone().unwrap_or_else(|| u.clone()),
            password: String::from_utf8_lossy(p.expose()).into_owned(),
            realm: t.realm.clone(),
        }),
        _ => None,
    };
    let mut registration = None;
    if let (true, Some(user)) = (t.register, &t.username) {
        let (reg_host, reg_port) = match &t.registrar {
            Some(r) => {
                config::parse_host_port(r).map_err(|e| format!("trunk `{}`: {e}", t.name))?
            }
            None => (t.host.clone(), port),
        };
        // The registrar is resolved once, by the system's resolver (A/AAAA).
        let dest = match &proxy {
            Some((h, p)) => resolve(&t.name, h, *p).await?,
            None => resolve(&t.name, &reg_host, reg_port).await?,
        };
        // Local address and Contact: the endpoint's, set when it binds.
        let mut r = RegisterConfig::new(&t.name, dest, user, &uri_host(&t.host, port), local);
        r.registrar_uri = format!("sip:{}", uri_host(&reg_host, reg_port));
        r.route = outbound_route.clone();
        r.credentials = credentials.clone();
        r.expires_s = t.register_expires_seconds;
        registration = Some(r);
    }
    let trunk = Trunk {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        // With a proxy, `addr` has the proxy's port: the Request-URI keeps the trunk's.
        domain: Some(if outbound_route.is_some() {
            uri_host(&t.host, port)
        } else {
            t.host.clone()
        }),
        uri_without_port: false,
        outbound_route,
        registration: t.register.then(|| t.name.clone()),
        credentials,
        in_dialog_from_trunk_only: t.in_dialog_from_trunk_only(),
        require_100rel: t.require_100rel,
        refer: t.refer,
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
        transport,
        tls_name: (transport == crate::sip::transport::Transport::Tls)
            .then(|| t.tls_server_name.clone().unwrap_or_else(|| t.host.clone())),
    };
    Ok((trunk, request, registration))
}

/// The first address of `host:port`.
async fn resolve(trunk: &str, host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("trunk `{trunk}`: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("trunk `{trunk}`: {host} has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn trunk(host: &str, port: u16) -> config::Trunk {
        config::Trunk {
            name: "carrier".into(),
            host: host.into(),
            port: Some(port),
            transport: config::SipTransport::Udp,
            username: Some("acct".into()),
            password: Some(Secret::new("pw")),
            realm: None,
            in_dialog_from_trunk_only: None,
            require_100rel: false,
            refer: false,
            session_expires_seconds: 1800,
            min_se_seconds: 90,
            from_number: "+15550001111".into(),
            priority: 0,
            register: false,
            register_expires_seconds: 3_600,
            registrar: None,
            auth_username: None,
            outbound_proxy: None,
            identity_header: config::IdentityHeaderKind::None,
            srtp: crate::media::srtp::SrtpPolicy::Off,
            ca_cert: None,
            tls_server_name: None,
        }
    }

    const LOCAL: &str = "127.0.0.1:5060";

    async fn plan(c: &config::Trunk) -> Result<(Trunk, Request, Option<RegisterConfig>), String> {
        trunk_of(
            c,
            LOCAL.parse().unwrap(),
            Families::reachable_from(LOCAL.parse::<SocketAddr>().unwrap().ip()),
        )
        .await
    }

    /// The request for this next hop, as configured (a literal needs no DNS).
    fn hop(host: &str, port: u16) -> Request {
        Request::new(
            host,
            Some(port),
            crate::sip::dns::Transport::Udp,
            Families::reachable_from(LOCAL.parse::<SocketAddr>().unwrap().ip()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_plain_trunk_has_no_route_and_no_registration() {
        let (t, request, reg) = plan(&trunk("127.0.0.1", 5070)).await.unwrap();
        assert_eq!(request, hop("127.0.0.1", 5070));
        assert_eq!(
            (t.domain.as_deref(), t.outbound_route, t.registration),
            (Some("127.0.0.1"), None, None)
        );
        assert_eq!(t.credentials.unwrap().username, "acct");
        assert!(reg.is_none());
    }

    #[tokio::test]
    async fn a_registering_trunk_registers_at_its_registrar_as_its_username() {
        let mut c = trunk("127.0.0.1", 5070);
        c.register = true;
        c.register_expires_seconds = 600;
        c.registrar = Some("127.0.0.2:5080".into());
        c.auth_username = Some("acct-auth".into());
        let (t, request, reg) = plan(&c).await.unwrap();
        let reg = reg.expect("a registration");
        assert_eq!(t.registration.as_deref(), Some("carrier"));
        assert_eq!(request, hop("127.0.0.1", 5070));
        // Digest with the auth username, calls and REGISTERs alike.
        assert_eq!(t.credentials.as_ref().unwrap().username, "acct-auth");
        assert_eq!(reg.credentials, t.credentials);
        assert_eq!(
            (
                reg.dest,
                reg.registrar_uri.as_str(),
                reg.aor(),
                reg.expires_s,
                reg.route
            ),
            (
                "127.0.0.2:5080".parse().unwrap(),
                "sip:127.0.0.2:5080",
                "sip:acct@127.0.0.1:5070".to_string(),
                600,
                None
            )
        );
        // The registrar defaults to the trunk.
        c.registrar = None;
        let (_, _, reg) = plan(&c).await.unwrap();
        let reg = reg.unwrap();
        assert_eq!(
            (reg.dest, reg.registrar_uri.as_str()),
            ("127.0.0.1:5070".parse().unwrap(), "sip:127.0.0.1:5070")
        );
    }

    #[tokio::test]
    async fn through_an_outbound_proxy_only_the_proxy_must_resolve() {
        let mut c = trunk("trunk.invalid", 5060);
        c.outbound_proxy = Some("127.0.0.3:5090".into());
        c.register = true;
        let (t, request, reg) = plan(&c).await.unwrap();
        let route = Some("<sip:127.0.0.3:5090;lr>".to_string());
        assert_eq!(
            (request, t.domain.as_deref(), &t.outbound_route),
            (hop("127.0.0.3", 5090), Some("trunk.invalid"), &route)
        );
        let reg = reg.unwrap();
        assert_eq!(
            (reg.dest, reg.registrar_uri.as_str(), &reg.route),
            (
                "127.0.0.3:5090".parse().unwrap(),
                "sip:trunk.invalid",
                &route
            )
        );
        // A trunk port other than 5060 stays in the Request-URI's host.
        c.port = Some(5070);
        let (t, _, _) = plan(&c).await.unwrap();
        assert_eq!(t.domain.as_deref(), Some("trunk.invalid:5070"));
        // Without the proxy, the trunk's host is what resolves (by DNS, in
        // the background), and a registrar that does not resolve is an error.
        c.outbound_proxy = None;
        assert!(plan(&c).await.is_err());
        c.register = false;
        let (_, request, _) = plan(&c).await.unwrap();
        assert!(!request.is_literal());
    }
}
