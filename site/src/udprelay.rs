//! The relay over UDP (issue #15, `docs/sites.md`): TURN-like forwarding of datagrams between
//! the recorder's and the gateway's QUIC endpoints, for one stream the rendezvous service opened.
//!
//! The rendezvous makes a *pairing* (a random 128-bit id) when an authenticated recorder opens
//! a stream to a connected site and asks for it; the id travels to both sides only over their
//! authenticated TLS connections. Each side sends a [`registration`] carrying the id from the
//! UDP socket its QUIC endpoint uses to the rendezvous service's UDP port; the rendezvous learns
//! each side's mapped address from those packets and from then on forwards every datagram from
//! one side's address to the other's. QUIC and its TLS stay end to end (the recorder's
//! certificate pinned, the stream's secret presented, as on the direct path): the rendezvous
//! sees only ciphertext. Each side talks only to the rendezvous, so a symmetric NAT on either
//! side passes.
//!
//! Never an open relay: a datagram is forwarded only from an address registered with a live
//! pairing's id, only to the other registered side of the same pairing. State is bounded: at
//! most [`MAX_PAIRINGS`]; a pairing not completed within [`UNPAIRED_TIMEOUT`] or idle for
//! [`IDLE_TIMEOUT`] expires. Answers are never larger than what they answer (no amplifier).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::error::{Error, Result};

/// The first bytes of a registration.
pub const REG_MAGIC: &[u8; 10] = b"VIGILRELAY";
/// The first bytes of the rendezvous's answer to a registration.
pub const ACK_MAGIC: &[u8; 10] = b"VIGILRLYOK";
/// A registration's (and its answer's) size: magic, side, id, flags.
pub const REG_LEN: usize = 10 + 1 + 16 + 1;
/// At most this many pairings at once (new ones are not made: the stream takes the TCP relay).
pub const MAX_PAIRINGS: usize = 4096;
/// A pairing whose two sides have not both registered within this time expires.
pub const UNPAIRED_TIMEOUT: Duration = Duration::from_secs(10);
/// A pairing with no datagram for this long expires (QUIC's keep-alive is 5 s on both sides).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Datagrams a pairing holds while its other side has not registered yet (the gateway's first
/// QUIC Initial often arrives before the recorder's registration): at most this many, each at
/// most [`HOLD_MAX_LEN`] bytes; later ones are dropped (QUIC retransmits).
pub const HOLD: usize = 2;
pub const HOLD_MAX_LEN: usize = 1500;
/// How long a gateway waits for the rendezvous to answer its registration (UDP blocked: the TCP
/// relay carries the stream).
pub const REGISTER_TIMEOUT: Duration = Duration::from_millis(600);

/// A pairing's id.
pub type PairingId = [u8; 16];

/// The side a datagram comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Recorder,
    Gateway,
}

impl Side {
    fn byte(self) -> u8 {
        match self {
            Side::Recorder => b'r',
            Side::Gateway => b'g',
        }
    }
    fn index(self) -> usize {
        match self {
            Side::Recorder => 0,
            Side::Gateway => 1,
        }
    }
    fn other(self) -> Side {
        match self {
            Side::Recorder => Side::Gateway,
            Side::Gateway => Side::Recorder,
        }
    }
}

/// A new pairing's id (random).
pub fn new_id() -> Result<PairingId> {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| Error::Protocol("no randomness".into()))?;
    Ok(id)
}

/// The id as sent in a `Control::Open` or `Reply::UdpRelay` line.
pub fn id_hex(id: &PairingId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of a line; `None` when malformed.
pub fn parse_id(s: &str) -> Option<PairingId> {
    let v = crate::lan::unhex(s)?;
    v.try_into().ok()
}

const FLAG_ACK: u8 = 1;

/// A registration for `id` from `side`; `want_ack`: the rendezvous answers it (a gateway, whose
/// socket is not yet QUIC's, waits for the answer; a recorder's socket already serves QUIC).
pub fn registration(id: &PairingId, side: Side, want_ack: bool) -> [u8; REG_LEN] {
    let mut p = [0u8; REG_LEN];
    p[..10].copy_from_slice(REG_MAGIC);
    p[10] = side.byte();
    p[11..27].copy_from_slice(id);
    p[27] = if want_ack { FLAG_ACK } else { 0 };
    p
}

/// A registration's id, side and whether it wants an answer; `None` for anything else.
pub fn parse_registration(p: &[u8]) -> Option<(PairingId, Side, bool)> {
    if p.len() != REG_LEN || &p[..10] != REG_MAGIC {
        return None;
    }
    let side = match p[10] {
        b'r' => Side::Recorder,
        b'g' => Side::Gateway,
        _ => return None,
    };
    let id: PairingId = p[11..27].try_into().ok()?;
    Some((id, side, p[27] & FLAG_ACK != 0))
}

/// The answer to a registration (the same size).
pub fn ack(id: &PairingId, side: Side) -> [u8; REG_LEN] {
    let mut p = registration(id, side, false);
    p[..10].copy_from_slice(ACK_MAGIC);
    p
}

/// Whether `p` answers the registration for `id` from `side`.
pub fn is_ack(p: &[u8], id: &PairingId, side: Side) -> bool {
    p == ack(id, side)
}

/// One pairing: each side's registered address, bytes each way, times.
#[derive(Debug)]
pub struct Pairing<T> {
    pub tag: T,
    addr: [Option<SocketAddr>; 2],
    pub created: Instant,
    pub last: Instant,
    /// Bytes forwarded from the recorder (towards the site) and from the gateway.
    pub bytes: [u64; 2],
    /// The part of `bytes` not yet handed to [`Table::take_counts`].
    unreported: [u64; 2],
    pub dropped: u64,
    /// Datagrams held for a side that has not registered yet (see [`HOLD`]).
    held: Vec<Vec<u8>>,
}

impl<T> Pairing<T> {
    /// Whether both sides have registered.
    pub fn complete(&self) -> bool {
        self.addr[0].is_some() && self.addr[1].is_some()
    }
    pub fn addr(&self, side: Side) -> Option<SocketAddr> {
        self.addr[side.index()]
    }
}

/// Where a datagram goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// To this address (the other side of the sender's pairing).
    To(SocketAddr),
    /// From a registered side, but dropped: the other side has not registered, or the site's
    /// bandwidth limit said no.
    Drop,
    /// Not from a registered address.
    Unknown,
}

/// The pairings (pure: no I/O, time passed in).
#[derive(Debug)]
pub struct Table<T> {
    pairings: HashMap<PairingId, Pairing<T>>,
    by_addr: HashMap<SocketAddr, (PairingId, Side)>,
    max: usize,
}

impl<T> Table<T> {
    pub fn new(max: usize) -> Self {
        Table {
            pairings: HashMap::new(),
            by_addr: HashMap::new(),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.pairings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairings.is_empty()
    }

    pub fn get(&self, id: &PairingId) -> Option<&Pairing<T>> {
        self.pairings.get(id)
    }

    /// A new pairing; `false` when the table is full or the id exists.
    pub fn insert(&mut self, id: PairingId, tag: T, now: Instant) -> bool {
        if self.pairings.len() >= self.max || self.pairings.contains_key(&id) {
            return false;
        }
        self.pairings.insert(
            id,
            Pairing {
                tag,
                addr: [None, None],
                created: now,
                last: now,
                bytes: [0, 0],
                unreported: [0, 0],
                dropped: 0,
                held: Vec::new(),
            },
        );
        true
    }

    /// Removes a pairing (its stream took another path, or it ended).
    pub fn remove(&mut self, id: &PairingId) -> Option<Pairing<T>> {
        let p = self.pairings.remove(id)?;
        for a in p.addr.iter().flatten() {
            if self.by_addr.get(a).is_some_and(|(i, _)| i == id) {
                self.by_addr.remove(a);
            }
        }
        Some(p)
    }

    /// A registration from `from`; `None` when the id is unknown (nothing changes), or `from` is
    /// the other side's address (a pairing never forwards to its sender); otherwise the
    /// datagrams held for this side, to send it now. A side may register again from a new
    /// address (its NAT rebound): the old one is forgotten.
    pub fn register(
        &mut self,
        id: &PairingId,
        side: Side,
        from: SocketAddr,
        now: Instant,
    ) -> Option<Vec<Vec<u8>>> {
        let p = self.pairings.get_mut(id)?;
        if p.addr[side.other().index()] == Some(from) {
            return None;
        }
        let held = if p.addr[side.index()].is_none() {
            std::mem::take(&mut p.held)
        } else {
            Vec::new()
        };
        if let Some(old) = p.addr[side.index()].replace(from)
            && old != from
            && self.by_addr.get(&old).is_some_and(|(i, _)| i == id)
        {
            self.by_addr.remove(&old);
        }
        p.last = now;
        // An address another pairing held (a NAT reused the port) now belongs to this one.
        if let Some((other_id, other_side)) = self.by_addr.insert(from, (*id, side))
            && other_id != *id
            && let Some(o) = self.pairings.get_mut(&other_id)
            && o.addr[other_side.index()] == Some(from)
        {
            o.addr[other_side.index()] = None;
        }
        Some(held)
    }

    /// Where `datagram` from `from` goes; `admit(tag, sender, len)` decides (the site's bandwidth
    /// limit). Counts what is forwarded; holds a few datagrams for a side not yet registered.
    pub fn route(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        admit: impl FnOnce(&T, Side, usize) -> bool,
    ) -> Route {
        let len = datagram.len();
        let Some((id, side)) = self.by_addr.get(&from).copied() else {
            return Route::Unknown;
        };
        let Some(p) = self.pairings.get_mut(&id) else {
            return Route::Unknown;
        };
        p.last = now;
        let Some(to) = p.addr[side.other().index()] else {
            if p.held.len() < HOLD && len <= HOLD_MAX_LEN && admit(&p.tag, side, len) {
                p.held.push(datagram.to_vec());
                p.bytes[side.index()] += len as u64;
                p.unreported[side.index()] += len as u64;
            } else {
                p.dropped += 1;
            }
            return Route::Drop;
        };
        if !admit(&p.tag, side, len) {
            p.dropped += 1;
            return Route::Drop;
        }
        p.bytes[side.index()] += len as u64;
        p.unreported[side.index()] += len as u64;
        Route::To(to)
    }

    /// Bytes forwarded since the last call, per pairing with any: (tag, from the recorder, from
    /// the gateway).
    pub fn take_counts(&mut self) -> Vec<(&T, u64, u64)> {
        self.pairings
            .values_mut()
            .filter(|p| p.unreported != [0, 0])
            .map(|p| {
                let [r, g] = std::mem::take(&mut p.unreported);
                (&p.tag, r, g)
            })
            .collect()
    }

    /// Removes and returns the pairings that expired at `now`: not completed within
    /// [`UNPAIRED_TIMEOUT`], or idle for [`IDLE_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) -> Vec<(PairingId, Pairing<T>)> {
        let gone: Vec<PairingId> = self
            .pairings
            .iter()
            .filter(|(_, p)| {
                let idle = now.saturating_duration_since(p.last);
                (!p.complete() && now.saturating_duration_since(p.created) > UNPAIRED_TIMEOUT)
                    || idle > IDLE_TIMEOUT
            })
            .map(|(id, _)| *id)
            .collect();
        gone.into_iter()
            .filter_map(|id| self.remove(&id).map(|p| (id, p)))
            .collect()
    }
}

/// Larger socket buffers for the relay's port (a burst of datagrams must not overflow the
/// default ≈ 200 KiB while the loop forwards); the kernel caps them at `net.core.*mem_max`.
pub fn grow_buffers(sock: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    const SIZE: usize = 4 << 20;
    if let Err(e) = setsockopt(sock, sockopt::RcvBuf, &SIZE) {
        tracing::debug!(error = %e, "SO_RCVBUF");
    }
    if let Err(e) = setsockopt(sock, sockopt::SndBuf, &SIZE) {
        tracing::debug!(error = %e, "SO_SNDBUF");
    }
}

/// Registers `sock` (a gateway's, before QUIC takes it) for pairing `id` at the rendezvous
/// service's UDP address `server`: sends the registration every 100 ms until it is answered,
/// within [`REGISTER_TIMEOUT`].
pub async fn register_gateway(sock: &UdpSocket, server: SocketAddr, id: &PairingId) -> Result<()> {
    let reg = registration(id, Side::Gateway, true);
    tokio::time::timeout(REGISTER_TIMEOUT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    sock.send_to(&reg, server).await.map_err(|e| Error::io("registering with the UDP relay", e))?;
                }
                r = sock.recv_from(&mut buf) => {
                    let (n, from) = r.map_err(|e| Error::io("registering with the UDP relay", e))?;
                    if from == server && is_ack(&buf[..n], id, Side::Gateway) {
                        return Ok::<_, Error>(());
                    }
                }
            }
        }
    })
    .await
    .map_err(|_| Error::Timeout("registering with the UDP relay (UDP to the rendezvous)"))?
}

/// Registers a recorder's socket (already QUIC's, so no answer is awaited): five registrations
/// 50 ms apart, in the background.
pub fn register_recorder(sock: std::net::UdpSocket, server: SocketAddr, id: PairingId) {
    tokio::spawn(async move {
        let reg = registration(&id, Side::Recorder, false);
        for _ in 0..5 {
            if let Err(e) = sock.send_to(&reg, server) {
                tracing::debug!(error = %e, "UDP relay registration");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn registrations_round_trip_and_answers_are_no_larger() {
        let id = [9u8; 16];
        let r = registration(&id, Side::Gateway, true);
        assert_eq!(parse_registration(&r), Some((id, Side::Gateway, true)));
        let r = registration(&id, Side::Recorder, false);
        assert_eq!(parse_registration(&r), Some((id, Side::Recorder, false)));
        assert_eq!(parse_registration(&r[..20]), None);
        let mut bad = r;
        bad[10] = b'x';
        assert_eq!(parse_registration(&bad), None);
        let k = ack(&id, Side::Gateway);
        assert_eq!(k.len(), r.len());
        assert!(is_ack(&k, &id, Side::Gateway));
        assert!(!is_ack(&k, &[8u8; 16], Side::Gateway));
        assert!(!is_ack(&k, &id, Side::Recorder));
        assert_eq!(parse_registration(&k), None, "an answer is no registration");
        assert_eq!(parse_id(&id_hex(&id)), Some(id));
        assert_eq!(parse_id("abcd"), None);
    }

    #[test]
    fn forwards_only_between_the_two_registered_sides() {
        let t0 = Instant::now();
        let mut t: Table<&str> = Table::new(8);
        let (id, other) = ([1u8; 16], [2u8; 16]);
        assert!(t.insert(id, "shop/branch1", t0));
        let (rec, gw, stranger) = (a("100.64.0.20:4000"), a("100.64.0.10:5000"), a("1.2.3.4:9"));
        let yes = |_: &&str, _: Side, _: usize| true;
        // Unknown ids register nothing; unknown senders are not forwarded.
        assert!(t.register(&other, Side::Recorder, stranger, t0).is_none());
        assert_eq!(t.route(stranger, &[0; 100], t0, yes), Route::Unknown);
        // One side registered: its first datagrams are held for the other, the rest dropped.
        assert_eq!(t.register(&id, Side::Gateway, gw, t0), Some(vec![]));
        for i in 0..HOLD + 2 {
            assert_eq!(t.route(gw, &[i as u8; 100], t0, yes), Route::Drop);
        }
        assert_eq!(t.get(&id).unwrap().dropped, 2);
        // The other side registers: the held datagrams are handed over for it, in order.
        let held = t.register(&id, Side::Recorder, rec, t0).unwrap();
        assert_eq!(held.len(), HOLD);
        assert!(held.iter().enumerate().all(|(i, d)| d == &[i as u8; 100]));
        assert_eq!(
            t.register(&id, Side::Recorder, rec, t0),
            Some(vec![]),
            "once"
        );
        assert_eq!(t.route(rec, &[0; 1200], t0, yes), Route::To(gw));
        assert_eq!(t.route(gw, &[0; 800], t0, yes), Route::To(rec));
        assert_eq!(t.route(stranger, &[0; 100], t0, yes), Route::Unknown);
        // The limit says no: dropped, not counted.
        assert_eq!(t.route(gw, &[0; 800], t0, |_, _, _| false), Route::Drop);
        let p = t.get(&id).unwrap();
        assert_eq!(p.bytes, [1200, 800 + HOLD as u64 * 100]);
        assert_eq!(
            t.take_counts(),
            vec![(&"shop/branch1", 1200, 800 + HOLD as u64 * 100)]
        );
        assert!(t.take_counts().is_empty(), "counts are handed over once");
        // A side can never be paired with its own address.
        assert!(t.register(&id, Side::Recorder, gw, t0).is_none());
        // The gateway's NAT rebinds: the new address takes over, the old one is forgotten.
        let gw2 = a("100.64.0.10:5001");
        assert!(t.register(&id, Side::Gateway, gw2, t0).is_some());
        assert_eq!(t.route(rec, &[0; 10], t0, yes), Route::To(gw2));
        assert_eq!(t.route(gw, &[0; 10], t0, yes), Route::Unknown);
        // Removed: nothing is forwarded any more.
        assert!(t.remove(&id).is_some());
        assert_eq!(t.route(rec, &[0; 10], t0, yes), Route::Unknown);
        assert!(t.is_empty());
    }

    #[test]
    fn state_is_bounded_and_expires() {
        let t0 = Instant::now();
        let mut t: Table<u32> = Table::new(2);
        assert!(t.insert([1; 16], 1, t0));
        assert!(!t.insert([1; 16], 1, t0), "the same id twice");
        assert!(t.insert([2; 16], 2, t0));
        assert!(!t.insert([3; 16], 3, t0), "full");
        // Pairing 1 completes and carries datagrams; pairing 2 never completes.
        let (r, g) = (a("10.0.0.1:1"), a("10.0.0.2:2"));
        t.register(&[1; 16], Side::Recorder, r, t0);
        t.register(&[1; 16], Side::Gateway, g, t0);
        let later = t0 + UNPAIRED_TIMEOUT + Duration::from_secs(1);
        assert_eq!(t.route(r, &[0], later, |_, _, _| true), Route::To(g));
        let gone: Vec<u32> = t.expire(later).into_iter().map(|(_, p)| p.tag).collect();
        assert_eq!(gone, vec![2], "the incomplete pairing expires");
        // Idle for longer than IDLE_TIMEOUT: the complete one expires too.
        let idle = later + IDLE_TIMEOUT + Duration::from_secs(1);
        assert_eq!(t.expire(idle).len(), 1);
        assert!(t.is_empty());
        assert_eq!(t.route(r, &[0], idle, |_, _, _| true), Route::Unknown);
        assert!(t.insert([3; 16], 3, idle), "room again");
    }

    #[test]
    fn a_reused_address_moves_to_the_new_pairing() {
        let t0 = Instant::now();
        let mut t: Table<u8> = Table::new(8);
        let (r, g, g2) = (a("10.0.0.1:1"), a("10.0.0.2:2"), a("10.0.0.3:3"));
        t.insert([1; 16], 1, t0);
        t.insert([2; 16], 2, t0);
        t.register(&[1; 16], Side::Recorder, r, t0);
        t.register(&[1; 16], Side::Gateway, g, t0);
        t.register(&[2; 16], Side::Gateway, g2, t0);
        // The NAT gives pairing 1's recorder address to pairing 2's recorder.
        t.register(&[2; 16], Side::Recorder, r, t0);
        assert_eq!(t.route(r, &[0], t0, |_, _, _| true), Route::To(g2));
        assert_eq!(t.get(&[1; 16]).unwrap().addr(Side::Recorder), None);
        // Removing pairing 1 leaves pairing 2's address alone.
        t.remove(&[1; 16]);
        assert_eq!(t.route(r, &[0], t0, |_, _, _| true), Route::To(g2));
    }
}
