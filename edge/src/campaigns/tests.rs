//! The campaign object's logic over real SQLite with the Durable Object
//! limits: contacts' state machine, pacing through leases, the concurrency
//! cap, pause and cancel, restarts, and `campaign.completed` once.

use super::*;
use crate::sql::sqlite::LimitedSqlite;

const T: u64 = 1_764_082_200_000; // Tuesday 2025-11-25 14:50 UTC

fn spec(per_minute: u32, concurrent: u32) -> CampaignSpec {
    CampaignSpec {
        id: "cmp_0123456789".into(),
        tenant_id: "ten_1".into(),
        name: Some("reminders".into()),
        agent_id: "agt_1".into(),
        calling_window: None,
        max_concurrent_calls: concurrent,
        calls_per_minute: per_minute,
        call: CallOptions {
            max_seconds: 300,
            retries: 0,
            retry_delay_minutes: 5,
            record: false,
        },
        created_at: crate::ids::rfc3339_ms(T),
    }
}

fn new_record(spec: CampaignSpec) -> CampaignRecord {
    CampaignRecord {
        spec,
        status: CampaignStatus::Created,
        total_contacts: 0,
        next_slot_ms: 0,
        started_at: None,
        paused_reason: None,
        cancelled_at: None,
        finished_at: None,
        updated_at: crate::ids::rfc3339_ms(T),
    }
}

fn contacts(n: usize) -> Vec<NewContact> {
    (0..n)
        .map(|i| NewContact {
            phone: format!("+1415555{:04}", i),
            name: Some(format!("n{i}")),
            metadata: Metadata::from_json_text(&format!("{{\"i\":{i}}}")),
        })
        .collect()
}

fn db_with(spec: CampaignSpec, n: usize) -> LimitedSqlite {
    let db = LimitedSqlite::new();
    open(&db).unwrap();
    let r = handle(
        &db,
        CampaignRequest::Create {
            record: Box::new(new_record(spec)),
            contacts: contacts(n),
        },
        T,
    )
    .unwrap();
    assert!(matches!(r, CampaignAnswer::Campaign { view: Some(_) }));
    db
}

fn act(db: &LimitedSqlite, action: Action, now: u64) -> CampaignAnswer {
    handle(
        db,
        CampaignRequest::Control {
            tenant_id: "ten_1".into(),
            action,
        },
        now,
    )
    .unwrap()
}

fn leased(db: &LimitedSqlite, now: u64) -> Vec<u32> {
    match handle(db, CampaignRequest::Lease, now).unwrap() {
        CampaignAnswer::Leased { lease } => lease
            .map(|l| l.contacts.iter().map(|c| c.row).collect())
            .unwrap_or_default(),
        a => panic!("{a:?}"),
    }
}

fn report(db: &LimitedSqlite, row: u32, placement: Placement, now: u64) {
    handle(db, CampaignRequest::Placed { row, placement }, now).unwrap();
}

fn notice(db: &LimitedSqlite, row: u32, status: CallStatus, now: u64) {
    let notice = CallNotice {
        campaign_id: "cmp_0123456789".into(),
        row,
        call_id: format!("call_{row:012}"),
        status,
    };
    handle(db, CampaignRequest::Notice { notice }, now).unwrap();
}

fn placed_ok(row: u32) -> Placement {
    Placement::Placed {
        call_id: format!("call_{row:012}"),
        status: CallStatus::Queued,
    }
}

fn view(db: &LimitedSqlite, now: u64) -> Value {
    match handle(
        db,
        CampaignRequest::Get {
            tenant_id: "ten_1".into(),
        },
        now,
    )
    .unwrap()
    {
        CampaignAnswer::Campaign { view: Some(v) } => v,
        a => panic!("{a:?}"),
    }
}

fn outbox_events(db: &LimitedSqlite) -> Vec<PendingEvent> {
    db.exec("SELECT event FROM outbox ORDER BY id", vec![])
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&text_at(r, 0, "e").unwrap()).unwrap())
        .collect()
}

#[test]
fn nothing_is_handed_out_before_start_then_one_per_slot() {
    let db = db_with(spec(6, 10), 5);
    assert_eq!(view(&db, T)["counts"]["pending"], 5);
    assert!(leased(&db, T).is_empty(), "created: not started");
    assert_eq!(next_wake(&db, T).unwrap(), None);
    act(&db, Action::Start, T);
    assert_eq!(next_wake(&db, T).unwrap(), Some(T), "due now");
    assert_eq!(leased(&db, T), vec![1]);
    assert!(leased(&db, T + 9_999).is_empty(), "6 a minute: 10 s apart");
    assert_eq!(next_wake(&db, T + 1).unwrap(), Some(T + 10_000));
    assert_eq!(leased(&db, T + 10_000), vec![2]);
    let v = view(&db, T + 10_000);
    assert_eq!(
        (
            v["status"].as_str(),
            &v["counts"]["in_flight"],
            &v["counts"]["pending"]
        ),
        (Some("running"), &json!(2), &json!(3))
    );
}

#[test]
fn the_concurrency_cap_waits_for_a_call_to_end() {
    let db = db_with(spec(600, 2), 4);
    act(&db, Action::Start, T);
    assert_eq!(leased(&db, T), vec![1]);
    report(&db, 1, placed_ok(1), T);
    assert_eq!(leased(&db, T + 100), vec![2]);
    report(&db, 2, placed_ok(2), T + 100);
    assert!(leased(&db, T + 60_000).is_empty(), "two in flight");
    assert_eq!(
        next_wake(&db, T + 60_000).unwrap(),
        None,
        "only an end wakes it"
    );
    notice(&db, 1, CallStatus::Ringing, T + 61_000);
    assert!(
        leased(&db, T + 61_000).is_empty(),
        "ringing is still in flight"
    );
    notice(&db, 1, CallStatus::Completed, T + 62_000);
    assert_eq!(next_wake(&db, T + 62_000).unwrap(), Some(T + 62_000));
    assert_eq!(leased(&db, T + 62_000), vec![3]);
}

#[test]
fn a_crashed_placement_is_handed_out_again_after_its_lease_and_never_twice_before() {
    let db = db_with(spec(600, 5), 2);
    act(&db, Action::Start, T);
    assert_eq!(leased(&db, T), vec![1]);
    // The placer died: nothing reported. Row 2 goes next; row 1 waits for its lease.
    assert_eq!(leased(&db, T + 100), vec![2]);
    report(&db, 2, placed_ok(2), T + 100);
    assert!(leased(&db, T + 200).is_empty());
    assert_eq!(next_wake(&db, T + 200).unwrap(), Some(T + LEASE_MS));
    assert_eq!(leased(&db, T + LEASE_MS), vec![1], "same contact, same key");
    // Its call had been made: the store answers with it, placed once.
    report(&db, 1, placed_ok(1), T + LEASE_MS);
    assert_eq!(view(&db, T + LEASE_MS)["counts"]["in_flight"], 2);
}

#[test]
fn refusals_retries_and_a_halt() {
    let db = db_with(spec(600, 5), 3);
    act(&db, Action::Start, T);
    assert_eq!(leased(&db, T), vec![1]);
    report(
        &db,
        1,
        Placement::Refused {
            code: "call_in_progress".into(),
            message: "busy".into(),
        },
        T,
    );
    assert_eq!(leased(&db, T + 100), vec![2]);
    report(&db, 2, Placement::Retry, T + 100);
    assert_eq!(leased(&db, T + 200), vec![2], "retried: pending again");
    report(
        &db,
        2,
        Placement::Halt {
            reason: "agent_unavailable".into(),
        },
        T + 200,
    );
    let v = view(&db, T + 200);
    assert_eq!(v["status"], "paused");
    assert_eq!(v["paused_reason"], "agent_unavailable");
    assert_eq!(v["counts"]["not_placed"], 1);
    assert_eq!(v["counts"]["pending"], 2);
    assert!(leased(&db, T + 300).is_empty(), "paused");
    act(&db, Action::Resume, T + 400);
    assert_eq!(view(&db, T + 400)["paused_reason"], Value::Null);
    assert_eq!(leased(&db, T + 400), vec![2]);
}

#[test]
fn pause_stops_new_calls_and_resume_goes_on() {
    let db = db_with(spec(600, 5), 3);
    act(&db, Action::Start, T);
    assert_eq!(leased(&db, T), vec![1]);
    report(&db, 1, placed_ok(1), T);
    act(&db, Action::Pause, T + 50);
    assert!(leased(&db, T + 1_000).is_empty());
    assert_eq!(next_wake(&db, T + 1_000).unwrap(), None);
    // A call in flight still ends while paused.
    notice(&db, 1, CallStatus::NoAnswer, T + 2_000);
    assert_eq!(view(&db, T + 2_000)["counts"]["no_answer"], 1);
    assert!(matches!(
        act(&db, Action::Start, T + 2_500),
        CampaignAnswer::Conflict {
            status: CampaignStatus::Paused
        }
    ));
    act(&db, Action::Resume, T + 3_000);
    assert_eq!(leased(&db, T + 3_000), vec![2]);
}

#[test]
fn completion_is_queued_once_when_every_call_has_ended() {
    let db = db_with(spec(600, 5), 2);
    act(&db, Action::Start, T);
    for (i, row) in [1, 2].into_iter().enumerate() {
        let now = T + 100 * i as u64;
        assert_eq!(leased(&db, now), vec![row]);
        report(&db, row, placed_ok(row), now);
    }
    assert!(outbox_events(&db).is_empty());
    notice(&db, 1, CallStatus::Completed, T + 5_000);
    notice(&db, 2, CallStatus::Failed, T + 6_000);
    // Repeated notices (the outbox resends) change nothing.
    notice(&db, 2, CallStatus::Failed, T + 7_000);
    notice(&db, 2, CallStatus::Completed, T + 7_000);
    let events = outbox_events(&db);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, WebhookEvent::CampaignCompleted);
    let p: Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(p["type"], "campaign.completed");
    assert_eq!(p["data"]["status"], "completed");
    assert_eq!(p["data"]["counts"]["completed"], 1);
    assert_eq!(p["data"]["counts"]["failed"], 1);
    assert_eq!(p["data"]["counts"]["total"], 2);
    assert!(matches!(
        act(&db, Action::Cancel, T + 8_000),
        CampaignAnswer::Conflict {
            status: CampaignStatus::Completed
        }
    ));
    assert_eq!(outbox_events(&db).len(), 1);
}

#[test]
fn cancel_skips_the_rest_and_finishes_when_the_last_call_ends() {
    let db = db_with(spec(600, 5), 4);
    act(&db, Action::Start, T);
    assert_eq!(leased(&db, T), vec![1]);
    report(&db, 1, placed_ok(1), T);
    assert_eq!(leased(&db, T + 100), vec![2]); // being placed while cancelling
    act(&db, Action::Cancel, T + 150);
    let v = view(&db, T + 150);
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["counts"]["skipped"], 2);
    assert!(leased(&db, T + 200).is_empty());
    assert!(outbox_events(&db).is_empty(), "two calls in flight");
    report(&db, 2, placed_ok(2), T + 160); // made after all: counted
    notice(&db, 1, CallStatus::Completed, T + 1_000);
    assert!(outbox_events(&db).is_empty());
    notice(&db, 2, CallStatus::Cancelled, T + 2_000);
    let events = outbox_events(&db);
    assert_eq!(events.len(), 1);
    let p: Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(p["data"]["status"], "cancelled");
    // Cancelling again is the same answer, and queues nothing.
    assert!(matches!(
        act(&db, Action::Cancel, T + 3_000),
        CampaignAnswer::Campaign { .. }
    ));
    assert_eq!(outbox_events(&db).len(), 1);
}

#[test]
fn state_lives_only_in_the_rows_so_a_restart_resumes_where_it_was() {
    // One database; each request as a freshly started object would run it
    // (opening the schema again, reading everything from the rows).
    let db = db_with(spec(6, 5), 3);
    act(&db, Action::Start, T);
    assert_eq!(leased(&db, T), vec![1]);
    report(&db, 1, placed_ok(1), T);
    open(&db).unwrap(); // restart
    assert!(leased(&db, T + 5_000).is_empty(), "the slot survives");
    assert_eq!(next_wake(&db, T + 5_000).unwrap(), Some(T + 10_000));
    open(&db).unwrap();
    assert_eq!(leased(&db, T + 10_000), vec![2], "never row 1 again");
    let v = view(&db, T + 10_000);
    assert_eq!(v["counts"]["in_flight"], 2);
}

#[test]
fn another_tenant_sees_nothing_and_a_created_campaign_is_not_created_twice() {
    let db = db_with(spec(6, 5), 3);
    let other = handle(
        &db,
        CampaignRequest::Get {
            tenant_id: "ten_2".into(),
        },
        T,
    )
    .unwrap();
    assert_eq!(other, CampaignAnswer::Campaign { view: None });
    let again = handle(
        &db,
        CampaignRequest::Create {
            record: Box::new(new_record(spec(6, 5))),
            contacts: contacts(7),
        },
        T,
    )
    .unwrap();
    let CampaignAnswer::Campaign { view: Some(v) } = again else {
        panic!()
    };
    assert_eq!(v["counts"]["total"], 3);
}

#[test]
fn a_hundred_thousand_contacts_are_one_row_each() {
    let db = db_with(spec(600, 5), MAX_CONTACTS);
    let v = view(&db, T);
    assert_eq!(v["counts"]["total"], MAX_CONTACTS);
    act(&db, Action::Start, T);
    assert_eq!(leased(&db, T), vec![1]);
}
