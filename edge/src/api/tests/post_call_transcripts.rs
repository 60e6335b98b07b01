//! Post-call transcripts of people's calls (issue 16): `POST
//! /v1/sidecar/transcripts` keeps the turns a sidecar made from a bridged
//! call's recording, and `transcript.saved` / Voice360's
//! `TRANSCRIPTION_FINISHED` are sent then, once, instead of empty at the end.

use super::inbound_calls::{ring, tenant_ringing_john, CALLER, NUMBER};
use super::people_calls::{bodies_to, of_type, v360_hook};
use super::{TestSidecar, World};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{paths, InboundDecision, MAX_TRANSCRIPT_TURNS};

/// A person's inbound call, answered by them: its id.
fn answered_person_call(w: &World, sc: &TestSidecar, pk: u64) -> String {
    let d = ring(w, sc, NUMBER, CALLER);
    let InboundDecision::RingUser { offer, .. } = d else {
        panic!("{d:?}")
    };
    let id = offer.call_id.clone();
    sc.events(
        w,
        &id,
        &[
            json!({"type": "answered"}),
            json!({"type": "leg", "step": "answered", "user_pk": pk}),
        ],
    );
    id
}

fn end(w: &World, sc: &TestSidecar, id: &str) {
    sc.events_from(
        w,
        id,
        3,
        &[
            json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
            "timings": {"dispatched_ms": 0, "answered_ms": 1, "ended_ms": 2}}),
        ],
    );
}

fn transcript_body(tid: &str, id: &str, turns: Value) -> Value {
    json!({"tenant_id": tid, "call_id": id, "attempt": 1, "source": "local", "turns": turns})
}

fn two_turns() -> Value {
    json!([
        {"role": "callee", "text": "hello i have a question about my invoice", "start_ms": 500, "end_ms": 2600},
        {"role": "agent", "text": "sure what is the number", "start_ms": 3000, "end_ms": 4400},
    ])
}

/// The link request as sent, whatever its status.
fn post_raw(w: &World, sc: &TestSidecar, mut body: Value) -> crate::http::ApiResponse {
    body["protocol_version"] = json!(1);
    body["sidecar_id"] = json!(sc.id);
    let req = sc.signed(w, paths::TRANSCRIPTS, body.to_string().into_bytes());
    w.send_req(&req)
}

#[test]
fn a_bridged_calls_transcript_is_saved_when_it_arrives_after_the_end_once() {
    let w = World::new();
    let (tid, key, pk, sc) = tenant_ringing_john(&w, "sc-ptx-1");
    let hook = v360_hook(&w, &tid, "TRANSCRIPTION_FINISHED");
    let id = answered_person_call(&w, &sc, pk);
    w.outbox.take();
    end(&w, &sc, &id);
    // The end: call.completed, but no (empty) transcript yet.
    let jobs = w.outbox.take();
    assert_eq!(of_type(&jobs, "call.completed").len(), 1, "{jobs:?}");
    assert!(of_type(&jobs, "transcript.saved").is_empty(), "{jobs:?}");
    assert!(bodies_to(&jobs, &hook).is_empty(), "{jobs:?}");

    let receipt = sc.send(
        &w,
        paths::TRANSCRIPTS,
        transcript_body(&tid, &id, two_turns()),
    );
    assert_eq!(
        (receipt["call_id"].as_str(), receipt["stored"].as_bool()),
        (Some(id.as_str()), Some(true)),
        "{receipt}"
    );
    let jobs = w.outbox.take();
    let saved = of_type(&jobs, "transcript.saved");
    assert_eq!(saved.len(), 1, "{jobs:?}");
    let turns = &saved[0]["data"]["turns"];
    assert_eq!(turns.as_array().map(Vec::len), Some(2), "{}", saved[0]);
    assert_eq!(turns[0]["role"], "callee");
    assert_eq!(turns[1]["text"], "sure what is the number");
    assert_eq!(saved[0]["data"]["call_status"], "completed");
    let v360 = bodies_to(&jobs, &hook);
    assert_eq!(v360.len(), 1, "{jobs:?}");
    assert_eq!(v360[0]["event_name"], "TRANSCRIPTION_FINISHED");
    assert_eq!(v360[0]["metadata"]["success"], true, "{}", v360[0]);
    assert_eq!(v360[0]["metadata"]["uniqueid"], id.as_str());
    let analytics: Value =
        serde_json::from_str(v360[0]["metadata"]["transcription"].as_str().unwrap()).unwrap();
    assert!(
        analytics.to_string().contains("question about my invoice"),
        "{analytics}"
    );
    // Stored as the call's transcript.
    let t = w
        .send(
            "GET",
            &format!("/v1/calls/{id}/transcript"),
            Some(&key),
            None,
        )
        .body_json();
    assert_eq!(t["turns"].as_array().map(Vec::len), Some(2), "{t}");
    assert_eq!(
        t["turns"][0]["text"],
        "hello i have a question about my invoice"
    );

    // Sent again (a lost answer, a restart): the same, nothing new.
    let again = sc.send(
        &w,
        paths::TRANSCRIPTS,
        transcript_body(&tid, &id, two_turns()),
    );
    assert_eq!(again["stored"], false, "{again}");
    let jobs = w.outbox.take();
    assert!(of_type(&jobs, "transcript.saved").is_empty(), "{jobs:?}");
    assert!(bodies_to(&jobs, &hook).is_empty());
    let t = w
        .send(
            "GET",
            &format!("/v1/calls/{id}/transcript"),
            Some(&key),
            None,
        )
        .body_json();
    assert_eq!(t["turns"].as_array().map(Vec::len), Some(2), "{t}");
}

#[test]
fn a_transcript_before_the_end_is_sent_with_the_end_and_an_empty_one_still_ends_it() {
    let w = World::new();
    let (tid, key, pk, sc) = tenant_ringing_john(&w, "sc-ptx-2");
    let hook = v360_hook(&w, &tid, "TRANSCRIPTION_FINISHED");
    // The end comes through the region's queue, the transcript straight:
    // it may arrive first.
    let id = answered_person_call(&w, &sc, pk);
    let receipt = sc.send(
        &w,
        paths::TRANSCRIPTS,
        transcript_body(&tid, &id, two_turns()),
    );
    assert_eq!(receipt["stored"], true);
    let jobs = w.outbox.take();
    assert!(of_type(&jobs, "transcript.saved").is_empty(), "{jobs:?}");
    end(&w, &sc, &id);
    let jobs = w.outbox.take();
    let saved = of_type(&jobs, "transcript.saved");
    assert_eq!(saved.len(), 1, "{jobs:?}");
    assert_eq!(saved[0]["data"]["turns"].as_array().map(Vec::len), Some(2));
    assert_eq!(bodies_to(&jobs, &hook).len(), 1);

    // Nothing was heard: an empty transcript still sends them (unsuccessful).
    let id = answered_person_call(&w, &sc, pk);
    end(&w, &sc, &id);
    w.outbox.take();
    let receipt = sc.send(
        &w,
        paths::TRANSCRIPTS,
        transcript_body(&tid, &id, json!([])),
    );
    assert_eq!(receipt["stored"], true);
    let jobs = w.outbox.take();
    assert_eq!(of_type(&jobs, "transcript.saved").len(), 1, "{jobs:?}");
    let v360 = bodies_to(&jobs, &hook);
    assert_eq!(v360[0]["metadata"]["success"], false, "{}", v360[0]);
    let _ = key;
}

#[test]
fn oversized_or_malformed_transcripts_and_unknown_calls_are_refused() {
    let w = World::new();
    let (tid, _key, pk, sc) = tenant_ringing_john(&w, "sc-ptx-3");
    let id = answered_person_call(&w, &sc, pk);
    end(&w, &sc, &id);
    let turn = json!({"role": "callee", "text": "hi", "start_ms": 0, "end_ms": 10});
    let code = |r: &crate::http::ApiResponse| {
        (
            r.status,
            r.body_json()["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let many = Value::Array(vec![turn.clone(); MAX_TRANSCRIPT_TURNS + 1]);
    let r = post_raw(&w, &sc, transcript_body(&tid, &id, many));
    assert_eq!(code(&r), (422, "value_too_long".into()), "{}", r.body);
    let long = json!([{"role": "callee", "text": "a".repeat(2001), "start_ms": 0, "end_ms": 10}]);
    let r = post_raw(&w, &sc, transcript_body(&tid, &id, long));
    assert_eq!(code(&r), (422, "value_too_long".into()), "{}", r.body);
    let tool = json!([{"role": "tool", "text": "x", "start_ms": 0, "end_ms": 10}]);
    let r = post_raw(&w, &sc, transcript_body(&tid, &id, tool));
    assert_eq!(r.status, 422, "{}", r.body);
    // Larger than any link request may be: 413 before the signature.
    let huge =
        json!([{"role": "callee", "text": "a".repeat(1_100_000), "start_ms": 0, "end_ms": 10}]);
    let r = post_raw(&w, &sc, transcript_body(&tid, &id, huge));
    assert_eq!(r.status, 413, "{}", r.body);
    // An unknown call: 404.
    let r = post_raw(
        &w,
        &sc,
        transcript_body(&tid, "call_0000000000000000000000", json!([turn])),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // Nothing was stored by the refusals: the real one still is.
    let ok = sc.send(
        &w,
        paths::TRANSCRIPTS,
        transcript_body(&tid, &id, json!([turn])),
    );
    assert_eq!(ok["stored"], true);
}
