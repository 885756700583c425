//! Linearizable reads through a read index confirmed by a quorum (Raft
//! thesis §6.4), served by the leader for itself and for followers.

use std::net::SocketAddr;

use super::{
    Core, ForwardedRead, Millis, PendingRead, ReadOrigin, RequestError, RequestId, RoleState,
};
use crate::wire::{Message, NodeId, ReadIndexRequest, ReadIndexResponse};

impl Core {
    pub(super) fn read_linearizable(&mut self, now: Millis, request: RequestId) {
        if self.id.is_none() || self.left {
            return self.done(request, Err(RequestError::NotMember));
        }
        if let RoleState::Leader(_) = self.role {
            return self.leader_read(now, ReadOrigin::Local(request));
        }
        let (Some(leader), Some((asked, _))) = (self.leader(), self.leader) else {
            return self.done(request, Err(RequestError::NotLeader { leader: None }));
        };
        if self.forwarded_reads.len() >= self.cfg.pending_requests_max {
            return self.done(
                request,
                Err(RequestError::Busy {
                    limit: "pending_requests_max",
                }),
            );
        }
        let request_id = self.next_forward_id;
        self.next_forward_id = self.next_forward_id.wrapping_add(1);
        self.forwarded_reads.insert(
            request_id,
            ForwardedRead {
                request,
                index: None,
                deadline: now + 2 * self.cfg.election_timeout_ms,
                resend_at: now + self.read_resend_ms(),
                asked,
            },
        );
        self.send(
            leader,
            Message::ReadIndexRequest(ReadIndexRequest { request_id }),
        );
    }

    fn leader_read(&mut self, now: Millis, origin: ReadOrigin) {
        let pending_max = self.cfg.pending_requests_max;
        let RoleState::Leader(leader) = &mut self.role else {
            return self.fail_read(origin);
        };
        if leader.reads.len() >= pending_max {
            return match origin {
                ReadOrigin::Local(request) => self.done(
                    request,
                    Err(RequestError::Busy {
                        limit: "pending_requests_max",
                    }),
                ),
                ReadOrigin::Remote(..) => self.fail_read(origin),
            };
        }
        leader.reads.push(PendingRead {
            origin,
            index: 0,
            seq: None,
        });
        self.advance_reads(now);
    }

    /// Starts a quorum round for reads that wait for one, and completes the
    /// reads whose round a quorum has acknowledged.
    pub(super) fn advance_reads(&mut self, now: Millis) {
        let commit = self.commit;
        let RoleState::Leader(leader) = &self.role else {
            return;
        };
        if leader.reads.is_empty() {
            return;
        }
        // The read index is only meaningful once this leader has committed
        // in its term: before that its commit may lag the cluster's.
        let waiting = leader.reads.iter().any(|r| r.seq.is_none());
        if waiting && commit >= leader.term_start {
            self.broadcast(now);
            if let RoleState::Leader(leader) = &mut self.role {
                let seq = leader.seq;
                for read in leader.reads.iter_mut().filter(|r| r.seq.is_none()) {
                    read.seq = Some(seq);
                    read.index = commit;
                }
            }
        }
        let me = self.id;
        let quorum = self.quorum();
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let confirmed = |seq: u64| {
            super::voters_answering(&self.config, me, &leader.progress, |p| p.acked_seq >= seq)
                >= quorum
        };
        let (done, waiting): (Vec<PendingRead>, Vec<PendingRead>) = leader
            .reads
            .drain(..)
            .partition(|r| r.seq.is_some_and(confirmed));
        leader.reads = waiting;
        for read in done {
            match read.origin {
                ReadOrigin::Local(request) => self.done(request, Ok(read.index)),
                ReadOrigin::Remote(addr, request_id) => self.send(
                    addr,
                    Message::ReadIndexResponse(ReadIndexResponse {
                        request_id,
                        index: Some(read.index),
                    }),
                ),
            }
        }
    }

    pub(super) fn fail_read(&mut self, origin: ReadOrigin) {
        match origin {
            ReadOrigin::Local(request) => {
                let error = self.not_leader();
                self.done(request, Err(error));
            }
            ReadOrigin::Remote(addr, request_id) => self.send(
                addr,
                Message::ReadIndexResponse(ReadIndexResponse {
                    request_id,
                    index: None,
                }),
            ),
        }
    }

    /// How long a follower waits for a read index before asking again: a
    /// round trip takes far less than two heartbeats on a LAN.
    fn read_resend_ms(&self) -> Millis {
        2 * self.cfg.heartbeat_ms
    }

    pub(super) fn on_read_index_request(
        &mut self,
        now: Millis,
        from: SocketAddr,
        request: ReadIndexRequest,
    ) {
        self.leader_read(now, ReadOrigin::Remote(from, request.request_id));
    }

    /// An answer counts only from the leader the read was asked of, for a
    /// read of this process: matched by (responder, request id), with ids
    /// that start at random in every process (see `Core::blank`).
    pub(super) fn on_read_index_response(
        &mut self,
        _now: Millis,
        sender: NodeId,
        response: ReadIndexResponse,
    ) {
        let Some(read) = self.forwarded_reads.get_mut(&response.request_id) else {
            return;
        };
        if read.asked != sender {
            self.metrics.dropped_unexpected += 1;
            return;
        }
        match response.index {
            Some(index) => {
                read.index = Some(index);
                self.complete_forwarded_reads();
            }
            None => {
                let request = read.request;
                self.forwarded_reads.remove(&response.request_id);
                let error = self.not_leader();
                self.done(request, Err(error));
            }
        }
    }

    /// Forwarded reads whose confirmed index this node has applied.
    pub(super) fn complete_forwarded_reads(&mut self) {
        let commit = self.commit;
        let ready: Vec<u64> = self
            .forwarded_reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= commit))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(read) = self.forwarded_reads.remove(&id) {
                self.done(read.request, Ok(read.index.unwrap_or(commit)));
            }
        }
    }

    /// Deadlines of forwarded reads and of leaving; resends a leave.
    pub(super) fn expire_requests(&mut self, now: Millis) {
        let expired: Vec<u64> = self
            .forwarded_reads
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(read) = self.forwarded_reads.remove(&id) {
                self.done(read.request, Err(RequestError::Timeout));
            }
        }
        // A request or its answer lost on the way: ask again (any answer
        // comes after the read began, so any is good).
        let resend_ms = self.read_resend_ms();
        let asked = self.leader.map(|(id, _)| id);
        let again: Vec<u64> = self
            .forwarded_reads
            .iter_mut()
            .filter(|(_, r)| r.index.is_none() && now >= r.resend_at)
            .map(|(id, r)| {
                r.resend_at = now + resend_ms;
                if let Some(asked) = asked {
                    r.asked = asked;
                }
                *id
            })
            .collect();
        if let Some(leader) = self.leader().filter(|l| *l != self.cfg.addr) {
            for request_id in again {
                self.send(
                    leader,
                    Message::ReadIndexRequest(ReadIndexRequest { request_id }),
                );
            }
        }
        if let Some((request, deadline)) = self.leave {
            if now >= deadline {
                self.leave = None;
                self.done(request, Err(RequestError::Timeout));
            } else if !matches!(self.role, RoleState::Leader(_))
                && now >= self.leave_sent_at + 2 * self.cfg.heartbeat_ms
            {
                self.send_leave(now);
            }
        }
    }
}
