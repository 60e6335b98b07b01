use super::memory::MemoryDirectory;
use super::*;

fn person(ext: &str) -> UserFields {
    UserFields {
        kind: UserKind::Person,
        agent_id: None,
        extension: ext.into(),
        first_name: "John".into(),
        last_name: "Smith".into(),
        caller_id: "John Smith".into(),
        email: Some("john@example.com".into()),
        voicemail_enabled: true,
        forward_enabled: false,
        forward_number: None,
        time_zone: "America/New_York".into(),
    }
}

fn queue_fields(ext: &str, members: Vec<u64>) -> QueueFields {
    QueueFields {
        name: "Sales Queue".into(),
        extension: ext.into(),
        strategy: "ringall".into(),
        musiconhold: "default".into(),
        timeout: 20,
        retry: 5,
        wrapuptime: 10,
        maxlen: 0,
        joinempty: true,
        leavewhenempty: false,
        ringinuse: false,
        members,
        max_wait_seconds: crate::directory::DEFAULT_MAX_WAIT_SECONDS,
        announce_every_seconds: 0,
        overflow: Default::default(),
    }
}

#[test]
fn a_queues_round_robin_turns_are_kept_per_queue_and_go_with_it() {
    let d = MemoryDirectory::default();
    block(async {
        let q = ops::save_queue(&d, "t1", None, queue_fields("8001", vec![]))
            .await
            .unwrap()
            .unwrap();
        let mut turns = Vec::new();
        for pk in [q.pk, q.pk, q.pk + 1, q.pk] {
            turns.push(ops::queue_turn(&d, "t1", pk).await.unwrap());
        }
        assert_eq!(turns, [1, 2, 1, 3], "one counter per queue");
        assert_eq!(
            ops::queue_turn(&d, "t2", q.pk).await.unwrap(),
            1,
            "per tenant"
        );
        assert!(
            ops::remove(&d, "t1", DirectoryRequest::DeleteQueue { pk: q.pk })
                .await
                .unwrap()
        );
        assert_eq!(
            ops::queue_turn(&d, "t1", q.pk).await.unwrap(),
            1,
            "gone with it"
        );
    });
}

#[test]
fn queues_stored_before_their_wait_and_overflow_read_the_defaults() {
    let stored = serde_json::json!({"pk": 3, "name": "Old", "extension": "8003", "strategy": "ringall",
        "musiconhold": "default", "timeout": 20, "retry": 5, "wrapuptime": 0, "maxlen": 0,
        "joinempty": true, "leavewhenempty": false, "ringinuse": false, "members": [1],
        "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"});
    let q: crate::directory::DirectoryQueue = serde_json::from_value(stored).unwrap();
    assert_eq!(
        (
            q.fields.max_wait_seconds,
            q.fields.announce_every_seconds,
            q.fields.overflow
        ),
        (300, 0, crate::directory::QueueOverflowRule::Hangup)
    );
    let agent = crate::directory::QueueOverflowRule::Agent {
        agent_id: "agt_0123456789".into(),
    };
    assert_eq!(
        serde_json::to_value(&agent).unwrap(),
        serde_json::json!({"kind": "agent", "agent_id": "agt_0123456789"})
    );
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

#[test]
fn pks_are_allocated_once_and_extensions_are_unique_across_users_and_queues() {
    let d = MemoryDirectory::default();
    block(async {
        let a = ops::save_user(&d, "t1", None, person("1001"))
            .await
            .unwrap()
            .unwrap();
        let b = ops::save_user(&d, "t1", None, person("1002"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.pk, b.pk), (1, 2));
        assert_ne!(a.sip_endpoint_id, b.sip_endpoint_id);
        // Another user, or a queue, may not take 1001.
        let taken = ops::save_user(&d, "t1", None, person("1001"))
            .await
            .unwrap();
        assert_eq!(
            taken,
            Err(DirectoryRefusal::ExtensionTaken {
                extension: "1001".into()
            })
        );
        let q = ops::save_queue(&d, "t1", None, queue_fields("1001", vec![]))
            .await
            .unwrap();
        assert!(matches!(q, Err(DirectoryRefusal::ExtensionTaken { .. })));
        // A user keeps its own extension on update, and frees it on a change.
        let mut f = person("1001");
        f.first_name = "Jane".into();
        let a2 = ops::save_user(&d, "t1", Some(a.pk), f)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a2.pk, a2.created_at.as_str()),
            (a.pk, a.created_at.as_str())
        );
        ops::save_user(&d, "t1", Some(a.pk), person("1009"))
            .await
            .unwrap()
            .unwrap();
        ops::save_queue(&d, "t1", None, queue_fields("1001", vec![a.pk]))
            .await
            .unwrap()
            .unwrap();
        // Tenants are apart: t2 has its own plan and counters.
        let other = ops::save_user(&d, "t2", None, person("1002"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(other.pk, 1);
        let missing = ops::save_user(&d, "t1", Some(99), person("1003"))
            .await
            .unwrap();
        assert_eq!(missing, Err(DirectoryRefusal::UserNotFound));
    });
}

#[test]
fn a_deleted_user_leaves_its_queues_and_its_keys_end() {
    let d = MemoryDirectory::default();
    block(async {
        let a = ops::save_user(&d, "t", None, person("1001"))
            .await
            .unwrap()
            .unwrap();
        let refused = ops::save_queue(&d, "t", None, queue_fields("8001", vec![a.pk, 7]))
            .await
            .unwrap();
        assert_eq!(refused, Err(DirectoryRefusal::UnknownMember { user_pk: 7 }));
        let q = ops::save_queue(&d, "t", None, queue_fields("8001", vec![a.pk]))
            .await
            .unwrap()
            .unwrap();
        let key = V360Key {
            id: "v360k_1".into(),
            hash: "h1".into(),
            kind: V360KeyKind::User,
            user_pk: Some(a.pk),
            name: None,
            created_at: "now".into(),
        };
        ops::add_key(&d, "t", key.clone()).await.unwrap().unwrap();
        assert_eq!(ops::find_key(&d, "t", "h1").await.unwrap(), Some(key));
        assert_eq!(ops::find_key(&d, "other", "h1").await.unwrap(), None);
        assert!(
            ops::remove(&d, "t", DirectoryRequest::DeleteUser { pk: a.pk })
                .await
                .unwrap()
        );
        assert!(
            !ops::remove(&d, "t", DirectoryRequest::DeleteUser { pk: a.pk })
                .await
                .unwrap()
        );
        assert_eq!(ops::find_key(&d, "t", "h1").await.unwrap(), None);
        let queues = ops::queues(&d, "t").await.unwrap();
        assert_eq!(queues[0].pk, q.pk);
        assert!(queues[0].fields.members.is_empty());
        // Its extension is free again.
        ops::save_user(&d, "t", None, person("1001"))
            .await
            .unwrap()
            .unwrap();
    });
}

#[test]
fn claims_have_one_holder_across_tenants() {
    let d = MemoryDirectory::default();
    block(async {
        let n = claim_kinds::NUMBER;
        assert!(ops::claim(&d, n, "+14155550100", "acme").await.unwrap());
        assert!(
            ops::claim(&d, n, "+14155550100", "acme").await.unwrap(),
            "idempotent"
        );
        assert!(!ops::claim(&d, n, "+14155550100", "globex").await.unwrap());
        assert!(!ops::release(&d, n, "+14155550100", "globex").await.unwrap());
        assert!(ops::release(&d, n, "+14155550100", "acme").await.unwrap());
        assert!(ops::claim(&d, n, "+14155550100", "globex").await.unwrap());
        // Kinds are separate namespaces.
        assert!(
            ops::claim(&d, claim_kinds::VOICE360_ACCOUNT, "+14155550100", "acme")
                .await
                .unwrap()
        );
        assert_eq!(ops::next_pk(&d, "acme", "number").await.unwrap(), 1);
        assert_eq!(ops::next_pk(&d, "acme", "number").await.unwrap(), 2);
        // A key's pk is allocated once, from the same counter.
        let a = ops::pk_for(&d, "acme", "number", "+14155550100")
            .await
            .unwrap();
        assert_eq!(a, 3);
        assert_eq!(
            ops::pk_for(&d, "acme", "number", "+14155550100")
                .await
                .unwrap(),
            a
        );
        assert_eq!(
            ops::pk_for(&d, "acme", "number", "+14155550101")
                .await
                .unwrap(),
            4
        );
    });
}
