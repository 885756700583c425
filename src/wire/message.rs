//! The messages of the protocol and their payload bodies.
//!
//! A frame's kind byte says which payload follows, so payloads are plain
//! postcard structs without an enum tag of their own. Kind numbers are
//! append-only: a number, once given, keeps its meaning forever, and a new
//! message gets the next free number.

use serde::{Deserialize, Deserializer, Serialize};

/// A member's id, given by the leader when the member joins. Ids are never
/// reused, so a restarted node (a new incarnation) gets a new one and can
/// never be mistaken for the voter it was before. `0` is "not a member yet".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The sender id of a node that has not joined a cluster.
    pub const UNASSIGNED: NodeId = NodeId(0);
}

impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// The position of a change: the election number (term) it was made in and
/// its version (index in the change log). `(0, 0)` is the empty log.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct LogId {
    /// Term of the leader that made the change.
    pub term: u64,
    /// Version (log index) of the change; the first change is version 1.
    pub version: u64,
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Its id, never reused.
    pub id: NodeId,
    /// Its address (`ip:port`), for UDP and TCP alike.
    pub addr: String,
    /// Whether it votes and counts towards quorums. Joining nodes start as
    /// non-voters and are promoted once they have caught up.
    pub voter: bool,
    /// Which start of the process at `addr` this member is; a restart
    /// without a data directory is a new incarnation and a new member.
    pub incarnation: u64,
}

/// One change to the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// Changes nothing; a new leader appends one to commit its term.
    Noop,
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Removes `key` (absent keys are fine).
    Remove {
        /// The key.
        key: String,
    },
    /// Replaces the whole map, carried as the difference to the map it
    /// applies to: what to set and what to remove.
    Replace {
        /// Keys to set, with their values.
        #[serde(deserialize_with = "de_vec")]
        set: Vec<(String, String)>,
        /// Keys to remove.
        #[serde(deserialize_with = "de_vec")]
        remove: Vec<String>,
    },
    /// Adds a member (as a non-voter unless `voter` is set).
    AddMember(Member),
    /// Makes a non-voter a voter.
    PromoteMember(NodeId),
    /// Removes a member.
    RemoveMember(NodeId),
    /// Replaces member `old` by `new` (a non-voter) in one change: the
    /// process at an address restarted without its data, so the old
    /// incarnation is gone for good. One change keeps the address listed
    /// throughout, so the cluster never stops sending to it; for quorums it
    /// is the removal of one voter (a non-voter counts in none).
    ReplaceMember {
        /// The member that is gone.
        old: NodeId,
        /// The new incarnation at its address.
        new: Member,
    },
    /// Opens client session `id` (or, if it is open, marks it used).
    /// Applying it when `sessions_max` sessions are open first closes the
    /// one used least recently. The bound travels in the change, not in
    /// each node's settings, so every node closes the same session.
    OpenSession {
        /// The session's id, chosen at random by its client: unique without
        /// coordination, and never the id of a session of an earlier
        /// cluster generation.
        id: u64,
        /// How many sessions may be open once this one is.
        sessions_max: u32,
    },
    /// A write made in a client session: applied at most once however
    /// often the client sends it (see [`WriteTag`]).
    SessionWrite {
        /// Which request of which session it is.
        tag: WriteTag,
        /// What it writes.
        write: Write,
    },
}

/// Which request of which client session a write is, so that a retry is
/// applied at most once (the client sessions of the Raft dissertation,
/// §6.3). A client opens a session with [`Change::OpenSession`] (writes
/// of a session that is not open apply as nothing), numbers its writes
/// 1, 2, 3, … and sends a retry with the same tag; every node
/// remembers, per session, the version each recent request was applied at,
/// and applies a request it has seen before as nothing, answering with
/// the first version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WriteTag {
    /// The session's id.
    pub session: u64,
    /// The request's number in the session, from 1.
    pub seq: u64,
    /// Every request of the session numbered below this has had its
    /// answer (or its client gave up on it): the nodes may forget them,
    /// and a copy of one that arrives late is applied as nothing. At most
    /// `seq`.
    pub floor: u64,
}

/// A write to the map, as a session write carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Write {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Removes `key` (absent keys are fine).
    Remove {
        /// The key.
        key: String,
    },
    /// Replaces the whole map, as the difference to the map it applies to.
    Replace {
        /// Keys to set, with their values.
        #[serde(deserialize_with = "de_vec")]
        set: Vec<(String, String)>,
        /// Keys to remove.
        #[serde(deserialize_with = "de_vec")]
        remove: Vec<String>,
    },
}

impl Change {
    /// The write this change makes to the map, tagged or not (`None` for
    /// no-ops, membership changes and session opens).
    pub fn write(&self) -> Option<WriteRef<'_>> {
        Some(match self {
            Change::Set { key, value }
            | Change::SessionWrite {
                write: Write::Set { key, value },
                ..
            } => WriteRef::Set { key, value },
            Change::Remove { key }
            | Change::SessionWrite {
                write: Write::Remove { key },
                ..
            } => WriteRef::Remove { key },
            Change::Replace { set, remove }
            | Change::SessionWrite {
                write: Write::Replace { set, remove },
                ..
            } => WriteRef::Replace { set, remove },
            Change::Noop
            | Change::AddMember(_)
            | Change::PromoteMember(_)
            | Change::RemoveMember(_)
            | Change::ReplaceMember { .. }
            | Change::OpenSession { .. } => return None,
        })
    }

    /// Whether it changes the members.
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            Change::AddMember(_)
                | Change::PromoteMember(_)
                | Change::RemoveMember(_)
                | Change::ReplaceMember { .. }
        )
    }
}

/// A borrowed view of a write to the map, whichever change carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRef<'a> {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: &'a str,
        /// Its new value.
        value: &'a str,
    },
    /// Removes `key`.
    Remove {
        /// The key.
        key: &'a str,
    },
    /// Sets the pairs of `set`, removes the keys of `remove`.
    Replace {
        /// Pairs to set.
        set: &'a [(String, String)],
        /// Keys to remove.
        remove: &'a [String],
    },
}

/// A numbered change: the term it was made in and what it does. Its version
/// follows from its place in an [`Append`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Term of the leader that made it.
    pub term: u64,
    /// What it changes.
    pub change: Change,
}

/// Leader to follower, every heartbeat interval. The frame's term is the
/// leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The leader's last change.
    pub last: LogId,
    /// The highest committed version.
    pub commit: u64,
    /// Heartbeat round, echoed in the ack (check-quorum and read index).
    pub seq: u64,
}

/// Follower to leader, in answer to a [`Heartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The round this answers.
    pub seq: u64,
    /// Whether the follower's log holds the leader's last change.
    pub matched: bool,
    /// The follower's last version: its match when `matched`, otherwise a
    /// hint of where the leader should resume.
    pub version: u64,
}

/// "Would you vote for me?" The frame's term is the term the sender would
/// stand in; nobody changes term on a pre-vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The sender's last change, for the up-to-date check.
    pub last: LogId,
}

/// Answer to a [`PreVoteRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PreVoteResponse {
    /// Whether the pre-vote is granted.
    pub granted: bool,
}

/// A candidate asks for a vote in the frame's term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct VoteRequest {
    /// The candidate's last change, for the up-to-date check.
    pub last: LogId,
    /// Set when the election follows a leadership transfer, so voters that
    /// still hear the (old) leader do not ignore it.
    pub transfer: bool,
}

/// Answer to a [`VoteRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct VoteResponse {
    /// Whether the vote is granted.
    pub granted: bool,
}

/// Leader to follower: changes that follow `prev`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Append {
    /// The change just before the first of `entries`.
    pub prev: LogId,
    /// The highest committed version.
    pub commit: u64,
    /// Round, echoed in the ack.
    pub seq: u64,
    /// The changes, at versions `prev.version + 1 ..`.
    #[serde(deserialize_with = "de_vec")]
    pub entries: Vec<Entry>,
}

/// An [`Append`] whose entries are borrowed: it encodes to the same bytes
/// (see [`super::encode_payload_signed`]), so that a leader sends entries
/// of its log without copying them.
#[derive(Debug, Clone, Serialize)]
pub struct AppendRef<'a> {
    /// The change just before the first of `entries`.
    pub prev: LogId,
    /// The highest committed version.
    pub commit: u64,
    /// Round, echoed in the ack.
    pub seq: u64,
    /// The changes, at versions `prev.version + 1 ..`.
    pub entries: Vec<&'a Entry>,
}

/// Follower to leader, in answer to an [`Append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct AppendAck {
    /// The round this answers.
    pub seq: u64,
    /// Whether the entries were appended.
    pub success: bool,
    /// On success the follower's last version; otherwise a hint of where
    /// the leader should resume.
    pub version: u64,
}

/// A node asks to join (or, while no cluster exists yet, tells the nodes it
/// knows that it is there). Sent with sender id 0 until it has an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Introduce {
    /// Where the node listens.
    pub addr: String,
    /// Which start of that process this is.
    pub incarnation: u64,
    /// Every address the node knows of (for the bootstrap rule).
    #[serde(deserialize_with = "de_vec")]
    pub seeds: Vec<String>,
}

/// Bytes of a join token (see [`JoinChallenge`]).
pub const JOIN_TOKEN_BYTES: usize = 16;

/// Leader to the address an [`Introduce`] claims, instead of adding it: the
/// node at that address must show it received this token before it becomes
/// a member (it sends a [`JoinProof`]). The token is a keyed hash the
/// leader can check again without keeping anything per joining node, so a
/// flood of introductions with made-up addresses costs it no memory. Small
/// on purpose: a challenge is never larger than the introduction that
/// caused it, so a spoofed introduction is no amplifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct JoinChallenge {
    /// Opaque to the joining node, which repeats it.
    pub token: [u8; JOIN_TOKEN_BYTES],
}

/// An [`Introduce`] with the token of a [`JoinChallenge`] this node
/// received at `addr`: proof that it answers at the address it claims.
/// Every member takes it as an introduction; the leader that gave the
/// token adds the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct JoinProof {
    /// Where the node listens.
    pub addr: String,
    /// Which start of that process this is.
    pub incarnation: u64,
    /// Every address the node knows of (for the bootstrap rule).
    #[serde(deserialize_with = "de_vec")]
    pub seeds: Vec<String>,
    /// The token of the challenge, as received.
    pub token: [u8; JOIN_TOKEN_BYTES],
}

impl JoinProof {
    /// The introduction this proof carries, and its token.
    pub fn into_parts(self) -> (Introduce, [u8; JOIN_TOKEN_BYTES]) {
        let JoinProof {
            addr,
            incarnation,
            seeds,
            token,
        } = self;
        (
            Introduce {
                addr,
                incarnation,
                seeds,
            },
            token,
        )
    }
}

/// Answer to an [`Introduce`] from a node that is not the leader.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Redirect {
    /// The leader's address, when the answering node knows it.
    pub leader: Option<String>,
    /// Whether the answering node belongs to a cluster.
    pub joined: bool,
    /// Every address the answering node knows of.
    #[serde(deserialize_with = "de_vec")]
    pub seeds: Vec<String>,
}

/// A member asks the leader to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Leave;

/// The leader tells the most up-to-date follower to stand for election now
/// (leadership transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TimeoutNow;

/// A follower asks the leader for a read index that a quorum confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ReadIndexRequest {
    /// Chosen by the asker, echoed in the answer.
    pub request_id: u64,
}

/// Answer to a [`ReadIndexRequest`]: the commit version a quorum confirmed
/// while the sender was leader, or `None` if it is not the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ReadIndexResponse {
    /// The request answered.
    pub request_id: u64,
    /// The confirmed read index.
    pub index: Option<u64>,
}

/// Leader to a joining node: it is now a member with this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Welcome {
    /// The new member's id.
    pub id: NodeId,
    /// The incarnation that asked, so a stale welcome is ignored.
    pub incarnation: u64,
}

/// A follower asks for the whole state (over TCP); the answer is the
/// encoded [`Snapshot`] in [`SnapshotChunk`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SnapshotRequest;

/// Fetch a snapshot (over TCP) from the sender: sent by the leader to a
/// follower that is new or further behind than its change tail, and by any
/// member to a removed one, which finds itself gone in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct FetchSnapshot {
    /// The oldest change the leader still holds; the follower needs a
    /// snapshot at least this recent.
    pub base: LogId,
    /// Sent by the leader to a follower behind its log tail (the follower
    /// follows it), rather than by any member to one that was removed.
    pub from_leader: bool,
}

/// A request from a client (the CLI, or a node forwarding a write to the
/// leader), over TCP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ClientRequest {
    /// Chosen by the client, echoed in the response.
    pub request_id: u64,
    /// What to do.
    pub op: ClientOp,
    /// For a write: the session request it is, so that it is applied at
    /// most once however often it is sent (see [`WriteTag`]). A node that
    /// is given a write without one makes it a request of its own session.
    pub tag: Option<WriteTag>,
}

/// What a client asks of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ClientOp {
    /// The node's status.
    #[default]
    Status,
    /// One key (`Some`) or the whole map (`None`); `linearizable` confirms
    /// with a quorum first.
    Get {
        /// The key, or the whole map.
        key: Option<String>,
        /// Read through a quorum-confirmed read index.
        linearizable: bool,
    },
    /// Set a key (forwarded to the leader).
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key (forwarded to the leader).
    Remove {
        /// The key.
        key: String,
    },
    /// Replace the whole map (forwarded to the leader).
    Update {
        /// The new map, sorted by key.
        #[serde(deserialize_with = "de_vec")]
        map: Vec<(String, String)>,
    },
    /// Open client session `id` (forwarded to the leader); answered with
    /// [`ClientReply::Written`] once it is open.
    OpenSession {
        /// The session's id, chosen at random.
        id: u64,
    },
}

/// A node's answer to a [`ClientRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientResponse {
    /// The request answered.
    pub request_id: u64,
    /// The outcome.
    pub reply: ClientReply,
}

/// The outcome of a client request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientReply {
    /// The node's status.
    Status(NodeStatus),
    /// The whole map at `version`.
    Map {
        /// The committed version read.
        version: u64,
        /// The map, sorted by key.
        #[serde(deserialize_with = "de_vec")]
        map: Vec<(String, String)>,
    },
    /// One key at `version`.
    Value {
        /// The committed version read.
        version: u64,
        /// The value, if the key exists.
        value: Option<String>,
    },
    /// A write committed at `version`.
    Written {
        /// Its version.
        version: u64,
    },
    /// The request failed.
    Failed {
        /// Why, as a category the client can act on.
        failure: ClientFailure,
        /// A one-line explanation.
        message: String,
    },
}

/// Why a client request failed, and whether anything changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientFailure {
    /// No leader could be reached in time; nothing changed.
    NoLeader,
    /// No outcome in time; a write may or may not commit.
    Timeout,
    /// Leadership was lost; a write may or may not commit.
    Uncertain,
    /// A limit was reached; nothing changed.
    Busy,
    /// Too large for the limits; nothing changed.
    TooLarge,
    /// The node is not a cluster member; nothing changed.
    NotMember,
    /// The request is invalid; nothing changed.
    Invalid,
    /// The node is stopping; nothing changed.
    Stopping,
    /// The write's session is closed, or its request was forgotten: it may
    /// have been applied before, and nothing of it applies now. Open a new
    /// session for the next write.
    SessionExpired,
}

/// A node's status as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's address.
    pub addr: String,
    /// Its member id, once joined.
    pub id: Option<NodeId>,
    /// `follower`, `voter`, `candidate` or `leader`.
    pub state: String,
    /// Its term.
    pub term: u64,
    /// The leader's address, if known.
    pub leader: Option<String>,
    /// The committed members.
    #[serde(deserialize_with = "de_vec")]
    pub members: Vec<Member>,
    /// The last committed version.
    pub version: u64,
    /// Milliseconds since the last heartbeat from a leader.
    pub since_heartbeat_ms: Option<u64>,
    /// The cluster generation it is a member of (none before it joined).
    pub generation: Option<u64>,
}

/// The whole committed state up to `last` (over TCP).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The cluster generation the state belongs to (0: none, an empty
    /// state). A node installs only a snapshot of its own generation.
    pub generation: u64,
    /// The last change the snapshot includes.
    pub last: LogId,
    /// The members at that point.
    #[serde(deserialize_with = "de_vec")]
    pub members: Vec<Member>,
    /// The next member id the leader will give.
    pub next_member_id: u32,
    /// The map, sorted by key, without duplicates.
    #[serde(deserialize_with = "de_vec")]
    pub map: Vec<(String, String)>,
    /// The open client sessions, by id, without duplicates.
    #[serde(deserialize_with = "de_vec")]
    pub sessions: Vec<SessionRecord>,
}

/// One open client session, as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its id, chosen by its client.
    pub id: u64,
    /// Requests numbered below this are forgotten (see [`WriteTag::floor`]).
    pub floor: u64,
    /// The version of its last write (or of its opening): the least
    /// recent session is the one closed when the table is full.
    pub last_version: u64,
    /// The version each remembered request was applied at, by request
    /// number, sorted, every number at least `floor`.
    #[serde(deserialize_with = "de_vec")]
    pub replies: Vec<(u64, u64)>,
}

/// One piece of an encoded [`Snapshot`] (its postcard payload, as a kind
/// 17 frame would carry it), for a snapshot larger than one stream frame:
/// the answer to a [`SnapshotRequest`] is then a run of these, in order,
/// each in a frame of its own (signed like any other). `total_bytes` and
/// `digest` are the same in every chunk of one snapshot, so a chunk of
/// another snapshot cannot be taken for one of this one, and the whole is
/// checked against the digest once it is complete.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// Bytes of the whole encoded snapshot.
    pub total_bytes: u64,
    /// Where `bytes` starts in it.
    pub offset: u64,
    /// BLAKE3 hash of the whole encoded snapshot.
    pub digest: [u8; 32],
    /// The bytes `offset..offset + bytes.len()` of it.
    #[serde(serialize_with = "ser_bytes", deserialize_with = "de_bytes")]
    pub bytes: Vec<u8>,
}

/// A [`SnapshotChunk`] whose bytes are borrowed: it encodes to the same
/// bytes, so that a node serves its encoded snapshot without copying each
/// chunk out of it first.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SnapshotChunkRef<'a> {
    /// Bytes of the whole encoded snapshot.
    pub total_bytes: u64,
    /// Where `bytes` starts in it.
    pub offset: u64,
    /// BLAKE3 hash of the whole encoded snapshot.
    pub digest: &'a [u8; 32],
    /// The bytes `offset..offset + bytes.len()` of it.
    #[serde(serialize_with = "ser_bytes")]
    pub bytes: &'a [u8],
}

/// Writes a byte string as postcard writes a `Vec<u8>` (a varint length,
/// then the bytes), in one piece rather than byte by byte.
fn ser_bytes<S: serde::Serializer, B: AsRef<[u8]> + ?Sized>(
    bytes: &B,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes.as_ref())
}

/// Reads what [`ser_bytes`] writes, copying the bytes once; their length
/// is what the frame holds, never more.
fn de_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }
    }
    deserializer.deserialize_byte_buf(Bytes)
}

/// Deserializes a `Vec` without trusting the declared length for the
/// initial allocation: postcard reports the length it read as a size hint,
/// and a few bytes can declare billions of elements. Growing with the
/// elements actually decoded keeps memory proportional to the input.
fn de_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct BoundedVec<T>(core::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for BoundedVec<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            const PREALLOCATED_ITEMS_MAX: usize = 64;
            let hint = seq.size_hint().unwrap_or(0);
            let mut out = Vec::with_capacity(hint.min(PREALLOCATED_ITEMS_MAX));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(BoundedVec(core::marker::PhantomData))
}

/// The kind byte of a frame. Append-only: never renumber, never reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// [`Heartbeat`]
    Heartbeat = 1,
    /// [`HeartbeatAck`]
    HeartbeatAck = 2,
    /// [`PreVoteRequest`]
    PreVoteRequest = 3,
    /// [`PreVoteResponse`]
    PreVoteResponse = 4,
    /// [`VoteRequest`]
    VoteRequest = 5,
    /// [`VoteResponse`]
    VoteResponse = 6,
    /// [`Append`]
    Append = 7,
    /// [`AppendAck`]
    AppendAck = 8,
    /// [`Introduce`]
    Introduce = 9,
    /// [`Redirect`]
    Redirect = 10,
    /// [`Leave`]
    Leave = 11,
    /// [`TimeoutNow`]
    TimeoutNow = 12,
    /// [`ReadIndexRequest`]
    ReadIndexRequest = 13,
    /// [`ReadIndexResponse`]
    ReadIndexResponse = 14,
    /// [`Welcome`]
    Welcome = 15,
    /// [`SnapshotRequest`]
    SnapshotRequest = 16,
    /// [`Snapshot`]
    Snapshot = 17,
    /// [`FetchSnapshot`]
    FetchSnapshot = 18,
    /// [`ClientRequest`]
    ClientRequest = 19,
    /// [`ClientResponse`]
    ClientResponse = 20,
    /// [`JoinChallenge`]
    JoinChallenge = 21,
    /// [`JoinProof`]
    JoinProof = 22,
    /// [`SnapshotChunk`]
    SnapshotChunk = 23,
}

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; 23] = [
        Kind::Heartbeat,
        Kind::HeartbeatAck,
        Kind::PreVoteRequest,
        Kind::PreVoteResponse,
        Kind::VoteRequest,
        Kind::VoteResponse,
        Kind::Append,
        Kind::AppendAck,
        Kind::Introduce,
        Kind::Redirect,
        Kind::Leave,
        Kind::TimeoutNow,
        Kind::ReadIndexRequest,
        Kind::ReadIndexResponse,
        Kind::Welcome,
        Kind::SnapshotRequest,
        Kind::Snapshot,
        Kind::FetchSnapshot,
        Kind::ClientRequest,
        Kind::ClientResponse,
        Kind::JoinChallenge,
        Kind::JoinProof,
        Kind::SnapshotChunk,
    ];

    /// The kind with this number, if this build knows it.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(byte).wrapping_sub(1)).copied()
    }

    /// A stable name for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Heartbeat => "heartbeat",
            Kind::HeartbeatAck => "heartbeat_ack",
            Kind::PreVoteRequest => "pre_vote_request",
            Kind::PreVoteResponse => "pre_vote_response",
            Kind::VoteRequest => "vote_request",
            Kind::VoteResponse => "vote_response",
            Kind::Append => "append",
            Kind::AppendAck => "append_ack",
            Kind::Introduce => "introduce",
            Kind::Redirect => "redirect",
            Kind::Leave => "leave",
            Kind::TimeoutNow => "timeout_now",
            Kind::ReadIndexRequest => "read_index_request",
            Kind::ReadIndexResponse => "read_index_response",
            Kind::Welcome => "welcome",
            Kind::SnapshotRequest => "snapshot_request",
            Kind::Snapshot => "snapshot",
            Kind::FetchSnapshot => "fetch_snapshot",
            Kind::ClientRequest => "client_request",
            Kind::ClientResponse => "client_response",
            Kind::JoinChallenge => "join_challenge",
            Kind::JoinProof => "join_proof",
            Kind::SnapshotChunk => "snapshot_chunk",
        }
    }
}

/// Any message, as carried in one frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Message {
    Heartbeat(Heartbeat),
    HeartbeatAck(HeartbeatAck),
    PreVoteRequest(PreVoteRequest),
    PreVoteResponse(PreVoteResponse),
    VoteRequest(VoteRequest),
    VoteResponse(VoteResponse),
    Append(Append),
    AppendAck(AppendAck),
    Introduce(Introduce),
    Redirect(Redirect),
    Leave(Leave),
    TimeoutNow(TimeoutNow),
    ReadIndexRequest(ReadIndexRequest),
    ReadIndexResponse(ReadIndexResponse),
    Welcome(Welcome),
    SnapshotRequest(SnapshotRequest),
    Snapshot(Snapshot),
    FetchSnapshot(FetchSnapshot),
    ClientRequest(ClientRequest),
    ClientResponse(ClientResponse),
    JoinChallenge(JoinChallenge),
    JoinProof(JoinProof),
    SnapshotChunk(SnapshotChunk),
}

/// Runs `$body` with `$p` bound to the payload of any message variant.
macro_rules! with_payload {
    ($msg:expr, $p:ident => $body:expr) => {
        match $msg {
            Message::Heartbeat($p) => $body,
            Message::HeartbeatAck($p) => $body,
            Message::PreVoteRequest($p) => $body,
            Message::PreVoteResponse($p) => $body,
            Message::VoteRequest($p) => $body,
            Message::VoteResponse($p) => $body,
            Message::Append($p) => $body,
            Message::AppendAck($p) => $body,
            Message::Introduce($p) => $body,
            Message::Redirect($p) => $body,
            Message::Leave($p) => $body,
            Message::TimeoutNow($p) => $body,
            Message::ReadIndexRequest($p) => $body,
            Message::ReadIndexResponse($p) => $body,
            Message::Welcome($p) => $body,
            Message::SnapshotRequest($p) => $body,
            Message::Snapshot($p) => $body,
            Message::FetchSnapshot($p) => $body,
            Message::ClientRequest($p) => $body,
            Message::ClientResponse($p) => $body,
            Message::JoinChallenge($p) => $body,
            Message::JoinProof($p) => $body,
            Message::SnapshotChunk($p) => $body,
        }
    };
}
pub(crate) use with_payload;

impl Message {
    /// The kind byte this message is sent with.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Heartbeat(_) => Kind::Heartbeat,
            Message::HeartbeatAck(_) => Kind::HeartbeatAck,
            Message::PreVoteRequest(_) => Kind::PreVoteRequest,
            Message::PreVoteResponse(_) => Kind::PreVoteResponse,
            Message::VoteRequest(_) => Kind::VoteRequest,
            Message::VoteResponse(_) => Kind::VoteResponse,
            Message::Append(_) => Kind::Append,
            Message::AppendAck(_) => Kind::AppendAck,
            Message::Introduce(_) => Kind::Introduce,
            Message::Redirect(_) => Kind::Redirect,
            Message::Leave(_) => Kind::Leave,
            Message::TimeoutNow(_) => Kind::TimeoutNow,
            Message::ReadIndexRequest(_) => Kind::ReadIndexRequest,
            Message::ReadIndexResponse(_) => Kind::ReadIndexResponse,
            Message::Welcome(_) => Kind::Welcome,
            Message::SnapshotRequest(_) => Kind::SnapshotRequest,
            Message::Snapshot(_) => Kind::Snapshot,
            Message::FetchSnapshot(_) => Kind::FetchSnapshot,
            Message::ClientRequest(_) => Kind::ClientRequest,
            Message::ClientResponse(_) => Kind::ClientResponse,
            Message::JoinChallenge(_) => Kind::JoinChallenge,
            Message::JoinProof(_) => Kind::JoinProof,
            Message::SnapshotChunk(_) => Kind::SnapshotChunk,
        }
    }

    /// Size of the postcard payload body in bytes.
    pub fn payload_len(&self) -> usize {
        // Serializing into a counter cannot fail for these types: they hold
        // only integers, bools, strings, options and sequences of known length.
        with_payload!(self, p => postcard::serialize_with_flavor(p, postcard::ser_flavors::Size::default()))
            .unwrap_or(usize::MAX)
    }
}
