//! The calls waiting in a region's queue, indexed so that what one request
//! does costs O(log n) plus the calls it touches, never a scan of every call
//! queued: a region with 10,000 scheduled calls answers as fast as an empty
//! one (see docs/bench.md). Pure data structure; `dispatch` decides.

use crate::dispatch::queued_call::QueuedCall;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// In line order: calls put back at the front (an expired lease, a rejected
/// offer) come before the rest. Serialised as the plain list, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<QueuedCall>", into = "Vec<QueuedCall>")]
pub struct WaitingLine {
    /// Position -> call. Positions only grow at the back and shrink at the front.
    calls: BTreeMap<i64, QueuedCall>,
    by_id: BTreeMap<String, i64>,
    /// (ready at, position): due calls in the order `lease` hands them out.
    by_ready: BTreeSet<(u64, i64)>,
    /// (tenant, agent, phone) -> call id: one conversation at a time.
    by_conversation: BTreeMap<(String, String, String), String>,
    by_tenant: BTreeMap<String, BTreeSet<i64>>,
    front: i64,
    back: i64,
}

fn conversation(c: &QueuedCall) -> Option<(String, String, String)> {
    (!c.phone.is_empty()).then(|| (c.tenant_id.clone(), c.agent_id.clone(), c.phone.clone()))
}

impl WaitingLine {
    fn insert_at(&mut self, pos: i64, call: QueuedCall) {
        if self.by_id.contains_key(&call.call_id) {
            self.remove(&call.call_id.clone());
        }
        self.by_id.insert(call.call_id.clone(), pos);
        self.by_ready.insert((call.ready_at_ms, pos));
        if let Some(key) = conversation(&call) {
            self.by_conversation.insert(key, call.call_id.clone());
        }
        self.by_tenant
            .entry(call.tenant_id.clone())
            .or_default()
            .insert(pos);
        self.calls.insert(pos, call);
    }

    pub fn push_back(&mut self, call: QueuedCall) {
        let pos = self.back;
        self.back += 1;
        if self.calls.is_empty() {
            self.front = pos;
        }
        self.insert_at(pos, call);
    }

    /// Ahead of every call waiting now (it was due before them).
    pub fn push_front(&mut self, call: QueuedCall) {
        let pos = if self.calls.is_empty() {
            self.back += 1;
            self.back - 1
        } else {
            self.front - 1
        };
        self.front = pos;
        self.insert_at(pos, call);
    }

    pub fn remove(&mut self, call_id: &str) -> Option<QueuedCall> {
        let pos = self.by_id.remove(call_id)?;
        let call = self.calls.remove(&pos)?;
        self.by_ready.remove(&(call.ready_at_ms, pos));
        if let Some(key) = conversation(&call) {
            if self
                .by_conversation
                .get(&key)
                .is_some_and(|id| id == call_id)
            {
                self.by_conversation.remove(&key);
            }
        }
        if let Some(set) = self.by_tenant.get_mut(&call.tenant_id) {
            set.remove(&pos);
            if set.is_empty() {
                self.by_tenant.remove(&call.tenant_id);
            }
        }
        Some(call)
    }

    pub fn get(&self, call_id: &str) -> Option<&QueuedCall> {
        self.by_id.get(call_id).and_then(|pos| self.calls.get(pos))
    }

    pub fn contains(&self, call_id: &str) -> bool {
        self.by_id.contains_key(call_id)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// In line order.
    pub fn iter(&self) -> impl Iterator<Item = &QueuedCall> {
        self.calls.values()
    }

    /// The waiting call of this conversation, if any.
    pub fn conversation(&self, tenant_id: &str, agent_id: &str, phone: &str) -> Option<&str> {
        if phone.is_empty() {
            return None;
        }
        self.by_conversation
            .get(&(
                tenant_id.to_string(),
                agent_id.to_string(),
                phone.to_string(),
            ))
            .map(String::as_str)
    }

    /// Calls ready by `now`, oldest ready first (ties: line order).
    pub fn due(&self, now: u64) -> impl Iterator<Item = &QueuedCall> {
        self.by_ready
            .range(..(now.saturating_add(1), i64::MIN))
            .filter_map(|(_, pos)| self.calls.get(pos))
    }

    /// Calls that become ready in `(after, upto]`.
    pub fn ready_between(&self, after: u64, upto: u64) -> impl Iterator<Item = &QueuedCall> {
        let from = (after.saturating_add(1), i64::MIN);
        let to = (upto.saturating_add(1), i64::MIN);
        let range = if from < to {
            Some(self.by_ready.range(from..to))
        } else {
            None
        };
        range
            .into_iter()
            .flatten()
            .filter_map(|(_, pos)| self.calls.get(pos))
    }

    /// The earliest ready time after `now`.
    pub fn next_ready_after(&self, now: u64) -> Option<u64> {
        self.by_ready
            .range((now.saturating_add(1), i64::MIN)..)
            .next()
            .map(|(at, _)| *at)
    }

    /// The tenant's waiting calls, in line order.
    pub fn of_tenant<'a>(&'a self, tenant_id: &str) -> impl Iterator<Item = &'a QueuedCall> + 'a {
        self.by_tenant
            .get(tenant_id)
            .into_iter()
            .flatten()
            .filter_map(|pos| self.calls.get(pos))
    }

    /// Gives the tenant's waiting calls this cap; returns the ids changed.
    /// Cheap when nothing changes: the calls of a tenant carry one cap.
    pub fn set_tenant_cap(&mut self, tenant_id: &str, cap: Option<u32>) -> Vec<String> {
        let Some(positions) = self.by_tenant.get(tenant_id) else {
            return Vec::new();
        };
        let first = positions.iter().next().and_then(|p| self.calls.get(p));
        if first.is_none_or(|c| c.max_concurrent == cap) {
            return Vec::new();
        }
        let mut changed = Vec::new();
        for pos in positions.clone() {
            if let Some(c) = self.calls.get_mut(&pos).filter(|c| c.max_concurrent != cap) {
                c.max_concurrent = cap;
                changed.push(c.call_id.clone());
            }
        }
        changed
    }
}

impl From<Vec<QueuedCall>> for WaitingLine {
    fn from(calls: Vec<QueuedCall>) -> Self {
        let mut line = WaitingLine::default();
        for c in calls {
            line.push_back(c);
        }
        line
    }
}

impl From<WaitingLine> for Vec<QueuedCall> {
    fn from(line: WaitingLine) -> Self {
        line.calls.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, tenant: &str, ready: u64) -> QueuedCall {
        QueuedCall {
            call_id: id.into(),
            tenant_id: tenant.into(),
            agent_id: "agt_1".into(),
            phone: format!("+1{id}"),
            ready_at_ms: ready,
            ..QueuedCall::default()
        }
    }

    fn ids<'a>(it: impl Iterator<Item = &'a QueuedCall>) -> Vec<&'a str> {
        it.map(|c| c.call_id.as_str()).collect()
    }

    #[test]
    fn keeps_line_order_and_every_index_in_step() {
        let mut w = WaitingLine::default();
        w.push_back(call("a", "t1", 10));
        w.push_back(call("b", "t2", 5));
        w.push_back(call("c", "t1", 10));
        w.push_front(call("z", "t1", 10));
        assert_eq!(ids(w.iter()), ["z", "a", "b", "c"]);
        assert_eq!(
            ids(w.due(10)),
            ["b", "z", "a", "c"],
            "oldest ready first, ties in line order"
        );
        assert_eq!(ids(w.due(9)), ["b"]);
        assert_eq!(ids(w.ready_between(5, 10)), ["z", "a", "c"]);
        assert_eq!(ids(w.ready_between(10, 10)), Vec::<&str>::new());
        assert_eq!(w.next_ready_after(5), Some(10));
        assert_eq!(w.conversation("t1", "agt_1", "+1a"), Some("a"));
        assert_eq!(ids(w.of_tenant("t1")), ["z", "a", "c"]);
        assert_eq!(w.remove("a").map(|c| c.call_id), Some("a".into()));
        assert!(w.remove("a").is_none());
        assert_eq!(
            (
                w.conversation("t1", "agt_1", "+1a"),
                w.contains("a"),
                w.len()
            ),
            (None, false, 3)
        );
        assert_eq!(w.set_tenant_cap("t1", Some(2)), ["z", "c"]);
        assert!(
            w.set_tenant_cap("t1", Some(2)).is_empty(),
            "nothing to change"
        );
        // Serialised as the list, and back.
        let text = serde_json::to_string(&w).unwrap();
        let back: WaitingLine = serde_json::from_str(&text).unwrap();
        assert_eq!(ids(back.iter()), ["z", "b", "c"]);
        // Emptied, then used again.
        for id in ["z", "b", "c"] {
            w.remove(id);
        }
        w.push_front(call("f", "t1", 1));
        w.push_back(call("g", "t1", 1));
        assert_eq!(ids(w.iter()), ["f", "g"]);
    }
}
