//! Lookups as sans-IO state machines (`plot-format.md` §11 to §13).
//!
//! A lookup proceeds in rounds. Each round hands out one or more [`ReadRequest`]s
//! ([`Lookup::reads`]); the driver answers each with [`Lookup::supply`], in any order. When the
//! last read of a round arrives the lookup decodes and starts the next round, until
//! [`Lookup::outcome`] is set. Reads of one round are independent, so a driver may issue them
//! all at once: a full proof takes 3 rounds to reach P7 and then one round per table
//! (1, 2, 4, ... 32 reads), instead of 66 serial reads.

use crate::bits::get_bits;
use crate::error::PlotError;
use crate::layout::{
    Geometry, C3_DELTAS_MAX, CHECKPOINT1_INTERVAL, CHECKPOINT2_INTERVAL, DELTAS_PER_PARK,
    ENTRIES_PER_PARK,
};
use crate::park::{line_point_to_square, p7_entry, C3Deltas, Park, ParkJob};
use crate::plot::Tables;
use crate::verify::{pack_proof, quality_string, reorder_proof};
use crate::ReadRequest;

/// Table-7 entries one challenge may match before the plot is called corrupt. A real plot
/// matches about one (Poisson); 256 is unreachable by chance.
pub const ENTRIES_PER_CHALLENGE_MAX: u64 = 256;
/// C1 checkpoints after the starting one that the complete scan can follow (beyond it,
/// `ENTRIES_PER_CHALLENGE_MAX` would be exceeded anyway on a sane plot).
const NEXT_CHECKPOINTS: usize = 8;

/// Which table-7 entries a challenge returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Exactly chiapos' `GetP7Entries` (§11.1), including the entries it misses.
    Chiapos,
    /// Every table-7 entry whose f7 equals the challenge's (§11.2). A superset of chiapos.
    #[default]
    Complete,
}

/// What a lookup fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// The qualities of every matching entry (6 reads per entry after P7).
    Qualities,
    /// Qualities and full proofs of every matching entry.
    QualitiesAndProofs,
    /// The full proof of entry `index` (chiapos' `get_full_proof(challenge, index)`).
    Proof { index: u32 },
}

/// One answer: the index shared with [`Goal::Proof`] in the same mode, the quality string,
/// and the proof (64 x values in proof order, 8k bytes) when asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub index: u32,
    pub quality: [u8; 32],
    pub proof: Option<Vec<u8>>,
}

pub type Outcome = Result<Vec<Found>, PlotError>;

#[derive(Debug)]
enum Stage {
    C1 {
        group: u64,
    },
    /// `reach`: about how many deltas the scan will decode (paired C3 decodes run this far
    /// together; see [`c3_reach`]).
    C3 {
        park: u64,
        cur: u64,
        positions: Positions,
        next: Checkpoints,
        reach: usize,
    },
    /// `first_bit`: the table bit at which the read starts.
    P7 {
        positions: Positions,
        first_bit: u64,
    },
    Walk(Walk),
    Done,
}

/// A run of consecutive table-7 positions (matches are adjacent: table 7 is sorted by f7).
#[derive(Debug, Clone, Copy, Default)]
struct Positions {
    first: u64,
    count: u64,
}

impl Positions {
    fn push(&mut self, pos: u64) -> Result<(), PlotError> {
        if self.count == 0 {
            self.first = pos;
        }
        debug_assert_eq!(self.first + self.count, pos, "matching positions are consecutive");
        self.count += 1;
        if self.count > ENTRIES_PER_CHALLENGE_MAX {
            return Err(PlotError::TooManyEntries {
                count: self.count,
                limit: ENTRIES_PER_CHALLENGE_MAX,
            });
        }
        Ok(())
    }
}

/// The C1 values after the checkpoint a complete scan starts from (0 = end of table).
#[derive(Debug, Clone, Copy, Default)]
struct Checkpoints {
    values: [u64; NEXT_CHECKPOINTS],
    len: usize,
    used: usize,
}

#[derive(Debug)]
struct Walk {
    /// The table read in this round, 6 down to 1.
    table: u8,
    /// Whole trees (proofs) or one path per tree (qualities).
    full: bool,
    /// Positions read this round, tree-major and in plot order.
    nodes: Vec<u64>,
    /// Decoded (larger, smaller) pair of each node.
    pairs: Vec<(u64, u64)>,
    /// Distinct parks of this round, sorted; `reads[i]` fetches `parks[i]`.
    parks: Vec<u64>,
    /// The last entry of `parks[i]` that a node needs: how far its decode runs.
    uptos: Vec<usize>,
    /// Table-7 index of each tree (the `index` of [`Found`]).
    indices: Vec<u32>,
}

/// What [`Lookup::pair_key`] says of a read: its kind, and about how many symbols its
/// decode takes. Reads of one kind pair; sorted keys put similar reads side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PairKey {
    /// A park of a walk round, decoded up to this entry.
    Walk(usize),
    /// A C3 park, about this many deltas of which decode together.
    C3(usize),
}

/// A quality or proof lookup of one challenge in one plot. See the module documentation.
#[derive(Debug)]
pub struct Lookup {
    tables: Tables,
    challenge: [u8; 32],
    goal: Goal,
    mode: Mode,
    f7: u64,
    /// C2 entries the scan needs: the group's own (equal to its first C1 entry), and the next
    /// one (the C1 value at the next group boundary).
    c2_group: u64,
    c2_next: Option<u64>,
    stage: Stage,
    reads: Vec<ReadRequest>,
    supplied: Vec<bool>,
    remaining: usize,
    round: u32,
    outcome: Option<Outcome>,
}

impl Lookup {
    pub(crate) fn new(
        tables: Tables,
        c2: &[u64],
        challenge: &[u8; 32],
        goal: Goal,
        mode: Mode,
    ) -> Lookup {
        let k = u32::from(tables.k());
        let f7 = get_bits(challenge, 0, k);
        let mut lookup = Lookup {
            tables,
            challenge: *challenge,
            goal,
            mode,
            f7,
            c2_group: 0,
            c2_next: None,
            stage: Stage::Done,
            reads: Vec::new(),
            supplied: Vec::new(),
            remaining: 0,
            round: 0,
            outcome: None,
        };
        // Step A (§11.1): the C2 group, in memory.
        let group = match mode {
            Mode::Chiapos => c2.iter().rposition(|&v| v <= f7),
            Mode::Complete => c2.iter().rposition(|&v| v < f7).or_else(|| {
                // Only the very first f7 can equal C2[0] with nothing below it.
                (c2.first() == Some(&f7)).then_some(0)
            }),
        };
        match group {
            None => lookup.finish(Ok(Vec::new())),
            Some(g) => {
                lookup.c2_group = c2[g];
                lookup.c2_next = c2.get(g + 1).copied();
                lookup.start_c1(g as u64);
            }
        }
        lookup
    }

    /// The reads of the current round (empty once done). Stable until the round ends.
    pub fn reads(&self) -> &[ReadRequest] {
        &self.reads
    }

    /// The reads of the current round still owed bytes (indices into [`Lookup::reads`]).
    pub fn owed(&self) -> impl Iterator<Item = usize> + '_ {
        self.supplied.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| i)
    }

    /// Counts rounds, so a driver can tell a late completion of an old round from a new one.
    pub fn round(&self) -> u32 {
        self.round
    }

    pub fn is_done(&self) -> bool {
        self.outcome.is_some()
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn into_outcome(self) -> Option<Outcome> {
        self.outcome
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }

    /// Answers read `i` of the current round with its bytes (exactly the requested length).
    /// Supplying a read twice, or after the lookup is done, is ignored.
    pub fn supply(&mut self, i: usize, bytes: &[u8]) {
        if self.is_done() || self.supplied.get(i).copied() != Some(false) {
            debug_assert!(self.is_done(), "read {i} supplied twice or out of range");
            return;
        }
        let request = self.reads[i];
        if bytes.len() != request.len as usize {
            return self.finish(Err(PlotError::ShortRead {
                offset: request.offset,
                len: request.len,
                got: bytes.len(),
            }));
        }
        self.supplied[i] = true;
        self.remaining -= 1;
        if let Err(e) = self.absorb(i, bytes) {
            self.finish(Err(e));
        }
    }

    /// [`Lookup::supply`] of several reads of the current round, `(i, bytes)` each. The same
    /// answers as supplying them one by one, but the parks of a walk round are decoded two at
    /// a time, their FSE streams interleaved ([`crate::fse::decode_pair`]), paired by how far
    /// into its park each decodes so that the two streams run alongside for longest. A round
    /// of a proof walk (up to 32 parks) gains from it. When several reads are bad, which one's
    /// error ends the lookup may differ from the one-by-one order.
    pub fn supply_many(&mut self, reads: &[(usize, &[u8])]) {
        let round = self.round;
        let reads: Vec<Supply<'_>> =
            reads.iter().map(|&(read, bytes)| Supply { lookup: 0, round, read, bytes }).collect();
        supply_batch(std::slice::from_mut(self), &reads);
    }

    /// Whether read `i` of this round awaits bytes and `len` is its requested length.
    fn read_ready(&self, i: usize, len: usize) -> bool {
        self.supplied.get(i) == Some(&false) && self.reads[i].len as usize == len
    }

    /// Whether reads `i` and `j` are two distinct reads of a walk round, not yet supplied, of
    /// their requested lengths (anything else goes through [`Lookup::supply`] and its checks).
    fn walk_pair_ready(&self, (i, a): (usize, &[u8]), (j, b): (usize, &[u8])) -> bool {
        matches!(self.stage, Stage::Walk(_))
            && i != j
            && self.read_ready(i, a.len())
            && self.read_ready(j, b.len())
    }

    fn supply_two(&mut self, (i, a): (usize, &[u8]), (j, b): (usize, &[u8])) {
        let mut walk = self.take_walk_reads(&[i, j]);
        let result = walk.absorb_two(self.tables.geometry, self.mode, (i, a), (j, b));
        self.end_walk_reads(walk, result);
    }

    /// [`Lookup::supply`] of read `i` of this lookup and of read `j` of `other`, another
    /// lookup (of this plot or another): the same answers, but when both are reads of a walk
    /// round, or both of a C3 park, their FSE streams are decoded together (interleaved, see
    /// [`crate::fse::decode_pair`]). A driver that has reads of several lookups at hand pairs
    /// them with this, by [`Lookup::pair_key`]; [`supply_batch`] does it for a batch.
    pub fn supply_with(
        &mut self,
        (i, a): (usize, &[u8]),
        other: &mut Lookup,
        (j, b): (usize, &[u8]),
    ) {
        match (self.pair_key(i, a.len()), other.pair_key(j, b.len())) {
            (Some(PairKey::Walk(_)), Some(PairKey::Walk(_))) => {
                let mut wa = self.take_walk_reads(&[i]);
                let mut wb = other.take_walk_reads(&[j]);
                let (mut deltas_a, mut deltas_b) = ([0; DELTAS_PER_PARK], [0; DELTAS_PER_PARK]);
                let [da, db] = Park::decode_two(
                    (wa.job(self.tables.geometry, self.mode, i, a), &mut deltas_a),
                    (wb.job(other.tables.geometry, other.mode, j, b), &mut deltas_b),
                );
                let ra = da.and_then(|d| wa.take_pairs(self.tables.geometry, i, &d));
                let rb = db.and_then(|d| wb.take_pairs(other.tables.geometry, j, &d));
                self.end_walk_reads(wa, ra);
                other.end_walk_reads(wb, rb);
            }
            (Some(PairKey::C3(_)), Some(PairKey::C3(_))) => {
                self.supply_c3_with((i, a), other, (j, b))
            }
            _ => {
                self.supply(i, a);
                other.supply(j, b);
            }
        }
    }

    /// [`Lookup::supply_with`] of the C3 reads of two lookups: the first `reach` deltas of
    /// each park decoded together ([`C3Deltas::prefill_two`]), the rest as each scan needs.
    fn supply_c3_with(
        &mut self,
        (i, a): (usize, &[u8]),
        other: &mut Lookup,
        (j, b): (usize, &[u8]),
    ) {
        let (
            Stage::C3 { park: pa, cur: ca, positions: qa, next: na, reach: ra },
            Stage::C3 { park: pb, cur: cb, positions: qb, next: nb, reach: rb },
        ) = (
            std::mem::replace(&mut self.stage, Stage::Done),
            std::mem::replace(&mut other.stage, Stage::Done),
        )
        else {
            unreachable!("pair_key found both lookups at a C3 read")
        };
        self.count_supplied(&[i]);
        other.count_supplied(&[j]);
        let (mut pre_a, mut pre_b) = ([0u8; C3_DELTAS_MAX], [0u8; C3_DELTAS_MAX]);
        let da = C3Deltas::new(a, self.geometry(), self.mode);
        let db = C3Deltas::new(b, other.geometry(), other.mode);
        let (da, db) = match (da, db) {
            (Ok(Some(mut da)), Ok(Some(mut db))) => {
                C3Deltas::prefill_two(&mut da, &mut pre_a[..ra], &mut db, &mut pre_b[..rb]);
                (Ok(Some(da)), Ok(Some(db)))
            }
            other => other,
        };
        let result = da.and_then(|d| self.after_c3(pa, ca, qa, na, d));
        if let Err(e) = result {
            self.finish(Err(e));
        }
        let result = db.and_then(|d| other.after_c3(pb, cb, qb, nb, d));
        if let Err(e) = result {
            other.finish(Err(e));
        }
    }

    /// Whether, and with which others, read `i` (`len` bytes supplied) can be decoded
    /// together with another lookup's ([`Lookup::supply_with`]): a read of a walk round, or
    /// of a C3 park. A driver sorts the reads it holds by key and pairs neighbours: same
    /// kind, and similar reach, so that both streams run alongside for longest.
    pub fn pair_key(&self, i: usize, len: usize) -> Option<PairKey> {
        if !self.read_ready(i, len) {
            return None;
        }
        match &self.stage {
            Stage::Walk(walk) => Some(PairKey::Walk(walk.upto(i))),
            Stage::C3 { reach, .. } => Some(PairKey::C3(*reach)),
            _ => None,
        }
    }

    /// Takes the walk out of the stage to decode reads `reads` of its round (ready, checked
    /// by the caller), counting them supplied; [`Lookup::end_walk_reads`] puts it back.
    fn take_walk_reads(&mut self, reads: &[usize]) -> Walk {
        let Stage::Walk(walk) = std::mem::replace(&mut self.stage, Stage::Done) else {
            unreachable!("the caller checked that the lookup walks")
        };
        self.count_supplied(reads);
        walk
    }

    /// Counts reads `reads` of this round (ready, checked by the caller) as supplied.
    fn count_supplied(&mut self, reads: &[usize]) {
        for &i in reads {
            self.supplied[i] = true;
            self.remaining -= 1;
        }
    }

    /// After [`Lookup::take_walk_reads`]: the walk goes on, its round ends, or the lookup
    /// ends with the decode's error.
    fn end_walk_reads(&mut self, walk: Walk, decoded: Result<(), PlotError>) {
        let result = decoded.and_then(|()| {
            if self.remaining > 0 {
                self.stage = Stage::Walk(walk);
                Ok(())
            } else {
                self.after_walk_round(walk)
            }
        });
        if let Err(e) = result {
            self.finish(Err(e));
        }
    }

    /// Ends the lookup with an error found by the driver (an I/O error, say).
    pub fn fail(&mut self, error: PlotError) {
        if !self.is_done() {
            self.finish(Err(error));
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.stage = Stage::Done;
        self.reads.clear();
        self.supplied.clear();
        self.remaining = 0;
        self.outcome = Some(outcome);
    }

    fn set_reads(&mut self, reads: impl IntoIterator<Item = ReadRequest>) {
        self.reads.clear();
        self.reads.extend(reads);
        self.supplied.clear();
        self.supplied.resize(self.reads.len(), false);
        self.remaining = self.reads.len();
        self.round += 1;
    }

    fn geometry(&self) -> Geometry {
        self.tables.geometry
    }

    fn start_c1(&mut self, group: u64) {
        let entry = self.geometry().checkpoint_entry_bytes();
        let first = group * CHECKPOINT2_INTERVAL;
        // Complete mode also reads a few entries of the next group, for scans that cross it.
        let extra = if self.mode == Mode::Complete { NEXT_CHECKPOINTS as u64 } else { 0 };
        let slots = self.tables.c1_slots.saturating_sub(first).min(CHECKPOINT1_INTERVAL + extra);
        let read =
            self.tables.read_in_table(8, self.tables.table_start(8) + first * entry, slots * entry);
        match read {
            Ok(r) => {
                self.stage = Stage::C1 { group };
                self.set_reads([r]);
            }
            Err(e) => self.finish(Err(e)),
        }
    }

    fn start_c3(
        &mut self,
        park: u64,
        cur: u64,
        positions: Positions,
        next: Checkpoints,
        reach: usize,
    ) -> Result<(), PlotError> {
        let size = self.geometry().c3_park_bytes();
        let read =
            self.tables.read_in_table(10, self.tables.table_start(10) + park * size, size)?;
        self.stage = Stage::C3 { park, cur, positions, next, reach };
        self.set_reads([read]);
        Ok(())
    }

    /// Decodes the bytes of read `i` at once (no buffer outlives `supply`) and, when the round
    /// is complete, moves to the next one.
    fn absorb(&mut self, i: usize, bytes: &[u8]) -> Result<(), PlotError> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::C1 { group } => self.after_c1(group, bytes),
            Stage::C3 { park, cur, positions, next, reach: _ } => {
                let deltas = C3Deltas::new(bytes, self.geometry(), self.mode)?;
                self.after_c3(park, cur, positions, next, deltas)
            }
            Stage::P7 { positions, first_bit } => self.after_p7(positions, first_bit, bytes),
            Stage::Walk(mut walk) => {
                walk.absorb(self.tables.geometry, self.mode, i, bytes)?;
                if self.remaining > 0 {
                    self.stage = Stage::Walk(walk);
                    return Ok(());
                }
                self.after_walk_round(walk)
            }
            Stage::Done => Ok(()),
        }
    }

    /// Step B (§11.1): the last C1 checkpoint at (chiapos) or below (complete) the target.
    fn after_c1(&mut self, group: u64, bytes: &[u8]) -> Result<(), PlotError> {
        let g = self.geometry();
        let k = u32::from(g.k());
        let entry = g.checkpoint_entry_bytes() as usize;
        let first = group * CHECKPOINT2_INTERVAL;
        let in_group = bytes.len().min(CHECKPOINT1_INTERVAL as usize * entry);
        let value = |j: usize| get_bits(&bytes[j * entry..], 0, k);
        let group_len = in_group / entry;
        // Entries of the group up to the zero terminator.
        let real = (0..group_len).position(|j| j != 0 && value(j) == 0).unwrap_or(group_len);
        if group_len == 0 || value(0) != self.c2_group {
            return Err(PlotError::CheckpointsInconsistent);
        }
        let f7 = self.f7;
        match self.mode {
            Mode::Chiapos => {
                let below = (0..real).take_while(|&j| value(j) <= f7).count();
                if below == 0 {
                    return Err(PlotError::CheckpointsInconsistent);
                }
                let c = first + below as u64 - 1;
                let base = value(below - 1);
                let following = if below < real { Some(value(below)) } else { self.c2_next };
                let reach = c3_reach(base, f7, following);
                self.start_c3(c, base, Positions::default(), Checkpoints::default(), reach)
            }
            Mode::Complete => {
                let below = (0..real).take_while(|&j| value(j) < f7).count();
                let start = below.saturating_sub(1);
                if real == 0 || value(start) > f7 {
                    return Err(PlotError::CheckpointsInconsistent);
                }
                let c = first + start as u64;
                let base = value(start);
                // The checkpoints after `c`: the rest of this group, then the next group's
                // (read a few entries past the group, or C2's next value).
                let mut next = Checkpoints::default();
                let all = bytes.len() / entry;
                for j in start + 1..all {
                    if next.len == NEXT_CHECKPOINTS {
                        break;
                    }
                    let v = value(j);
                    if v == 0 {
                        break;
                    }
                    next.values[next.len] = v;
                    next.len += 1;
                }
                if next.len == 0 && real == group_len && group_len == CHECKPOINT1_INTERVAL as usize
                {
                    if let Some(v) = self.c2_next {
                        next.values[0] = v;
                        next.len = 1;
                    }
                }
                let mut positions = Positions::default();
                if base == f7 {
                    positions.push(c * CHECKPOINT1_INTERVAL)?;
                }
                let reach = c3_reach(base, f7, (next.len > 0).then_some(next.values[0]));
                self.start_c3(c, base, positions, next, reach)
            }
        }
    }

    /// Step C (§11.1, §11.2): scan the C3 park for the target.
    fn after_c3(
        &mut self,
        park: u64,
        mut cur: u64,
        mut positions: Positions,
        mut next: Checkpoints,
        deltas: Option<C3Deltas<'_>>,
    ) -> Result<(), PlotError> {
        let g = self.geometry();
        let f7 = self.f7;
        let Some(mut deltas) = deltas else {
            self.finish(Ok(Vec::new()));
            return Ok(());
        };
        let mut pos = park * CHECKPOINT1_INTERVAL;
        match self.mode {
            Mode::Chiapos => {
                // chiapos' GetP7Positions, zero padding and early breaks included (trap 11).
                let mut surpassed = false;
                let park_last = (park + 1) * CHECKPOINT1_INTERVAL - 1;
                let f7_max = (1u64 << g.k()) - 1;
                'scan: loop {
                    let chunk = deltas.next_chunk()?;
                    if chunk.is_empty() {
                        break;
                    }
                    // Whole chunks below the target only move the counters.
                    let sum: u64 = chunk.iter().map(|&d| u64::from(d)).sum();
                    if cur + sum < f7 && pos + (chunk.len() as u64) < park_last {
                        cur += sum;
                        pos += chunk.len() as u64;
                        continue;
                    }
                    for &d in chunk {
                        if cur > f7 {
                            surpassed = true;
                            break 'scan;
                        }
                        cur += u64::from(d);
                        pos += 1;
                        if cur == f7 {
                            positions.push(pos)?;
                        }
                        if pos >= park_last || cur >= f7_max {
                            break 'scan;
                        }
                    }
                }
                if !surpassed {
                    positions = Positions::default();
                }
                self.start_p7(positions)
            }
            Mode::Complete => {
                // A full park holds 9999 deltas; the last park ends with its stream.
                let last = pos + CHECKPOINT1_INTERVAL - 1;
                'park: loop {
                    let chunk = deltas.next_chunk()?;
                    if chunk.is_empty() {
                        break;
                    }
                    let sum: u64 = chunk.iter().map(|&d| u64::from(d)).sum();
                    if cur + sum < f7 && pos + (chunk.len() as u64) < last {
                        cur += sum;
                        pos += chunk.len() as u64;
                        continue;
                    }
                    for &d in chunk {
                        if pos == last {
                            break 'park;
                        }
                        cur += u64::from(d);
                        pos += 1;
                        if cur == f7 {
                            positions.push(pos)?;
                        } else if cur > f7 {
                            return self.start_p7(positions);
                        }
                    }
                }
                // The park ended at or below the target: the next checkpoint decides.
                if next.used < next.len {
                    let v = next.values[next.used];
                    next.used += 1;
                    if v < f7 {
                        return Err(PlotError::CheckpointsInconsistent);
                    }
                    if v == f7 {
                        let park = park + 1;
                        positions.push(park * CHECKPOINT1_INTERVAL)?;
                        return self.start_c3(park, v, positions, next, 0);
                    }
                }
                self.start_p7(positions)
            }
        }
    }

    /// Step D: one read covering every P7 park that holds the positions.
    fn start_p7(&mut self, positions: Positions) -> Result<(), PlotError> {
        if positions.count == 0 {
            self.finish(Ok(Vec::new()));
            return Ok(());
        }
        if let Goal::Proof { index } = self.goal {
            if u64::from(index) >= positions.count {
                return Err(PlotError::NoProof { index });
            }
        }
        // P7 parks are whole multiples of (k+1)-bit entries, so the table is one bit string:
        // read just the bytes holding the entries.
        let width = u64::from(self.geometry().k()) + 1;
        let first_byte = positions.first * width / 8;
        let end_byte = ((positions.first + positions.count) * width).div_ceil(8);
        let read = self.tables.read_in_table(
            7,
            self.tables.table_start(7) + first_byte,
            end_byte - first_byte,
        )?;
        self.stage = Stage::P7 { positions, first_bit: first_byte * 8 };
        self.set_reads([read]);
        Ok(())
    }

    fn after_p7(
        &mut self,
        positions: Positions,
        first_bit: u64,
        bytes: &[u8],
    ) -> Result<(), PlotError> {
        let g = self.geometry();
        let entry = |index: u64| p7_entry(bytes, g, positions.first + index, first_bit);
        let (full, trees): (bool, Vec<(u32, u64)>) = match self.goal {
            Goal::Proof { index } => (true, vec![(index, entry(u64::from(index)))]),
            Goal::Qualities => {
                (false, (0..positions.count).map(|i| (i as u32, entry(i))).collect())
            }
            Goal::QualitiesAndProofs => {
                (true, (0..positions.count).map(|i| (i as u32, entry(i))).collect())
            }
        };
        let walk = Walk {
            table: 6,
            full,
            indices: trees.iter().map(|t| t.0).collect(),
            nodes: trees.iter().map(|t| t.1).collect(),
            pairs: Vec::new(),
            parks: Vec::new(),
            uptos: Vec::new(),
        };
        self.start_walk_round(walk)
    }

    fn start_walk_round(&mut self, mut walk: Walk) -> Result<(), PlotError> {
        let table = walk.table;
        let park_bytes = self.geometry().park_bytes(table);
        walk.pairs.clear();
        walk.pairs.resize(walk.nodes.len(), (0, 0));
        walk.parks.clear();
        walk.parks.extend(walk.nodes.iter().map(|n| n / ENTRIES_PER_PARK));
        walk.parks.sort_unstable();
        walk.parks.dedup();
        walk.uptos.clear();
        walk.uptos.resize(walk.parks.len(), 0);
        for node in &walk.nodes {
            // Every node's park is in `parks`, which is sorted.
            if let Ok(i) = walk.parks.binary_search(&(node / ENTRIES_PER_PARK)) {
                let entry = (node % ENTRIES_PER_PARK) as usize;
                walk.uptos[i] = walk.uptos[i].max(entry);
            }
        }
        let start = self.tables.table_start(table);
        let mut reads = Vec::with_capacity(walk.parks.len());
        for &park in &walk.parks {
            let offset =
                park.checked_mul(park_bytes).and_then(|o| o.checked_add(start)).unwrap_or(u64::MAX);
            reads.push(self.tables.read_in_table(table, offset, park_bytes)?);
        }
        self.stage = Stage::Walk(walk);
        self.set_reads(reads);
        Ok(())
    }

    fn after_walk_round(&mut self, mut walk: Walk) -> Result<(), PlotError> {
        let last5 = self.challenge[31] & 0x1f;
        if walk.table > 1 {
            let bit = (last5 >> (walk.table - 2)) & 1;
            let pairs = std::mem::take(&mut walk.pairs);
            walk.nodes.clear();
            for (x, y) in pairs {
                if walk.full {
                    // The smaller position's subtree first (§13.1).
                    walk.nodes.extend([y, x]);
                } else {
                    walk.nodes.push(if bit == 0 { y } else { x });
                }
            }
            walk.table -= 1;
            return self.start_walk_round(walk);
        }
        let k = self.geometry().k();
        let plot_id = self.tables.plot_id;
        let mut found = Vec::with_capacity(walk.indices.len());
        if walk.full {
            for (tree, &index) in walk.indices.iter().enumerate() {
                let mut xs = [0u64; 64];
                for (j, &(x, y)) in walk.pairs[tree * 32..(tree + 1) * 32].iter().enumerate() {
                    xs[2 * j] = y;
                    xs[2 * j + 1] = x;
                }
                let l = usize::from(last5);
                let quality = quality_string(&self.challenge, k, xs[2 * l], xs[2 * l + 1]);
                let proof = pack_proof(k, &reorder_proof(&plot_id, k, &xs));
                found.push(Found { index, quality, proof: Some(proof) });
            }
        } else {
            for (&index, &(x, y)) in walk.indices.iter().zip(&walk.pairs) {
                found.push(Found {
                    index,
                    quality: quality_string(&self.challenge, k, y, x),
                    proof: None,
                });
            }
        }
        self.finish(Ok(found));
        Ok(())
    }
}

impl Walk {
    /// The last entry of park `i` of this round that a node needs.
    fn upto(&self, i: usize) -> usize {
        self.uptos[i]
    }

    /// What decoding read `i` of this round (`bytes`) takes.
    fn job<'a>(&self, geometry: Geometry, mode: Mode, i: usize, bytes: &'a [u8]) -> ParkJob<'a> {
        ParkJob { bytes, upto: self.upto(i), geometry, table: self.table, mode }
    }

    fn absorb(
        &mut self,
        geometry: Geometry,
        mode: Mode,
        i: usize,
        bytes: &[u8],
    ) -> Result<(), PlotError> {
        let mut deltas = [0; DELTAS_PER_PARK];
        let decoded = self.job(geometry, mode, i, bytes).decode(&mut deltas)?;
        self.take_pairs(geometry, i, &decoded)
    }

    /// [`Walk::absorb`] of reads `i` and then `j`, their parks decoded together.
    fn absorb_two(
        &mut self,
        geometry: Geometry,
        mode: Mode,
        (i, a): (usize, &[u8]),
        (j, b): (usize, &[u8]),
    ) -> Result<(), PlotError> {
        let (mut deltas_a, mut deltas_b) = ([0; DELTAS_PER_PARK], [0; DELTAS_PER_PARK]);
        let [da, db] = Park::decode_two(
            (self.job(geometry, mode, i, a), &mut deltas_a),
            (self.job(geometry, mode, j, b), &mut deltas_b),
        );
        self.take_pairs(geometry, i, &da?)?;
        self.take_pairs(geometry, j, &db?)
    }

    /// The (larger, smaller) pair of every node in park `i` of this round, from its decode.
    fn take_pairs(
        &mut self,
        geometry: Geometry,
        i: usize,
        decoded: &Park<'_>,
    ) -> Result<(), PlotError> {
        let park = self.parks[i];
        let in_park = |n: &u64| n / ENTRIES_PER_PARK == park;
        let limit = if self.table == 1 { 1u64 << geometry.k() } else { u64::MAX };
        for (node, pair) in self.nodes.iter().zip(self.pairs.iter_mut()) {
            if in_park(node) {
                let (x, y) =
                    line_point_to_square(decoded.line_point((node % ENTRIES_PER_PARK) as usize));
                if x >= limit {
                    return Err(PlotError::ValueOutOfRange { table: self.table, value: x });
                }
                *pair = (x, y);
            }
        }
        Ok(())
    }
}

/// How many reads [`drive`] reads before it supplies them ([`Lookup::supply_many`]).
pub const READS_TOGETHER_MAX: usize = 64;

/// Runs a lookup to its end with a synchronous reader (`read(request, buffer)` fills `buffer`
/// with exactly the requested bytes, replacing what it holds: an earlier read's bytes, which a
/// reader that only resizes need not zero again). A round's reads are read and then
/// supplied together ([`Lookup::supply_many`], at most [`READS_TOGETHER_MAX`] at a time), each
/// into one of `buffers`, which grows to that many and can be passed again to allocate nothing.
/// For tests, benches and simple tools; the engine drives lookups itself.
pub fn drive<E>(
    lookup: &mut Lookup,
    buffers: &mut Vec<Vec<u8>>,
    mut read: impl FnMut(ReadRequest, &mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    drive_many(std::slice::from_mut(lookup), buffers, |_, request, buffer| read(request, buffer))
}

/// The bytes of one read for [`supply_batch`]: read `read` of round `round` of lookup
/// `lookup` (an index into the batch's lookups).
#[derive(Debug, Clone, Copy)]
pub struct Supply<'a> {
    pub lookup: usize,
    pub round: u32,
    pub read: usize,
    pub bytes: &'a [u8],
}

/// [`Lookup::supply`] of every read of `reads`, each to its lookup of `lookups`: the same
/// answers, but the parks of walk rounds and C3 parks are decoded two at a time, across
/// lookups as within one ([`Lookup::supply_with`], [`Lookup::supply_many`]), paired by
/// [`Lookup::pair_key`]. A read of a round its lookup has left is ignored (late); each read of a
/// round is in `reads` at most once. Lookups whose reads are all ready at once (lookups of
/// several challenges or plots driven together) gain from it: their decoding steps overlap.
pub fn supply_batch(lookups: &mut [Lookup], reads: &[Supply<'_>]) {
    // (pair key, position in `reads`) of each read that can be decoded with another.
    let mut pairable = Vec::with_capacity(reads.len());
    let mut others = Vec::new();
    for (k, s) in reads.iter().enumerate() {
        let key = lookups
            .get(s.lookup)
            .filter(|l| l.round == s.round)
            .and_then(|l| l.pair_key(s.read, s.bytes.len()));
        match key {
            Some(key) => pairable.push((key, k)),
            None => others.push(k),
        }
    }
    pairable.sort_unstable();
    let current = |lookups: &[Lookup], s: &Supply<'_>| {
        lookups.get(s.lookup).is_some_and(|l| l.round == s.round)
    };
    for pair in pairable.chunks(2) {
        let [(_, ka), (_, kb)] = *pair else {
            others.push(pair[0].1);
            continue;
        };
        let (a, b) = (&reads[ka], &reads[kb]);
        match (current(lookups, a), current(lookups, b)) {
            (true, true) if a.lookup == b.lookup => {
                let lookup = &mut lookups[a.lookup];
                if lookup.walk_pair_ready((a.read, a.bytes), (b.read, b.bytes)) {
                    lookup.supply_two((a.read, a.bytes), (b.read, b.bytes));
                } else {
                    others.extend([ka, kb]);
                }
            }
            (true, true) => {
                let (first, second) = if a.lookup < b.lookup { (a, b) } else { (b, a) };
                let (head, tail) = lookups.split_at_mut(second.lookup);
                head[first.lookup].supply_with(
                    (first.read, first.bytes),
                    &mut tail[0],
                    (second.read, second.bytes),
                );
            }
            _ => others.extend([ka, kb]),
        }
    }
    for k in others {
        let s = &reads[k];
        if let Some(lookup) = lookups.get_mut(s.lookup).filter(|l| l.round == s.round) {
            lookup.supply(s.read, s.bytes);
        }
    }
}

/// [`drive`] of several lookups together (of several challenges, say, in one plot): each
/// step reads what every unfinished lookup owes (at most [`READS_TOGETHER_MAX`] reads) and
/// supplies it as one batch ([`supply_batch`]), so that the parks of different lookups are
/// decoded two at a time. `read(l, request, buffer)` reads for lookup `l` (the lookups may be
/// of different plots) as [`drive`]'s reader does. The first read error ends the drive,
/// leaving the lookups unfinished.
pub fn drive_many<E>(
    lookups: &mut [Lookup],
    buffers: &mut Vec<Vec<u8>>,
    mut read: impl FnMut(usize, ReadRequest, &mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let mut wanted: Vec<(usize, u32, usize)> = Vec::new();
    loop {
        wanted.clear();
        'lookups: for (l, lookup) in lookups.iter().enumerate() {
            for i in lookup.owed() {
                if wanted.len() == READS_TOGETHER_MAX {
                    break 'lookups;
                }
                wanted.push((l, lookup.round, i));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        if buffers.len() < wanted.len() {
            buffers.resize_with(wanted.len(), Vec::new);
        }
        for (&(l, _, i), buffer) in wanted.iter().zip(buffers.iter_mut()) {
            read(l, lookups[l].reads[i], buffer)?;
        }
        let supplies: Vec<Supply<'_>> = wanted
            .iter()
            .zip(buffers.iter())
            .map(|(&(lookup, round, read), bytes)| Supply { lookup, round, read, bytes })
            .collect();
        supply_batch(lookups, &supplies);
    }
}

/// About how many deltas a C3 scan from checkpoint value `cur` decodes to pass `f7`, when the
/// next checkpoint (`following`, 10,000 entries on) is known: the gap to the target over the
/// mean delta, less 1/16 so that a paired decode rarely runs past what the scan needs (the
/// scan decodes the rest alone). 0 when unknown.
fn c3_reach(cur: u64, f7: u64, following: Option<u64>) -> usize {
    match following {
        Some(next) if next > cur && f7 >= cur => {
            let gap = u128::from(f7 - cur) * u128::from(CHECKPOINT1_INTERVAL);
            let reach = gap / u128::from(next - cur);
            let reach = usize::try_from(reach).unwrap_or(usize::MAX).min(C3_DELTAS_MAX);
            reach - reach / 16
        }
        _ => 0,
    }
}
