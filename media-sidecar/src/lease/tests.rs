use super::*;
use serde::Serialize;
use voxline_shared::sidecar_link::Role;

const T0: u64 = 1_700_000_000_000;

fn reg_ack() -> RegistrationAck {
    RegistrationAck {
        protocol_version: 1,
        lease_wait_ms: 20_000,
        ack_deadline_ms: 5_000,
        dead_after_ms: 60_000,
    }
}

fn ok(v: impl Serialize) -> Reply {
    Reply::Http {
        status: 200,
        body: serde_json::to_vec(&v).unwrap(),
    }
}

fn status(code: u16) -> Reply {
    Reply::Http {
        status: code,
        body: format!("{{\"error\":{{\"code\":\"x{code}\"}}}}").into_bytes(),
    }
}

fn offer(n: u32, deadline_ms: u64) -> Offer {
    Offer {
        tenant_id: "ten_1".into(),
        lease_id: format!("l_{n}"),
        call_id: format!("c_{n}"),
        attempt: 1,
        phone: "+14155550100".into(),
        caller_name: None,
        caller_number: None,
        agent_id: "ag_1".into(),
        system_prompt: None,
        voice: None,
        language: "en-US".into(),
        engine: voxline_shared::EngineKind::Local.into(),
        model: None,
        max_seconds: 600,
        record: false,
        metadata: None,
        engine_api_key: None,
        engine_base_url: None,
        engine_key_unavailable: false,
        silence_timeout_seconds: None,
        ack_deadline_ms: deadline_ms,
        first_speaker: voxline_shared::sidecar_link::FirstSpeaker::Agent,
        analysis: None,
        amd: Default::default(),
        amd_message: None,
        tools: Vec::new(),
        connect: None,
        transfer_people: Vec::new(),
    }
}

fn lease_resp(offers: Vec<Offer>, commands: Vec<Command>) -> Reply {
    ok(LeaseResponse {
        protocol_version: 1,
        offers,
        commands,
        messages: vec![],
    })
}

fn hangup(call: &str) -> Command {
    Command::Hangup {
        call_id: call.into(),
    }
}

struct H {
    c: LeaseClient,
    now: u64,
}

impl H {
    fn new(capacity: u32) -> H {
        H {
            c: LeaseClient::new(LeaseSettings::new("sc-1", "eu", capacity)),
            now: T0,
        }
    }

    /// Registered, with nothing in flight and all notices drained.
    fn registered(capacity: u32) -> H {
        let mut h = H::new(capacity);
        let t = h.tx().expect("registers first");
        assert!(matches!(t.request, Request::Register(_)));
        h.reply(t.id, ok(reg_ack()));
        assert!(h.c.is_registered());
        h.actions();
        h
    }

    fn tx(&mut self) -> Option<Transmit> {
        self.c.poll_transmit(self.now)
    }

    fn all_tx(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.c.poll_transmit(self.now)).collect()
    }

    fn reply(&mut self, id: RequestId, r: Reply) {
        self.c.handle_reply(self.now, id, r)
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.c.poll_action()).collect()
    }

    fn starts(&mut self) -> Vec<Offer> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::StartCall(o) => Some(*o),
                _ => None,
            })
            .collect()
    }

    fn lease(&mut self) -> (RequestId, LeaseRequest) {
        let txs = self.all_tx();
        let mut leases: Vec<_> = txs
            .into_iter()
            .map(|t| match t.request {
                Request::Lease(l) => (t.id, l),
                other => panic!("expected only a lease, got {other:?}"),
            })
            .collect();
        assert_eq!(leases.len(), 1, "exactly one lease poll");
        leases.pop().unwrap()
    }

    /// Leases one response, returns the transmits that follow (acks first).
    fn lease_with(&mut self, offers: Vec<Offer>, commands: Vec<Command>) -> Vec<Transmit> {
        let (id, _) = self.lease();
        self.reply(id, lease_resp(offers, commands));
        self.all_tx()
    }

    /// Accept-and-confirm `n` in one go; returns the started offer.
    fn start_call(&mut self, n: u32) -> Offer {
        let txs = self.lease_with(vec![offer(n, self.now + 5_000)], vec![]);
        let ack = txs
            .iter()
            .find(|t| matches!(t.request, Request::Ack(_)))
            .expect("an ack")
            .id;
        self.reply(
            ack,
            ok(serde_json::json!({"protocol_version":1,"lease_id":format!("l_{n}")})),
        );
        let mut started = self.starts();
        assert_eq!(started.len(), 1);
        // Settle the lease poll that went out with the ack so the next `lease()` is clean.
        for t in txs
            .into_iter()
            .filter(|t| matches!(t.request, Request::Lease(_)))
        {
            self.reply(t.id, lease_resp(vec![], vec![]));
        }
        self.now += 1_000;
        started.pop().unwrap()
    }
}

fn ack_of(t: &Transmit) -> &Ack {
    match &t.request {
        Request::Ack(a) => a,
        other => panic!("expected an ack, got {other:?}"),
    }
}

fn notices(actions: &[Action]) -> Vec<&Notice> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notice(n) => Some(n),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- registration

#[test]
fn registers_first_then_long_polls_with_the_edges_wait() {
    let mut h = H::new(4);
    let t = h.tx().unwrap();
    assert_eq!(t.request.path(), "/v1/sidecar/register");
    let Request::Register(r) = &t.request else {
        panic!()
    };
    assert_eq!(
        (
            r.protocol_version,
            r.sidecar_id.as_str(),
            r.region.as_str(),
            r.capacity
        ),
        (1, "sc-1", "eu", 4)
    );
    assert!(h.tx().is_none(), "nothing else before registration");
    assert_eq!(h.c.next_wakeup_ms(), None, "waits for the reply");

    h.reply(t.id, ok(reg_ack()));
    assert!(matches!(
        h.actions()[..],
        [Action::Notice(Notice::Registered(_))]
    ));
    let (_, l) = h.lease();
    assert_eq!(l.free_slots, 4);
    assert!(l.held_calls.is_empty());
    assert_eq!(l.wait_ms, 20_000, "the edge's lease_wait_ms");
    assert!(h.tx().is_none(), "one lease poll at a time");
}

#[test]
fn wait_is_clamped_to_protocol_max_and_half_the_dead_time() {
    let mut h = H::new(1);
    let t = h.tx().unwrap();
    h.reply(
        t.id,
        ok(RegistrationAck {
            lease_wait_ms: 120_000,
            dead_after_ms: 30_000,
            ..reg_ack()
        }),
    );
    assert_eq!(h.lease().1.wait_ms, 15_000);

    let mut h = H::new(1);
    let t = h.tx().unwrap();
    h.reply(
        t.id,
        ok(RegistrationAck {
            lease_wait_ms: 0,
            dead_after_ms: 0,
            ..reg_ack()
        }),
    );
    assert_eq!(h.lease().1.wait_ms, 25_000, "0 = use our default");

    let mut h = H::new(1);
    let t = h.tx().unwrap();
    h.reply(
        t.id,
        ok(RegistrationAck {
            lease_wait_ms: 90_000,
            dead_after_ms: 0,
            ..reg_ack()
        }),
    );
    assert_eq!(h.lease().1.wait_ms, MAX_LEASE_WAIT_MS);
}

#[test]
fn register_failures_back_off_exponentially_without_jitter() {
    let mut h = H::new(2);
    let mut expected = vec![];
    let mut seen = vec![];
    for (i, failure) in [
        status(500),
        Reply::Failed("connect refused".into()),
        status(401),
        status(503),
        status(502),
        status(500),
        status(500),
        status(500),
        status(500),
    ]
    .into_iter()
    .enumerate()
    {
        let t = h.tx().unwrap_or_else(|| panic!("try {i}"));
        assert!(matches!(t.request, Request::Register(_)));
        h.reply(t.id, failure);
        let wake = h.c.next_wakeup_ms().unwrap();
        seen.push(wake - h.now);
        expected.push((500u64 << i).min(30_000));
        assert!(h.tx().is_none(), "not before the backoff");
        h.now = wake - 1;
        assert!(h.tx().is_none());
        h.now = wake;
    }
    assert_eq!(seen, expected);
    assert_eq!(
        seen,
        vec![500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
    );
    let failed = h.actions();
    assert!(notices(&failed)
        .iter()
        .all(|n| matches!(n, Notice::RegisterFailed { .. })));

    // Success resets the backoff: the next failure waits the initial delay again.
    let t = h.tx().unwrap();
    h.reply(t.id, ok(reg_ack()));
    let (id, _) = h.lease();
    h.reply(id, status(500));
    assert_eq!(h.c.next_wakeup_ms().unwrap() - h.now, 500);
}

#[test]
fn register_ack_with_another_protocol_version_is_a_failure() {
    let mut h = H::new(1);
    let t = h.tx().unwrap();
    h.reply(
        t.id,
        ok(RegistrationAck {
            protocol_version: 2,
            ..reg_ack()
        }),
    );
    assert!(!h.c.is_registered());
    let a = h.actions();
    assert!(notices(&a)
        .iter()
        .any(|n| matches!(n, Notice::ProtocolMismatch { got: 2, .. })));
    assert_eq!(h.c.next_wakeup_ms().unwrap() - h.now, 500);

    h.now += 500;
    let t = h.tx().unwrap();
    h.reply(
        t.id,
        Reply::Http {
            status: 200,
            body: b"not json".to_vec(),
        },
    );
    assert!(!h.c.is_registered());
    assert_eq!(h.c.next_wakeup_ms().unwrap() - h.now, 1_000);
}

#[test]
fn reregisters_on_401_or_410_from_any_request() {
    for code in [401, 410] {
        // From the lease poll.
        let mut h = H::registered(2);
        let (id, _) = h.lease();
        h.reply(id, status(code));
        assert!(!h.c.is_registered());
        assert!(h
            .actions()
            .iter()
            .any(|a| matches!(a, Action::Notice(Notice::Reregistering { path: "/v1/sidecar/lease", status }) if *status == code)));
        let t = h.tx().expect("re-registers at once");
        assert!(matches!(t.request, Request::Register(_)));
        assert!(h.tx().is_none());
        h.reply(t.id, ok(reg_ack()));
        h.lease();

        // From an event batch: the batch is retried after re-registering.
        let mut h = H::registered(2);
        let o = h.start_call(1);
        h.c.emit(h.now, &o.call_id, EventKind::Dialing).unwrap();
        let txs = h.all_tx();
        let ev = txs
            .iter()
            .find(|t| matches!(t.request, Request::Events(_)))
            .unwrap();
        h.reply(ev.id, status(code));
        let t = h.tx().unwrap();
        assert!(matches!(t.request, Request::Register(_)));
        h.reply(t.id, ok(reg_ack()));
        let again = h.all_tx();
        let Some(Request::Events(b)) = again
            .iter()
            .map(|t| &t.request)
            .find(|r| matches!(r, Request::Events(_)))
        else {
            panic!("events resent: {again:?}")
        };
        assert_eq!(b.events[0].seq, 1);
    }
}

// ---------------------------------------------------------------- offers & acks

#[test]
fn accepts_an_offer_and_starts_it_only_after_the_edge_confirms() {
    let mut h = H::registered(2);
    let txs = h.lease_with(vec![offer(1, T0 + 5_000)], vec![]);
    assert_eq!(txs.len(), 2, "an ack and the next poll: {txs:?}");
    let ack = ack_of(&txs[0]);
    assert_eq!(
        (
            ack.accepted,
            ack.reason.as_deref(),
            ack.lease_id.as_str(),
            ack.call_id.as_str()
        ),
        (true, None, "l_1", "c_1")
    );
    assert_eq!(txs[0].request.path(), "/v1/sidecar/ack");
    let Request::Lease(l) = &txs[1].request else {
        panic!()
    };
    assert_eq!(l.free_slots, 1, "the slot is reserved while acking");
    assert_eq!(l.held_calls, vec!["c_1".to_string()]);
    assert!(
        h.starts().is_empty(),
        "never dial before the ack is confirmed"
    );

    h.reply(
        txs[0].id,
        ok(serde_json::json!({"protocol_version":1,"lease_id":"l_1"})),
    );
    let started = h.starts();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].call_id, "c_1");
    assert_eq!(h.c.free_slots(), 1);
    assert_eq!(h.c.held_calls(), vec!["c_1"]);
}

#[test]
fn an_engine_kind_from_a_newer_edge_is_refused_as_unsupported_and_the_rest_is_served() {
    let mut h = H::registered(2);
    let (id, _) = h.lease();
    // As a newer edge writes it: an engine name this build has never heard of.
    let mut newer = serde_json::to_value(offer(1, T0 + 5_000)).unwrap();
    newer["engine"] = serde_json::json!("quantum_voice");
    let body = serde_json::json!({"protocol_version": 1,
        "offers": [newer, offer(2, T0 + 5_000)], "commands": []});
    h.reply(id, ok(body));
    let txs = h.all_tx();
    let acks: Vec<&Ack> = txs
        .iter()
        .filter(|t| matches!(t.request, Request::Ack(_)))
        .map(ack_of)
        .collect();
    let a1 = acks.iter().find(|a| a.call_id == "c_1").unwrap();
    let a2 = acks.iter().find(|a| a.call_id == "c_2").unwrap();
    assert_eq!(
        (a1.accepted, a1.reason.as_deref()),
        (false, Some(reject_reasons::UNSUPPORTED_ENGINE))
    );
    assert!(a2.accepted, "the known engine's offer is taken");
    assert_eq!(h.c.held_calls(), vec!["c_2"]);
}

#[test]
fn at_capacity_rejects_the_excess_and_stops_asking_for_work() {
    let mut h = H::registered(1);
    let txs = h.lease_with(vec![offer(1, T0 + 5_000), offer(2, T0 + 5_000)], vec![]);
    let acks: Vec<&Ack> = txs
        .iter()
        .filter(|t| matches!(t.request, Request::Ack(_)))
        .map(ack_of)
        .collect();
    assert_eq!(acks.len(), 2, "every offer is acked");
    let a1 = acks.iter().find(|a| a.call_id == "c_1").unwrap();
    let a2 = acks.iter().find(|a| a.call_id == "c_2").unwrap();
    assert!(a1.accepted);
    assert!(!a2.accepted);
    assert_eq!(a2.reason.as_deref(), Some("at_capacity"));
    let Some(Request::Lease(l)) = txs
        .iter()
        .map(|t| &t.request)
        .find(|r| matches!(r, Request::Lease(_)))
    else {
        panic!()
    };
    assert_eq!(l.free_slots, 0, "full: polls for commands only");
    assert_eq!(l.held_calls, vec!["c_1"]);
    for t in &txs {
        if let Request::Ack(_) = t.request {
            h.reply(t.id, status(200));
        }
    }
    assert_eq!(
        h.starts()
            .iter()
            .map(|o| o.call_id.as_str())
            .collect::<Vec<_>>(),
        vec!["c_1"]
    );

    // An edge that offers anyway while we are full gets a rejection.
    let lease_id = txs
        .iter()
        .find(|t| matches!(t.request, Request::Lease(_)))
        .unwrap()
        .id;
    h.reply(lease_id, lease_resp(vec![offer(3, T0 + 5_000)], vec![]));
    let txs = h.all_tx();
    let a3 = ack_of(
        txs.iter()
            .find(|t| matches!(t.request, Request::Ack(_)))
            .unwrap(),
    );
    assert_eq!(
        (a3.accepted, a3.reason.as_deref()),
        (false, Some("at_capacity"))
    );
}

#[test]
fn failed_acks_are_retried_until_the_deadline_then_the_call_is_dropped() {
    let mut h = H::registered(1);
    let txs = h.lease_with(vec![offer(1, T0 + 1_000)], vec![]);
    let mut ack_id = txs
        .iter()
        .find(|t| matches!(t.request, Request::Ack(_)))
        .unwrap()
        .id;
    let lease_id = txs
        .iter()
        .find(|t| matches!(t.request, Request::Lease(_)))
        .unwrap()
        .id;
    h.reply(lease_id, lease_resp(vec![], vec![])); // settle the poll; the next one is later
    h.actions();

    let mut retry_delays = vec![];
    loop {
        h.reply(
            ack_id,
            if retry_delays.len() % 2 == 0 {
                status(503)
            } else {
                Reply::Failed("timeout".into())
            },
        );
        if !h.c.holds("c_1") {
            break;
        }
        let acks: Vec<_> = notices(&h.actions())
            .into_iter()
            .filter_map(|n| match n {
                Notice::AckFailed { retry_at_ms, .. } => Some(*retry_at_ms),
                _ => None,
            })
            .collect();
        let at = acks[0];
        retry_delays.push(at - h.now);
        h.now = at;
        let txs = h.all_tx();
        ack_id = txs
            .iter()
            .find(|t| matches!(t.request, Request::Ack(_)))
            .expect("resent")
            .id;
        assert!(ack_of(txs.iter().find(|t| t.id == ack_id).unwrap()).accepted);
        for t in txs
            .iter()
            .filter(|t| matches!(t.request, Request::Lease(_)))
        {
            h.reply(t.id, lease_resp(vec![], vec![]));
        }
    }
    assert_eq!(
        retry_delays,
        vec![100, 200, 400],
        "100 ms doubling, next would pass the 1 s deadline"
    );
    let a = h.actions();
    assert!(notices(&a)
        .iter()
        .any(|n| matches!(n, Notice::OfferLost { call_id, .. } if call_id == "c_1")));
    assert!(h.starts().is_empty());
    assert_eq!(h.c.free_slots(), 1, "slot released");
    assert!(h.c.is_idle());
}

#[test]
fn an_ack_confirmed_after_a_slow_round_trip_still_starts_the_call() {
    let mut h = H::registered(1);
    let txs = h.lease_with(vec![offer(1, T0 + 1_000)], vec![]);
    let ack_id = txs[0].id;
    h.now += 5_000; // past the deadline, but the request was in flight
    assert!(h
        .c
        .next_wakeup_ms()
        .is_none_or(|w| w > T0 + 1_000 || w <= h.now));
    let _ = h.all_tx();
    assert!(h.c.holds("c_1"), "in-flight ack is not given up");
    h.reply(ack_id, status(204));
    assert_eq!(h.starts().len(), 1);
}

#[test]
fn ack_conflict_means_the_lease_is_gone_never_dial() {
    let mut h = H::registered(2);
    let txs = h.lease_with(vec![offer(1, T0 + 5_000)], vec![]);
    h.reply(txs[0].id, status(409));
    let a = h.actions();
    assert!(notices(&a)
        .iter()
        .any(|n| matches!(n, Notice::OfferLost { why, .. } if why.contains("409"))));
    assert!(!a.iter().any(|a| matches!(a, Action::StartCall(_))));
    assert_eq!(h.c.free_slots(), 2);
    assert!(h.c.held_calls().is_empty());

    // A 4xx that can never succeed is not retried either.
    h.reply(txs[1].id, lease_resp(vec![offer(2, T0 + 5_000)], vec![]));
    let txs = h.all_tx();
    h.reply(txs[0].id, status(422));
    assert!(!h.c.holds("c_2"));
    assert!(h
        .all_tx()
        .iter()
        .all(|t| !matches!(t.request, Request::Ack(_))));
    assert!(h.starts().is_empty());
}

#[test]
fn unconfirmed_ack_past_deadline_is_given_up_not_resent() {
    let mut h = H::registered(1);
    let txs = h.lease_with(vec![offer(1, T0 + 300)], vec![]);
    h.reply(txs[0].id, status(500)); // retry at +100
    h.actions();
    assert_eq!(h.c.next_wakeup_ms(), Some(T0 + 100));
    // The driver oversleeps past the deadline: the ack is dropped, not resent.
    h.now = T0 + 300;
    assert!(h
        .all_tx()
        .iter()
        .all(|t| !matches!(t.request, Request::Ack(_))));
    assert!(!h.c.holds("c_1"));
    let a = h.actions();
    assert!(notices(&a)
        .iter()
        .any(|n| matches!(n, Notice::OfferLost { .. })));
}

#[test]
fn acks_go_out_even_while_reregistering() {
    let mut h = H::registered(1);
    let txs = h.lease_with(vec![offer(1, T0 + 5_000)], vec![]);
    h.reply(txs[0].id, status(401)); // the ack: re-register, and retry the ack
    assert!(!h.c.is_registered());
    h.now += 100;
    let txs2 = h.all_tx();
    let kinds: Vec<&str> = txs2.iter().map(|t| t.request.path()).collect();
    assert_eq!(kinds, vec!["/v1/sidecar/register", "/v1/sidecar/ack"]);
    h.reply(txs2[1].id, status(200));
    assert_eq!(h.starts().len(), 1);
}

#[test]
fn duplicate_offers_take_no_second_slot_and_start_no_second_call() {
    let mut h = H::registered(3);
    let o = h.start_call(1);
    // The edge re-delivers the same lease (it missed our confirmation): re-ack, no new start.
    let txs = h.lease_with(vec![o.clone()], vec![]);
    let ack = txs
        .iter()
        .find(|t| matches!(t.request, Request::Ack(_)))
        .unwrap();
    assert!(ack_of(ack).accepted);
    h.reply(ack.id, status(200));
    assert!(h.starts().is_empty());
    assert_eq!(h.c.free_slots(), 2);

    // Same call under another lease while we hold it: rejected.
    let other = Offer {
        lease_id: "l_other".into(),
        ..o.clone()
    };
    let lease_id = txs
        .iter()
        .find(|t| matches!(t.request, Request::Lease(_)))
        .unwrap()
        .id;
    h.reply(lease_id, lease_resp(vec![other.clone(), other], vec![]));
    let txs = h.all_tx();
    let acks: Vec<_> = txs
        .iter()
        .filter(|t| matches!(t.request, Request::Ack(_)))
        .collect();
    assert_eq!(
        acks.len(),
        1,
        "the repeat inside one response rides on the pending ack"
    );
    assert_eq!(ack_of(acks[0]).reason.as_deref(), Some("already_held"));
    assert_eq!(h.c.free_slots(), 2);
}

#[test]
fn an_offer_already_past_its_deadline_is_acked_within_the_announced_window() {
    let mut h = H::registered(1);
    let txs = h.lease_with(vec![offer(1, T0 - 60_000)], vec![]);
    assert!(ack_of(&txs[0]).accepted);
    let a = h.actions();
    assert!(notices(&a)
        .iter()
        .any(|n| matches!(n, Notice::ClockSkew { .. })));
    h.reply(txs[0].id, status(500));
    // Retried (window is 5 s from now), not given up at once.
    assert!(h.c.holds("c_1"));
    h.now += 100;
    assert!(h
        .all_tx()
        .iter()
        .any(|t| matches!(t.request, Request::Ack(_))));
}

#[test]
fn draining_rejects_offers_and_polls_with_no_free_slot() {
    let mut h = H::registered(3);
    let o = h.start_call(1);
    h.c.begin_drain();
    let (id, l) = h.lease();
    assert_eq!(l.free_slots, 0);
    assert_eq!(l.held_calls, vec![o.call_id.clone()]);
    h.reply(id, lease_resp(vec![offer(2, h.now + 5_000)], vec![]));
    let txs = h.all_tx();
    let a = ack_of(
        txs.iter()
            .find(|t| matches!(t.request, Request::Ack(_)))
            .unwrap(),
    );
    assert_eq!((a.accepted, a.reason.as_deref()), (false, Some("draining")));
    assert!(!h.c.is_idle());
}

// ---------------------------------------------------------------- lease loop

#[test]
fn lease_failures_back_off_and_success_resets() {
    let mut h = H::registered(1);
    let mut delays = vec![];
    for _ in 0..4 {
        let (id, _) = h.lease();
        h.reply(id, Reply::Failed("connection reset".into()));
        let w = h.c.next_wakeup_ms().unwrap();
        delays.push(w - h.now);
        h.now = w;
    }
    assert_eq!(delays, vec![500, 1_000, 2_000, 4_000]);
    let (id, _) = h.lease();
    h.reply(id, lease_resp(vec![], vec![hangup("c_zzz")]));
    // Non-empty answer: poll again at once.
    assert_eq!(h.c.next_wakeup_ms(), Some(h.now));
    let (id, _) = h.lease();
    h.reply(id, status(502));
    assert_eq!(h.c.next_wakeup_ms().unwrap() - h.now, 500);
    // A 2xx with a body that is not a lease response is a failure too.
    h.now += 500;
    let (id, _) = h.lease();
    h.reply(
        id,
        Reply::Http {
            status: 200,
            body: b"<html>".to_vec(),
        },
    );
    assert_eq!(h.c.next_wakeup_ms().unwrap() - h.now, 1_000);
}

#[test]
fn an_empty_answer_that_comes_back_at_once_does_not_spin() {
    let mut h = H::registered(1);
    let (id, _) = h.lease();
    h.now += 10;
    h.reply(id, lease_resp(vec![], vec![]));
    assert!(h.tx().is_none());
    assert_eq!(h.c.next_wakeup_ms(), Some(T0 + 250));
    h.now = T0 + 250;
    h.lease();

    // A real long-poll that waited its time is followed by the next at once.
    let mut h = H::registered(1);
    let (id, _) = h.lease();
    h.now += 20_000;
    h.reply(id, lease_resp(vec![], vec![]));
    assert!(matches!(h.tx().unwrap().request, Request::Lease(_)));
}

#[test]
fn lease_response_with_another_protocol_version_is_refused() {
    let mut h = H::registered(1);
    let (id, _) = h.lease();
    h.reply(
        id,
        ok(LeaseResponse {
            protocol_version: 7,
            offers: vec![offer(1, T0 + 5_000)],
            commands: vec![],
            messages: vec![],
        }),
    );
    let a = h.actions();
    assert!(notices(&a)
        .iter()
        .any(|n| matches!(n, Notice::ProtocolMismatch { got: 7, .. })));
    assert!(h.tx().is_none(), "backs off");
    assert!(
        !h.c.holds("c_1"),
        "offers of a foreign version are not taken"
    );
}

// ---------------------------------------------------------------- commands

#[test]
fn hangup_of_a_running_call_is_reported_once() {
    let mut h = H::registered(2);
    h.start_call(1);
    let (id, _) = h.lease();
    h.reply(id, lease_resp(vec![], vec![hangup("c_1"), hangup("c_1")]));
    let (id, _) = h.lease();
    h.reply(id, lease_resp(vec![], vec![hangup("c_1")]));
    let hangups: Vec<_> = h
        .actions()
        .into_iter()
        .filter(|a| matches!(a, Action::Hangup { .. }))
        .collect();
    assert_eq!(
        hangups,
        vec![Action::Hangup {
            call_id: "c_1".into()
        }]
    );
}

#[test]
fn hangup_for_an_unknown_call_or_unknown_command_is_only_noted() {
    let mut h = H::registered(2);
    let (id, _) = h.lease();
    h.reply(
        id,
        lease_resp(vec![], vec![hangup("c_404"), Command::Unknown]),
    );
    let a = h.actions();
    let n = notices(&a);
    assert!(n
        .iter()
        .any(|n| matches!(n, Notice::HangupForUnknownCall { call_id } if call_id == "c_404")));
    assert!(n.iter().any(|n| matches!(n, Notice::UnknownCommand)));
    assert!(!a.iter().any(|a| matches!(a, Action::Hangup { .. })));
}

fn transfer(call: &str) -> Command {
    Command::Transfer {
        call_id: call.into(),
        transfer_id: "xfr_1".into(),
        target: voxline_shared::sidecar_link::TransferTarget::Number {
            destination: "+15550002222".into(),
        },
        mode: Default::default(),
        message: None,
    }
}

/// The edge's transfer command reaches a running call's task; one for a
/// call not running here, or one being hung up, is only noted.
#[test]
fn transfer_of_a_running_call_goes_to_its_task() {
    let mut h = H::registered(2);
    h.start_call(1);
    let (id, _) = h.lease();
    h.reply(
        id,
        lease_resp(vec![], vec![transfer("c_1"), transfer("c_404")]),
    );
    let a = h.actions();
    let transfers: Vec<_> = a
        .iter()
        .filter(|a| matches!(a, Action::Transfer { .. }))
        .collect();
    assert!(
        matches!(&transfers[..], [Action::Transfer { call_id, order }]
            if call_id == "c_1" && order.transfer_id == "xfr_1"),
        "{transfers:?}"
    );
    assert!(notices(&a)
        .iter()
        .any(|n| matches!(n, Notice::TransferNotRunning { call_id } if call_id == "c_404")));
    let (id, _) = h.lease();
    h.reply(id, lease_resp(vec![], vec![hangup("c_1"), transfer("c_1")]));
    let a = h.actions();
    assert!(
        !a.iter().any(|a| matches!(a, Action::Transfer { .. })),
        "{a:?}"
    );
}

#[test]
fn hangup_while_acking_cancels_without_dialing() {
    let mut h = H::registered(2);
    let txs = h.lease_with(vec![offer(1, T0 + 5_000)], vec![]);
    let lease_id = txs
        .iter()
        .find(|t| matches!(t.request, Request::Lease(_)))
        .unwrap()
        .id;
    h.reply(lease_id, lease_resp(vec![], vec![hangup("c_1")]));
    h.reply(txs[0].id, status(200));
    let a = h.actions();
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::StartCall(_) | Action::Hangup { .. })),
        "{a:?}"
    );
    let txs = h.all_tx();
    let Some(Request::Events(b)) = txs
        .iter()
        .map(|t| &t.request)
        .find(|r| matches!(r, Request::Events(_)))
    else {
        panic!("{txs:?}")
    };
    assert_eq!(b.events.len(), 1);
    let EventKind::Ended { status, reason, .. } = &b.events[0].kind else {
        panic!()
    };
    assert_eq!(
        (*status, *reason),
        (CallStatus::Cancelled, EndedReason::HangupRequested)
    );
    assert_eq!(b.events[0].seq, 1);
}

// ---------------------------------------------------------------- events

fn ended(now: u64) -> EventKind {
    EventKind::Ended {
        status: CallStatus::Completed,
        reason: EndedReason::AgentHangup,
        retry_after_s: None,
        sip_code: None,
        timings: Timings {
            dispatched_ms: now - 10,
            ringing_ms: None,
            answered_ms: None,
            ended_ms: now,
        },
    }
}

fn batches(txs: &[Transmit]) -> Vec<(RequestId, &EventBatch)> {
    txs.iter()
        .filter_map(|t| match &t.request {
            Request::Events(b) => Some((t.id, b)),
            _ => None,
        })
        .collect()
}

#[test]
fn events_are_numbered_per_call_and_kept_until_acked() {
    let mut h = H::registered(2);
    let a = h.start_call(1);
    let b = h.start_call(2);
    assert_eq!(h.c.emit(h.now, &a.call_id, EventKind::Dialing), Ok(1));
    assert_eq!(h.c.emit(h.now, &b.call_id, EventKind::Dialing), Ok(1));
    assert_eq!(h.c.emit(h.now, &a.call_id, EventKind::Ringing), Ok(2));

    let txs = h.all_tx();
    let bs = batches(&txs);
    assert_eq!(bs.len(), 1, "one batch in flight at a time");
    let (id1, b1) = bs[0];
    assert_eq!(b1.sidecar_id, "sc-1");
    assert_eq!(
        b1.events
            .iter()
            .map(|e| (e.call_id.as_str(), e.seq))
            .collect::<Vec<_>>(),
        vec![("c_1", 1), ("c_2", 1), ("c_1", 2)]
    );
    assert!(b1.events.iter().all(|e| e.attempt == 1 && e.at_ms == h.now));

    // More events while the batch is in flight wait their turn.
    assert_eq!(h.c.emit(h.now, &a.call_id, EventKind::Answered), Ok(3));
    assert!(batches(&h.all_tx()).is_empty());

    // Failure: the same events go again (after backoff), now followed by the new one.
    h.reply(id1, status(503));
    assert!(batches(&h.all_tx()).is_empty(), "backing off");
    h.now += 500;
    let txs = h.all_tx();
    let bs = batches(&txs);
    assert_eq!(
        bs[0].1.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 1, 2, 3]
    );
    assert_eq!(
        &bs[0].1.events[..3],
        &b1.events[..],
        "resent unchanged: the edge dedupes on (call, attempt, seq)"
    );
    h.reply(
        bs[0].0,
        ok(EventsAck {
            protocol_version: 1,
            accepted: 1,
        }),
    );
    let a = h.actions();
    assert!(notices(&a).iter().any(|n| matches!(
        n,
        Notice::EventsDuplicates {
            sent: 4,
            accepted: 1
        }
    )));
    assert_eq!(h.c.pending_events(), 0);
    assert!(batches(&h.all_tx()).is_empty());
}

#[test]
fn transport_failures_of_events_back_off_exponentially() {
    let mut h = H::registered(1);
    let a = h.start_call(1);
    h.c.emit(h.now, &a.call_id, EventKind::Dialing).unwrap();
    let mut delays = vec![];
    for _ in 0..3 {
        let txs = h.all_tx();
        let (id, _) = batches(&txs)[0];
        h.reply(id, Reply::Failed("h3 stream reset".into()));
        let n = h.actions();
        let at = notices(&n)
            .into_iter()
            .find_map(|n| match n {
                Notice::EventsFailed { retry_at_ms, .. } => Some(*retry_at_ms),
                _ => None,
            })
            .unwrap();
        delays.push(at - h.now);
        h.now = at;
    }
    assert_eq!(delays, vec![500, 1_000, 2_000]);
}

#[test]
fn large_queues_go_in_bounded_batches_in_order() {
    let mut h = H::registered(1);
    let a = h.start_call(1);
    for _ in 0..250 {
        h.c.emit(
            h.now,
            &a.call_id,
            EventKind::TranscriptTurn {
                role: Role::Callee,
                text: "hi".into(),
                start_ms: 0,
                end_ms: 1,
            },
        )
        .unwrap();
    }
    let mut seqs = vec![];
    for expect in [100, 100, 50] {
        let txs = h.all_tx();
        let bs = batches(&txs);
        assert_eq!(bs[0].1.events.len(), expect);
        seqs.extend(bs[0].1.events.iter().map(|e| e.seq));
        h.reply(
            bs[0].0,
            ok(EventsAck {
                protocol_version: 1,
                accepted: expect as u32,
            }),
        );
    }
    assert_eq!(seqs, (1..=250).collect::<Vec<u32>>());
}

#[test]
fn the_slot_frees_when_the_ended_event_is_acked() {
    let mut h = H::registered(1);
    let a = h.start_call(1);
    h.c.emit(h.now, &a.call_id, EventKind::Dialing).unwrap();
    h.c.emit(h.now, &a.call_id, ended(h.now)).unwrap();
    assert_eq!(
        h.c.emit(h.now, &a.call_id, EventKind::Ringing),
        Err(EmitError::AlreadyEnded)
    );
    assert_eq!(
        h.c.free_slots(),
        0,
        "still held until the edge knows it ended"
    );

    let txs = h.all_tx();
    let (id, _) = batches(&txs)[0];
    let lease = txs
        .iter()
        .find(|t| matches!(t.request, Request::Lease(_)))
        .expect("a poll is due");
    let Request::Lease(l) = &lease.request else {
        panic!()
    };
    assert_eq!(
        (l.free_slots, l.held_calls.clone()),
        (0, vec!["c_1".to_string()])
    );
    h.reply(
        id,
        ok(EventsAck {
            protocol_version: 1,
            accepted: 2,
        }),
    );
    let n = h.actions();
    assert!(notices(&n)
        .iter()
        .any(|n| matches!(n, Notice::CallReleased { call_id } if call_id == "c_1")));
    assert_eq!(h.c.free_slots(), 1);
    assert!(h.c.is_idle());
    assert_eq!(
        h.c.emit(h.now, "c_1", EventKind::Ringing),
        Err(EmitError::UnknownCall)
    );
}

#[test]
fn an_invalid_batch_is_dropped_not_retried_forever() {
    let mut h = H::registered(1);
    let a = h.start_call(1);
    h.c.emit(h.now, &a.call_id, ended(h.now)).unwrap();
    let txs = h.all_tx();
    h.reply(batches(&txs)[0].0, status(422));
    let n = h.actions();
    assert!(notices(&n).iter().any(|n| matches!(
        n,
        Notice::EventsDropped {
            count: 1,
            status: 422,
            ..
        }
    )));
    assert_eq!(h.c.pending_events(), 0);
    assert_eq!(h.c.free_slots(), 1, "an ended call does not leak its slot");
}

#[test]
fn emit_is_refused_before_confirmation() {
    let mut h = H::registered(1);
    h.lease_with(vec![offer(1, T0 + 5_000)], vec![]);
    assert_eq!(
        h.c.emit(h.now, "c_1", EventKind::Dialing),
        Err(EmitError::NotStarted)
    );
    assert_eq!(
        h.c.emit(h.now, "nope", EventKind::Dialing),
        Err(EmitError::UnknownCall)
    );
}

#[test]
fn every_request_body_is_versioned_json_for_its_path() {
    let mut h = H::registered(1);
    let o = h.start_call(1);
    h.c.emit(h.now, &o.call_id, EventKind::Dialing).unwrap();
    let mut reqs = vec![Request::Register(Registration {
        protocol_version: 1,
        sidecar_id: "sc-1".into(),
        region: "eu".into(),
        capacity: 1,
        version: "x".into(),
    })];
    reqs.extend(h.all_tx().into_iter().map(|t| t.request));
    reqs.push(Request::Ack(Ack {
        protocol_version: 1,
        sidecar_id: "sc-1".into(),
        lease_id: "l".into(),
        call_id: "c".into(),
        accepted: true,
        reason: None,
    }));
    let mut paths: Vec<&str> = vec![];
    for r in &reqs {
        let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(v["protocol_version"], 1, "{}", r.path());
        assert_eq!(v["sidecar_id"], "sc-1");
        paths.push(r.path());
        assert!(r.timeout_ms() >= 15_000);
    }
    paths.sort();
    paths.dedup();
    assert_eq!(
        paths,
        vec![
            "/v1/sidecar/ack",
            "/v1/sidecar/events",
            "/v1/sidecar/lease",
            "/v1/sidecar/register"
        ]
    );
}

// ---------------------------------------------------------------- a long random run

/// A tiny deterministic PRNG (xorshift), so the run is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random replies, offers, hangups, failures and call endings; after every step
/// the invariants hold: never more calls than capacity, free + held = capacity,
/// one lease poll at most, every offer acked, every started call was accepted
/// and confirmed exactly once, and every ended event is delivered.
#[test]
fn random_runs_keep_the_invariants() {
    let (mut total_started, mut total_offered, mut total_hangups) = (0, 0, 0);
    for seed in 1..=40u64 {
        let capacity = 1 + (seed % 4) as u32;
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut h = H::new(capacity);
        let store = MemStore::default();
        h.c.set_event_store(Box::new(store.clone()));
        let mut in_flight: Vec<Transmit> = vec![];
        let mut offered = std::collections::BTreeSet::new();
        let mut acked = std::collections::BTreeSet::new();
        let mut started = std::collections::BTreeSet::new();
        let mut running: Vec<String> = vec![];
        let mut delivered_ended = std::collections::BTreeSet::new();
        let mut next_offer = 0u32;

        for _step in 0..3_000 {
            while let Some(t) = h.tx() {
                if let Request::Ack(a) = &t.request {
                    acked.insert(a.lease_id.clone());
                }
                in_flight.push(t);
            }
            let polls = in_flight
                .iter()
                .filter(|t| matches!(t.request, Request::Lease(_)))
                .count();
            assert!(polls <= 1);
            for t in &in_flight {
                if let Request::Lease(l) = &t.request {
                    assert!(l.held_calls.len() as u32 <= capacity);
                    assert_eq!(l.free_slots + l.held_calls.len() as u32, capacity);
                }
            }
            for a in h.actions() {
                match a {
                    Action::StartCall(o) => {
                        assert!(
                            started.insert(o.call_id.clone()),
                            "started twice: {}",
                            o.call_id
                        );
                        h.c.emit(h.now, &o.call_id, EventKind::Dialing).unwrap();
                        running.push(o.call_id);
                    }
                    Action::Hangup { call_id } => {
                        assert!(running.contains(&call_id));
                        total_hangups += 1;
                    }
                    Action::Notice(_)
                    | Action::Transfer { .. }
                    | Action::UploadDone(_)
                    | Action::TranscriptDone(_)
                    | Action::SendMessage(_)
                    | Action::InboundAnswered { .. }
                    | Action::InboundCallDecided { .. }
                    | Action::ToolCallAnswered { .. }
                    | Action::PhoneRegistrationAnswered { .. } => {}
                    Action::Halt(r) => panic!("no answer here halts the client: {r:?}"),
                }
            }
            assert!(h.c.held_calls().len() as u32 <= capacity);
            assert_eq!(
                store.all().len(),
                h.c.pending_events(),
                "seed {seed}: the store holds exactly the unacked events"
            );

            match rng.below(10) {
                // Answer a request.
                0..=5 if !in_flight.is_empty() => {
                    let t = in_flight.remove(rng.below(in_flight.len() as u64) as usize);
                    let roll = rng.below(10);
                    let reply = if roll == 0 {
                        Reply::Failed("boom".into())
                    } else if roll == 1 {
                        status([401, 410, 500, 503][rng.below(4) as usize])
                    } else {
                        match &t.request {
                            Request::Register(_) => ok(reg_ack()),
                            Request::Lease(l) => {
                                let n = rng.below(u64::from(l.free_slots) + 2) as usize;
                                let offers = (0..n)
                                    .map(|_| {
                                        next_offer += 1;
                                        offered.insert(format!("l_{next_offer}"));
                                        offer(next_offer, h.now + 1 + rng.below(3_000))
                                    })
                                    .collect();
                                let commands = if rng.below(4) == 0 && !l.held_calls.is_empty() {
                                    vec![hangup(
                                        &l.held_calls
                                            [rng.below(l.held_calls.len() as u64) as usize],
                                    )]
                                } else {
                                    vec![]
                                };
                                lease_resp(offers, commands)
                            }
                            Request::Ack(_) => {
                                if rng.below(6) == 0 {
                                    status(409)
                                } else {
                                    status(200)
                                }
                            }
                            Request::Events(b) => {
                                for e in &b.events {
                                    if e.kind.is_ended() {
                                        delivered_ended.insert(e.call_id.clone());
                                    }
                                }
                                ok(EventsAck {
                                    protocol_version: 1,
                                    accepted: b.events.len() as u32,
                                })
                            }
                            Request::Recording(_)
                            | Request::Deregister(_)
                            | Request::MessageResult(_)
                            | Request::InboundMessage(_)
                            | Request::InboundCall(_)
                            | Request::ToolCall(_)
                            | Request::Transcript(_)
                            | Request::PhoneRegistration(_) => status(200),
                        }
                    };
                    h.reply(t.id, reply);
                }
                // End a running call.
                6 if !running.is_empty() => {
                    let c = running.remove(rng.below(running.len() as u64) as usize);
                    h.c.emit(h.now, &c, ended(h.now)).unwrap();
                }
                // Let time pass.
                _ => {
                    let step = match h.c.next_wakeup_ms() {
                        Some(w) if w > h.now && rng.below(2) == 0 => w - h.now,
                        _ => 1 + rng.below(400),
                    };
                    h.now += step;
                }
            }
        }
        // Drain: end everything, answer everything successfully.
        for c in running.drain(..) {
            h.c.emit(h.now, &c, ended(h.now)).unwrap();
        }
        for _ in 0..2_000 {
            while let Some(t) = h.tx() {
                if let Request::Ack(a) = &t.request {
                    acked.insert(a.lease_id.clone());
                }
                in_flight.push(t);
            }
            for a in h.actions() {
                if let Action::StartCall(o) = a {
                    started.insert(o.call_id.clone());
                    h.c.emit(h.now, &o.call_id, ended(h.now)).unwrap();
                }
            }
            let Some(t) = in_flight.pop() else {
                h.now += 1_000;
                continue;
            };
            let reply = match &t.request {
                Request::Register(_) => ok(reg_ack()),
                Request::Lease(_) => lease_resp(vec![], vec![]),
                Request::Ack(_) => status(200),
                Request::Events(b) => {
                    for e in b.events.iter().filter(|e| e.kind.is_ended()) {
                        delivered_ended.insert(e.call_id.clone());
                    }
                    ok(EventsAck {
                        protocol_version: 1,
                        accepted: 0,
                    })
                }
                Request::Recording(_)
                | Request::Deregister(_)
                | Request::MessageResult(_)
                | Request::InboundMessage(_)
                | Request::InboundCall(_)
                | Request::ToolCall(_)
                | Request::Transcript(_)
                | Request::PhoneRegistration(_) => status(200),
            };
            h.reply(t.id, reply);
        }
        // Every offer got at least one ack attempt.
        for l in &offered {
            assert!(acked.contains(l), "seed {seed}: offer {l} never acked");
        }
        assert!(
            h.c.held_calls().is_empty(),
            "seed {seed}: {:?}",
            h.c.held_calls()
        );
        assert_eq!(h.c.pending_events(), 0);
        assert!(
            store.all().is_empty(),
            "seed {seed}: everything acked, nothing left on disk"
        );
        for c in &started {
            assert!(
                delivered_ended.contains(c),
                "seed {seed}: {c} ended but never delivered"
            );
        }
        total_started += started.len();
        total_offered += offered.len();
    }
    // The run exercised something.
    assert!(
        total_offered > 1_000 && total_started > 200 && total_hangups > 20,
        "{total_offered} {total_started} {total_hangups}"
    );
}

fn upload(call: &str) -> Upload {
    Upload {
        manifest: RecordingManifest {
            protocol_version: 1,
            sidecar_id: String::new(),
            tenant_id: "ten_1".into(),
            call_id: call.into(),
            attempt: 1,
            content_type: "audio/wav".into(),
            bytes: 32_044,
            sha256: "0".repeat(64),
            duration_ms: 1_000,
        },
        path: std::path::PathBuf::from(format!("/spool/{call}-1.wav")),
    }
}

fn uploads_in(txs: &[Transmit]) -> Vec<(RequestId, Upload)> {
    txs.iter()
        .filter_map(|t| match &t.request {
            Request::Recording(u) => Some((t.id, u.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn recordings_upload_after_the_events_and_retry_until_stored() {
    let mut h = H::registered(2);
    let o = h.start_call(1);
    h.c.emit(h.now, &o.call_id, EventKind::Dialing).unwrap();
    h.c.queue_upload(upload("c_1"));
    assert!(!h.c.is_idle());
    // The event batch goes first; the upload waits for it.
    let txs = h.all_tx();
    assert!(uploads_in(&txs).is_empty());
    let batch = txs
        .iter()
        .find(|t| matches!(t.request, Request::Events(_)))
        .expect("events")
        .id;
    h.reply(
        batch,
        ok(serde_json::json!({"protocol_version": 1, "accepted": 1})),
    );
    let txs = h.all_tx();
    let ups = uploads_in(&txs);
    assert_eq!(ups.len(), 1);
    let (id, sent) = &ups[0];
    // Stamped with who sends it; the signed body is the manifest.
    assert_eq!(sent.manifest.sidecar_id, "sc-1");
    let req = Request::Recording(sent.clone());
    assert_eq!(req.path(), paths::RECORDING);
    assert_eq!(
        serde_json::from_slice::<RecordingManifest>(&req.body()).unwrap(),
        sent.manifest
    );
    // One at a time: nothing more while it is in flight.
    h.c.queue_upload(upload("c_2"));
    assert!(uploads_in(&h.all_tx()).is_empty());
    // A 503: retried after the backoff, not before.
    h.reply(*id, status(503));
    assert!(notices(&h.actions()).iter().any(|n| matches!(
        n,
        Notice::UploadFailed {
            status: Some(503),
            ..
        }
    )));
    assert!(uploads_in(&h.all_tx()).is_empty());
    h.now = h.c.next_wakeup_ms().expect("a retry is scheduled");
    let ups = uploads_in(&h.all_tx());
    assert_eq!(ups[0].1.manifest.call_id, "c_1");
    h.reply(ups[0].0, ok(serde_json::json!({"protocol_version": 1, "call_id": "c_1", "attempt": 1, "bytes": 32_044})));
    let done: Vec<Action> = h.actions();
    assert!(done
        .iter()
        .any(|a| matches!(a, Action::UploadDone(u) if u.manifest.call_id == "c_1")));
    // The next one goes at once; a 409 (never requested) gives it up, file kept.
    let ups = uploads_in(&h.all_tx());
    assert_eq!(ups[0].1.manifest.call_id, "c_2");
    h.reply(ups[0].0, status(409));
    let acts = h.actions();
    assert!(notices(&acts).iter().any(|n| matches!(
        n,
        Notice::UploadRefused {
            status: Some(409),
            ..
        }
    )));
    assert!(!acts.iter().any(|a| matches!(a, Action::UploadDone(_))));
    assert_eq!(h.c.pending_uploads(), 0);
}

#[test]
fn an_unreadable_recording_is_given_up_and_a_401_reregisters_first() {
    let mut h = H::registered(1);
    h.c.queue_upload(upload("c_9"));
    let ups = uploads_in(&h.all_tx());
    h.reply(ups[0].0, status(401));
    assert!(!h.c.is_registered());
    assert_eq!(h.c.pending_uploads(), 1, "kept across re-registration");
    let reg = h.tx().expect("registers again");
    h.reply(reg.id, ok(reg_ack()));
    let ups = uploads_in(&h.all_tx());
    assert_eq!(ups.len(), 1);
    h.reply(ups[0].0, Reply::Unsendable("gone".into()));
    assert!(notices(&h.actions())
        .iter()
        .any(|n| matches!(n, Notice::UploadRefused { status: None, .. })));
    assert!(h.c.is_idle());
}

fn transcript(call: &str) -> TranscriptUpload {
    TranscriptUpload {
        transcript: voxline_shared::sidecar_link::CallTranscript {
            protocol_version: 1,
            sidecar_id: String::new(),
            tenant_id: "ten_1".into(),
            call_id: call.into(),
            attempt: 1,
            source: "local".into(),
            turns: vec![voxline_shared::sidecar_link::CallTranscriptTurn {
                role: voxline_shared::sidecar_link::Role::Callee,
                text: "hello".into(),
                start_ms: 100,
                end_ms: 600,
            }],
        },
        spool: Some(std::path::PathBuf::from(format!(
            "/spool/{call}-1.wav.transcript.json"
        ))),
    }
}

fn transcripts_in(
    txs: &[Transmit],
) -> Vec<(RequestId, voxline_shared::sidecar_link::CallTranscript)> {
    txs.iter()
        .filter_map(|t| match &t.request {
            Request::Transcript(x) => Some((t.id, (**x).clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn post_call_transcripts_go_after_the_events_retry_until_kept_and_a_422_gives_up() {
    let mut h = H::registered(2);
    let o = h.start_call(1);
    h.c.emit(h.now, &o.call_id, EventKind::Dialing).unwrap();
    h.c.queue_transcript(transcript("c_1"));
    assert!(!h.c.is_idle());
    // The call's events (its `ended`) first.
    let txs = h.all_tx();
    assert!(transcripts_in(&txs).is_empty());
    let batch = txs
        .iter()
        .find(|t| matches!(t.request, Request::Events(_)))
        .expect("events")
        .id;
    h.reply(
        batch,
        ok(serde_json::json!({"protocol_version": 1, "accepted": 1})),
    );
    let sent = transcripts_in(&h.all_tx());
    assert_eq!(sent.len(), 1);
    let (id, t) = &sent[0];
    assert_eq!(t.sidecar_id, "sc-1");
    let req = Request::Transcript(Box::new(t.clone()));
    assert_eq!(req.path(), paths::TRANSCRIPTS);
    assert_eq!(
        serde_json::from_slice::<voxline_shared::sidecar_link::CallTranscript>(&req.body())
            .unwrap(),
        *t
    );
    // One at a time.
    h.c.queue_transcript(transcript("c_2"));
    assert!(transcripts_in(&h.all_tx()).is_empty());
    // Unreachable edge: retried after the backoff, not before.
    h.reply(*id, Reply::Failed("connection refused".into()));
    assert!(notices(&h.actions())
        .iter()
        .any(|n| matches!(n, Notice::TranscriptFailed { status: None, .. })));
    assert!(transcripts_in(&h.all_tx()).is_empty());
    h.now = h.c.next_wakeup_ms().expect("a retry is scheduled");
    let sent = transcripts_in(&h.all_tx());
    assert_eq!(sent[0].1.call_id, "c_1");
    h.reply(
        sent[0].0,
        ok(serde_json::json!({"protocol_version": 1, "call_id": "c_1", "attempt": 1, "stored": true})),
    );
    assert!(h.actions().iter().any(|a| matches!(
        a,
        Action::TranscriptDone(t) if t.transcript.call_id == "c_1" && t.spool.is_some()
    )));
    // The next at once; a 422 (too large) gives it up, its spool kept.
    let sent = transcripts_in(&h.all_tx());
    assert_eq!(sent[0].1.call_id, "c_2");
    h.reply(sent[0].0, status(422));
    let acts = h.actions();
    assert!(notices(&acts).iter().any(|n| matches!(
        n,
        Notice::TranscriptRefused {
            status: Some(422),
            ..
        }
    )));
    assert!(!acts.iter().any(|a| matches!(a, Action::TranscriptDone(_))));
    assert_eq!(h.c.pending_transcripts(), 0);
}

// ---------------------------------------------------------------- events across a restart

/// An in-memory [`EventStore`], shared with the test (a stand-in for the spool on disk).
#[derive(Debug, Clone, Default)]
struct MemStore(std::sync::Arc<std::sync::Mutex<SavedEvents>>);

/// Unacked events per (call id, attempt).
type SavedEvents = BTreeMap<(String, u32), Vec<CallEvent>>;

impl EventStore for MemStore {
    fn save(&mut self, call_id: &str, attempt: u32, unacked: &[CallEvent]) -> Result<(), String> {
        let mut m = self.0.lock().unwrap();
        if unacked.is_empty() {
            m.remove(&(call_id.to_string(), attempt));
        } else {
            m.insert((call_id.to_string(), attempt), unacked.to_vec());
        }
        Ok(())
    }
}

impl MemStore {
    fn all(&self) -> Vec<CallEvent> {
        self.0.lock().unwrap().values().flatten().cloned().collect()
    }
    fn seqs(&self, call: &str) -> Vec<u32> {
        self.all()
            .iter()
            .filter(|e| e.call_id == call)
            .map(|e| e.seq)
            .collect()
    }
}

/// All transmits due now; lease polls among them are answered empty at once.
fn settled(h: &mut H) -> Vec<Transmit> {
    let txs = h.all_tx();
    for t in txs
        .iter()
        .filter(|t| matches!(t.request, Request::Lease(_)))
    {
        h.reply(t.id, lease_resp(vec![], vec![]));
    }
    txs
}

#[test]
fn every_unacked_event_is_stored_before_it_can_be_sent_and_forgotten_once_acked() {
    let mut h = H::registered(2);
    let store = MemStore::default();
    h.c.set_event_store(Box::new(store.clone()));
    let a = h.start_call(1);
    h.c.emit(h.now, &a.call_id, EventKind::Dialing).unwrap();
    assert_eq!(
        store.seqs("c_1"),
        vec![1],
        "stored by emit itself, before poll_transmit"
    );
    let txs = settled(&mut h);
    let (id, b) = batches(&txs)[0];
    assert_eq!(b.events.len(), 1);
    h.c.emit(h.now, &a.call_id, ended(h.now)).unwrap();
    assert_eq!(
        store.seqs("c_1"),
        vec![1, 2],
        "in flight or not, kept until acked"
    );

    // A failed batch forgets nothing.
    h.reply(id, status(503));
    assert_eq!(store.seqs("c_1"), vec![1, 2]);
    h.now += 500;
    let txs = settled(&mut h);
    let (id, b) = batches(&txs)[0];
    assert_eq!(b.events.len(), 2);
    h.reply(
        id,
        ok(EventsAck {
            protocol_version: 1,
            accepted: 2,
        }),
    );
    assert!(store.all().is_empty(), "acked: forgotten");
    assert!(h.c.is_idle());

    // A batch refused as invalid can never be delivered: forgotten too.
    h.now += 1_000;
    let b = h.start_call(2);
    h.c.emit(h.now, &b.call_id, ended(h.now)).unwrap();
    let txs = h.all_tx();
    h.reply(batches(&txs)[0].0, status(422));
    assert!(store.all().is_empty());
}

#[test]
fn a_restart_holds_the_calls_of_unacked_events_and_sends_them_first() {
    // First run: c_1 ends, c_2 is answered; the edge hears of none of it before the crash.
    let store = MemStore::default();
    let mut h = H::registered(3);
    h.c.set_event_store(Box::new(store.clone()));
    let a = h.start_call(1);
    let b = h.start_call(2);
    h.c.emit(h.now, &a.call_id, EventKind::Dialing).unwrap();
    h.c.emit(h.now, &b.call_id, EventKind::Dialing).unwrap();
    h.c.emit(h.now + 1, &a.call_id, EventKind::Ringing).unwrap();
    h.c.emit(h.now + 2, &b.call_id, EventKind::Answered)
        .unwrap();
    h.c.emit(h.now + 3, &a.call_id, ended(h.now + 3)).unwrap();
    let _in_flight_when_it_crashed = h.all_tx();
    let left = store.all();
    assert_eq!(left.len(), 5);

    // Second run, with what the first left on disk.
    let mut h = H::new(3);
    h.now += 60_000;
    let store2 = MemStore::default();
    h.c.set_event_store(Box::new(store2.clone()));
    assert_eq!(h.c.restore_events(h.now, left), 2);
    assert_eq!(h.c.held_calls(), vec!["c_1".to_string(), "c_2".to_string()]);
    assert_eq!(h.c.free_slots(), 1);
    let n = h.actions();
    assert!(notices(&n).iter().any(|n| matches!(n, Notice::CallRestored { call_id, events: 3, lost: false, .. } if call_id == "c_1")));
    assert!(notices(&n).iter().any(|n| matches!(n, Notice::CallRestored { call_id, events: 3, lost: true, .. } if call_id == "c_2")));
    // c_2 died with the first run: it ends as the edge would have ended it, and that is stored too.
    assert_eq!(store2.seqs("c_2"), vec![1, 2, 3]);

    let t = h.tx().expect("registers first");
    assert!(matches!(t.request, Request::Register(_)));
    assert!(h.tx().is_none(), "nothing before registration");
    h.reply(t.id, ok(reg_ack()));
    let txs = h.all_tx();
    assert!(
        matches!(txs[0].request, Request::Events(_)),
        "the old events go first: {txs:?}"
    );
    let (id, batch) = batches(&txs)[0];
    let sent: Vec<(&str, u32, &str)> = batch
        .events
        .iter()
        .map(|e| (e.call_id.as_str(), e.seq, e.kind.name()))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("c_1", 1, "dialing"),
            ("c_1", 2, "ringing"),
            ("c_1", 3, "ended"),
            ("c_2", 1, "dialing"),
            ("c_2", 2, "answered"),
            ("c_2", 3, "ended")
        ],
        "original seq numbers, each call in order"
    );
    let EventKind::Ended {
        status,
        reason,
        timings,
        ..
    } = &batch.events[5].kind
    else {
        panic!()
    };
    assert_eq!(
        (*status, *reason),
        (CallStatus::Failed, EndedReason::MediaLost)
    );
    assert_eq!(
        (timings.answered_ms, timings.ended_ms),
        (Some(T0 + 2_002), h.now)
    );
    let Some(Request::Lease(l)) = txs
        .iter()
        .map(|t| &t.request)
        .find(|r| matches!(r, Request::Lease(_)))
    else {
        panic!("{txs:?}")
    };
    assert_eq!(
        (l.held_calls.clone(), l.free_slots),
        (vec!["c_1".to_string(), "c_2".to_string()], 1)
    );

    // Restored calls take no new events and no offer for the same call.
    assert_eq!(
        h.c.emit(h.now, "c_1", EventKind::Ringing),
        Err(EmitError::AlreadyEnded)
    );

    // Acked: released as usual, and forgotten.
    h.reply(
        id,
        ok(EventsAck {
            protocol_version: 1,
            accepted: 6,
        }),
    );
    let n = h.actions();
    let released: Vec<_> = notices(&n)
        .into_iter()
        .filter_map(|n| match n {
            Notice::CallReleased { call_id } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec!["c_1", "c_2"]);
    assert!(store2.all().is_empty());
    assert!(h.c.held_calls().is_empty());
    assert_eq!(h.c.free_slots(), 3);
}

#[test]
fn restored_events_are_deduplicated_and_never_displace_a_held_call() {
    let mut h = H::registered(2);
    let a = h.start_call(1);
    h.c.emit(h.now, &a.call_id, EventKind::Dialing).unwrap();
    let ev = |call: &str, attempt: u32, seq: u32, kind: EventKind| CallEvent {
        call_id: call.into(),
        attempt,
        seq,
        at_ms: T0 + u64::from(seq),
        kind,
    };
    let restored = h.c.restore_events(
        h.now,
        vec![
            ev("c_1", 1, 1, EventKind::Answered), // held here already: skipped
            ev("c_9", 2, 2, ended(T0 + 2)),
            ev("c_9", 2, 1, EventKind::Dialing),
            ev("c_9", 2, 1, EventKind::Dialing), // a duplicate
            ev("c_9", 1, 4, ended(T0 + 4)),      // an earlier attempt: delivered, not held
        ],
    );
    assert_eq!(restored, 1);
    let n = h.actions();
    assert!(notices(&n)
        .iter()
        .any(|n| matches!(n, Notice::RestoreSkipped { call_id, events: 1 } if call_id == "c_1")));
    let txs = h.all_tx();
    let (id, b) = batches(&txs)[0];
    let sent: Vec<(&str, u32, u32)> = b
        .events
        .iter()
        .map(|e| (e.call_id.as_str(), e.attempt, e.seq))
        .collect();
    assert_eq!(
        sent,
        vec![("c_9", 2, 1), ("c_9", 2, 2), ("c_9", 1, 4), ("c_1", 1, 1)]
    );
    h.reply(
        id,
        ok(EventsAck {
            protocol_version: 1,
            accepted: 4,
        }),
    );
    assert_eq!(
        h.c.held_calls(),
        vec!["c_1".to_string()],
        "c_9 released by its attempt-2 `ended`"
    );
}

// ---------------------------------------------------------------- refused credentials

#[test]
fn refused_credentials_hang_up_every_call_and_registering_goes_on() {
    for code in [401, 403] {
        let mut h = H::registered(4);
        h.start_call(1); // running
        let ended_one = h.start_call(2);
        h.c.emit(h.now, &ended_one.call_id, ended(h.now)).unwrap(); // ended, not yet acked
        let txs = h.all_tx();
        let (batch, _) = batches(&txs)[0];
        let lease = txs
            .iter()
            .find(|t| matches!(t.request, Request::Lease(_)))
            .unwrap()
            .id;
        h.reply(lease, lease_resp(vec![offer(3, h.now + 5_000)], vec![])); // accepted, ack in flight
        let txs = h.all_tx();
        let ack3 = txs
            .iter()
            .find(|t| matches!(t.request, Request::Ack(_)))
            .unwrap()
            .id;
        let lease = txs
            .iter()
            .find(|t| matches!(t.request, Request::Lease(_)))
            .unwrap()
            .id;
        h.reply(batch, status(503));
        h.actions();

        // The edge forgets us; registering again is refused.
        h.reply(lease, status(401));
        let t = h
            .all_tx()
            .into_iter()
            .find(|t| matches!(t.request, Request::Register(_)))
            .expect("re-registers");
        h.reply(t.id, status(code));
        let a = h.actions();
        let hangups: Vec<_> = a
            .iter()
            .filter(|a| matches!(a, Action::Hangup { .. }))
            .collect();
        assert_eq!(
            hangups,
            vec![&Action::Hangup {
                call_id: "c_1".into()
            }],
            "{code}"
        );
        assert!(notices(&a).iter().any(|n| matches!(n,
            Notice::CredentialsRefused { status, hanging_up } if *status == code && *hanging_up == vec!["c_1".to_string(), "c_3".to_string()])));

        // c_3's ack is confirmed late: cancelled, never dialled.
        h.reply(
            ack3,
            ok(serde_json::json!({"protocol_version":1,"lease_id":"l_3"})),
        );
        assert!(h.starts().is_empty(), "{code}");

        // Registration goes on with backoff; another refusal hangs up nothing twice.
        assert_eq!(h.c.next_wakeup_ms(), Some(h.now + 500));
        h.now += 500;
        let t = h
            .all_tx()
            .into_iter()
            .find(|t| matches!(t.request, Request::Register(_)))
            .expect("retries");
        h.reply(t.id, status(code));
        assert!(!h
            .actions()
            .iter()
            .any(|a| matches!(a, Action::Hangup { .. })));
        assert_eq!(h.c.next_wakeup_ms(), Some(h.now + 1_000));

        // Once the edge takes us again, the ends (hangup_requested) are delivered.
        h.c.emit(
            h.now,
            "c_1",
            EventKind::Ended {
                status: CallStatus::Completed,
                reason: EndedReason::HangupRequested,
                retry_after_s: None,
                sip_code: None,
                timings: Timings {
                    dispatched_ms: T0,
                    ringing_ms: None,
                    answered_ms: None,
                    ended_ms: h.now,
                },
            },
        )
        .unwrap();
        h.now += 1_000;
        let t = h.tx().unwrap();
        h.reply(t.id, ok(reg_ack()));
        let txs = h.all_tx();
        let (id, b) = batches(&txs)[0];
        let reasons: Vec<(&str, EndedReason)> = b
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Ended { reason, .. } => Some((e.call_id.as_str(), *reason)),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("c_2", EndedReason::AgentHangup),
                ("c_3", EndedReason::HangupRequested),
                ("c_1", EndedReason::HangupRequested)
            ]
        );
        h.reply(
            id,
            ok(EventsAck {
                protocol_version: 1,
                accepted: 3,
            }),
        );
        assert!(h.c.held_calls().is_empty(), "{code}");
    }
}

#[test]
fn other_register_failures_and_410_hang_up_nothing() {
    for failure in [
        status(410),
        status(500),
        status(429),
        Reply::Failed("timeout".into()),
    ] {
        let mut h = H::registered(2);
        h.start_call(1);
        let (id, _) = h.lease();
        h.reply(id, status(410));
        let t = h.tx().expect("re-registers at once on 410");
        assert!(matches!(t.request, Request::Register(_)));
        h.reply(t.id, failure.clone());
        let a = h.actions();
        assert!(
            !a.iter().any(|a| matches!(a, Action::Hangup { .. })),
            "{failure:?}: {a:?}"
        );
        assert!(h.c.holds("c_1"));
    }
}

#[test]
fn a_hangup_for_a_held_call_is_obeyed_after_the_edge_took_us_back() {
    // The edge forgot us (410), we registered again, and our next poll's
    // held_calls is answered with a hangup for a call it no longer counts as ours.
    let mut h = H::registered(2);
    h.start_call(1);
    let (id, _) = h.lease();
    h.reply(id, status(410));
    let t = h.tx().unwrap();
    h.reply(t.id, ok(reg_ack()));
    h.actions();
    let (id, l) = h.lease();
    assert_eq!(l.held_calls, vec!["c_1".to_string()]);
    h.reply(id, lease_resp(vec![], vec![hangup("c_1")]));
    assert!(h.actions().contains(&Action::Hangup {
        call_id: "c_1".into()
    }));
    assert!(h.c.holds("c_1"), "held until its `ended` is acked");
}

// ------------------------------------------------- dead tasks, event sizes

#[test]
fn a_call_whose_task_died_ends_failed_and_frees_its_slot() {
    let mut h = H::registered(2);
    let a = h.start_call(1);
    let b = h.start_call(2);
    let t0 = h.now;
    h.c.emit(h.now, &a.call_id, EventKind::Dialing).unwrap();
    h.now += 100;
    h.c.emit(h.now, &a.call_id, EventKind::Ringing).unwrap();
    h.now += 900;
    // The driver does this when the call's task panicked or was cancelled.
    assert_eq!(
        h.c.fail_call(h.now, &a.call_id, EndedReason::EngineError),
        Ok(3)
    );
    assert_eq!(
        h.c.free_slots(),
        0,
        "held until the edge has the ended event"
    );
    // A task that got its own `ended` out before dying adds nothing.
    h.c.emit(h.now, &b.call_id, ended(h.now)).unwrap();
    assert_eq!(
        h.c.fail_call(h.now, &b.call_id, EndedReason::EngineError),
        Err(EmitError::AlreadyEnded)
    );
    let txs = h.all_tx();
    let (id, batch) = batches(&txs)[0];
    let last = batch
        .events
        .iter()
        .find(|e| e.call_id == "c_1" && e.seq == 3)
        .unwrap();
    assert_eq!(
        last.kind,
        EventKind::Ended {
            status: CallStatus::Failed,
            reason: EndedReason::EngineError,
            retry_after_s: None,
            sip_code: None,
            timings: Timings {
                dispatched_ms: t0,
                ringing_ms: Some(t0 + 100),
                answered_ms: None,
                ended_ms: h.now
            },
        }
    );
    h.reply(
        id,
        ok(EventsAck {
            protocol_version: 1,
            accepted: 4,
        }),
    );
    let n = h.actions();
    assert!(notices(&n)
        .iter()
        .any(|n| matches!(n, Notice::CallReleased { call_id } if call_id == "c_1")));
    assert_eq!(h.c.free_slots(), 2);
}

fn turn(text: String) -> EventKind {
    EventKind::TranscriptTurn {
        role: Role::Callee,
        text,
        start_ms: 0,
        end_ms: 1,
    }
}

#[test]
fn a_long_transcript_turn_is_cut_on_a_char_boundary_with_a_marker() {
    let mut h = H::registered(1);
    let a = h.start_call(1);
    // Multi-byte chars, so a byte-offset cut would split one.
    h.c.emit(h.now, &a.call_id, turn("é".repeat(10_000)))
        .unwrap();
    h.c.emit(h.now, &a.call_id, turn("short".into())).unwrap();
    let summary = EventKind::Summary {
        summary: Some("ü".repeat(9_000)),
        outcome: Some("x".repeat(1_000)),
    };
    h.c.emit(h.now, &a.call_id, summary).unwrap();
    let txs = h.all_tx();
    let b = batches(&txs)[0].1;
    let EventKind::TranscriptTurn { text, .. } = &b.events[0].kind else {
        panic!()
    };
    assert_eq!(text.chars().count(), MAX_TEXT_CHARS);
    assert!(text.ends_with(TRUNCATED_MARKER) && text.starts_with("éé"));
    assert!(matches!(&b.events[1].kind, EventKind::TranscriptTurn { text, .. } if text == "short"));
    let EventKind::Summary {
        summary: Some(s),
        outcome: Some(o),
    } = &b.events[2].kind
    else {
        panic!()
    };
    assert_eq!(
        (s.chars().count(), o.chars().count()),
        (MAX_TEXT_CHARS, MAX_OUTCOME_CHARS)
    );
}

#[test]
fn event_batches_are_bounded_by_their_serialised_size() {
    let mut h = H::registered(1);
    let a = h.start_call(1);
    // 40 turns of ~4,000 chars that JSON escapes to 6 bytes each (~24 KB an
    // event): far over 64 KiB together, though only 40 events.
    for _ in 0..40 {
        h.c.emit(h.now, &a.call_id, turn("\u{1}".repeat(5_000)))
            .unwrap();
    }
    let mut sent = 0;
    while sent < 40 {
        let txs = h.all_tx();
        let (id, b) = batches(&txs)[0];
        let body = Request::Events(b.clone()).body();
        assert!(
            body.len() <= MAX_BATCH_BYTES,
            "batch of {} bytes",
            body.len()
        );
        assert!(!b.events.is_empty());
        sent += b.events.len();
        h.reply(
            id,
            ok(EventsAck {
                protocol_version: 1,
                accepted: b.events.len() as u32,
            }),
        );
    }
    assert_eq!(sent, 40);
    assert_eq!(h.c.pending_events(), 0);
}

// ---------------------------------------------------------------- refusals no retry can fix

fn refusal(code: u16, error: &str, message: &str) -> Reply {
    Reply::Http {
        status: code,
        body: serde_json::to_vec(
            &serde_json::json!({"error": {"code": error, "message": message, "field": null}}),
        )
        .unwrap(),
    }
}

/// An edge that does not take our signature scheme (a newer one, or one from
/// before v2) or that takes the link over https only: every call held here
/// is hung up, nothing more is sent, and the driver is told to stop, once.
#[test]
fn a_signature_version_or_https_refusal_hangs_up_and_halts() {
    let cases = [
        (
            401,
            "signature_version_unsupported",
            "x-voxline-signature must be v3=...",
        ),
        (
            403,
            "https_required",
            "the sidecar link is served over https only",
        ),
        // An edge from before v2: the only way our header is malformed to it.
        (
            401,
            "invalid_signature",
            "signature refused: malformed: x-voxline-signature",
        ),
    ];
    for (code, error, message) in cases {
        let mut h = H::registered(2);
        h.start_call(1);
        let (lease, _) = h.lease();
        h.reply(lease, refusal(code, error, message));
        let a = h.actions();
        assert_eq!(
            a.iter()
                .filter(|a| matches!(a, Action::Hangup { .. }))
                .collect::<Vec<_>>(),
            vec![&Action::Hangup {
                call_id: "c_1".into()
            }],
            "{error}"
        );
        let halts: Vec<_> = a
            .iter()
            .filter_map(|a| match a {
                Action::Halt(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(halts.len(), 1, "{error}");
        assert_eq!(
            (
                halts[0].path,
                halts[0].status,
                halts[0].code.as_str(),
                halts[0].detail.as_str()
            ),
            ("/v1/sidecar/lease", code, error, message)
        );
        assert!(!halts[0].hint.is_empty());
        assert_eq!(h.c.halted(), Some(halts[0]));
        assert!(h.all_tx().is_empty(), "{error}: nothing more is sent");
        assert_eq!(h.c.next_wakeup_ms(), None);
        assert_eq!(h.c.farewell(), None, "the edge would refuse it too");
        h.now += 60_000;
        assert!(h.tx().is_none());
    }

    // Refused at registration: halts too, with nothing to hang up.
    let mut h = H::new(1);
    let t = h.tx().unwrap();
    h.reply(
        t.id,
        refusal(
            401,
            "signature_version_unsupported",
            "v1 is no longer accepted",
        ),
    );
    let a = h.actions();
    assert!(
        matches!(&a[..], [Action::Halt(r)] if r.path == "/v1/sidecar/register"),
        "{a:?}"
    );
    assert!(h.tx().is_none());
}

/// A wrong secret, an unknown sidecar or a stale clock may be fixed at the
/// edge while we wait: those keep the old behaviour (retry with backoff).
#[test]
fn other_signature_refusals_do_not_halt() {
    for (code, error, message) in [
        (401, "invalid_signature", "signature refused: bad_signature"),
        (
            401,
            "invalid_signature",
            "signature refused: stale: timestamp outside the allowed window",
        ),
        (401, "invalid_credentials", "unknown or revoked sidecar"),
        (500, "https_required", "not a 4xx: not believed"),
    ] {
        let mut h = H::new(1);
        let t = h.tx().unwrap();
        h.reply(t.id, refusal(code, error, message));
        assert!(h.c.halted().is_none(), "{message}");
        assert!(!h.actions().iter().any(|a| matches!(a, Action::Halt(_))));
        h.now = h.c.next_wakeup_ms().expect("retries");
        assert!(matches!(
            h.tx().map(|t| t.request),
            Some(Request::Register(_))
        ));
    }
}

// ------------------------------------------------------------ text messages

fn text_offer(id: &str, deadline_ms: u64) -> MessageOffer {
    MessageOffer {
        message_id: id.into(),
        tenant_id: "ten_1".into(),
        from: "+14155550100".into(),
        to: "+14155550111".into(),
        body: "hello".into(),
        deadline_ms,
    }
}

fn lease_with_texts(h: &mut H, messages: Vec<MessageOffer>) {
    let (id, _) = h.lease();
    h.reply(
        id,
        ok(LeaseResponse {
            protocol_version: 1,
            offers: vec![],
            commands: vec![],
            messages,
        }),
    );
}

fn sends(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendMessage(m) => Some(m.message_id.clone()),
            _ => None,
        })
        .collect()
}

fn result_requests(txs: &[Transmit]) -> Vec<(RequestId, MessageResult)> {
    txs.iter()
        .filter_map(|t| match &t.request {
            Request::MessageResult(r) => Some((t.id, r.clone())),
            _ => None,
        })
        .collect()
}

fn sent_report(code: u16) -> MessageReport {
    MessageReport {
        outcome: MessageOutcome::Sent,
        sip_code: Some(code),
        reason: None,
        imdn_message_id: None,
    }
}

#[test]
fn a_text_offer_is_sent_once_and_its_end_reported_to_the_edge() {
    let mut h = H::registered(1);
    let now = h.now;
    lease_with_texts(&mut h, vec![text_offer("msg_1", now + 30_000)]);
    let actions = h.actions();
    assert_eq!(sends(&actions), ["msg_1"]);
    assert!(!h.c.is_idle(), "a text being sent keeps a drain waiting");
    // Nothing to report yet.
    assert!(result_requests(&h.all_tx()).is_empty());
    h.now += 200;
    h.c.message_done(h.now, "msg_1", sent_report(202));
    let txs = h.all_tx();
    let results = result_requests(&txs);
    assert_eq!(results.len(), 1);
    let (rid, r) = &results[0];
    assert_eq!(
        Request::MessageResult(r.clone()).path(),
        paths::MESSAGE_RESULTS
    );
    assert_eq!(
        (
            r.message_id.as_str(),
            r.outcome,
            r.sip_code,
            r.reason.as_deref(),
            r.at_ms
        ),
        ("msg_1", MessageOutcome::Sent, Some(202), None, h.now)
    );
    assert_eq!(r.sidecar_id, "sc-1");
    h.reply(
        *rid,
        ok(voxline_shared::sidecar_link::MessageResultAck {
            protocol_version: 1,
            message_id: "msg_1".into(),
        }),
    );
    assert_eq!(h.c.pending_message_results(), 0);
    // A second end of the same text is not reported again.
    h.c.message_done(h.now, "msg_1", sent_report(200));
    assert!(result_requests(&h.all_tx()).is_empty());
}

#[test]
fn a_text_offered_again_is_not_sent_twice() {
    let mut h = H::registered(1);
    let m = text_offer("msg_dup", h.now + 30_000);
    lease_with_texts(&mut h, vec![m.clone(), m.clone()]);
    assert_eq!(sends(&h.actions()), ["msg_dup"]);
    h.c.message_done(h.now, "msg_dup", sent_report(200));
    // Offered again in a later lease while its result is in flight.
    let txs = h.all_tx();
    assert_eq!(result_requests(&txs).len(), 1);
    let lease = txs
        .iter()
        .find(|t| matches!(t.request, Request::Lease(_)))
        .unwrap();
    h.reply(
        lease.id,
        ok(LeaseResponse {
            protocol_version: 1,
            offers: vec![],
            commands: vec![],
            messages: vec![m],
        }),
    );
    let actions = h.actions();
    assert!(sends(&actions).is_empty());
    assert!(notices(&actions)
        .iter()
        .any(|n| matches!(n, Notice::MessageDuplicate { message_id } if message_id == "msg_dup")));
    assert_eq!(h.c.pending_message_results(), 1, "one result only");
}

#[test]
fn remembered_text_ids_are_bounded() {
    let mut h = H::registered(1);
    for i in 0..MAX_REMEMBERED_MESSAGES + 5 {
        h.c.remember_message(h.now, &format!("msg_{i}"));
    }
    assert_eq!(h.c.sent_messages.len(), MAX_REMEMBERED_MESSAGES);
    assert!(!h.c.sent_messages.contains_key("msg_0"));
    // And forgotten after a day.
    h.now += REMEMBER_MESSAGES_MS;
    h.c.remember_message(h.now, "msg_new");
    assert_eq!(h.c.sent_messages.len(), 1);
    assert_eq!(h.c.sent_order.len(), 1);
}

#[test]
fn an_expired_text_is_not_sent_and_reported_expired() {
    let mut h = H::registered(1);
    let now = h.now;
    lease_with_texts(
        &mut h,
        vec![text_offer("msg_old", now), text_offer("msg_ok", now + 1)],
    );
    assert_eq!(sends(&h.actions()), ["msg_ok"]);
    let results = result_requests(&h.all_tx());
    assert_eq!(results.len(), 1);
    let r = &results[0].1;
    assert_eq!(
        (
            r.message_id.as_str(),
            r.outcome,
            r.sip_code,
            r.reason.as_deref()
        ),
        ("msg_old", MessageOutcome::Failed, None, Some("expired"))
    );
}

#[test]
fn a_text_to_a_non_number_is_refused_not_sent() {
    let mut h = H::registered(1);
    let mut bad = text_offer("msg_bad", h.now + 30_000);
    bad.to = "+1415\r\nX-Evil: 1".into();
    let mut long = text_offer("msg_long", h.now + 30_000);
    long.body = "x".repeat(MAX_MESSAGE_CHARS + 1);
    lease_with_texts(&mut h, vec![bad, long]);
    assert!(sends(&h.actions()).is_empty());
    let reasons: Vec<_> = result_requests(&h.all_tx())
        .into_iter()
        .map(|(_, r)| (r.message_id, r.reason))
        .collect();
    // One result in flight at a time: the first now.
    assert_eq!(
        reasons,
        [("msg_bad".to_string(), Some("rejected".to_string()))]
    );
}

#[test]
fn text_results_are_retried_with_backoff_and_dropped_on_a_permanent_refusal() {
    let mut h = H::registered(1);
    let now = h.now;
    lease_with_texts(
        &mut h,
        vec![text_offer("msg_a", now), text_offer("msg_b", now)],
    );
    h.actions();
    let (id, r) = result_requests(&h.all_tx()).remove(0);
    assert_eq!(r.message_id, "msg_a");
    h.reply(id, status(503));
    assert!(result_requests(&h.all_tx()).is_empty(), "backing off");
    h.now += 500;
    let (id, r) = result_requests(&h.all_tx()).remove(0);
    assert_eq!(r.message_id, "msg_a", "the same result again");
    h.reply(id, status(422));
    let actions = h.actions();
    assert!(notices(&actions)
        .iter()
        .any(|n| matches!(n, Notice::MessageResultDropped { status: 422, .. })));
    let (id, r) = result_requests(&h.all_tx()).remove(0);
    assert_eq!(r.message_id, "msg_b");
    h.reply(id, status(200));
    assert!(h.c.is_idle());
}

fn inbound_text() -> InboundMessage {
    InboundMessage {
        protocol_version: 1,
        sidecar_id: String::new(),
        region: String::new(),
        from: "+14155550111".into(),
        to: "+14155550100".into(),
        content: voxline_shared::sidecar_link::InboundContent::Text { body: "hi".into() },
        sip_call_id: "in-1@trunk".into(),
        received_ms: T0,
    }
}

fn inbound_answers(actions: &[Action]) -> Vec<(u64, u16)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::InboundAnswered { token, sip_code } => Some((*token, *sip_code)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_inbound_text_is_forwarded_and_the_edges_answer_becomes_the_trunks() {
    for (reply, sip) in [
        (status(200), 200),
        (status(404), 404),
        (status(500), 480),
        (Reply::Failed("timeout".into()), 480),
    ] {
        let mut h = H::registered(1);
        h.c.forward_inbound(9, inbound_text());
        let t = h.tx().expect("sent at once");
        let Request::InboundMessage(m) = &t.request else {
            panic!("{t:?}")
        };
        assert_eq!((m.sidecar_id.as_str(), m.region.as_str()), ("sc-1", "eu"));
        assert_eq!(t.request.path(), paths::INBOUND_MESSAGES);
        assert!(t.request.timeout_ms() < crate::sip::text_message::ANSWER_WITHIN_MS);
        h.reply(t.id, reply);
        assert_eq!(inbound_answers(&h.actions()), [(9, sip)]);
    }
    // Not registered: 480 at once, nothing sent.
    let mut h = H::new(1);
    h.c.forward_inbound(3, inbound_text());
    assert_eq!(inbound_answers(&h.actions()), [(3, 480)]);
}

#[test]
fn results_waiting_for_an_unreachable_edge_are_bounded() {
    let mut h = H::registered(1);
    let failed = MessageReport {
        outcome: MessageOutcome::Failed,
        sip_code: None,
        reason: Some("expired".into()),
        imdn_message_id: None,
    };
    h.c.queue_result(h.now, "msg_first", failed.clone());
    let (id, r) = result_requests(&h.all_tx()).remove(0);
    assert_eq!(r.message_id, "msg_first");
    for i in 0..MAX_PENDING_RESULTS + 3 {
        h.c.queue_result(h.now, &format!("msg_{i}"), failed.clone());
    }
    assert_eq!(h.c.pending_message_results(), MAX_PENDING_RESULTS);
    // The one in flight stays at the front until its reply.
    h.reply(id, status(200));
    let next = result_requests(&h.all_tx()).remove(0).1;
    assert_eq!(
        next.message_id, "msg_4",
        "the oldest waiting ones were given up"
    );
}

fn inbound_call() -> InboundCall {
    InboundCall {
        protocol_version: 0,
        sidecar_id: String::new(),
        region: String::new(),
        called: "+14155550100".into(),
        caller: "+14155550111".into(),
        sip_call_id: "in-1@trunk".into(),
        received_ms: 1,
    }
}

fn decisions(actions: &[Action]) -> Vec<(u64, InboundDecision)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::InboundCallDecided { token, decision } => Some((*token, decision.clone())),
            _ => None,
        })
        .collect()
}

fn refused_with(d: &InboundDecision) -> Option<u16> {
    match d {
        InboundDecision::Refuse { sip_code, .. } => Some(*sip_code),
        InboundDecision::Answer { .. }
        | InboundDecision::RingUser { .. }
        | InboundDecision::Queue { .. } => None,
    }
}

#[test]
fn an_inbound_call_that_rings_a_person_is_held_here_like_an_answered_one() {
    let mut h = H::registered(1);
    h.c.forward_inbound_call(6, inbound_call());
    let t = h.tx().expect("asked at once");
    let mut o = offer(8, 0);
    o.lease_id = "inbound_c_8".into();
    o.agent_id = String::new();
    let ring = voxline_shared::sidecar_link::RingUser {
        user_pk: 12,
        extension: "1002".into(),
        display_name: "John".into(),
        ring_timeout_seconds: 30,
        forward_number: None,
        voicemail: false,
    };
    let answer = InboundCallAnswer {
        protocol_version: 1,
        decision: InboundDecision::RingUser {
            offer: Box::new(o),
            ring: ring.clone(),
        },
    };
    // The wire form the edge sends.
    let wire = serde_json::to_value(&answer).unwrap();
    assert_eq!(
        (wire["decision"].as_str(), wire["ring"]["user_pk"].as_u64()),
        (Some("ring_user"), Some(12))
    );
    h.reply(t.id, ok(answer));
    let d = decisions(&h.actions());
    assert!(
        matches!(&d[..], [(6, InboundDecision::RingUser { offer, ring: r })] if offer.call_id == "c_8" && *r == ring),
        "{d:?}"
    );
    assert_eq!(h.c.held_calls(), ["c_8"]);
    assert_eq!(h.c.free_slots(), 0);
    // Its end reaches the edge.
    let ended = EventKind::Ended {
        status: voxline_shared::CallStatus::NoAnswer,
        reason: voxline_shared::EndedReason::NoAnswer,
        sip_code: Some(480),
        timings: voxline_shared::sidecar_link::Timings {
            dispatched_ms: 1,
            ringing_ms: None,
            answered_ms: None,
            ended_ms: 1,
        },
        retry_after_s: None,
    };
    assert_eq!(h.c.emit(h.now, "c_8", ended), Ok(1));
}

#[test]
fn an_inbound_call_answered_by_the_edge_is_held_here_and_its_events_numbered() {
    let mut h = H::registered(1);
    h.c.forward_inbound_call(4, inbound_call());
    let t = h.tx().expect("asked at once");
    let Request::InboundCall(c) = &t.request else {
        panic!("{t:?}")
    };
    assert_eq!((c.sidecar_id.as_str(), c.region.as_str()), ("sc-1", "eu"));
    assert_eq!(t.request.path(), paths::INBOUND_CALLS);
    assert!(t.request.timeout_ms() < crate::sip::uas::DECIDE_WITHIN_MS);
    let mut o = offer(7, 0);
    o.lease_id = "inbound_c_7".into();
    h.reply(
        t.id,
        ok(InboundCallAnswer {
            protocol_version: 1,
            decision: InboundDecision::Answer {
                offer: Box::new(o.clone()),
            },
        }),
    );
    let d = decisions(&h.actions());
    assert!(matches!(&d[..], [(4, InboundDecision::Answer { offer })] if offer.call_id == "c_7"));
    // Held like an acked offer: listed in polls, its slot taken, its events sent.
    assert_eq!(h.c.held_calls(), ["c_7"]);
    assert_eq!(h.c.free_slots(), 0);
    assert_eq!(h.c.emit(h.now, "c_7", EventKind::Answered), Ok(1));

    // The sidecar full: 503 at once (another sidecar may take it), nothing asked.
    h.c.forward_inbound_call(5, inbound_call());
    let d = decisions(&h.actions());
    assert_eq!(refused_with(&d[0].1), Some(503));
}

#[test]
fn an_inbound_call_the_edge_refuses_or_does_not_answer_is_refused_with_its_code() {
    for (reply, code) in [
        (
            ok(InboundCallAnswer {
                protocol_version: 1,
                decision: InboundDecision::Refuse {
                    sip_code: 404,
                    reason: "unknown_number".into(),
                },
            }),
            404,
        ),
        (status(500), 480),
        (status(200), 480),
        (Reply::Failed("timeout".into()), 480),
    ] {
        let mut h = H::registered(1);
        h.c.forward_inbound_call(9, inbound_call());
        let t = h.tx().expect("asked");
        h.reply(t.id, reply);
        let d = decisions(&h.actions());
        assert_eq!((d[0].0, refused_with(&d[0].1)), (9, Some(code)));
        assert!(h.c.held_calls().is_empty());
    }
    // Not registered: 480 at once.
    let mut h = H::new(1);
    h.c.forward_inbound_call(3, inbound_call());
    assert_eq!(refused_with(&decisions(&h.actions())[0].1), Some(480));
}

fn tool_call() -> voxline_shared::sidecar_link::ToolCall {
    voxline_shared::sidecar_link::ToolCall {
        protocol_version: 0,
        sidecar_id: String::new(),
        call_id: "c_7".into(),
        attempt: 1,
        tool_call_id: "fc_1".into(),
        name: "lookup_order".into(),
        arguments: "{}".into(),
    }
}

fn tool_answers(actions: &[Action]) -> Vec<(u64, voxline_shared::sidecar_link::ToolCallAnswer)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToolCallAnswered { token, answer } => Some((*token, answer.clone())),
            _ => None,
        })
        .collect()
}

/// Issue 18: a tool call goes out at once as `POST /v1/sidecar/tool-calls`
/// (signer's id filled in, bounded in time) and its answer comes back by
/// token; a link that cannot answer is `tool_unavailable`, never a hang.
#[test]
fn a_tool_call_is_sent_at_once_and_answered_by_token() {
    use voxline_shared::sidecar_link::ToolCallAnswer;
    let mut h = H::registered(1);
    h.c.forward_tool_call(3, tool_call());
    let t = h.tx().expect("asked at once");
    let Request::ToolCall(c) = &t.request else {
        panic!("{t:?}")
    };
    assert_eq!((c.sidecar_id.as_str(), c.protocol_version), ("sc-1", 1));
    assert_eq!(t.request.path(), paths::TOOL_CALLS);
    assert_eq!(t.request.timeout_ms(), crate::lease::TOOL_CALL_TIMEOUT_MS);
    let edge = ToolCallAnswer {
        protocol_version: 1,
        ok: true,
        output: Some(r#"{"status":"shipped"}"#.into()),
        error: None,
        duration_ms: Some(120),
    };
    h.reply(t.id, ok(edge.clone()));
    assert_eq!(tool_answers(&h.actions()), [(3, edge)]);

    for reply in [status(409), status(500), Reply::Failed("timeout".into())] {
        h.c.forward_tool_call(4, tool_call());
        let t = h.tx().expect("asked");
        h.reply(t.id, reply);
        let a = tool_answers(&h.actions());
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].0, 4);
        assert!(!a[0].1.ok);
        assert_eq!(a[0].1.error.as_ref().unwrap().code, "tool_unavailable");
    }
}

#[test]
fn a_tool_call_while_not_registered_is_answered_unavailable_at_once() {
    // Not registered yet: nothing is sent, the engine hears at once.
    let mut h = H::new(1);
    h.c.forward_tool_call(8, tool_call());
    let a = tool_answers(&h.actions());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].1.error.as_ref().unwrap().code, "tool_unavailable");
}

fn phone_registration() -> voxline_shared::sidecar_link::PhoneRegistration {
    use voxline_shared::sidecar_link::{DigestAnswer, RequestedContact};
    voxline_shared::sidecar_link::PhoneRegistration {
        protocol_version: 0,
        sidecar_id: String::new(),
        region: String::new(),
        digest: DigestAnswer {
            username: "7.ten_0123456789abcdef0123".into(),
            realm: "voxline".into(),
            nonce: "n".into(),
            uri: "sip:127.0.0.1".into(),
            method: "REGISTER".into(),
            response: "r".into(),
            algorithm: "MD5".into(),
            qop: None,
            nc: None,
            cnonce: None,
        },
        sip_call_id: "reg@phone".into(),
        cseq: 2,
        contacts: vec![RequestedContact {
            uri: "sip:a@127.0.0.1:5062".into(),
            expires_seconds: 60,
        }],
        remove_all: false,
        source: "127.0.0.1:5062".into(),
        transport: "udp".into(),
        received_ms: 0,
    }
}

fn registration_answers(
    actions: &[Action],
) -> Vec<(
    u64,
    Option<voxline_shared::sidecar_link::PhoneRegistrationAnswer>,
)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PhoneRegistrationAnswered { token, answer } => Some((*token, answer.clone())),
            _ => None,
        })
        .collect()
}

/// Issue 16: a phone's REGISTER goes out at once as `POST
/// /v1/sidecar/registrations` (signer's id, region and time filled in) and
/// the edge's decision comes back by token; anything else is `None` (the
/// phone gets 503), and so is a REGISTER while the link is down.
#[test]
fn a_phone_registration_is_sent_at_once_and_answered_by_token() {
    use voxline_shared::sidecar_link::{PhoneRegistrationAnswer, PhoneRegistrationDecision};
    let mut h = H::registered(1);
    h.c.forward_phone_registration(1_234, 5, phone_registration());
    let t = h.tx().expect("asked at once");
    let Request::PhoneRegistration(r) = &t.request else {
        panic!("{t:?}")
    };
    assert_eq!(
        (r.sidecar_id.as_str(), r.protocol_version, r.received_ms),
        ("sc-1", 1, 1_234)
    );
    assert_eq!(t.request.path(), paths::REGISTRATIONS);
    assert_eq!(
        t.request.timeout_ms(),
        crate::lease::PHONE_REGISTRATION_TIMEOUT_MS
    );
    let edge = PhoneRegistrationAnswer {
        protocol_version: 1,
        decision: PhoneRegistrationDecision::Refuse {
            sip_code: 403,
            reason: "bad_credentials".into(),
        },
    };
    h.reply(t.id, ok(edge.clone()));
    assert_eq!(registration_answers(&h.actions()), [(5, Some(edge))]);
    for reply in [status(500), Reply::Failed("timeout".into())] {
        h.c.forward_phone_registration(0, 6, phone_registration());
        let t = h.tx().expect("asked");
        h.reply(t.id, reply);
        assert_eq!(registration_answers(&h.actions()), [(6, None)]);
    }
    let mut down = H::new(1);
    down.c
        .forward_phone_registration(0, 7, phone_registration());
    assert_eq!(registration_answers(&down.actions()), [(7, None)]);
}
