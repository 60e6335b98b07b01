//! End-to-end inbound calls (issue 16, slice 1) against the real edge
//! (wrangler dev) and a real sidecar: sipp, as the trunk, calls one of the
//! tenant's numbers on the sidecar's SIP port; the sidecar rings, asks the
//! edge (`POST /v1/sidecar/inbound-calls`), and the number's agent (the
//! `echo` engine) answers; sipp hangs up after two seconds. Asserts the call
//! in the API (`direction: inbound`, `phone` the caller, `caller_number` the
//! number), its signed webhooks, and that a number nobody holds is refused
//! 404 with no call left behind. The sipp scenarios are the sidecar's own
//! (`media-sidecar/tests/sipp/uac_inbound_call*.xml`).
//!
//! Users' phones (issue 16): a person gets a SIP password from the admin
//! API; baresip registers with the sidecar as that user (Digest checked by
//! the edge's `Directory`), the admin view lists the registration and
//! Voice360's availability shows the person online; when baresip quits
//! (un-REGISTER) both say so again.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::*;

/// The tenant's number the scenario calls, and the caller it calls from.
const NUMBER: &str = "+14155550100";
const CALLER: &str = "+14155550111";
/// The tenant's number that rings a person.
const NUMBER_PERSON: &str = "+14155550103";
/// The tenant's number routed to a queue.
const NUMBER_QUEUE: &str = "+14155550104";
/// The tenant's number that rings Eve (the transcribed call).
const NUMBER_EVE: &str = "+14155550108";
/// Who a click-to-call calls (sipp on the trunk).
const CALLEE: &str = "+14155550177";
/// Terminal call statuses.
const TERMINAL: &[&str] = &["completed", "failed", "no_answer", "busy", "cancelled"];
/// The tenant's Voice360 account (for the availability its people show).
const V360_ACCOUNT: &str = "inbound16";

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    hooks: WebhookReceiver,
    /// The sidecar's SIP port, and the trunk's (sipp's) port it takes calls from.
    sip_port: u16,
    trunk_port: u16,
    _sidecar: ChildGuard,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 30)
    }
}

/// sipp as the calling trunk, running `scenario` once against the sidecar;
/// its exit status (0: every step came as the scenario says).
fn call_in(w: &World, scenario: &str) -> std::process::ExitStatus {
    let sf = repo_root().join("media-sidecar/tests/sipp").join(scenario);
    let log = std::fs::File::create(w.dir.join(format!("sipp-{scenario}.log"))).unwrap();
    let mut child = ChildGuard(
        Command::new(SIPP.require())
            .args(["-sf", sf.to_str().unwrap()])
            .arg(format!("127.0.0.1:{}", w.sip_port))
            .args(["-i", "127.0.0.1", "-p", &w.trunk_port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error"])
            .args(["-trace_msg"])
            .current_dir(&w.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sipp"),
    );
    child
        .wait_exit(Duration::from_secs(40))
        .expect("sipp finishes its scenario")
}

fn inbound_calls(w: &World) -> Vec<Value> {
    w.edge
        .call("GET", "/v1/calls?limit=100", &w.tenant.key, None)
        .expect(200)
        .json["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["direction"] == "inbound")
        .collect()
}

fn a_call_to_the_tenants_number_is_answered_by_its_agent(w: &World) {
    let status = call_in(w, "uac_inbound_call.xml");
    assert!(status.success(), "sipp: {status} {}", log_tails(&w.dir, 30));
    let listed = inbound_calls(w);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().expect("id").to_string();
    let call = w.edge.wait_call_status(
        &w.tenant.key,
        &id,
        &["completed", "failed"],
        Duration::from_secs(30),
    );
    assert_eq!(
        (
            call["status"].as_str(),
            call["ended_reason"].as_str(),
            call["direction"].as_str(),
            call["phone"].as_str(),
            call["caller_number"].as_str(),
            call["agent_id"].as_str()
        ),
        (
            Some("completed"),
            Some("callee_hangup"),
            Some("inbound"),
            Some(CALLER),
            Some(NUMBER),
            Some(w.tenant.agent_id.as_str())
        ),
        "{call}"
    );
    assert!(call["answered_at"].is_string(), "{call}");

    let got = w
        .hooks
        .wait_for(
            "inbound",
            Duration::from_secs(30),
            "call.completed",
            |got| {
                got.iter()
                    .any(|r| WebhookReceiver::event(r)["type"] == "call.completed")
            },
        )
        .unwrap();
    assert!(got.iter().all(|r| r["verified"] == true), "{got:?}");
    for r in &got {
        let e = WebhookReceiver::event(r);
        if e["type"].as_str().is_some_and(|t| t.starts_with("call.")) {
            assert_eq!(e["data"]["id"], id.as_str(), "{e}");
            assert_eq!(e["data"]["direction"], "inbound", "{e}");
        }
    }
    let types: Vec<String> = got
        .iter()
        .map(|r| {
            WebhookReceiver::event(r)["type"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    for t in ["call.answered", "call.completed"] {
        assert!(types.iter().any(|x| x == t), "no {t} in {types:?}");
    }
}

/// Voice360's public availability of the tenant's users.
fn availability(w: &World) -> Value {
    let r = w
        .edge
        .request(
            "GET",
            &format!("/v3/voice/{V360_ACCOUNT}/availability"),
            &[("cf-connecting-ip", "203.0.113.9")],
            None,
        )
        .expect("availability");
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["result"].clone()
}

/// The live registrations the admin API lists for user `pk`.
fn registrations(w: &World, pk: u64) -> Vec<Value> {
    let list = w
        .edge
        .admin(
            "GET",
            &format!("/admin/tenants/{}/directory/users", w.tenant.id),
            None,
        )
        .expect(200);
    list.json["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|u| u["pk"] == pk)
        .and_then(|u| u["registrations"].as_array().cloned())
        .unwrap_or_default()
}

fn a_persons_phone_registers_and_makes_them_available(w: &World) {
    let tp = format!("/admin/tenants/{}", w.tenant.id);
    w.edge
        .admin(
            "PATCH",
            &tp,
            Some(&json!({"voice360_account": V360_ACCOUNT})),
        )
        .expect(200);
    let user = w
        .edge
        .admin(
            "POST",
            &format!("{tp}/directory/users"),
            Some(&json!({"extension": "1002", "first_name": "John"})),
        )
        .expect(201)
        .json;
    let pk = user["pk"].as_u64().expect("pk");
    let sip = w
        .edge
        .admin(
            "POST",
            &format!("{tp}/directory/users/{pk}/sip-password"),
            None,
        )
        .expect(201)
        .json["sip"]
        .clone();
    let (username, password) = (
        sip["username"].as_str().expect("username").to_string(),
        sip["password"].as_str().expect("password").to_string(),
    );
    assert_eq!(username, format!("{pk}.{}", w.tenant.id));
    let offline = availability(w);
    assert_eq!(offline[0]["devices_registered"], false, "{offline}");

    // baresip registers with the sidecar (Expires 10, refreshed), then quits.
    let registrar = format!("127.0.0.1:{}", w.sip_port);
    let mut phone =
        start_registering_baresip(&w.dir, "phone", &username, &registrar, &password, 10, 14)
            .expect("baresip");
    let deadline = Instant::now() + Duration::from_secs(15);
    let regs = loop {
        let regs = registrations(w, pk);
        if !regs.is_empty() {
            break regs;
        }
        assert!(
            Instant::now() < deadline,
            "no registration: {}",
            log_tails(&w.dir, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(regs[0]["sidecar_id"], "sc-inbound", "{regs:?}");
    assert_eq!(regs[0]["transport"], "udp");
    let online = availability(w);
    assert_eq!(online[0]["devices_registered"], true, "{online}");

    // It quits: the un-REGISTER takes the binding away.
    phone.wait_exit(Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !registrations(w, pk).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still registered: {}",
            log_tails(&w.dir, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(availability(w)[0]["devices_registered"], false);
}

/// A person of the tenant (Voice360's user) with a SIP password: their
/// `pk`, SIP username and password.
fn person(w: &World, extension: &str, first_name: &str) -> (u64, String, String) {
    let tp = format!("/admin/tenants/{}", w.tenant.id);
    let user = w
        .edge
        .admin(
            "POST",
            &format!("{tp}/directory/users"),
            Some(&json!({"extension": extension, "first_name": first_name})),
        )
        .expect(201)
        .json;
    let pk = user["pk"].as_u64().expect("pk");
    let sip = w
        .edge
        .admin(
            "POST",
            &format!("{tp}/directory/users/{pk}/sip-password"),
            None,
        )
        .expect(201)
        .json["sip"]
        .clone();
    (
        pk,
        sip["username"].as_str().expect("username").to_string(),
        sip["password"].as_str().expect("password").to_string(),
    )
}

/// A person's phone (baresip) registered with the sidecar, taking calls
/// as `behaviour` says; returns once the edge lists its registration.
fn phone(
    w: &World,
    name: &str,
    (pk, username, password): &(u64, String, String),
    behaviour: PhoneBehaviour<'_>,
) -> ChildGuard {
    let registrar = format!("127.0.0.1:{}", w.sip_port);
    let guard =
        start_registering_phone(&w.dir, name, username, &registrar, password, behaviour, 60)
            .expect("baresip");
    let deadline = Instant::now() + Duration::from_secs(15);
    while registrations(w, *pk).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{name}: no registration: {}",
            log_tails(&w.dir, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    guard
}

/// 8 kHz mono WAV of a `hz` tone lasting `secs`, in the suite's directory.
fn tone_wav(w: &World, name: &str, hz: f64, secs: usize) -> PathBuf {
    let path = w.dir.join(format!("{name}.wav"));
    write_wav(&path, 8000, &tone(8000, &[(hz, 8000.0)], 8000 * secs)).unwrap();
    path
}

/// The caller's tone (sipp's RTP) and a person's phone's (baresip's WAV).
const CALLER_HZ: f64 = 700.0;
const PHONE_HZ: f64 = 440.0;
/// A queue member's phone: a tone the hold music never plays.
const BEA_HZ: f64 = 1100.0;

/// sipp as the trunk calling `number` and talking (a [`CALLER_HZ`] tone)
/// for `talk_ms` once answered, then hanging up; its exit status.
fn call_in_talking(w: &World, number: &str, talk_ms: u32) -> std::process::ExitStatus {
    let pcap = w.dir.join("caller.pcap");
    if !pcap.is_file() {
        write_pcap(&pcap, &tone(8000, &[(CALLER_HZ, 8000.0)], 8000 * 30)).unwrap();
    }
    call_in_saying(w, number, &pcap, talk_ms)
}

/// sipp as the trunk calling `number`, playing `pcap` (the caller's RTP)
/// once answered, hanging up after `talk_ms`; its exit status.
fn call_in_saying(
    w: &World,
    number: &str,
    pcap: &std::path::Path,
    talk_ms: u32,
) -> std::process::ExitStatus {
    let template =
        std::fs::read_to_string(repo_root().join("tests/sipp/uac_inbound_pcap.xml")).unwrap();
    let sf = w
        .dir
        .join(format!("uac_inbound_pcap_{number}_{talk_ms}.xml"));
    std::fs::write(
        &sf,
        template
            .replace("PCAP_FILE", pcap.to_str().unwrap())
            .replace("HOLD_MS", &talk_ms.to_string()),
    )
    .unwrap();
    let log = std::fs::File::create(w.dir.join(format!("sipp-{number}.log"))).unwrap();
    let mut child = ChildGuard(
        Command::new(SIPP.require())
            .args(["-sf", sf.to_str().unwrap()])
            .arg(format!("127.0.0.1:{}", w.sip_port))
            .args(["-s", number])
            .args(["-i", "127.0.0.1", "-p", &w.trunk_port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "90s", "-timeout_error"])
            .args(["-trace_msg"])
            .current_dir(&w.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sipp"),
    );
    child
        .wait_exit(Duration::from_secs(100))
        .expect("sipp finishes its scenario")
}

/// The newest inbound call (the listing's rows are summaries), checked to
/// be to `number`: its whole record.
fn newest_call_to(w: &World, number: &str) -> Value {
    let newest = inbound_calls(w)
        .into_iter()
        .max_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()))
        .expect("an inbound call");
    let id = newest["id"].as_str().expect("id");
    let call = w
        .edge
        .call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None)
        .expect(200)
        .json;
    assert_eq!(call["caller_number"], number, "{call}");
    call
}

/// A call's stereo recording through the API: (left, right) channels.
fn recording_channels(w: &World, id: &str) -> (Vec<i16>, Vec<i16>) {
    let wav = w
        .edge
        .wait_recording(&w.tenant.key, id, Duration::from_secs(20));
    let mut reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV file");
    assert_eq!(reader.spec().channels, 2);
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

/// Whether `pcm` (8 kHz) carries a `hz` tone.
fn has_tone(pcm: &[i16], hz: f64) -> bool {
    amp_at(pcm, 8000, hz) > 500.0
}

/// A number routed to a person rings their registered phone; it answers,
/// and the caller and the person hear each other through the sidecar,
/// which records both (the caller right, the person left).
fn a_call_to_a_persons_number_rings_their_phone_and_bridges(w: &World) {
    let incoming_secret = v360_endpoint(w, "INCOMING_EXTERNAL_CALL");
    let grace = person(w, "1003", "Grace");
    w.edge
        .admin(
            "PUT",
            &format!("/admin/tenants/{}/numbers/{NUMBER_PERSON}", w.tenant.id),
            Some(&json!({"status": "active", "route": {"kind": "user", "user_id": grace.0}})),
        )
        .expect(201);
    let wav = tone_wav(w, "grace", PHONE_HZ, 30);
    let _desk = phone(w, "grace-desk", &grace, PhoneBehaviour::Answers(&wav));
    let status = call_in_talking(w, NUMBER_PERSON, 4000);
    assert!(status.success(), "sipp: {status} {}", log_tails(&w.dir, 40));
    let id = newest_call_to(w, NUMBER_PERSON)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let call = w
        .edge
        .wait_call_status(&w.tenant.key, &id, TERMINAL, Duration::from_secs(30));
    assert_eq!(
        (
            call["status"].as_str(),
            call["ended_reason"].as_str(),
            call["phone"].as_str()
        ),
        (Some("completed"), Some("callee_hangup"), Some(CALLER)),
        "{call}"
    );
    assert!(call["answered_at"].is_string(), "{call}");
    // The phone's leg, step by step, as signed `call.leg` webhooks.
    let steps = |got: &[Value]| -> Vec<(String, Value)> {
        got.iter()
            .map(WebhookReceiver::event)
            .filter(|e| e["type"] == "call.leg" && e["data"]["id"] == id.as_str())
            .map(|e| {
                (
                    e["data"]["leg"]["step"].as_str().unwrap_or("").to_string(),
                    e["data"]["leg"]["user_pk"].clone(),
                )
            })
            .collect()
    };
    let got = w
        .hooks
        .wait_for(
            "inbound",
            Duration::from_secs(30),
            "call.leg ended",
            |got| steps(got).iter().any(|(s, _)| s == "ended"),
        )
        .unwrap();
    assert!(got.iter().all(|r| r["verified"] == true), "{got:?}");
    let legs = steps(&got);
    for step in ["dialing", "answered", "ended"] {
        assert!(
            legs.contains(&(step.to_string(), json!(grace.0))),
            "no {step} leg of person {}: {legs:?}",
            grace.0
        );
    }
    // Voice360's INCOMING_EXTERNAL_CALL, once, as the document shows it.
    let (incoming, raw) = v360_sent(w, "INCOMING_EXTERNAL_CALL", &incoming_secret, |m| {
        m["uniqueid"] == id.as_str()
    });
    let at = |k: &str| raw.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
    assert!(
        at("caller_id_number") < at("caller_id_name")
            && at("caller_id_name") < at("dnis")
            && at("dnis") < at("uniqueid")
            && at("uniqueid") < usize::MAX,
        "the document's field order: {raw}"
    );
    assert_eq!(
        (
            &incoming["metadata"]["caller_id_number"],
            &incoming["metadata"]["dnis"]
        ),
        (&json!(CALLER), &json!(NUMBER_PERSON)),
        "{incoming}"
    );
    let (left, right) = recording_channels(w, &id);
    let (l, r) = (
        &left[8000..left.len().min(8000 * 4)],
        &right[8000..right.len().min(8000 * 4)],
    );
    assert!(has_tone(r, CALLER_HZ), "the caller is on the right channel");
    assert!(has_tone(l, PHONE_HZ), "the person is on the left channel");
    // And the phone itself heard the caller.
    let heard = std::fs::read_dir(w.dir.join("baresip-grace-desk/dumps"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip's dump of what it heard");
    let (_, pcm) = read_wav(&heard).unwrap();
    assert!(has_tone(&pcm, CALLER_HZ), "the phone heard the caller");
}

/// The steps of `kind` (`leg` or `queue`) of call `id` among signed
/// webhooks: each step's object (`data.leg` / `data.queue`).
fn steps_of(got: &[Value], kind: &str, id: &str) -> Vec<Value> {
    got.iter()
        .map(WebhookReceiver::event)
        .filter(|e| e["type"] == format!("call.{kind}") && e["data"]["id"] == id)
        .map(|e| e["data"][kind].clone())
        .collect()
}

/// Lowercase hex.
fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The call's recording holds a `right_hz` tone on the right (the caller
/// or callee) and a `left_hz` tone on the left (who they talked to: `who`).
fn recorded_both(w: &World, id: &str, right_hz: f64, left_hz: f64, who: &str) {
    let (left, right) = recording_channels(w, id);
    assert!(
        tone_in_some_second(&right, right_hz),
        "{id}: the caller or callee is on the right"
    );
    assert!(
        tone_in_some_second(&left, left_hz),
        "{id}: {who} is on the left"
    );
}

/// An agent's call to [`CALLEE`] (sipp on the trunk, answering with a
/// [`CALLER_HZ`] tone), recorded, once it is answered: its id and sipp.
fn answered_agent_call(w: &World, name: &str) -> (String, ChildGuard) {
    let callee = callee_on_trunk(w, name);
    let id = w
        .edge
        .call(
            "POST",
            "/v1/calls",
            &w.tenant.key,
            Some(&json!({"phone": CALLEE, "agent_id": w.tenant.agent_id, "record": true})),
        )
        .expect(201)
        .json["id"]
        .as_str()
        .expect("id")
        .to_string();
    w.edge.wait_call_status(
        &w.tenant.key,
        &id,
        &["in_progress"],
        Duration::from_secs(20),
    );
    (id, callee)
}

/// Whether `pcm` (8 kHz) carries a `hz` tone somewhere in 1 s windows.
fn tone_in_some_second(pcm: &[i16], hz: f64) -> bool {
    pcm.chunks(8000).any(|w| w.len() == 8000 && has_tone(w, hz))
}

/// A number routed to a queue of two people (issue 16's done-when): Alan's
/// phone is busy on another call (486), Bea's answers. The caller is
/// answered at once and hears hold audio, Alan's phone is skipped, Bea's
/// rings and is bridged. Then, with Bea's phone only ringing, the next
/// caller waits the queue's longest wait and the queue's overflow agent
/// (the echo engine) takes the call.
fn a_queue_skips_the_busy_member_bridges_the_free_one_then_overflows_to_the_agent(w: &World) {
    let tp = format!("/admin/tenants/{}", w.tenant.id);
    w.edge
        .admin(
            "PATCH",
            &tp,
            Some(&json!({"voice360_account": V360_ACCOUNT})),
        )
        .expect(200);
    let alan = person(w, "1004", "Alan");
    let bea = person(w, "1005", "Bea");
    let queue = w
        .edge
        .admin(
            "POST",
            &format!("{tp}/directory/queues"),
            Some(&json!({
                "name": "Support", "extension": "8001", "strategy": "linear",
                "timeout": 6, "retry": 1, "members": [alan.0, bea.0],
                "max_wait_seconds": 10,
                "overflow": {"kind": "agent", "agent_id": w.tenant.agent_id},
            })),
        )
        .expect(201)
        .json;
    let queue_pk = queue["pk"].as_u64().expect("queue pk");
    // Voice360's queue events, each to an endpoint of its own.
    let v360: Vec<(&str, String)> = ["QUEUE_ENTER", "QUEUE_MEMBER_ANSWER", "QUEUE_HANGUP_TIMEOUT"]
        .into_iter()
        .map(|event| (event, v360_endpoint(w, event)))
        .collect();
    w.edge
        .admin(
            "PUT",
            &format!("{tp}/numbers/{NUMBER_QUEUE}"),
            Some(&json!({"status": "active", "route": {"kind": "queue", "queue_id": queue_pk}})),
        )
        .expect(201);
    // Alan is on another call: his phone dials a socket that never answers.
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let blackhole_port = blackhole.local_addr().unwrap().port();
    let _alan_desk = phone(
        w,
        "alan-desk",
        &alan,
        PhoneBehaviour::Busy {
            blackhole: blackhole_port,
        },
    );
    let wav = tone_wav(w, "bea", BEA_HZ, 30);
    let bea_desk = phone(w, "bea-desk", &bea, PhoneBehaviour::Answers(&wav));

    let status = call_in_talking(w, NUMBER_QUEUE, 6000);
    assert!(status.success(), "sipp: {status} {}", log_tails(&w.dir, 40));
    let id = newest_call_to(w, NUMBER_QUEUE)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let call = w
        .edge
        .wait_call_status(&w.tenant.key, &id, TERMINAL, Duration::from_secs(30));
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("callee_hangup")),
        "{call}"
    );
    let got = w
        .hooks
        .wait_for(
            "inbound",
            Duration::from_secs(30),
            "call.queue connected",
            |got| {
                steps_of(got, "queue", &id)
                    .iter()
                    .any(|q| q["step"] == "connected")
                    && steps_of(got, "leg", &id)
                        .iter()
                        .filter(|l| l["step"] == "ended")
                        .count()
                        >= 2
            },
        )
        .unwrap();
    assert!(got.iter().all(|r| r["verified"] == true), "{got:?}");
    let queue_steps: Vec<Value> = steps_of(&got, "queue", &id)
        .into_iter()
        .map(|q| q["step"].clone())
        .collect();
    // Webhooks may arrive in any order; each step once.
    for step in ["entered", "connected"] {
        assert_eq!(
            queue_steps.iter().filter(|s| **s == step).count(),
            1,
            "{queue_steps:?}"
        );
    }
    let legs = steps_of(&got, "leg", &id);
    let leg = |pk: u64, step: &str| {
        legs.iter()
            .find(|l| l["user_pk"] == pk && l["step"] == step)
            .cloned()
    };
    assert_eq!(
        leg(alan.0, "ended").map(|l| l["sip_code"].clone()),
        Some(json!(486)),
        "Alan's phone said busy: {legs:?}"
    );
    assert!(leg(alan.0, "answered").is_none(), "{legs:?}");
    assert!(leg(bea.0, "answered").is_some(), "{legs:?}");
    // The caller (right) and Bea (left) heard each other through the sidecar.
    recorded_both(w, &id, CALLER_HZ, BEA_HZ, "Bea is on the left");

    // Bea's phone now only rings; Alan is still busy: nobody answers, and
    // after 10 s the agent (echo) takes the caller, who hears themselves.
    drop(bea_desk);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !registrations(w, bea.0).is_empty() {
        assert!(Instant::now() < deadline, "Bea's phone stays registered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _bea_rings = phone(w, "bea-rings", &bea, PhoneBehaviour::Rings);
    let status = call_in_talking(w, NUMBER_QUEUE, 15_000);
    assert!(status.success(), "sipp: {status} {}", log_tails(&w.dir, 40));
    let id = newest_call_to(w, NUMBER_QUEUE)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let call = w
        .edge
        .wait_call_status(&w.tenant.key, &id, TERMINAL, Duration::from_secs(30));
    assert_eq!(call["status"], "completed", "{call}");
    let got = w
        .hooks
        .wait_for(
            "inbound",
            Duration::from_secs(30),
            "call.queue timed_out",
            |got| {
                steps_of(got, "queue", &id)
                    .iter()
                    .any(|q| q["step"] == "timed_out")
            },
        )
        .unwrap();
    let queue_steps: Vec<Value> = steps_of(&got, "queue", &id)
        .into_iter()
        .map(|q| q["step"].clone())
        .collect();
    assert!(queue_steps.contains(&json!("no_answer")), "{queue_steps:?}");
    assert!(
        !queue_steps.contains(&json!("connected")),
        "{queue_steps:?}"
    );
    // Voice360's bodies, signed with their endpoint's secret.
    for (event, secret) in &v360 {
        let v = v360_body(w, event, secret, |_| true);
        assert_eq!(v["account_id"], V360_ACCOUNT, "{v}");
        let m = &v["metadata"];
        match *event {
            "QUEUE_ENTER" => {
                assert_eq!(m["queue_id"], queue_pk.to_string(), "{v}");
                assert_eq!(m["callerid_number"], CALLER, "{v}");
            }
            "QUEUE_MEMBER_ANSWER" => {
                assert_eq!(m["App-Name"], "Queue", "{v}");
                assert_eq!(m["to_user_id"], bea.0.to_string(), "{v}");
                assert_eq!(m["dnis"], NUMBER_QUEUE, "{v}");
            }
            _ => {
                assert_eq!(m["queue_name"], "Support", "{v}");
                assert!(m["wait_time"].as_u64().is_some_and(|t| t >= 10), "{v}");
            }
        }
    }
    let (left, _) = recording_channels(w, &id);
    let rms = |pcm: &[i16]| {
        (pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
    };
    assert!(
        rms(&left[8000..(8000 * 8).min(left.len())]) > 300.0,
        "the caller heard hold audio while waiting"
    );
    // From the overflow (10 s) the echo of the caller.
    let after = &left[(8000 * 11).min(left.len())..];
    assert!(
        tone_in_some_second(after, CALLER_HZ),
        "the agent (echo) took the caller after the longest wait"
    );
}

/// A Voice360 endpoint of the tenant for `event`, pointing at the
/// receiver's hook `v360-<event>`: its signing secret.
fn v360_endpoint(w: &World, event: &str) -> String {
    let created = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/webhooks", w.tenant.id),
            Some(&json!({"url": w.hooks.url(&format!("v360-{event}")),
                         "format": "voice360", "voice360_event": event,
                         "retry_schedule": [1]})),
        )
        .expect(201);
    created.json["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The first Voice360 `event` body whose metadata `pred` accepts, its
/// `X-Voice360-Signature` checked against `secret`: parsed, and as sent.
fn v360_sent(
    w: &World,
    event: &str,
    secret: &str,
    pred: impl Fn(&Value) -> bool,
) -> (Value, String) {
    let name = format!("v360-{event}");
    let parse = |r: &Value| serde_json::from_str::<Value>(r["body"].as_str().unwrap_or("")).ok();
    let got = w
        .hooks
        .wait_for(&name, Duration::from_secs(30), event, |got| {
            got.iter().filter_map(parse).any(|v| pred(&v["metadata"]))
        })
        .unwrap();
    let r = got
        .iter()
        .find(|r| parse(r).is_some_and(|v| pred(&v["metadata"])))
        .unwrap();
    let body = r["body"].as_str().unwrap_or_default();
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret.as_bytes()).unwrap();
    hmac::Mac::update(&mut mac, body.as_bytes());
    let want = format!(
        "sha256={}",
        hex_lower(&hmac::Mac::finalize(mac).into_bytes())
    );
    assert_eq!(r["voice360_signature"], want.as_str(), "{event}: {body}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["event_name"], event, "{v}");
    (v, body.to_string())
}

/// [`v360_sent`], parsed.
fn v360_body(w: &World, event: &str, secret: &str, pred: impl Fn(&Value) -> bool) -> Value {
    v360_sent(w, event, secret, pred).0
}

/// Click-to-call (issue 16's done-when): Voice360's `POST /call/outbound`
/// from a person's extension rings their baresip phone, which answers;
/// the sidecar then dials the number through the trunk (sipp), and the
/// two hear each other through it, recorded both sides (the callee on
/// the right, the person on the left). The person hangs up (their WAV
/// ends). `USER_DIAL` and `USER_HANGUP` arrive signed.
fn a_click_to_call_from_an_extension_rings_the_phone_then_bridges_the_callee(w: &World) {
    let tp = format!("/admin/tenants/{}", w.tenant.id);
    w.edge
        .admin(
            "PATCH",
            &tp,
            Some(&json!({"voice360_account": V360_ACCOUNT})),
        )
        .expect(200);
    let dev_key = w
        .edge
        .admin(
            "POST",
            &format!("{tp}/voice360-keys"),
            Some(&json!({"kind": "developer"})),
        )
        .expect(201)
        .json["key"]
        .as_str()
        .expect("key")
        .to_string();
    let dial_secret = v360_endpoint(w, "USER_DIAL");
    let hangup_secret = v360_endpoint(w, "USER_HANGUP");
    let carl = person(w, "1006", "Carl");
    let wav = tone_wav(w, "carl", PHONE_HZ, 8);
    let _desk = phone(w, "carl-desk", &carl, PhoneBehaviour::Answers(&wav));

    // The callee: sipp on the trunk answers and talks until our BYE.
    let mut callee = callee_on_trunk(w, "c2c-callee");

    let r = w
        .edge
        .request(
            "POST",
            &format!("/v3/voice/{V360_ACCOUNT}/call/outbound"),
            &[
                ("x-api-key", dev_key.as_str()),
                ("content-type", "application/json"),
            ],
            Some(
                json!({"from": "1006", "to": CALLEE, "recording": true})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .expect("call/outbound");
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["result"]["call_id"]
        .as_str()
        .expect("call_id")
        .to_string();
    let call = w
        .edge
        .wait_call_status(&w.tenant.key, &id, TERMINAL, Duration::from_secs(40));
    assert_eq!(
        (
            call["status"].as_str(),
            call["ended_reason"].as_str(),
            call["phone"].as_str(),
            call["agent_id"].as_str()
        ),
        (
            Some("completed"),
            Some("agent_hangup"),
            Some(CALLEE),
            Some("")
        ),
        "the person hung up: {call}"
    );
    let status = callee
        .wait_exit(Duration::from_secs(20))
        .expect("sipp ends");
    assert!(
        status.success(),
        "sipp callee: {status} {}",
        log_tails(&w.dir, 40)
    );
    recorded_both(w, &id, CALLER_HZ, PHONE_HZ, "the person is on the left");

    let dial = v360_body(w, "USER_DIAL", &dial_secret, |m| {
        m["uniqueid"] == id.as_str()
    });
    assert_eq!(
        (
            &dial["metadata"]["dialed_number"],
            &dial["metadata"]["from_user_id"]
        ),
        (&json!(CALLEE), &json!(carl.0.to_string())),
        "{dial}"
    );
    let hangup = v360_body(w, "USER_HANGUP", &hangup_secret, |m| {
        m["uniqueid"] == id.as_str()
    });
    assert!(
        hangup["metadata"]["duration"]
            .as_u64()
            .is_some_and(|d| d >= 3),
        "{hangup}"
    );
}

/// sipp on the trunk as a callee that answers, says a [`CALLER_HZ`] tone
/// and waits for our BYE (at most `within`).
fn callee_on_trunk(w: &World, name: &str) -> ChildGuard {
    let pcap = w.dir.join("callee.pcap");
    if !pcap.is_file() {
        write_pcap(&pcap, &tone(8000, &[(CALLER_HZ, 8000.0)], 8000 * 30)).unwrap();
    }
    let template =
        std::fs::read_to_string(repo_root().join("media-sidecar/tests/sipp/uas_amd_pcap.xml"))
            .unwrap();
    let sf = w.dir.join("uas_callee_pcap.xml");
    std::fs::write(&sf, template.replace("PCAP_FILE", pcap.to_str().unwrap())).unwrap();
    let log = std::fs::File::create(w.dir.join(format!("sipp-{name}.log"))).unwrap();
    let guard = ChildGuard(
        Command::new(SIPP.require())
            .args(["-sf", sf.to_str().unwrap()])
            .args(["-i", "127.0.0.1", "-p", &w.trunk_port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error"])
            .args(["-trace_msg"])
            .current_dir(&w.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sipp"),
    );
    std::thread::sleep(Duration::from_millis(300));
    guard
}

/// A transfer from the AI to a person (issue 16's done-when): an agent's
/// call to sipp is answered; `POST /v1/calls/{id}/transfer` names Dana's
/// extension; the sidecar rings her registered baresip phone, which
/// answers, and bridges her to the callee (the engine detached). The call
/// ends `transferred` when she hangs up; `call.transferred` names her
/// extension; the recording holds the callee and, after the transfer, her.
fn an_api_transfer_hands_the_callee_from_the_agent_to_a_persons_phone(w: &World) {
    let dana = person(w, "1007", "Dana");
    let wav = tone_wav(w, "dana", PHONE_HZ, 6);
    let _desk = phone(w, "dana-desk", &dana, PhoneBehaviour::Answers(&wav));
    let (id, mut callee) = answered_agent_call(w, "transfer-callee");
    let path = format!("/v1/calls/{id}/transfer");
    std::thread::sleep(Duration::from_secs(2));
    let asked = w
        .edge
        .call(
            "POST",
            &path,
            &w.tenant.key,
            Some(&json!({"extension": "1007"})),
        )
        .expect(202)
        .json;
    assert_eq!(asked["transfer_request"]["status"], "requested", "{asked}");
    let xfr = asked["transfer_request"]["id"]
        .as_str()
        .expect("xfr")
        .to_string();
    w.edge
        .call(
            "POST",
            &path,
            &w.tenant.key,
            Some(&json!({"extension": "1007"})),
        )
        .expect_error(409, "transfer_in_progress");

    let call = w
        .edge
        .wait_call_status(&w.tenant.key, &id, TERMINAL, Duration::from_secs(40));
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("transferred")),
        "{call}"
    );
    assert_eq!(
        (
            call["transfer_request"]["status"].as_str(),
            call["transfer_request"]["method"].as_str()
        ),
        (Some("completed"), Some("bridge")),
        "{call}"
    );
    let status = callee
        .wait_exit(Duration::from_secs(20))
        .expect("sipp ends");
    assert!(
        status.success(),
        "sipp callee: {status} {}",
        log_tails(&w.dir, 40)
    );
    w.edge
        .call(
            "POST",
            &path,
            &w.tenant.key,
            Some(&json!({"extension": "1007"})),
        )
        .expect_error(409, "call_ended");

    let got = w
        .hooks
        .wait_for(
            "inbound",
            Duration::from_secs(30),
            "call.transferred",
            |got| {
                got.iter()
                    .map(WebhookReceiver::event)
                    .any(|e| e["type"] == "call.transferred" && e["data"]["id"] == id.as_str())
            },
        )
        .unwrap();
    let transferred = got
        .iter()
        .map(WebhookReceiver::event)
        .find(|e| e["type"] == "call.transferred" && e["data"]["id"] == id.as_str())
        .unwrap();
    let t = &transferred["data"]["transfer"];
    assert_eq!(
        (
            t["extension"].as_str(),
            t["method"].as_str(),
            t["transfer_id"].as_str()
        ),
        (Some("1007"), Some("bridge"), Some(xfr.as_str())),
        "{transferred}"
    );
    recorded_both(
        w,
        &id,
        CALLER_HZ,
        PHONE_HZ,
        "after the transfer the callee hears Dana (left)",
    );
}

/// A person's bridged call is transcribed after it ends (issue 16): the
/// caller (sipp) and Eve's phone (baresip) speak flite sentences; the call
/// ends `completed` first, then the sidecar's transcript of its recording
/// arrives: one `transcript.saved` (none empty at the end), the words in
/// `GET /v1/calls/{id}/transcript` (the caller `callee`, Eve `agent`), and
/// Voice360's `TRANSCRIPTION_FINISHED`.
fn a_persons_bridged_call_is_transcribed_after_it_ends(w: &World) {
    let finished_secret = v360_endpoint(w, "TRANSCRIPTION_FINISHED");
    let eve = person(w, "1008", "Eve");
    w.edge
        .admin(
            "PUT",
            &format!("/admin/tenants/{}/numbers/{NUMBER_EVE}", w.tenant.id),
            Some(&json!({"status": "active", "route": {"kind": "user", "user_id": eve.0}})),
        )
        .expect(201);
    let say = |voice: &str, text: &str, lead_ms: usize, tail_ms: usize| {
        let mut pcm = vec![0i16; lead_ms * 8];
        pcm.extend(flite_8k(&w.dir, voice, text).expect("flite"));
        pcm.extend(vec![0i16; tail_ms * 8]);
        pcm
    };
    let wav = w.dir.join("eve.wav");
    write_wav(
        &wav,
        8000,
        &say(
            "slt",
            "Certainly. What time would you like the table?",
            3_000,
            12_000,
        ),
    )
    .unwrap();
    let _desk = phone(w, "eve-desk", &eve, PhoneBehaviour::Answers(&wav));
    let pcap = w.dir.join("caller-words.pcap");
    write_pcap(
        &pcap,
        &say(
            "rms",
            "Hello, I would like to book a table for tomorrow evening.",
            500,
            8_000,
        ),
    )
    .unwrap();
    let status = call_in_saying(w, NUMBER_EVE, &pcap, 9_000);
    assert!(status.success(), "sipp: {status} {}", log_tails(&w.dir, 40));
    let id = newest_call_to(w, NUMBER_EVE)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let call = w
        .edge
        .wait_call_status(&w.tenant.key, &id, TERMINAL, Duration::from_secs(30));
    assert_eq!(call["status"], "completed", "{call}");
    let saved = |got: &[Value]| {
        got.iter()
            .map(WebhookReceiver::event)
            .filter(|e| e["type"] == "transcript.saved" && e["data"]["call_id"] == id.as_str())
            .count()
    };
    let got = w
        .hooks
        .wait_for(
            "inbound",
            Duration::from_secs(60),
            "transcript.saved",
            |got| saved(got) >= 1,
        )
        .unwrap();
    assert!(got.iter().all(|r| r["verified"] == true), "{got:?}");
    let t = w.edge.transcript(&w.tenant.key, &id);
    let turns = t["turns"].as_array().cloned().unwrap_or_default();
    let said = |role: &str| -> String {
        turns
            .iter()
            .filter(|x| x["role"] == role)
            .filter_map(|x| x["text"].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (caller, eve_said) = (said("callee"), said("agent"));
    assert!(
        ["table", "tomorrow", "evening"]
            .iter()
            .any(|w| caller.contains(w)),
        "the caller's words: {caller:?} ({t})"
    );
    assert!(
        ["certainly", "time", "table"]
            .iter()
            .any(|w| eve_said.contains(w)),
        "Eve's words: {eve_said:?} ({t})"
    );
    let finished = v360_body(w, "TRANSCRIPTION_FINISHED", &finished_secret, |m| {
        m["uniqueid"] == id.as_str()
    });
    assert!(
        finished["metadata"]["transcription"]
            .as_str()
            .is_some_and(|j| j.contains("table")),
        "{finished}"
    );
    // Only that one: none was sent empty when the call ended.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(saved(&w.hooks.received("inbound")), 1);
}

/// A transfer to a queue (issue 16): an agent's answered call to sipp;
/// `POST /v1/calls/{id}/transfer` names a queue; the sidecar detaches the
/// engine and puts the callee in the queue (hold audio, `call.queue`
/// entered), Fay's registered baresip phone rings and answers and is
/// bridged (`connected`); the call ends when Fay hangs up.
fn an_api_transfer_puts_the_callee_in_a_queue_where_a_member_answers(w: &World) {
    let tp = format!("/admin/tenants/{}", w.tenant.id);
    let fay = person(w, "1009", "Fay");
    let queue_pk = w
        .edge
        .admin(
            "POST",
            &format!("{tp}/directory/queues"),
            Some(
                &json!({"name": "Billing", "extension": "8002", "strategy": "ringall",
                         "timeout": 10, "retry": 1, "members": [fay.0],
                         "max_wait_seconds": 30}),
            ),
        )
        .expect(201)
        .json["pk"]
        .as_u64()
        .expect("queue pk");
    let wav = tone_wav(w, "fay", BEA_HZ, 6);
    let _desk = phone(w, "fay-desk", &fay, PhoneBehaviour::Answers(&wav));
    let (id, mut callee) = answered_agent_call(w, "queue-transfer-callee");
    std::thread::sleep(Duration::from_secs(1));
    let path = format!("/v1/calls/{id}/transfer");
    w.edge
        .call(
            "POST",
            &path,
            &w.tenant.key,
            Some(&json!({"queue": queue_pk, "mode": "warm"})),
        )
        .expect_error(422, "invalid_value");
    let asked = w
        .edge
        .call(
            "POST",
            &path,
            &w.tenant.key,
            Some(&json!({"queue": queue_pk})),
        )
        .expect(202)
        .json;
    assert_eq!(asked["transfer_request"]["queue"], queue_pk, "{asked}");
    let call = w
        .edge
        .wait_call_status(&w.tenant.key, &id, TERMINAL, Duration::from_secs(40));
    assert_eq!(
        (
            call["status"].as_str(),
            call["ended_reason"].as_str(),
            call["transfer_request"]["status"].as_str(),
            call["transfer_request"]["method"].as_str()
        ),
        (
            Some("completed"),
            Some("agent_hangup"),
            Some("completed"),
            Some("queue")
        ),
        "Fay hung up: {call}"
    );
    let status = callee
        .wait_exit(Duration::from_secs(20))
        .expect("sipp ends");
    assert!(
        status.success(),
        "sipp callee: {status} {}",
        log_tails(&w.dir, 40)
    );
    let got = w
        .hooks
        .wait_for(
            "inbound",
            Duration::from_secs(30),
            "call.queue connected",
            |got| {
                steps_of(got, "queue", &id)
                    .iter()
                    .any(|q| q["step"] == "connected")
            },
        )
        .unwrap();
    let queue_steps: Vec<Value> = steps_of(&got, "queue", &id)
        .into_iter()
        .map(|q| q["step"].clone())
        .collect();
    assert!(queue_steps.contains(&json!("entered")), "{queue_steps:?}");
    assert!(
        steps_of(&got, "leg", &id)
            .iter()
            .any(|l| l["user_pk"] == fay.0 && l["step"] == "answered"),
        "Fay's phone answered"
    );
    recorded_both(
        w,
        &id,
        CALLER_HZ,
        BEA_HZ,
        "after the transfer the callee hears Fay",
    );
}

fn a_number_nobody_holds_is_refused_404(w: &World) {
    let before = inbound_calls(w).len();
    let status = call_in(w, "uac_inbound_call_404.xml");
    assert!(status.success(), "sipp: {status} {}", log_tails(&w.dir, 30));
    assert_eq!(inbound_calls(w).len(), before, "no call for a refused one");
}

fn main() -> std::process::ExitCode {
    run_suite(
        "inbound",
        || {
            require_sidecar_bin()?;
            let opts = EdgeOptions::fresh("inbound").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("inbound");
            edge.admin(
                "PATCH",
                &format!("/admin/tenants/{}/agents/{}", tenant.id, tenant.agent_id),
                Some(&json!({"default_engine": "echo"})),
            )
            .expect(200);
            edge.admin(
                "PUT",
                &format!("/admin/tenants/{}/numbers/{NUMBER}", tenant.id),
                Some(&json!({"status": "active", "route": {"kind": "agent", "agent_id": tenant.agent_id}})),
            )
            .expect(201);
            let mut hooks = WebhookReceiver::new(&dir);
            hooks.start();
            hooks.subscribe(
                &edge,
                &tenant.id,
                "inbound",
                json!({"retry_schedule": [1, 2]}),
            );
            let (sip_port, trunk_port) = (free_tcp_udp_port(), free_tcp_udp_port());
            let sidecar = start_sip_sidecar(
                &edge,
                &dir,
                "sc-inbound",
                trunk_port,
                // Phones register with it too (`[registrar]`, short expiries).
                &format!(
                    "sip_port = {sip_port}\n\n[registrar]\nenabled = true\nmin_expires_seconds = 10\ndefault_expires_seconds = 20\n"
                ),
            )?;
            // Calls are taken only once the sidecar is registered with the edge.
            wait_sidecar_registered(&dir.join("sidecar-sc-inbound.log"), Duration::from_secs(30))?;
            Ok(World {
                edge,
                tenant,
                dir,
                hooks,
                sip_port,
                trunk_port,
                _sidecar: sidecar,
            })
        },
        &[
            (
                "a_call_to_the_tenants_number_is_answered_by_its_agent",
                a_call_to_the_tenants_number_is_answered_by_its_agent,
            ),
            (
                "a_number_nobody_holds_is_refused_404",
                a_number_nobody_holds_is_refused_404,
            ),
            (
                "a_persons_phone_registers_and_makes_them_available",
                a_persons_phone_registers_and_makes_them_available,
            ),
            (
                "a_call_to_a_persons_number_rings_their_phone_and_bridges",
                a_call_to_a_persons_number_rings_their_phone_and_bridges,
            ),
            (
                "a_queue_skips_the_busy_member_bridges_the_free_one_then_overflows_to_the_agent",
                a_queue_skips_the_busy_member_bridges_the_free_one_then_overflows_to_the_agent,
            ),
            (
                "a_click_to_call_from_an_extension_rings_the_phone_then_bridges_the_callee",
                a_click_to_call_from_an_extension_rings_the_phone_then_bridges_the_callee,
            ),
            (
                "an_api_transfer_hands_the_callee_from_the_agent_to_a_persons_phone",
                an_api_transfer_hands_the_callee_from_the_agent_to_a_persons_phone,
            ),
            (
                "a_persons_bridged_call_is_transcribed_after_it_ends",
                a_persons_bridged_call_is_transcribed_after_it_ends,
            ),
            (
                "an_api_transfer_puts_the_callee_in_a_queue_where_a_member_answers",
                an_api_transfer_puts_the_callee_in_a_queue_where_a_member_answers,
            ),
        ],
    )
}
