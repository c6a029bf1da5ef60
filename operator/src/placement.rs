//! Camera placement: which recorder of a pool records which camera.
//!
//! [`place`] is a pure function — no I/O, no Kubernetes types — from the cameras of one pool
//! (with their bitrate and current recorder) and the pool's recorders (capacity, health) to a
//! new camera→recorder assignment, the cameras that could not be placed and why, the moves made
//! and the load of every recorder. The operator's reconcile loop builds a [`PlacementInput`],
//! calls [`place`], and applies [`Placement::moves`] and [`Placement::unplaced`].
//!
//! # Capacity and failover headroom
//!
//! Each recorder has a capacity in kbit/s. The pool's failover headroom `h` (percent, clamped to
//! 0–100) splits it into two limits:
//!
//! - the **normal limit** = `capacity × (100 − h) / 100`, rounded down (so 1000 kbit/s with 20 %
//!   headroom gives 800). A *new* camera is placed only where it keeps the recorder at or below
//!   its normal limit; it never eats into the headroom.
//! - the **full capacity**. A camera that is already being recorded and must move — its recorder
//!   was lost ([`MoveReason::RecorderLost`]) or is over capacity ([`MoveReason::Rebalance`]) —
//!   goes under the normal limit if any recorder has room there, and otherwise may use the
//!   headroom, up to full capacity. That is what the headroom is kept for.
//!
//! No recorder is ever planned above its full capacity. A healthy recorder that is between its
//! normal limit and full capacity (after a failover, or because measured bitrates grew) keeps its
//! cameras: moving a camera interrupts its recording, so placement never moves one to make the
//! pool prettier.
//!
//! # Algorithm
//!
//! 1. Cameras whose current recorder is healthy stay there (sticky).
//! 2. A healthy recorder whose kept cameras exceed its full capacity (measured bitrates grew)
//!    sheds the fewest cameras that bring it back under: the largest while none alone covers
//!    the excess, then the smallest one that does.
//! 3. The displaced cameras (lost recorder, shed) are placed, largest first, each on the
//!    recorder with the most room (worst-fit decreasing, which spreads load evenly), using the
//!    headroom if needed.
//! 4. New cameras are placed the same way, under the normal limit only. Displaced cameras go
//!    first: they are recording now and already have a gap to backfill.
//!
//! Worst-fit balances load but packs less tightly than first-fit. When worst-fit leaves a camera
//! of step 3 or 4 out, that step is retried with first-fit decreasing (recorders in id order) and
//! whichever leaves fewer cameras out wins, so placement never does worse than first-fit
//! decreasing. Finding the roomiest recorder uses ordered sets, so 10,000 cameras on 100
//! recorders take a few milliseconds.
//!
//! # Determinism
//!
//! The result depends only on the set of cameras and recorders, not on their order in the
//! input: inputs are put in a canonical order first and every tie is broken by id. Ids are
//! expected to be unique; a repeated camera id is reported as [`UnplacedReason::DuplicateId`]
//! (the first entry in canonical order is placed), and a repeated recorder id is merged into one
//! recorder with the smallest capacity, healthy only if every entry is.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// A camera to place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlacementCamera {
    /// Unique id, `namespace/name`.
    pub id: String,
    /// The bitrate placement counts for this camera, kbit/s: the measured bitrate if known,
    /// else the declared one (see [`placement_bitrate_kbps`]).
    pub bitrate_kbps: u32,
    /// The recorder (pod name) the camera is assigned to now, if any.
    pub current_recorder: Option<String>,
    /// The pool the camera names. Cameras of another pool than [`PlacementInput::pool`] are
    /// reported as [`UnplacedReason::WrongPool`].
    pub pool: String,
}

/// A recorder of the pool.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlacementRecorder {
    /// Unique id (pod name).
    pub id: String,
    /// Ingest capacity, kbit/s of camera streams.
    pub capacity_kbps: u32,
    /// False when the pod is gone, not ready or its lease expired. Cameras on an unhealthy
    /// recorder move; nothing is placed on one.
    pub healthy: bool,
    /// The recorder is shutting down (SIGTERM, pod terminating) but still records: nothing is
    /// placed on it, its cameras move off ([`MoveReason::Drain`]) where there is room, and stay
    /// on it where there is none (it records them until it is gone, then they fail over).
    pub draining: bool,
}

/// Everything [`place`] needs for one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementInput {
    /// Name of the pool being placed.
    pub pool: String,
    /// The pool's cameras, in any order.
    pub cameras: Vec<PlacementCamera>,
    /// The pool's recorders, in any order. A camera whose current recorder is not listed is
    /// treated as if its recorder were lost.
    pub recorders: Vec<PlacementRecorder>,
    /// Percent of each recorder's capacity kept free for failover; values above 100 count as
    /// 100. See the module documentation.
    pub failover_headroom_percent: u32,
}

/// The result of [`place`]. Every input camera is either in `assignments` or in `unplaced`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Camera id → recorder id, for every placed camera (moved or not).
    pub assignments: BTreeMap<String, String>,
    /// Cameras that got no recorder, sorted by camera id.
    pub unplaced: Vec<Unplaced>,
    /// Cameras placed on a different recorder than their current one (or placed for the first
    /// time), sorted by camera id. Cameras that stay are not listed.
    pub moves: Vec<CameraMove>,
    /// Load of every recorder after placement, sorted by recorder id.
    pub loads: Vec<RecorderLoad>,
}

impl Placement {
    /// Balance figures of the healthy recorders after this placement.
    pub fn balance(&self) -> LoadBalance {
        load_balance(&self.loads)
    }
}

/// A camera that could not be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub camera: String,
    pub bitrate_kbps: u32,
    /// The recorder the camera was on before, if any: its assignment must be removed.
    pub previous_recorder: Option<String>,
    pub reason: UnplacedReason,
}

/// Why a camera could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnplacedReason {
    /// The pool has no healthy recorder.
    NoHealthyRecorder,
    /// Even an empty healthy recorder could not take the camera: its bitrate exceeds every
    /// healthy recorder's normal limit (new cameras) or full capacity (cameras that must move).
    LargerThanAnyRecorder,
    /// No healthy recorder has enough room left.
    InsufficientCapacity,
    /// The camera names another pool than the one being placed.
    WrongPool,
    /// Another camera with the same id is in the input.
    DuplicateId,
}

impl UnplacedReason {
    /// The reason as a CamelCase word, for condition reasons and events.
    pub fn as_str(self) -> &'static str {
        match self {
            UnplacedReason::NoHealthyRecorder => "NoHealthyRecorder",
            UnplacedReason::LargerThanAnyRecorder => "LargerThanAnyRecorder",
            UnplacedReason::InsufficientCapacity => "InsufficientCapacity",
            UnplacedReason::WrongPool => "WrongPool",
            UnplacedReason::DuplicateId => "DuplicateId",
        }
    }
}

/// A camera placed on a recorder other than its current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraMove {
    pub camera: String,
    pub bitrate_kbps: u32,
    /// The current recorder; `None` for a new camera.
    pub from: Option<String>,
    pub to: String,
    pub reason: MoveReason,
}

/// Why a camera moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MoveReason {
    /// The camera had no recorder.
    New,
    /// The camera's recorder is unhealthy or gone. The operator records the outage window and
    /// backfills it.
    RecorderLost,
    /// The camera's recorder was over its full capacity (measured bitrates grew).
    Rebalance,
    /// The camera's recorder is draining (shutting down); a planned move.
    Drain,
    /// Load was uneven beyond the pool's threshold ([`rebalance`]); a planned move.
    Balance,
}

impl MoveReason {
    /// The reason as a CamelCase word, for condition reasons and events.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveReason::New => "New",
            MoveReason::RecorderLost => "RecorderLost",
            MoveReason::Rebalance => "Rebalance",
            MoveReason::Drain => "Drain",
            MoveReason::Balance => "Balance",
        }
    }

    /// Whether the camera's recorder still records it, so the move can be make-before-break:
    /// the new recorder starts it and the old one lets go once the new one has footage.
    pub fn is_planned(self) -> bool {
        match self {
            MoveReason::New | MoveReason::RecorderLost => false,
            MoveReason::Rebalance | MoveReason::Drain | MoveReason::Balance => true,
        }
    }
}

/// Load of one recorder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderLoad {
    pub recorder: String,
    pub healthy: bool,
    pub draining: bool,
    pub capacity_kbps: u32,
    /// Capacity minus the failover headroom: new cameras keep the recorder at or below this.
    pub normal_limit_kbps: u32,
    /// Sum of the assigned cameras' bitrates.
    pub load_kbps: u64,
    /// Number of assigned cameras.
    pub cameras: u32,
}

/// How evenly load is spread over the healthy recorders.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadBalance {
    pub healthy_recorders: usize,
    /// Sum of the healthy recorders' loads, kbit/s.
    pub total_kbps: u64,
    /// `total_kbps / healthy_recorders`: the load of each recorder if spread perfectly evenly.
    pub ideal_kbps: f64,
    /// The largest load of a healthy recorder, kbit/s.
    pub max_kbps: u64,
    /// `max_kbps / ideal_kbps`; 1.0 is perfect. Defined as 1.0 when there is no load or no
    /// healthy recorder. With recorders of different capacities a perfect placement is above
    /// 1.0, since bigger recorders take more.
    pub max_over_ideal: f64,
}

/// The bitrate placement should count for a camera: the measured one when the recorder has
/// measured a positive rate, else the declared one. A measured 0 means the stream is down, and
/// the camera will need its usual bandwidth when it comes back.
pub fn placement_bitrate_kbps(measured_kbps: Option<u32>, declared_kbps: u32) -> u32 {
    match measured_kbps {
        Some(measured) if measured > 0 => measured,
        _ => declared_kbps,
    }
}

/// Places the cameras of one pool on its recorders. See the module documentation for the rules.
pub fn place(input: &PlacementInput) -> Placement {
    let mut recorders = canonical_recorders(&input.recorders, input.failover_headroom_percent);
    let (cameras, duplicates) = canonical_cameras(&input.cameras);

    let mut unplaced: Vec<Unplaced> = duplicates
        .into_iter()
        .map(|camera| unplaced_camera(camera, UnplacedReason::DuplicateId))
        .collect();

    // Where each camera ends up and why it moved there, indexed by its position in `cameras`,
    // which is id order: the output comes out sorted without sorting it again.
    let mut destination: Vec<Option<usize>> = vec![None; cameras.len()];
    let mut move_reason: Vec<Option<MoveReason>> = vec![None; cameras.len()];

    // Sort every camera into: staying on its healthy recorder, displaced, or new.
    let mut kept_by_recorder: Vec<Vec<usize>> = vec![Vec::new(); recorders.len()];
    let mut displaced: Vec<Pending> = Vec::new();
    let mut new: Vec<Pending> = Vec::new();
    for (position, &camera) in cameras.iter().enumerate() {
        if camera.pool != input.pool {
            unplaced.push(unplaced_camera(camera, UnplacedReason::WrongPool));
            continue;
        }
        let Some(current) = camera.current_recorder.as_deref() else {
            new.push(Pending::new(position, camera, MoveReason::New));
            continue;
        };
        match find_recorder(&recorders, current) {
            Some(index) if recorders[index].eligible() => {
                recorders[index].add(camera.bitrate_kbps);
                kept_by_recorder[index].push(position);
                destination[position] = Some(index);
            }
            Some(index) if recorders[index].healthy => {
                // Draining: counted where it is until it finds a new home.
                recorders[index].add(camera.bitrate_kbps);
                destination[position] = Some(index);
                displaced.push(Pending::new(position, camera, MoveReason::Drain));
            }
            _ => displaced.push(Pending::new(position, camera, MoveReason::RecorderLost)),
        }
    }

    // A healthy recorder above full capacity sheds the fewest cameras that bring it back under.
    for (recorder, kept) in recorders.iter_mut().zip(kept_by_recorder.iter_mut()) {
        if recorder.load_kbps <= recorder.capacity_kbps {
            continue;
        }
        let excess_kbps = recorder.load_kbps - recorder.capacity_kbps;
        for position in shed_fewest(kept, &cameras, excess_kbps) {
            let camera = cameras[position];
            recorder.remove(camera.bitrate_kbps);
            destination[position] = None;
            displaced.push(Pending::new(position, camera, MoveReason::Rebalance));
        }
    }

    // A draining camera is taken off its recorder's load only while being packed elsewhere.
    let draining_home: BTreeMap<usize, usize> = displaced
        .iter()
        .filter(|p| p.reason == MoveReason::Drain)
        .filter_map(|p| destination[p.position].map(|home| (p.position, home)))
        .collect();
    for (&position, &home) in &draining_home {
        recorders[home].remove(cameras[position].bitrate_kbps);
    }
    let healthy_recorders = recorders.iter().filter(|r| r.eligible());
    let largest_capacity = healthy_recorders.clone().map(|r| r.capacity_kbps).max();
    let largest_normal_limit = healthy_recorders.map(|r| r.normal_limit_kbps).max();
    match (largest_capacity, largest_normal_limit) {
        (Some(largest_capacity), Some(largest_normal_limit)) => {
            // Cameras no recorder could take even empty are reported as such, not as a lack
            // of room the user could fix by waiting.
            for (pending, limit) in [
                (&mut displaced, largest_capacity),
                (&mut new, largest_normal_limit),
            ] {
                pending.retain(|p| {
                    let fits_somewhere = u64::from(p.camera.bitrate_kbps) <= limit;
                    if !fits_somewhere && !draining_home.contains_key(&p.position) {
                        unplaced.push(unplaced_camera(
                            p.camera,
                            UnplacedReason::LargerThanAnyRecorder,
                        ));
                    }
                    fits_somewhere
                });
                pending.sort_by(|a, b| largest_first(a.camera, b.camera));
            }
            for (pending, headroom) in [(displaced, Headroom::MayUse), (new, Headroom::Keep)] {
                let choices = pack_best(&mut recorders, &pending, headroom);
                for (p, choice) in pending.into_iter().zip(choices) {
                    match choice {
                        Some(index) => {
                            destination[p.position] = Some(index);
                            move_reason[p.position] = Some(p.reason);
                        }
                        None if draining_home.contains_key(&p.position) => {}
                        None => unplaced.push(unplaced_camera(
                            p.camera,
                            UnplacedReason::InsufficientCapacity,
                        )),
                    }
                }
            }
        }
        _ => {
            for p in displaced.into_iter().chain(new) {
                if !draining_home.contains_key(&p.position) {
                    unplaced.push(unplaced_camera(p.camera, UnplacedReason::NoHealthyRecorder));
                }
            }
        }
    }
    // Draining cameras that found no new home stay where they are, recorded until the recorder
    // is gone (then they fail over like any camera of a lost recorder).
    for (&position, &home) in &draining_home {
        if destination[position] == Some(home) {
            destination[position] = Some(home);
            move_reason[position] = None;
            recorders[home].add(cameras[position].bitrate_kbps);
        }
    }

    let mut assignments: Vec<(String, String)> = Vec::with_capacity(cameras.len());
    let mut moves: Vec<CameraMove> = Vec::new();
    for ((camera, destination), reason) in cameras.iter().zip(destination).zip(move_reason) {
        let Some(index) = destination else {
            continue;
        };
        let to = recorders[index].id.to_string();
        if let Some(reason) = reason {
            moves.push(CameraMove {
                camera: camera.id.clone(),
                bitrate_kbps: camera.bitrate_kbps,
                from: camera.current_recorder.clone(),
                to: to.clone(),
                reason,
            });
        }
        assignments.push((camera.id.clone(), to));
    }
    // Stable sort: duplicates of one id keep their canonical order.
    unplaced.sort_by(|a, b| a.camera.cmp(&b.camera));

    Placement {
        // Already in id order, so collecting is linear.
        assignments: assignments.into_iter().collect(),
        unplaced,
        moves,
        loads: recorders.iter().map(Recorder::load).collect(),
    }
}

/// Per-recorder loads of `assignments` (camera id → recorder id), e.g. of the current
/// assignment before placing. Cameras assigned to a recorder not in `input.recorders` are not
/// counted; a repeated camera id counts once, as in [`place`].
pub fn recorder_loads(
    input: &PlacementInput,
    assignments: &BTreeMap<String, String>,
) -> Vec<RecorderLoad> {
    let mut recorders = canonical_recorders(&input.recorders, input.failover_headroom_percent);
    let (cameras, _duplicates) = canonical_cameras(&input.cameras);
    for camera in cameras {
        let index = assignments
            .get(&camera.id)
            .and_then(|recorder| find_recorder(&recorders, recorder));
        if let Some(index) = index {
            recorders[index].add(camera.bitrate_kbps);
        }
    }
    recorders.iter().map(Recorder::load).collect()
}

/// Total, ideal (total / number of healthy recorders), maximum and max/ideal of the healthy
/// recorders' loads. Unhealthy recorders are left out.
pub fn load_balance(loads: &[RecorderLoad]) -> LoadBalance {
    let healthy: Vec<&RecorderLoad> = loads.iter().filter(|l| l.healthy).collect();
    let total_kbps: u64 = healthy.iter().map(|l| l.load_kbps).sum();
    let max_kbps = healthy.iter().map(|l| l.load_kbps).max().unwrap_or(0);
    let ideal_kbps = if healthy.is_empty() {
        0.0
    } else {
        total_kbps as f64 / healthy.len() as f64
    };
    let max_over_ideal = if ideal_kbps > 0.0 {
        max_kbps as f64 / ideal_kbps
    } else {
        1.0
    };
    LoadBalance {
        healthy_recorders: healthy.len(),
        total_kbps,
        ideal_kbps,
        max_kbps,
        max_over_ideal,
    }
}

/// When and how fast [`rebalance`] moves cameras.
#[derive(Clone, Debug, PartialEq)]
pub struct RebalanceRule {
    /// Rebalance when the most loaded eligible recorder carries more than this times the ideal
    /// load (total / eligible recorders); stop once it is back at or under it.
    pub threshold: f64,
    /// Most moves this call may make (the operator passes what its rate limit has left).
    pub max_moves: usize,
}

/// Moves cameras from the most to the least loaded eligible recorder (healthy, not draining)
/// while the most loaded one carries more than `rule.threshold` × the ideal load, at most
/// `rule.max_moves` of them, and appends them to `placement.moves` with
/// [`MoveReason::Balance`]. These are planned moves: the operator makes them make-before-break.
///
/// Each move takes, from the most loaded recorder, the camera that brings the two recorders
/// closest to equal, and only when the least loaded one ends strictly below where the most
/// loaded one was and stays within its normal limit: every move lowers the spread, so no camera
/// ever moves back and forth. Cameras already moving in this placement are left alone. Pure and
/// deterministic (ties by id).
pub fn rebalance(input: &PlacementInput, placement: &mut Placement, rule: &RebalanceRule) {
    let bitrates: BTreeMap<&str, u32> = input
        .cameras
        .iter()
        .map(|c| (c.id.as_str(), c.bitrate_kbps))
        .collect();
    let mut moving: BTreeSet<String> = placement.moves.iter().map(|m| m.camera.clone()).collect();
    let eligible: Vec<usize> = (0..placement.loads.len())
        .filter(|&i| placement.loads[i].healthy && !placement.loads[i].draining)
        .collect();
    if eligible.len() < 2 {
        return;
    }
    let mut made = 0;
    while made < rule.max_moves {
        let total: u64 = eligible.iter().map(|&i| placement.loads[i].load_kbps).sum();
        let ideal = total as f64 / eligible.len() as f64;
        // Most loaded (ties: smallest id) and least loaded (ties: smallest id).
        let Some(&high) = eligible.iter().min_by(|&&a, &&b| {
            let (la, lb) = (&placement.loads[a], &placement.loads[b]);
            lb.load_kbps
                .cmp(&la.load_kbps)
                .then_with(|| la.recorder.cmp(&lb.recorder))
        }) else {
            return;
        };
        let Some(&low) = eligible.iter().min_by(|&&a, &&b| {
            let (la, lb) = (&placement.loads[a], &placement.loads[b]);
            la.load_kbps
                .cmp(&lb.load_kbps)
                .then_with(|| la.recorder.cmp(&lb.recorder))
        }) else {
            return;
        };
        let high_load = placement.loads[high].load_kbps;
        if ideal <= 0.0 || (high_load as f64) <= rule.threshold * ideal || high == low {
            return;
        }
        let low_load = placement.loads[low].load_kbps;
        let gap = high_load - low_load;
        let room = u64::from(placement.loads[low].normal_limit_kbps).saturating_sub(low_load);
        let high_id = placement.loads[high].recorder.clone();
        // The camera whose move leaves the two closest to equal: |gap - 2b| smallest.
        let best = placement
            .assignments
            .iter()
            .filter(|(camera, recorder)| **recorder == high_id && !moving.contains(*camera))
            .filter_map(|(camera, _)| {
                let b = u64::from(*bitrates.get(camera.as_str())?);
                (b > 0 && b < gap && b <= room).then_some((gap.abs_diff(2 * b), camera.clone(), b))
            })
            .min();
        let Some((_, camera, bitrate)) = best else {
            return;
        };
        let low_id = placement.loads[low].recorder.clone();
        placement.loads[high].load_kbps -= bitrate;
        placement.loads[high].cameras -= 1;
        placement.loads[low].load_kbps += bitrate;
        placement.loads[low].cameras += 1;
        placement.assignments.insert(camera.clone(), low_id.clone());
        moving.insert(camera.clone());
        let position = placement
            .moves
            .partition_point(|m| m.camera.as_str() < camera.as_str());
        placement.moves.insert(
            position,
            CameraMove {
                camera,
                bitrate_kbps: u32::try_from(bitrate).unwrap_or(u32::MAX),
                from: Some(high_id),
                to: low_id,
                reason: MoveReason::Balance,
            },
        );
        made += 1;
    }
}

/// A recorder during placement. Loads are u64: a sum of u32 bitrates.
#[derive(Clone, Debug)]
struct Recorder<'a> {
    id: &'a str,
    healthy: bool,
    draining: bool,
    capacity_kbps: u64,
    normal_limit_kbps: u64,
    load_kbps: u64,
    cameras: u32,
}

impl Recorder<'_> {
    fn add(&mut self, bitrate_kbps: u32) {
        self.load_kbps += u64::from(bitrate_kbps);
        self.cameras += 1;
    }

    fn remove(&mut self, bitrate_kbps: u32) {
        self.load_kbps -= u64::from(bitrate_kbps);
        self.cameras -= 1;
    }

    /// Room left under the given limit; negative when the recorder is above it (a recorder may
    /// sit above its normal limit after a failover). i128 so no sum of u64s can overflow.
    fn room(&self, limit: Limit) -> i128 {
        let limit_kbps = match limit {
            Limit::Normal => self.normal_limit_kbps,
            Limit::Full => self.capacity_kbps,
        };
        i128::from(limit_kbps) - i128::from(self.load_kbps)
    }

    /// Healthy and not draining: may be given cameras.
    fn eligible(&self) -> bool {
        self.healthy && !self.draining
    }

    fn fits(&self, bitrate_kbps: u32, limit: Limit) -> bool {
        self.room(limit) >= i128::from(bitrate_kbps)
    }

    fn load(&self) -> RecorderLoad {
        RecorderLoad {
            recorder: self.id.to_string(),
            healthy: self.healthy,
            draining: self.draining,
            // Both limits come from a u32 capacity, so they fit back into u32.
            capacity_kbps: u32::try_from(self.capacity_kbps).unwrap_or(u32::MAX),
            normal_limit_kbps: u32::try_from(self.normal_limit_kbps).unwrap_or(u32::MAX),
            load_kbps: self.load_kbps,
            cameras: self.cameras,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    /// Capacity minus the failover headroom.
    Normal,
    /// Full capacity.
    Full,
}

/// Whether the cameras being packed may use the failover headroom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Headroom {
    /// New cameras: normal limit only.
    Keep,
    /// Cameras that must move: normal limit if possible, else up to full capacity.
    MayUse,
}

impl Headroom {
    /// The limits to try, in order.
    fn limits(self) -> &'static [Limit] {
        match self {
            Headroom::Keep => &[Limit::Normal],
            Headroom::MayUse => &[Limit::Normal, Limit::Full],
        }
    }
}

/// A camera waiting for a recorder, and why it moves.
#[derive(Clone, Copy, Debug)]
struct Pending<'a> {
    /// Position in the canonical camera list.
    position: usize,
    camera: &'a PlacementCamera,
    reason: MoveReason,
}

impl<'a> Pending<'a> {
    fn new(position: usize, camera: &'a PlacementCamera, reason: MoveReason) -> Self {
        Pending {
            position,
            camera,
            reason,
        }
    }
}

/// Recorders sorted by id, repeated ids merged (smallest capacity; healthy only if all are).
fn canonical_recorders(
    recorders: &[PlacementRecorder],
    failover_headroom_percent: u32,
) -> Vec<Recorder<'_>> {
    let headroom_percent = u64::from(failover_headroom_percent.min(100));
    let mut sorted: Vec<&PlacementRecorder> = recorders.iter().collect();
    sorted.sort();
    let mut merged: Vec<Recorder> = Vec::with_capacity(sorted.len());
    for recorder in sorted {
        let capacity_kbps = u64::from(recorder.capacity_kbps);
        if let Some(last) = merged.last_mut().filter(|last| last.id == recorder.id) {
            // Sorted by (id, capacity, healthy): the first entry has the smallest capacity.
            last.healthy &= recorder.healthy;
            last.draining |= recorder.draining;
            continue;
        }
        merged.push(Recorder {
            id: &recorder.id,
            healthy: recorder.healthy,
            draining: recorder.draining,
            capacity_kbps,
            normal_limit_kbps: capacity_kbps * (100 - headroom_percent) / 100,
            load_kbps: 0,
            cameras: 0,
        });
    }
    merged
}

/// Cameras sorted by their whole value (id first), and the entries whose id repeats an earlier
/// one. Sorting by the whole value makes the choice of which duplicate is placed independent
/// of input order.
fn canonical_cameras(
    cameras: &[PlacementCamera],
) -> (Vec<&PlacementCamera>, Vec<&PlacementCamera>) {
    let mut sorted: Vec<&PlacementCamera> = cameras.iter().collect();
    // Unstable is fine: equal elements are identical.
    sorted.sort_unstable();
    let mut unique: Vec<&PlacementCamera> = Vec::with_capacity(sorted.len());
    let mut duplicates = Vec::new();
    for camera in sorted {
        match unique.last() {
            Some(last) if last.id == camera.id => duplicates.push(camera),
            _ => unique.push(camera),
        }
    }
    (unique, duplicates)
}

fn find_recorder(recorders: &[Recorder], id: &str) -> Option<usize> {
    recorders.binary_search_by(|r| r.id.cmp(id)).ok()
}

fn unplaced_camera(camera: &PlacementCamera, reason: UnplacedReason) -> Unplaced {
    Unplaced {
        camera: camera.id.clone(),
        bitrate_kbps: camera.bitrate_kbps,
        previous_recorder: camera.current_recorder.clone(),
        reason,
    }
}

/// Placement order: bitrate descending, then id, so equal inputs give equal results.
fn largest_first(a: &PlacementCamera, b: &PlacementCamera) -> std::cmp::Ordering {
    b.bitrate_kbps
        .cmp(&a.bitrate_kbps)
        .then_with(|| a.id.cmp(&b.id))
}

/// Removes from `kept` (positions in `cameras`) the fewest cameras whose bitrates add up to at
/// least `excess_kbps`, and returns them. While no single camera covers the rest of the excess, the largest goes (any
/// smallest set can be made to include it); then the smallest camera that covers it goes, so
/// the least bitrate has to find a new home.
fn shed_fewest(
    kept: &mut Vec<usize>,
    cameras: &[&PlacementCamera],
    mut excess_kbps: u64,
) -> Vec<usize> {
    kept.sort_by(|&a, &b| largest_first(cameras[a], cameras[b]));
    let bitrate = |position: usize| u64::from(cameras[position].bitrate_kbps);
    let mut shed = Vec::new();
    while excess_kbps > 0 && !kept.is_empty() {
        let covering = kept.partition_point(|&position| bitrate(position) >= excess_kbps);
        if covering > 0 {
            shed.push(kept.remove(covering - 1));
            break;
        }
        let largest = kept.remove(0);
        excess_kbps -= bitrate(largest);
        shed.push(largest);
    }
    shed
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    /// The recorder with the most room: spreads load evenly.
    Worst,
    /// The first recorder (by id) with room: packs tighter, used when worst-fit leaves cameras
    /// out.
    First,
}

/// Places `pending` (already in placement order) onto the healthy recorders with worst-fit;
/// if that leaves cameras out, also with first-fit, and keeps the result that leaves fewer out
/// (worst-fit on a tie). Returns, per pending camera, the chosen recorder's index.
fn pack_best(
    recorders: &mut Vec<Recorder>,
    pending: &[Pending],
    headroom: Headroom,
) -> Vec<Option<usize>> {
    let mut worst_fit_recorders = recorders.clone();
    let worst_fit = pack(&mut worst_fit_recorders, pending, headroom, Fit::Worst);
    let worst_fit_left_out = worst_fit.iter().filter(|c| c.is_none()).count();
    if worst_fit_left_out > 0 {
        let mut first_fit_recorders = recorders.clone();
        let first_fit = pack(&mut first_fit_recorders, pending, headroom, Fit::First);
        let first_fit_left_out = first_fit.iter().filter(|c| c.is_none()).count();
        if first_fit_left_out < worst_fit_left_out {
            *recorders = first_fit_recorders;
            return first_fit;
        }
    }
    *recorders = worst_fit_recorders;
    worst_fit
}

fn pack(
    recorders: &mut [Recorder],
    pending: &[Pending],
    headroom: Headroom,
    fit: Fit,
) -> Vec<Option<usize>> {
    match fit {
        Fit::Worst => {
            let mut rooms = RoomIndex::new(recorders);
            pending
                .iter()
                .map(|p| {
                    let bitrate_kbps = p.camera.bitrate_kbps;
                    let index = headroom.limits().iter().find_map(|&limit| {
                        rooms
                            .roomiest(limit)
                            .filter(|&index| recorders[index].fits(bitrate_kbps, limit))
                    })?;
                    rooms.remove(index, &recorders[index]);
                    recorders[index].add(bitrate_kbps);
                    rooms.insert(index, &recorders[index]);
                    Some(index)
                })
                .collect()
        }
        Fit::First => pending
            .iter()
            .map(|p| {
                let bitrate_kbps = p.camera.bitrate_kbps;
                let index = headroom.limits().iter().find_map(|&limit| {
                    recorders
                        .iter()
                        .position(|r| r.eligible() && r.fits(bitrate_kbps, limit))
                })?;
                recorders[index].add(bitrate_kbps);
                Some(index)
            })
            .collect(),
    }
}

/// The healthy recorders ordered by room under each limit, so the roomiest is found in
/// O(log recorders). Keys are (room, Reverse(index)): the last key is the most room, and among
/// equal rooms the lowest index, i.e. the smallest recorder id.
struct RoomIndex {
    by_normal_room: BTreeSet<(i128, Reverse<usize>)>,
    by_full_room: BTreeSet<(i128, Reverse<usize>)>,
}

impl RoomIndex {
    fn new(recorders: &[Recorder]) -> Self {
        let mut rooms = RoomIndex {
            by_normal_room: BTreeSet::new(),
            by_full_room: BTreeSet::new(),
        };
        for (index, recorder) in recorders.iter().enumerate() {
            if recorder.eligible() {
                rooms.insert(index, recorder);
            }
        }
        rooms
    }

    fn set(&mut self, limit: Limit) -> &mut BTreeSet<(i128, Reverse<usize>)> {
        match limit {
            Limit::Normal => &mut self.by_normal_room,
            Limit::Full => &mut self.by_full_room,
        }
    }

    fn roomiest(&mut self, limit: Limit) -> Option<usize> {
        self.set(limit).last().map(|&(_, Reverse(index))| index)
    }

    fn insert(&mut self, index: usize, recorder: &Recorder) {
        for limit in [Limit::Normal, Limit::Full] {
            self.set(limit)
                .insert((recorder.room(limit), Reverse(index)));
        }
    }

    fn remove(&mut self, index: usize, recorder: &Recorder) {
        for limit in [Limit::Normal, Limit::Full] {
            self.set(limit)
                .remove(&(recorder.room(limit), Reverse(index)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const POOL: &str = "pool";

    fn camera(id: &str, bitrate_kbps: u32, current: Option<&str>) -> PlacementCamera {
        PlacementCamera {
            id: id.to_string(),
            bitrate_kbps,
            current_recorder: current.map(str::to_string),
            pool: POOL.to_string(),
        }
    }

    fn recorder(id: &str, capacity_kbps: u32, healthy: bool) -> PlacementRecorder {
        PlacementRecorder {
            id: id.to_string(),
            capacity_kbps,
            healthy,
            draining: false,
        }
    }

    fn input(
        cameras: Vec<PlacementCamera>,
        recorders: Vec<PlacementRecorder>,
        failover_headroom_percent: u32,
    ) -> PlacementInput {
        PlacementInput {
            pool: POOL.to_string(),
            cameras,
            recorders,
            failover_headroom_percent,
        }
    }

    fn reasons(placement: &Placement) -> Vec<(&str, UnplacedReason)> {
        placement
            .unplaced
            .iter()
            .map(|u| (u.camera.as_str(), u.reason))
            .collect()
    }

    fn assigned<'a>(placement: &'a Placement, camera: &str) -> Option<&'a str> {
        placement.assignments.get(camera).map(String::as_str)
    }

    fn load_of(placement: &Placement, recorder: &str) -> u64 {
        placement
            .loads
            .iter()
            .find(|l| l.recorder == recorder)
            .map_or(0, |l| l.load_kbps)
    }

    #[test]
    fn zero_cameras_gives_empty_placement_and_zero_loads() {
        let placement = place(&input(vec![], vec![recorder("r1", 100, true)], 20));
        assert!(placement.assignments.is_empty());
        assert!(placement.unplaced.is_empty());
        assert!(placement.moves.is_empty());
        assert_eq!(
            placement.loads,
            vec![RecorderLoad {
                recorder: "r1".into(),
                healthy: true,
                draining: false,
                capacity_kbps: 100,
                normal_limit_kbps: 80,
                load_kbps: 0,
                cameras: 0,
            }]
        );
        assert_eq!(placement.balance().max_over_ideal, 1.0);
    }

    #[test]
    fn no_recorders_leaves_every_camera_unplaced() {
        let placement = place(&input(
            vec![camera("ns/a", 10, None), camera("ns/b", 10, Some("gone"))],
            vec![],
            20,
        ));
        assert!(placement.assignments.is_empty());
        assert_eq!(
            reasons(&placement),
            vec![
                ("ns/a", UnplacedReason::NoHealthyRecorder),
                ("ns/b", UnplacedReason::NoHealthyRecorder)
            ]
        );
        assert_eq!(
            placement.unplaced[1].previous_recorder.as_deref(),
            Some("gone")
        );
    }

    #[test]
    fn all_recorders_unhealthy_leaves_every_camera_unplaced() {
        let placement = place(&input(
            vec![camera("ns/a", 10, Some("r1")), camera("ns/b", 10, None)],
            vec![recorder("r1", 100, false), recorder("r2", 100, false)],
            20,
        ));
        assert!(placement.assignments.is_empty());
        assert!(placement.moves.is_empty());
        assert_eq!(
            reasons(&placement),
            vec![
                ("ns/a", UnplacedReason::NoHealthyRecorder),
                ("ns/b", UnplacedReason::NoHealthyRecorder)
            ]
        );
    }

    #[test]
    fn camera_larger_than_any_recorder_is_reported_as_such() {
        let placement = place(&input(
            vec![camera("ns/huge", 101, None), camera("ns/small", 10, None)],
            vec![recorder("r1", 100, true), recorder("r2", 50, true)],
            0,
        ));
        assert_eq!(
            reasons(&placement),
            vec![("ns/huge", UnplacedReason::LargerThanAnyRecorder)]
        );
        assert_eq!(assigned(&placement, "ns/small"), Some("r1"));
    }

    #[test]
    fn new_camera_above_every_normal_limit_is_too_large_but_a_moving_one_uses_headroom() {
        // Normal limit 80; 90 fits only into the headroom.
        let placement = place(&input(
            vec![
                camera("ns/new", 90, None),
                camera("ns/orphan", 90, Some("lost")),
            ],
            vec![
                recorder("r1", 100, true),
                recorder("r2", 100, true),
                recorder("lost", 100, false),
            ],
            20,
        ));
        assert_eq!(
            reasons(&placement),
            vec![("ns/new", UnplacedReason::LargerThanAnyRecorder)]
        );
        assert_eq!(assigned(&placement, "ns/orphan"), Some("r1"));
        assert_eq!(
            placement.moves,
            vec![CameraMove {
                camera: "ns/orphan".into(),
                bitrate_kbps: 90,
                from: Some("lost".into()),
                to: "r1".into(),
                reason: MoveReason::RecorderLost,
            }]
        );
    }

    #[test]
    fn new_cameras_never_use_the_headroom() {
        // r1 holds 70 of its normal limit 80; a new 20 does not fit, although capacity would.
        let placement = place(&input(
            vec![camera("ns/old", 70, Some("r1")), camera("ns/new", 20, None)],
            vec![recorder("r1", 100, true)],
            20,
        ));
        assert_eq!(
            reasons(&placement),
            vec![("ns/new", UnplacedReason::InsufficientCapacity)]
        );
        assert_eq!(load_of(&placement, "r1"), 70);
    }

    #[test]
    fn lost_recorder_cameras_fill_normal_room_first_then_headroom() {
        // r1 has normal room 30, r2 has 10. The 30 goes under r1's normal limit; the 25 no
        // longer fits under any normal limit and takes r2's headroom (capacity room 30).
        let placement = place(&input(
            vec![
                camera("ns/a", 50, Some("r1")),
                camera("ns/b", 70, Some("r2")),
                camera("ns/c", 30, Some("r3")),
                camera("ns/d", 25, Some("r3")),
            ],
            vec![
                recorder("r1", 100, true),
                recorder("r2", 100, true),
                recorder("r3", 100, false),
            ],
            20,
        ));
        assert!(placement.unplaced.is_empty());
        assert_eq!(assigned(&placement, "ns/c"), Some("r1"));
        assert_eq!(assigned(&placement, "ns/d"), Some("r2"));
        assert_eq!(load_of(&placement, "r1"), 80);
        assert_eq!(load_of(&placement, "r2"), 95);
        assert_eq!(load_of(&placement, "r3"), 0);
    }

    #[test]
    fn equal_bitrates_spread_evenly_in_id_order() {
        let cameras = (0..6)
            .map(|i| camera(&format!("ns/c{i}"), 10, None))
            .collect();
        let recorders = vec![
            recorder("r1", 100, true),
            recorder("r2", 100, true),
            recorder("r3", 100, true),
        ];
        let placement = place(&input(cameras, recorders, 20));
        let targets: Vec<&str> = placement.assignments.values().map(String::as_str).collect();
        assert_eq!(targets, vec!["r1", "r2", "r3", "r1", "r2", "r3"]);
        assert_eq!(placement.balance().max_over_ideal, 1.0);
        assert!(
            placement
                .moves
                .iter()
                .all(|m| m.reason == MoveReason::New && m.from.is_none())
        );
    }

    #[test]
    fn differing_capacities_are_each_respected() {
        // Normal limits 160 and 40: worst-fit loads the big recorder until rooms equal.
        let cameras = (0..10)
            .map(|i| camera(&format!("ns/c{i}"), 20, None))
            .collect();
        let placement = place(&input(
            cameras,
            vec![recorder("big", 200, true), recorder("small", 50, true)],
            20,
        ));
        assert!(placement.unplaced.is_empty());
        assert_eq!(load_of(&placement, "big"), 160);
        assert_eq!(load_of(&placement, "small"), 40);
    }

    #[test]
    fn healthy_assignment_above_normal_limit_but_within_capacity_stays() {
        let placement = place(&input(
            vec![
                camera("ns/a", 60, Some("r1")),
                camera("ns/b", 35, Some("r1")),
            ],
            vec![recorder("r1", 100, true), recorder("r2", 100, true)],
            20,
        ));
        assert!(placement.moves.is_empty());
        assert_eq!(load_of(&placement, "r1"), 95);
    }

    #[test]
    fn overloaded_recorder_sheds_the_fewest_cameras() {
        // r1: 40+30+30+20 = 120 > 100. One camera of at least 20 suffices: the smallest such is
        // a 20, which moves to r2.
        let placement = place(&input(
            vec![
                camera("ns/a", 40, Some("r1")),
                camera("ns/b", 30, Some("r1")),
                camera("ns/c", 30, Some("r1")),
                camera("ns/d", 20, Some("r1")),
            ],
            vec![recorder("r1", 100, true), recorder("r2", 100, true)],
            20,
        ));
        assert_eq!(
            placement.moves,
            vec![CameraMove {
                camera: "ns/d".into(),
                bitrate_kbps: 20,
                from: Some("r1".into()),
                to: "r2".into(),
                reason: MoveReason::Rebalance,
            }]
        );
        assert_eq!(load_of(&placement, "r1"), 100);
    }

    #[test]
    fn overload_needing_two_cameras_sheds_the_largest_first() {
        // Excess 50, no single camera covers it: 40 goes, then the smallest covering 10.
        let placement = place(&input(
            vec![
                camera("ns/a", 40, Some("r1")),
                camera("ns/b", 35, Some("r1")),
                camera("ns/c", 35, Some("r1")),
                camera("ns/d", 30, Some("r1")),
                camera("ns/e", 10, Some("r1")),
            ],
            vec![recorder("r1", 100, true), recorder("r2", 100, true)],
            20,
        ));
        let moved: Vec<&str> = placement.moves.iter().map(|m| m.camera.as_str()).collect();
        assert_eq!(moved, vec!["ns/a", "ns/e"]);
        assert_eq!(load_of(&placement, "r1"), 100);
    }

    #[test]
    fn camera_grown_beyond_every_recorder_is_shed_and_reported() {
        let placement = place(&input(
            vec![
                camera("ns/a", 150, Some("r1")),
                camera("ns/b", 10, Some("r1")),
            ],
            vec![recorder("r1", 100, true)],
            20,
        ));
        assert_eq!(
            reasons(&placement),
            vec![("ns/a", UnplacedReason::LargerThanAnyRecorder)]
        );
        assert_eq!(
            placement.unplaced[0].previous_recorder.as_deref(),
            Some("r1")
        );
        assert_eq!(assigned(&placement, "ns/b"), Some("r1"));
    }

    #[test]
    fn camera_on_unlisted_recorder_counts_as_lost() {
        let placement = place(&input(
            vec![camera("ns/a", 10, Some("deleted-pod"))],
            vec![recorder("r1", 100, true)],
            20,
        ));
        assert_eq!(placement.moves[0].reason, MoveReason::RecorderLost);
        assert_eq!(placement.moves[0].from.as_deref(), Some("deleted-pod"));
    }

    #[test]
    fn first_fit_fallback_packs_what_worst_fit_cannot() {
        // Worst-fit: 6→r1, 4→r2, 4→r2, 3→r1, 3→ nowhere. First-fit: r1 = 6+4, r2 = 4+3+3.
        let cameras = [6, 4, 4, 3, 3]
            .iter()
            .enumerate()
            .map(|(i, &kbps)| camera(&format!("ns/c{i}"), kbps, None))
            .collect();
        let placement = place(&input(
            cameras,
            vec![recorder("r1", 10, true), recorder("r2", 10, true)],
            0,
        ));
        assert!(placement.unplaced.is_empty());
        assert_eq!(load_of(&placement, "r1"), 10);
        assert_eq!(load_of(&placement, "r2"), 10);
    }

    #[test]
    fn wrong_pool_and_duplicate_ids_are_reported() {
        let mut other = camera("ns/other", 10, Some("r1"));
        other.pool = "elsewhere".into();
        let placement = place(&input(
            vec![other, camera("ns/a", 20, None), camera("ns/a", 10, None)],
            vec![recorder("r1", 100, true)],
            20,
        ));
        assert_eq!(
            reasons(&placement),
            vec![
                ("ns/a", UnplacedReason::DuplicateId),
                ("ns/other", UnplacedReason::WrongPool)
            ]
        );
        // Canonical order: the entry with the lower bitrate wins.
        assert_eq!(load_of(&placement, "r1"), 10);
    }

    #[test]
    fn duplicate_recorders_merge_conservatively() {
        let placement = place(&input(
            vec![camera("ns/a", 60, None)],
            vec![recorder("r1", 100, true), recorder("r1", 50, true)],
            0,
        ));
        assert_eq!(placement.loads.len(), 1);
        assert_eq!(placement.loads[0].capacity_kbps, 50);
        assert_eq!(
            reasons(&placement),
            vec![("ns/a", UnplacedReason::LargerThanAnyRecorder)]
        );
    }

    #[test]
    fn headroom_limits_round_down_and_clamp() {
        let limit = |headroom| {
            place(&input(vec![], vec![recorder("r1", 999, true)], headroom)).loads[0]
                .normal_limit_kbps
        };
        assert_eq!(limit(0), 999);
        assert_eq!(limit(20), 799);
        assert_eq!(limit(100), 0);
        assert_eq!(limit(250), 0);
    }

    #[test]
    fn zero_bitrate_camera_is_placed() {
        let placement = place(&input(
            vec![camera("ns/a", 0, None)],
            vec![recorder("r1", 100, true)],
            100,
        ));
        assert_eq!(assigned(&placement, "ns/a"), Some("r1"));
    }

    #[test]
    fn load_balance_reports_ideal_and_ratio_over_healthy_recorders() {
        let load = |recorder: &str, healthy, load_kbps| RecorderLoad {
            recorder: recorder.into(),
            healthy,
            draining: false,
            capacity_kbps: 100,
            normal_limit_kbps: 80,
            load_kbps,
            cameras: 1,
        };
        let balance = load_balance(&[
            load("r1", true, 60),
            load("r2", true, 40),
            load("r3", false, 1000),
        ]);
        assert_eq!(balance.healthy_recorders, 2);
        assert_eq!(balance.total_kbps, 100);
        assert_eq!(balance.ideal_kbps, 50.0);
        assert_eq!(balance.max_kbps, 60);
        assert!((balance.max_over_ideal - 1.2).abs() < 1e-9);
        assert_eq!(load_balance(&[]).max_over_ideal, 1.0);
    }

    #[test]
    fn recorder_loads_counts_the_given_assignment() {
        let placement_input = input(
            vec![camera("ns/a", 10, None), camera("ns/b", 20, None)],
            vec![recorder("r1", 100, true), recorder("r2", 100, true)],
            20,
        );
        let assignments = BTreeMap::from([
            ("ns/a".to_string(), "r2".to_string()),
            ("ns/b".to_string(), "r2".to_string()),
            ("ns/unknown".to_string(), "r1".to_string()),
        ]);
        let loads = recorder_loads(&placement_input, &assignments);
        assert_eq!(loads[0].load_kbps, 0);
        assert_eq!(loads[1].load_kbps, 30);
        assert_eq!(loads[1].cameras, 2);
        let placement = place(&placement_input);
        assert_eq!(
            recorder_loads(&placement_input, &placement.assignments),
            placement.loads
        );
    }

    #[test]
    fn placement_bitrate_prefers_a_positive_measurement() {
        assert_eq!(placement_bitrate_kbps(Some(5000), 4000), 5000);
        assert_eq!(placement_bitrate_kbps(Some(0), 4000), 4000);
        assert_eq!(placement_bitrate_kbps(None, 4000), 4000);
    }

    // ---- Properties ----

    /// Recorders r0.. with small capacities so that tight and impossible cases are common.
    fn arb_recorders() -> impl Strategy<Value = Vec<PlacementRecorder>> {
        prop::collection::vec((1u32..=100, prop::bool::weighted(0.8)), 0..6).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (capacity, healthy))| recorder(&format!("r{i}"), capacity, healthy))
                .collect()
        })
    }

    /// Cameras with unique ids; current recorder r0..r7 may not exist (a deleted pod).
    fn arb_cameras() -> impl Strategy<Value = Vec<PlacementCamera>> {
        let one = (
            0u32..=60,
            prop::option::weighted(0.6, 0usize..8),
            prop::bool::weighted(0.95),
        );
        prop::collection::vec(one, 0..30).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (bitrate, current, in_pool))| PlacementCamera {
                    id: format!("ns/c{i:02}"),
                    bitrate_kbps: bitrate,
                    current_recorder: current.map(|r| format!("r{r}")),
                    pool: if in_pool { POOL } else { "other" }.to_string(),
                })
                .collect()
        })
    }

    fn arb_input() -> impl Strategy<Value = PlacementInput> {
        (arb_cameras(), arb_recorders(), 0u32..=110)
            .prop_map(|(cameras, recorders, headroom)| input(cameras, recorders, headroom))
    }

    /// Unplaced and all-new input on healthy recorders: a placement from scratch.
    fn arb_scratch_input() -> impl Strategy<Value = PlacementInput> {
        (
            prop::collection::vec(0u32..=60, 0..30),
            prop::collection::vec(1u32..=100, 1..6),
            0u32..=90,
        )
            .prop_map(|(bitrates, capacities, headroom)| {
                let cameras = bitrates
                    .into_iter()
                    .enumerate()
                    .map(|(i, kbps)| camera(&format!("ns/c{i:02}"), kbps, None))
                    .collect();
                let recorders = capacities
                    .into_iter()
                    .enumerate()
                    .map(|(i, capacity)| recorder(&format!("r{i}"), capacity, true))
                    .collect();
                input(cameras, recorders, headroom)
            })
    }

    fn normal_limit(capacity_kbps: u32, headroom_percent: u32) -> u64 {
        u64::from(capacity_kbps) * u64::from(100 - headroom_percent.min(100)) / 100
    }

    fn healthy_recorders(input: &PlacementInput) -> BTreeMap<&str, &PlacementRecorder> {
        input
            .recorders
            .iter()
            .filter(|r| r.healthy)
            .map(|r| (r.id.as_str(), r))
            .collect()
    }

    /// Sum of bitrates of the in-pool cameras on each healthy recorder, as given in the input.
    fn input_loads(input: &PlacementInput) -> BTreeMap<&str, u64> {
        let healthy = healthy_recorders(input);
        let mut loads = BTreeMap::new();
        for camera in input.cameras.iter().filter(|c| c.pool == POOL) {
            if let Some(current) = camera.current_recorder.as_deref()
                && healthy.contains_key(current)
            {
                *loads.entry(current).or_insert(0) += u64::from(camera.bitrate_kbps);
            }
        }
        loads
    }

    /// Independent, simple first-fit decreasing under the normal limit, from scratch. Returns
    /// whether every camera fits.
    fn reference_first_fit_places_all(input: &PlacementInput) -> bool {
        let mut cameras: Vec<&PlacementCamera> = input.cameras.iter().collect();
        cameras.sort_by(|a, b| b.bitrate_kbps.cmp(&a.bitrate_kbps).then(a.id.cmp(&b.id)));
        let mut recorders: Vec<&PlacementRecorder> =
            input.recorders.iter().filter(|r| r.healthy).collect();
        recorders.sort_by(|a, b| a.id.cmp(&b.id));
        let mut loads = vec![0u64; recorders.len()];
        cameras.iter().all(|camera| {
            let bitrate = u64::from(camera.bitrate_kbps);
            let slot = (0..recorders.len()).find(|&i| {
                loads[i] + bitrate
                    <= normal_limit(recorders[i].capacity_kbps, input.failover_headroom_percent)
            });
            match slot {
                Some(i) => {
                    loads[i] += bitrate;
                    true
                }
                None => false,
            }
        })
    }

    /// Invariants every placement must satisfy, for inputs with unique camera and recorder ids.
    fn check_invariants(input: &PlacementInput, placement: &Placement) {
        let healthy = healthy_recorders(input);
        let by_id: BTreeMap<&str, &PlacementCamera> =
            input.cameras.iter().map(|c| (c.id.as_str(), c)).collect();

        // (4) Every camera is either assigned or unplaced, exactly once.
        let unplaced_ids: BTreeSet<&str> = placement
            .unplaced
            .iter()
            .map(|u| u.camera.as_str())
            .collect();
        assert_eq!(unplaced_ids.len(), placement.unplaced.len());
        assert!(
            placement
                .assignments
                .keys()
                .all(|id| !unplaced_ids.contains(id.as_str()))
        );
        assert_eq!(
            placement.assignments.len() + placement.unplaced.len(),
            input.cameras.len()
        );

        // Only healthy recorders get cameras; loads match the assignments.
        let mut loads: BTreeMap<&str, u64> = BTreeMap::new();
        for (camera, recorder) in &placement.assignments {
            assert!(
                healthy.contains_key(recorder.as_str()),
                "{camera} on {recorder}"
            );
            *loads.entry(recorder).or_insert(0) += u64::from(by_id[camera.as_str()].bitrate_kbps);
        }
        for load in &placement.loads {
            assert_eq!(
                load.load_kbps,
                loads.get(load.recorder.as_str()).copied().unwrap_or(0)
            );
            // (1) No recorder above its full capacity, ever; except a draining one, which only
            // keeps cameras it records already until they find a home (checked below).
            assert!(
                load.draining || load.load_kbps <= u64::from(load.capacity_kbps),
                "{load:?}"
            );
        }
        let limit_of = |recorder: &str, headroom: bool| {
            let capacity = healthy[recorder].capacity_kbps;
            if headroom {
                u64::from(capacity)
            } else {
                normal_limit(capacity, input.failover_headroom_percent)
            }
        };

        // (1) A recorder that took a new camera stays within its normal limit.
        for m in placement
            .moves
            .iter()
            .filter(|m| m.reason == MoveReason::New)
        {
            assert!(loads[m.to.as_str()] <= limit_of(&m.to, false), "{m:?}");
        }

        // Moves are exactly the changed assignments, with the right origin and reason.
        for (camera, recorder) in &placement.assignments {
            let current = by_id[camera.as_str()].current_recorder.as_deref();
            if healthy[recorder.as_str()].draining {
                assert_eq!(
                    current,
                    Some(recorder.as_str()),
                    "{camera} put on a draining recorder"
                );
            }
            let moved = placement.moves.iter().find(|m| &m.camera == camera);
            if current == Some(recorder.as_str()) {
                assert!(moved.is_none());
                continue;
            }
            let Some(moved) = moved else {
                panic!("{camera} changed recorder without a move");
            };
            assert_eq!(moved.from.as_deref(), current);
            assert_eq!(&moved.to, recorder);
            // Nothing is ever placed on a draining recorder.
            assert!(!healthy[recorder.as_str()].draining, "{moved:?}");
            let expected: &[MoveReason] = match current {
                None => &[MoveReason::New],
                Some(c) if healthy.get(c).is_some_and(|r| r.draining) => &[MoveReason::Drain],
                Some(c) if healthy.contains_key(c) => &[MoveReason::Rebalance, MoveReason::Balance],
                Some(_) => &[MoveReason::RecorderLost],
            };
            assert!(expected.contains(&moved.reason), "{moved:?}");
        }
        assert_eq!(
            placement.moves.len(),
            placement
                .assignments
                .iter()
                .filter(|(c, r)| by_id[c.as_str()].current_recorder.as_ref() != Some(*r))
                .count()
        );

        // (2) Sticky: cameras on a healthy recorder within capacity stay; an overloaded one
        // loses the fewest cameras that bring it under.
        let before = input_loads(input);
        for (&recorder, &load) in &before {
            let capacity = u64::from(healthy[recorder].capacity_kbps);
            let mut on_it: Vec<&PlacementCamera> = input
                .cameras
                .iter()
                .filter(|c| c.pool == POOL && c.current_recorder.as_deref() == Some(recorder))
                .collect();
            let left = on_it
                .iter()
                .filter(|c| assigned(placement, &c.id) != Some(recorder))
                .count();
            if healthy[recorder].draining {
                // Its cameras leave where there is room (checked with the moves above).
                continue;
            }
            if load <= capacity {
                assert_eq!(left, 0, "{recorder} was within capacity");
            } else {
                on_it.sort_by_key(|c| Reverse(c.bitrate_kbps));
                let mut shed = 0;
                let mut fewest = 0;
                for c in on_it {
                    if load - shed <= capacity {
                        break;
                    }
                    shed += u64::from(c.bitrate_kbps);
                    fewest += 1;
                }
                assert_eq!(left, fewest, "{recorder} overloaded by {}", load - capacity);
            }
        }

        // Unplaced cameras have the right reason; none would fit anywhere now.
        for u in &placement.unplaced {
            let camera = by_id[u.camera.as_str()];
            assert_eq!(u.previous_recorder, camera.current_recorder);
            assert_eq!(u.bitrate_kbps, camera.bitrate_kbps);
            let must_move = camera.current_recorder.is_some();
            let bitrate = u64::from(camera.bitrate_kbps);
            match u.reason {
                UnplacedReason::WrongPool => assert_ne!(camera.pool, POOL),
                UnplacedReason::DuplicateId => panic!("ids are unique"),
                UnplacedReason::NoHealthyRecorder => {
                    assert!(healthy.values().all(|r| r.draining))
                }
                UnplacedReason::LargerThanAnyRecorder => {
                    assert!(
                        healthy
                            .keys()
                            .filter(|r| !healthy[*r].draining)
                            .all(|r| bitrate > limit_of(r, must_move))
                    )
                }
                UnplacedReason::InsufficientCapacity => {
                    for &r in healthy.keys().filter(|r| !healthy[*r].draining) {
                        let load = loads.get(r).copied().unwrap_or(0);
                        assert!(load + bitrate > limit_of(r, must_move), "{u:?} fits on {r}");
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_placement_satisfies_the_invariants(input in arb_input()) {
            check_invariants(&input, &place(&input));
        }

        /// (1) When the simple reference places every camera under the normal limits, so does
        /// `place`; and when total demand leaves every recorder room for the largest camera,
        /// worst-fit alone cannot fail.
        #[test]
        fn feasible_placements_are_found(input in arb_scratch_input()) {
            let placement = place(&input);
            check_invariants(&input, &placement);
            let headroom = input.failover_headroom_percent;
            if reference_first_fit_places_all(&input) {
                prop_assert!(placement.unplaced.is_empty(), "{:?}", placement.unplaced);
                for load in &placement.loads {
                    prop_assert!(load.load_kbps <= normal_limit(load.capacity_kbps, headroom));
                }
            }
            let largest = input.cameras.iter().map(|c| u64::from(c.bitrate_kbps)).max().unwrap_or(0);
            let total: u64 = input.cameras.iter().map(|c| u64::from(c.bitrate_kbps)).sum();
            let spare: u64 = input
                .recorders
                .iter()
                .map(|r| normal_limit(r.capacity_kbps, headroom).saturating_sub(largest))
                .sum();
            if total <= spare {
                prop_assert!(placement.unplaced.is_empty());
            }
        }

        /// (3) When one recorder is lost, only its cameras move.
        #[test]
        fn losing_one_recorder_moves_only_its_cameras(
            input in arb_scratch_input(),
            lost_pick in any::<prop::sample::Index>(),
        ) {
            let before = place(&input);
            let lost = lost_pick.get(&input.recorders).id.clone();
            let mut after_input = input.clone();
            for camera in &mut after_input.cameras {
                camera.current_recorder = before.assignments.get(&camera.id).cloned();
            }
            for recorder in &mut after_input.recorders {
                if recorder.id == lost {
                    recorder.healthy = false;
                }
            }
            let after = place(&after_input);
            check_invariants(&after_input, &after);
            for (camera, recorder) in &before.assignments {
                if *recorder != lost {
                    prop_assert_eq!(after.assignments.get(camera), Some(recorder));
                }
            }
            for m in &after.moves {
                prop_assert_eq!(m.reason, MoveReason::RecorderLost);
                prop_assert_eq!(m.from.as_deref(), Some(lost.as_str()));
            }
            prop_assert_eq!(load_of(&after, &lost), 0);
        }

        /// (5) Same input in any order, same output — also with repeated ids.
        #[test]
        fn placement_does_not_depend_on_input_order(
            (input, cameras, recorders) in (arb_input(), 0usize..12, 0usize..8)
                .prop_map(|(mut input, camera_ids, recorder_ids)| {
                    // Fold ids onto a small range so that some repeat.
                    for (i, c) in input.cameras.iter_mut().enumerate() {
                        if camera_ids > 0 && i % 3 == 0 {
                            c.id = format!("ns/c{:02}", i % camera_ids);
                        }
                    }
                    for (i, r) in input.recorders.iter_mut().enumerate() {
                        if recorder_ids > 0 && i % 2 == 0 {
                            r.id = format!("r{}", i % recorder_ids);
                        }
                    }
                    input
                })
                .prop_flat_map(|input| {
                    let cameras = Just(input.cameras.clone()).prop_shuffle();
                    let recorders = Just(input.recorders.clone()).prop_shuffle();
                    (Just(input), cameras, recorders)
                })
        ) {
            let shuffled = PlacementInput { cameras, recorders, ..input.clone() };
            prop_assert_eq!(place(&input), place(&shuffled));
        }

        /// Placing again with the result as the current assignment changes nothing.
        #[test]
        fn placement_is_stable(input in arb_input()) {
            let first = place(&input);
            let mut again = input.clone();
            again.cameras.retain(|c| first.assignments.contains_key(&c.id));
            for camera in &mut again.cameras {
                camera.current_recorder = first.assignments.get(&camera.id).cloned();
            }
            let second = place(&again);
            prop_assert!(second.moves.is_empty());
            prop_assert!(second.unplaced.is_empty());
            prop_assert_eq!(second.assignments, first.assignments);
        }
    }

    fn draining(id: &str, capacity_kbps: u32) -> PlacementRecorder {
        PlacementRecorder {
            draining: true,
            ..recorder(id, capacity_kbps, true)
        }
    }

    #[test]
    fn draining_recorder_hands_its_cameras_over_and_gets_none() {
        let cameras = vec![
            camera("a", 30, Some("r0")),
            camera("b", 20, Some("r0")),
            camera("new", 10, None),
        ];
        let recorders = vec![
            draining("r0", 100),
            recorder("r1", 100, true),
            recorder("r2", 100, true),
        ];
        let placement = place(&input(cameras, recorders, 20));
        assert!(placement.unplaced.is_empty());
        for c in ["a", "b", "new"] {
            assert_ne!(
                assigned(&placement, c),
                Some("r0"),
                "{c} on the draining recorder"
            );
        }
        let drains: Vec<(&str, MoveReason)> = placement
            .moves
            .iter()
            .map(|m| (m.camera.as_str(), m.reason))
            .collect();
        assert_eq!(
            drains,
            [
                ("a", MoveReason::Drain),
                ("b", MoveReason::Drain),
                ("new", MoveReason::New)
            ]
        );
        assert!(MoveReason::Drain.is_planned() && !MoveReason::RecorderLost.is_planned());
        assert_eq!(load_of(&placement, "r0"), 0);
    }

    #[test]
    fn draining_cameras_without_a_new_home_stay_recorded() {
        // r1 has room for one of the two; the other stays on its draining recorder.
        let cameras = vec![camera("a", 70, Some("r0")), camera("b", 60, Some("r0"))];
        let recorders = vec![draining("r0", 100), recorder("r1", 100, true)];
        let placement = place(&input(cameras.clone(), recorders, 0));
        assert!(placement.unplaced.is_empty(), "{:?}", placement.unplaced);
        assert_eq!(assigned(&placement, "a"), Some("r1"));
        assert_eq!(assigned(&placement, "b"), Some("r0"));
        assert_eq!(load_of(&placement, "r0"), 60);
        // The only recorder drains: everything stays, nothing is unplaced.
        let placement = place(&input(cameras, vec![draining("r0", 100)], 0));
        assert!(placement.unplaced.is_empty());
        assert!(placement.moves.is_empty());
        assert_eq!(assigned(&placement, "a"), Some("r0"));
    }

    fn crowded(n: usize, bitrate: u32) -> PlacementInput {
        let cameras = (0..n)
            .map(|i| camera(&format!("c{i}"), bitrate, Some("r0")))
            .collect();
        let recorders = (0..3)
            .map(|i| recorder(&format!("r{i}"), 10_000, true))
            .collect();
        input(cameras, recorders, 20)
    }

    #[test]
    fn rebalance_spreads_a_crowded_pool_evenly() {
        // Six cameras crowded on the first recorder that became ready.
        let input = crowded(6, 500);
        let mut placement = place(&input);
        assert!(
            placement.moves.is_empty(),
            "sticky: nothing moves by itself"
        );
        let rule = RebalanceRule {
            threshold: 1.25,
            max_moves: 100,
        };
        rebalance(&input, &mut placement, &rule);
        assert_eq!(placement.moves.len(), 4);
        assert!(
            placement
                .moves
                .iter()
                .all(|m| m.reason == MoveReason::Balance && m.from.as_deref() == Some("r0"))
        );
        for r in ["r0", "r1", "r2"] {
            assert_eq!(load_of(&placement, r), 1000, "{r}");
        }
        assert!((placement.balance().max_over_ideal - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rebalance_moves_at_most_the_budget_and_stops_at_the_threshold() {
        let input = crowded(6, 500);
        let mut placement = place(&input);
        rebalance(
            &input,
            &mut placement,
            &RebalanceRule {
                threshold: 1.25,
                max_moves: 2,
            },
        );
        assert_eq!(placement.moves.len(), 2);
        // Seven cameras on three recorders: 3/2/2 is as good as it gets (max/ideal 1.29), and
        // a threshold below that must not make cameras go round in circles.
        let input = crowded(7, 500);
        let mut placement = place(&input);
        rebalance(
            &input,
            &mut placement,
            &RebalanceRule {
                threshold: 1.0,
                max_moves: 100,
            },
        );
        assert_eq!(placement.moves.len(), 4);
        let mut again = input.clone();
        for c in &mut again.cameras {
            c.current_recorder = placement.assignments.get(&c.id).cloned();
        }
        let mut second = place(&again);
        rebalance(
            &again,
            &mut second,
            &RebalanceRule {
                threshold: 1.0,
                max_moves: 100,
            },
        );
        assert!(second.moves.is_empty(), "{:?}", second.moves);
    }

    #[test]
    fn rebalance_ignores_draining_recorders_and_respects_normal_limits() {
        let cameras = vec![
            camera("a", 400, Some("r1")),
            camera("b", 400, Some("r1")),
            camera("c", 400, Some("r0")),
        ];
        // r0 drains; r2's normal limit (500 of 1000 with 50 % headroom) takes only one.
        let recorders = vec![
            draining("r0", 1000),
            recorder("r1", 1000, true),
            recorder("r2", 1000, true),
        ];
        let input = input(cameras, recorders, 50);
        let mut placement = place(&input);
        rebalance(
            &input,
            &mut placement,
            &RebalanceRule {
                threshold: 1.1,
                max_moves: 10,
            },
        );
        for m in &placement.moves {
            assert_ne!(m.to, "r0");
        }
        let r2 = placement
            .loads
            .iter()
            .find(|l| l.recorder == "r2")
            .expect("r2");
        assert!(r2.load_kbps <= u64::from(r2.normal_limit_kbps), "{r2:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Rebalance after placement keeps every placement invariant, never exceeds its budget,
        /// never raises the largest eligible load, moves only between eligible recorders into
        /// their normal limit, and ends at or under the threshold unless no move can improve.
        #[test]
        fn rebalance_rules(
            input in arb_input(),
            drain in prop::option::of(0usize..6),
            threshold in 1.0f64..2.0,
            max_moves in 0usize..8,
        ) {
            let mut input = input;
            if let Some(d) = drain && let Some(r) = input.recorders.get_mut(d) {
                r.draining = true;
            }
            let mut placement = place(&input);
            let eligible = |p: &Placement| -> Vec<RecorderLoad> {
                p.loads.iter().filter(|l| l.healthy && !l.draining).cloned().collect()
            };
            let max_before = eligible(&placement).iter().map(|l| l.load_kbps).max();
            let moves_before = placement.moves.len();
            check_invariants(&input, &placement);
            let assigned_before = placement.assignments.clone();
            rebalance(&input, &mut placement, &RebalanceRule { threshold, max_moves });
            // Same cameras placed; loads still match the assignments.
            prop_assert_eq!(
                placement.assignments.keys().collect::<Vec<_>>(),
                assigned_before.keys().collect::<Vec<_>>()
            );
            prop_assert_eq!(
                recorder_loads(&input, &placement.assignments)
                    .iter()
                    .map(|l| (l.recorder.clone(), l.load_kbps, l.cameras))
                    .collect::<Vec<_>>(),
                placement
                    .loads
                    .iter()
                    .map(|l| (l.recorder.clone(), l.load_kbps, l.cameras))
                    .collect::<Vec<_>>()
            );
            let balance_moves: Vec<&CameraMove> = placement
                .moves
                .iter()
                .filter(|m| m.reason == MoveReason::Balance)
                .collect();
            prop_assert_eq!(placement.moves.len(), moves_before + balance_moves.len());
            prop_assert!(balance_moves.len() <= max_moves);
            let after = eligible(&placement);
            prop_assert!(after.iter().map(|l| l.load_kbps).max() <= max_before);
            for m in &balance_moves {
                let to = after.iter().find(|l| l.recorder == m.to);
                prop_assert!(to.is_some(), "moved to a non-eligible recorder: {:?}", m);
                let to = to.unwrap();
                prop_assert!(to.load_kbps <= u64::from(to.normal_limit_kbps), "{:?}", to);
            }
            for l in placement.loads.iter().filter(|l| l.draining) {
                prop_assert!(balance_moves.iter().all(|m| m.to != l.recorder));
            }
        }
    }
}
