//! What a failure prints: the seed, the time, and every node's state; and
//! short descriptions of frames and events for the trace.

use simple_raft::core::Event;

use super::cluster::Sim;
use super::network::decode;
use super::trace::hash_of;

impl Sim {
    /// One line per slot: what it is doing.
    pub fn status(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&format!(
                "  n{i} {} inc {} {:?}",
                n.addr, n.incarnation, n.status
            ));
            if n.paused {
                out.push_str(" paused");
            }
            if let Some(c) = &n.core {
                let members: Vec<String> = c
                    .members()
                    .iter()
                    .map(|m| format!("{}{}@{}", m.id, if m.voter { "" } else { "(nv)" }, m.addr))
                    .collect();
                out.push_str(&format!(
                    " {} term {} id {:?} leader {:?} commit {} last {:?} base {:?} member {} members [{}]",
                    c.role(),
                    c.term(),
                    c.id(),
                    c.leader(),
                    c.commit(),
                    c.last_log_id(),
                    c.log_base(),
                    c.is_member(),
                    members.join(", ")
                ));
            }
            out.push('\n');
        }
        out
    }

    /// Stops the run with a message naming the seed, the time, the node
    /// and the state of every node.
    pub fn fail(&self, node: usize, what: String) -> ! {
        let at = if node == usize::MAX {
            String::new()
        } else {
            format!(" at n{node}")
        };
        panic!(
            "{}: {what}{at} (t={} ms, step {})\n{}",
            self.context,
            self.now,
            self.steps,
            self.status()
        );
    }
}

/// A short description of a frame, for the replay trace.
pub fn describe(bytes: &[u8]) -> String {
    match decode(bytes) {
        Some(f) => format!("{} term {} {:?}", f.sender, f.term, f.message),
        None => format!("<{} bytes, undecodable>", bytes.len()),
    }
}

/// A hash of an event, for the trace.
pub fn event_hash(event: &Event) -> u64 {
    match event {
        Event::RoleChanged { role, term } => hash_of(&(1u8, *role as u8, term)),
        Event::LeaderChanged { leader } => hash_of(&(2u8, leader)),
        Event::Joined { id } => hash_of(&(3u8, id)),
        Event::Applied {
            version,
            term,
            change,
        } => hash_of(&(4u8, version, term, change)),
        Event::SnapshotInstalled { last } => hash_of(&(5u8, last)),
        Event::FetchSnapshot { from } => hash_of(&(6u8, from)),
        Event::Done { request, result } => hash_of(&(7u8, request, format!("{result:?}"))),
        Event::Left => hash_of(&8u8),
    }
}
