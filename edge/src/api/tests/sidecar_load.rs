//! The sidecars for operators (issue 19): `GET /admin/sidecars` with each
//! live sidecar's load from its region's dispatch queue (calls held and
//! offered against its capacity, free slots, last seen) and its link's lease
//! turnaround samples, measured on the edge's clock.

use super::{TestSidecar, World, ADMIN};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{paths, Offer};

fn poll(w: &World, sc: &TestSidecar, free_slots: u32, held: &[&str]) -> Vec<Offer> {
    let lease = sc.send(
        w,
        paths::LEASE,
        json!({"region": "local", "free_slots": free_slots, "held_calls": held, "wait_ms": 0}),
    );
    serde_json::from_value(lease["offers"].clone()).unwrap()
}

fn listed(w: &World, id: &str) -> Value {
    let list = w.admin("GET", "/admin/sidecars", None);
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

#[test]
fn the_sidecars_list_shows_each_live_sidecars_load_and_lease_turnaround() {
    let w = World::new();
    let (_tid, key) = w.tenant(true);
    let busy = TestSidecar::create(&w, "sc-busy");
    busy.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 3, "version": "t"}),
    );
    // Credentials only: never registered, so not live.
    TestSidecar::create(&w, "sc-idle");
    let gone = TestSidecar::create(&w, "sc-gone");
    // Link nonces are unique per region: this sidecar's start elsewhere.
    gone.nonce.set(1_000);
    gone.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 1, "version": "t"}),
    );
    w.admin("DELETE", "/admin/sidecars/sc-gone", None);

    // Registered, no poll yet: no free slots reported, no samples.
    let load = &listed(&w, "sc-busy")["load"];
    assert_eq!(
        (
            &load["capacity"],
            &load["active_calls"],
            &load["free_slots"]
        ),
        (&json!(3), &json!(0), &Value::Null)
    );
    assert_eq!(load["lease_turnaround_samples"], json!([]));
    assert_eq!(load["lease_turnaround_ms"]["p50"], Value::Null);

    for phone in ["+14155550100", "+14155550101"] {
        let r = w.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": phone})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // The first poll takes both offers; the queue answers it at `answered`.
    let offers = poll(&w, &busy, 3, &[]);
    assert_eq!(offers.len(), 2);
    let answered = w.now.get();
    busy.send(
        &w,
        paths::ACK,
        json!({"lease_id": offers[0].lease_id, "call_id": offers[0].call_id, "accepted": true}),
    );
    // The next poll comes 40 ms of edge time later, then two more.
    let mut turnarounds = Vec::new();
    let mut last_answer = answered;
    for (gap, free) in [(40, 2), (15, 2), (90, 2)] {
        w.now.set(w.now.get() + gap);
        poll(&w, &busy, free, &[offers[0].call_id.as_str()]);
        let arrived = w.now.get();
        turnarounds.push(arrived - last_answer);
        last_answer = arrived;
    }
    let load = &listed(&w, "sc-busy")["load"];
    // One call held (acked), one offered and not acked, of 3.
    assert_eq!(
        (
            &load["active_calls"],
            &load["offered_calls"],
            &load["capacity"],
            &load["free_slots"]
        ),
        (&json!(1), &json!(1), &json!(3), &json!(2))
    );
    let samples: Vec<u64> = load["lease_turnaround_samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["turnaround_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(samples, turnarounds);
    assert!(
        turnarounds[0] > 40 && turnarounds[2] > 90,
        "{turnarounds:?}"
    );
    let mut sorted = turnarounds.clone();
    sorted.sort_unstable();
    assert_eq!(
        load["lease_turnaround_ms"],
        json!({"last": turnarounds[2], "p50": sorted[1], "max": sorted[2]})
    );
    assert_eq!(
        load["last_seen_at"],
        json!(crate::ids::rfc3339_ms(last_answer))
    );
    // Offline and revoked sidecars have no load.
    assert_eq!(listed(&w, "sc-idle")["load"], Value::Null);
    assert_eq!(listed(&w, "sc-gone")["load"], Value::Null);

    // Operators only.
    let r = w.send("GET", "/admin/sidecars", Some(&key), None);
    assert_eq!(r.status, 401);
    let r = w.send("GET", "/admin/sidecars", Some(ADMIN), None);
    assert_eq!(r.status, 200);
}
