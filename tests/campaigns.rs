//! End-to-end campaigns (issue 18) against the real edge (wrangler dev): a
//! campaign created from CSV (and a JSON one with a bad row, refused by row)
//! is started; its `Campaign` Durable Object's alarm places each contact's
//! call through the one call pipeline at the pacing rate; a sidecar speaking
//! the link protocol leases them, holds at most what the campaign allows in
//! flight, and reports each call ended. Asserts: every number offered exactly
//! once, never more than `max_concurrent_calls` calls in flight, the calls
//! started no faster than `calls_per_minute`, `campaign_id` on each call, the
//! counts, pause/resume, and one signed `campaign.completed` webhook
//! (verified by the Python `standardwebhooks` receiver).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::log_tails;

/// Calls started per minute: one per 500 ms.
const PER_MINUTE: u32 = 120;
const IN_FLIGHT: usize = 2;
const CONTACTS: [&str; 5] = [
    "+14155550301",
    "+14155550302",
    "+14155550303",
    "+14155550304",
    "+14155550305",
];

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    hooks: WebhookReceiver,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 20)
    }
}

fn campaign(w: &World, id: &str) -> Value {
    w.edge
        .call("GET", &format!("/v1/campaigns/{id}"), &w.tenant.key, None)
        .expect(200)
        .json
}

fn action(w: &World, id: &str, what: &str) -> Value {
    w.edge
        .call(
            "POST",
            &format!("/v1/campaigns/{id}/{what}"),
            &w.tenant.key,
            None,
        )
        .expect(200)
        .json
}

/// One offer as the protocol sidecar saw it.
struct Offered {
    call_id: String,
    phone: String,
}

/// A sidecar of capacity `IN_FLIGHT + 2` (so the campaign, not the
/// sidecar, is what limits calls in flight) that holds each call it is
/// offered for `hold`, then reports it ended, until `until` says stop.
/// `held`: the calls it holds (kept across runs). Returns every offer, in
/// order, and the most calls it held at once.
fn run_sidecar(
    w: &World,
    sc: &ProtocolSidecar,
    held: &mut BTreeMap<String, Instant>,
    hold: Duration,
    until: impl Fn(&[Offered]) -> bool,
    within: Duration,
) -> (Vec<Offered>, usize) {
    let deadline = Instant::now() + within;
    let mut offered: Vec<Offered> = Vec::new();
    let mut most = held.len();
    while !until(&offered) {
        assert!(
            Instant::now() < deadline,
            "the campaign stalled: {} offers, holding {:?}\n{}",
            offered.len(),
            held.keys().collect::<Vec<_>>(),
            w.edge.log_tail(40)
        );
        // End the calls held long enough (the campaign hears of it from the
        // call store and may place the next).
        let due: Vec<String> = held
            .iter()
            .filter(|(_, at)| at.elapsed() >= hold)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            sc.complete(&w.edge, &id, 1).expect(200);
            held.remove(&id);
        }
        let holding: Vec<&str> = held.keys().map(String::as_str).collect();
        let free = (IN_FLIGHT as u32 + 2).saturating_sub(holding.len() as u32);
        let r = sc.poll(&w.edge, free, &holding, 200).expect(200);
        for o in r.json["offers"].as_array().cloned().unwrap_or_default() {
            sc.ack(&w.edge, &o, true).expect(200);
            let call_id = o["call_id"].as_str().expect("call_id").to_string();
            held.insert(call_id.clone(), Instant::now());
            offered.push(Offered {
                call_id,
                phone: o["phone"].as_str().unwrap_or_default().to_string(),
            });
        }
        most = most.max(held.len());
    }
    (offered, most)
}

fn wait_campaign(w: &World, id: &str, status: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let c = campaign(w, id);
        if c["status"] == status {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "campaign {id} never {status}: {c}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn bad_rows_are_refused_by_row_and_nothing_is_created(w: &World) {
    let r = w.edge.call(
        "POST",
        "/v1/campaigns",
        &w.tenant.key,
        Some(&json!({"name": "bad", "contacts": [{"phone": "+14155550310"}, {"phone": "0800 FLOWERS"}]})),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "invalid_contacts", "{}", r.text);
    let rows = r.json["error"]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), 1, "{}", r.text);
    assert_eq!(rows[0]["row"], 2, "{}", r.text);
    let list = w
        .edge
        .call("GET", "/v1/campaigns", &w.tenant.key, None)
        .expect(200)
        .json;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0), "{list}");
}

fn a_csv_campaign_is_paced_capped_dialled_once_and_completed(w: &World) {
    let csv = std::iter::once("phone,name,order".to_string())
        .chain(
            CONTACTS
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{p},Contact {i},A-{i}")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let path = format!(
        "/v1/campaigns?name=e2e&calls_per_minute={PER_MINUTE}&max_concurrent_calls={IN_FLIGHT}"
    );
    let created = w
        .edge
        .request(
            "POST",
            &path,
            &[
                ("authorization", &format!("Bearer {}", w.tenant.key)),
                ("content-type", "text/csv"),
            ],
            Some(csv.as_bytes()),
        )
        .expect("POST /v1/campaigns")
        .expect(201);
    let id = created.json["id"]
        .as_str()
        .expect("campaign id")
        .to_string();
    assert_eq!(created.json["status"], "created", "{}", created.text);
    assert_eq!(
        created.json["counts"]["total"],
        CONTACTS.len(),
        "{}",
        created.text
    );

    let sc = ProtocolSidecar::create(&w.edge, "sc-campaign");
    sc.register(&w.edge, IN_FLIGHT as u32 + 2).expect(200);
    assert_eq!(action(w, &id, "start")["status"], "running");

    // Two calls in (held: the campaign's cap is reached), pause: nothing
    // more is placed while paused, though the two then end.
    let mut held = BTreeMap::new();
    let (first, most_a) = run_sidecar(
        w,
        &sc,
        &mut held,
        Duration::from_secs(3_600),
        |o| o.len() >= IN_FLIGHT,
        Duration::from_secs(60),
    );
    assert_eq!(action(w, &id, "pause")["status"], "paused");
    for id in std::mem::take(&mut held).keys() {
        sc.complete(&w.edge, id, 1).expect(200);
    }
    // Three seconds of polls (a silent sidecar is presumed dead): no offer.
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        let quiet = sc.poll(&w.edge, 4, &[], 500).expect(200);
        assert_eq!(
            quiet.json["offers"].as_array().map(Vec::len),
            Some(0),
            "a paused campaign placed a call: {}",
            quiet.text
        );
    }
    assert_eq!(action(w, &id, "resume")["status"], "running");
    let (rest, most_b) = run_sidecar(
        w,
        &sc,
        &mut held,
        Duration::from_millis(800),
        |o| o.len() + first.len() >= CONTACTS.len(),
        Duration::from_secs(60),
    );
    for id in std::mem::take(&mut held).keys() {
        sc.complete(&w.edge, id, 1).expect(200);
    }
    let offered: Vec<&Offered> = first.iter().chain(rest.iter()).collect();

    // Every number once, each call an ordinary call of the campaign.
    let phones: BTreeSet<&str> = offered.iter().map(|o| o.phone.as_str()).collect();
    assert_eq!(
        phones,
        CONTACTS.iter().copied().collect(),
        "each contact dialled"
    );
    assert_eq!(offered.len(), CONTACTS.len(), "no number dialled twice");
    assert!(
        most_a.max(most_b) <= IN_FLIGHT,
        "{} calls in flight at once, the campaign allows {IN_FLIGHT}",
        most_a.max(most_b)
    );
    // Pacing, by the edge's own clock: the calls were created at least
    // 60 / PER_MINUTE s apart.
    let mut created: Vec<time::OffsetDateTime> = Vec::new();
    for o in &offered {
        let call = w
            .edge
            .call(
                "GET",
                &format!("/v1/calls/{}", o.call_id),
                &w.tenant.key,
                None,
            )
            .expect(200)
            .json;
        assert_eq!(call["campaign_id"], id.as_str(), "{call}");
        assert_eq!(call["phone"], o.phone.as_str(), "{call}");
        created.push(
            time::OffsetDateTime::parse(
                call["created_at"].as_str().unwrap_or_default(),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("created_at is RFC 3339"),
        );
    }
    created.sort();
    let slot = time::Duration::milliseconds(i64::from(60_000 / PER_MINUTE));
    for pair in created.windows(2) {
        assert!(
            pair[1] - pair[0] >= slot,
            "two calls created {} apart (pacing {slot})",
            pair[1] - pair[0]
        );
    }

    let done = wait_campaign(w, &id, "completed", Duration::from_secs(60));
    assert_eq!(done["counts"]["completed"], CONTACTS.len(), "{done}");
    assert_eq!(done["counts"]["pending"], 0, "{done}");
    assert_eq!(done["counts"]["in_flight"], 0, "{done}");

    let got = w
        .hooks
        .wait_for(
            "campaigns",
            Duration::from_secs(30),
            "campaign.completed",
            |got| {
                got.iter()
                    .any(|r| WebhookReceiver::event(r)["type"] == "campaign.completed")
            },
        )
        .unwrap();
    let completed: Vec<&Value> = got
        .iter()
        .filter(|r| WebhookReceiver::event(r)["type"] == "campaign.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{got:?}");
    assert_eq!(completed[0]["verified"], true, "{got:?}");
    let data = &WebhookReceiver::event(completed[0])["data"];
    assert_eq!(data["id"], id.as_str(), "{data}");
    assert_eq!(data["counts"]["completed"], CONTACTS.len(), "{data}");
    // Still once, a while later (the outbox does not send it again).
    std::thread::sleep(Duration::from_secs(3));
    let again = w
        .hooks
        .received("campaigns")
        .iter()
        .filter(|r| WebhookReceiver::event(r)["type"] == "campaign.completed")
        .count();
    assert_eq!(again, 1);
}

fn main() -> std::process::ExitCode {
    run_suite(
        "campaigns",
        || {
            let opts = EdgeOptions::fresh("campaigns").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("campaigning");
            let mut hooks = WebhookReceiver::new(&dir);
            hooks.start();
            hooks.subscribe(
                &edge,
                &tenant.id,
                "campaigns",
                json!({"retry_schedule": [1, 2],
                "events": ["campaign.completed"]}),
            );
            Ok(World {
                edge,
                tenant,
                dir,
                hooks,
            })
        },
        &[
            (
                "bad_rows_are_refused_by_row_and_nothing_is_created",
                bad_rows_are_refused_by_row_and_nothing_is_created,
            ),
            (
                "a_csv_campaign_is_paced_capped_dialled_once_and_completed",
                a_csv_campaign_is_paced_capped_dialled_once_and_completed,
            ),
        ],
    )
}
