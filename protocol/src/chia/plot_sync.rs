//! The plot-sync sender: tells the farmer which plots this harvester serves, so that the
//! farmer's view (its RPC, `chia farm summary`, the GUI) matches ours.
//!
//! A sync is `start`, loaded plots (in batches), removed paths, invalid paths, paths whose keys
//! are missing, duplicate paths, `done`: each message is sent only after the farmer answered
//! the previous one with a `PlotSyncResponse`. The first sync of a connection is *initial* (the
//! farmer forgets what it had); later ones are deltas against what the farmer confirmed. The
//! sender remembers the farmer's view and computes the delta itself: a plot whose file changed
//! under the same path is removed in one sync and loaded again in the next (the farmer refuses
//! a path it already has), which [`PlotSyncSender::wants_sync`] reports.
//!
//! Sans-IO: the caller passes the time, sends the frames [`PlotSyncSender::poll`] returns and
//! hands back the farmer's responses.

use std::collections::BTreeMap;

use crate::chia::messages::{
    msg, Frame, Plot2, PlotSyncDone, PlotSyncIdentifier, PlotSyncPathList, PlotSyncPlotList,
    PlotSyncPlotList2, PlotSyncResponse, PlotSyncStart,
};

/// The farmer waits this long for each message before it gives up on the sync; so do we.
pub const RESPONSE_TIMEOUT_SECONDS: u64 = 10;
/// chia's harvesting mode for CPU harvesting.
pub const HARVESTING_MODE_CPU: u8 = 1;

/// What the harvester has, as the farmer should see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Plots farmed, by absolute path.
    pub plots: BTreeMap<String, Plot2>,
    /// Files that failed to open or are not farmable (with the reason logged by the caller).
    pub invalid: Vec<String>,
    /// Plots whose farmer or pool key the farmer does not have.
    pub keys_missing: Vec<String>,
    /// Files with the plot id of a farmed plot.
    pub duplicates: Vec<String>,
}

#[derive(Debug, Clone)]
enum Payload {
    Start { initial: bool, last_sync_id: u64, count: u32 },
    Loaded { plots: Vec<Plot2>, last: bool },
    Paths { kind: u8, paths: Vec<String>, last: bool },
    Done { duration: u64 },
}

#[derive(Debug)]
struct Sync {
    id: u64,
    messages: Vec<Payload>,
    next: usize,
    /// The farmer's view once this sync is done.
    view_after: BTreeMap<String, Plot2>,
    /// When the message waiting for its response was sent (unix seconds).
    waiting_since: Option<u64>,
}

/// What a response did to the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The response does not belong to the message we wait for; ignored.
    Ignored,
    /// The next message can go.
    Next,
    /// The farmer confirmed the whole sync.
    Done,
    /// The farmer refused, unrecoverably: the sender starts over with an initial sync.
    Reset(String),
}

/// The sender's state for one connection.
#[derive(Debug)]
pub struct PlotSyncSender {
    batch_size: usize,
    plot2: bool,
    last_sync_id: u64,
    /// What the farmer confirmed; `None` until the first sync is done.
    view: Option<BTreeMap<String, Plot2>>,
    sync: Option<Sync>,
    followup: bool,
}

impl PlotSyncSender {
    /// A sender for a farmer that takes `Plot2` (`plot2`, protocol 0.0.38 or later) or `Plot`,
    /// sending at most `batch_size` (at least 1) plots or paths per message.
    pub fn new(batch_size: usize, plot2: bool) -> Self {
        PlotSyncSender {
            batch_size: batch_size.max(1),
            plot2,
            last_sync_id: 0,
            view: None,
            sync: None,
            followup: true,
        }
    }

    /// A sync is in progress.
    pub fn active(&self) -> bool {
        self.sync.is_some()
    }

    /// The farmer has not seen our current state: nothing synced yet, or a changed plot still
    /// to be loaded again.
    pub fn wants_sync(&self) -> bool {
        self.followup
    }

    /// The plots the farmer confirmed (none before the first sync is done).
    pub fn farmer_view(&self) -> Option<&BTreeMap<String, Plot2>> {
        self.view.as_ref()
    }

    /// Starts a sync of `inventory` at unix time `now`; the delta against what the farmer has,
    /// or everything if nothing was synced yet. `duration` is the refresh's length in seconds.
    /// Returns false (and does nothing) while a sync is in progress.
    pub fn start(&mut self, inventory: &Inventory, duration: u64, now: u64) -> bool {
        if self.sync.is_some() {
            return false;
        }
        let initial = self.view.is_none();
        let base = self.view.clone().unwrap_or_default();
        let mut loaded = Vec::new();
        let mut removed = Vec::new();
        let mut view_after = base.clone();
        self.followup = false;
        for (path, plot) in &base {
            match inventory.plots.get(path) {
                Some(p) if p == plot => {}
                Some(_) => {
                    // Changed under the same path: out now, in again next sync.
                    removed.push(path.clone());
                    view_after.remove(path);
                    self.followup = true;
                }
                None => {
                    removed.push(path.clone());
                    view_after.remove(path);
                }
            }
        }
        for (path, plot) in &inventory.plots {
            if !base.contains_key(path) {
                loaded.push(plot.clone());
                view_after.insert(path.clone(), plot.clone());
            }
        }
        let count = inventory.plots.len()
            + inventory.invalid.len()
            + inventory.keys_missing.len()
            + inventory.duplicates.len();
        let mut messages = vec![Payload::Start {
            initial,
            last_sync_id: if initial { 0 } else { self.last_sync_id },
            count: u32::try_from(count).unwrap_or(u32::MAX),
        }];
        batches(loaded, self.batch_size, |plots, last| {
            messages.push(Payload::Loaded { plots, last })
        });
        for (kind, paths) in [
            (msg::PLOT_SYNC_REMOVED, removed),
            (msg::PLOT_SYNC_INVALID, inventory.invalid.clone()),
            (msg::PLOT_SYNC_KEYS_MISSING, inventory.keys_missing.clone()),
            (msg::PLOT_SYNC_DUPLICATES, inventory.duplicates.clone()),
        ] {
            batches(paths, self.batch_size, |paths, last| {
                messages.push(Payload::Paths { kind, paths, last })
            });
        }
        messages.push(Payload::Done { duration });
        let last = if initial { 0 } else { self.last_sync_id };
        // chia's sync ids are unix seconds; any id other than the last one is accepted.
        let id = if now.max(1) == last { now.max(1) + 1 } else { now.max(1) };
        self.sync = Some(Sync { id, messages, next: 0, view_after, waiting_since: None });
        true
    }

    /// The next message to send, if one may go now; `now` in unix seconds. A message whose
    /// response did not come within [`RESPONSE_TIMEOUT_SECONDS`] is sent again.
    pub fn poll(&mut self, now: u64) -> Option<Frame> {
        let plot2 = self.plot2;
        let sync = self.sync.as_mut()?;
        if let Some(since) = sync.waiting_since {
            if now.saturating_sub(since) < RESPONSE_TIMEOUT_SECONDS {
                return None;
            }
        }
        let message_id = sync.next as u64;
        let identifier = PlotSyncIdentifier { timestamp: now, sync_id: sync.id, message_id };
        let frame = match sync.messages.get(sync.next)?.clone() {
            Payload::Start { initial, last_sync_id, count } => Frame::new(
                msg::PLOT_SYNC_START,
                None,
                &PlotSyncStart {
                    identifier,
                    initial,
                    last_sync_id,
                    plot_file_count: count,
                    harvesting_mode: HARVESTING_MODE_CPU,
                },
            ),
            Payload::Loaded { plots, last } if plot2 => Frame::new(
                msg::PLOT_SYNC_LOADED2,
                None,
                &PlotSyncPlotList2 { identifier, data: plots, final_: last },
            ),
            Payload::Loaded { plots, last } => Frame::new(
                msg::PLOT_SYNC_LOADED,
                None,
                &PlotSyncPlotList {
                    identifier,
                    data: plots.iter().map(Plot2::to_v1).collect(),
                    final_: last,
                },
            ),
            Payload::Paths { kind, paths, last } => {
                Frame::new(kind, None, &PlotSyncPathList { identifier, data: paths, final_: last })
            }
            Payload::Done { duration } => {
                Frame::new(msg::PLOT_SYNC_DONE, None, &PlotSyncDone { identifier, duration })
            }
        };
        sync.waiting_since = Some(now);
        Some(frame)
    }

    /// The farmer's response to a plot-sync message.
    pub fn on_response(&mut self, response: &PlotSyncResponse) -> Progress {
        let plot2 = self.plot2;
        let Some(sync) = self.sync.as_mut() else { return Progress::Ignored };
        if sync.waiting_since.is_none() || response.identifier.sync_id != sync.id {
            return Progress::Ignored;
        }
        if response.identifier.message_id != sync.next as u64 {
            return Progress::Ignored;
        }
        let expected_type = sync.messages.get(sync.next).map(|p| payload_type(p, plot2));
        if expected_type != Some(response.message_type) {
            return Progress::Ignored;
        }
        sync.waiting_since = None;
        if let Some(error) = &response.error {
            if let Some(expected) = &error.expected_identifier {
                let all_sent = sync.next + 1 == sync.messages.len();
                if expected.sync_id == 0 && expected.message_id == 0 && all_sent {
                    // The farmer finished the sync but our copy of its answer to `done` was lost.
                    return self.finish();
                }
                if expected.sync_id == sync.id
                    && (expected.message_id as usize) < sync.messages.len()
                {
                    sync.next = expected.message_id as usize;
                    return Progress::Next;
                }
            }
            let reason = format!("farmer refused plot sync: code {} {}", error.code, error.message);
            self.reset();
            return Progress::Reset(reason);
        }
        if sync.next + 1 == sync.messages.len() {
            return self.finish();
        }
        sync.next += 1;
        Progress::Next
    }

    fn finish(&mut self) -> Progress {
        if let Some(sync) = self.sync.take() {
            self.last_sync_id = sync.id;
            self.view = Some(sync.view_after);
        }
        Progress::Done
    }

    /// Forgets the farmer's view: the next sync is initial (after a refusal, or for a new
    /// connection).
    pub fn reset(&mut self) {
        self.sync = None;
        self.view = None;
        self.last_sync_id = 0;
        self.followup = true;
    }
}

fn payload_type(p: &Payload, plot2: bool) -> i16 {
    let t = match p {
        Payload::Start { .. } => msg::PLOT_SYNC_START,
        Payload::Loaded { .. } if plot2 => msg::PLOT_SYNC_LOADED2,
        Payload::Loaded { .. } => msg::PLOT_SYNC_LOADED,
        Payload::Paths { kind, .. } => *kind,
        Payload::Done { .. } => msg::PLOT_SYNC_DONE,
    };
    i16::from(t)
}

/// Calls `f` with each batch of at most `size` items and whether it is the last; an empty
/// list is one empty, final batch (as chia sends it).
fn batches<T>(items: Vec<T>, size: usize, mut f: impl FnMut(Vec<T>, bool)) {
    if items.is_empty() {
        f(Vec::new(), true);
        return;
    }
    let total = items.len();
    let mut it = items.into_iter().peekable();
    let mut sent = 0;
    while it.peek().is_some() {
        let batch: Vec<T> = it.by_ref().take(size).collect();
        sent += batch.len();
        f(batch, sent == total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chia::messages::PlotSyncError;

    fn plot(name: &str, id: u8) -> (String, Plot2) {
        let p = Plot2 {
            filename: name.into(),
            size: 18,
            plot_id: [id; 32],
            pool_public_key: Some([1; 48]),
            pool_contract_puzzle_hash: None,
            plot_public_key: [2; 48],
            file_size: 1000,
            time_modified: 5,
            compression_level: Some(0),
            plot_index: 0,
            meta_group: 0,
        };
        (name.to_string(), p)
    }

    fn ok(frame: &Frame) -> PlotSyncResponse {
        // Every plot-sync body starts with its identifier.
        let identifier: PlotSyncIdentifier =
            crate::chia::streamable::from_bytes(&frame.data[..24]).unwrap();
        PlotSyncResponse { identifier, message_type: i16::from(frame.msg_type), error: None }
    }

    /// Runs a whole sync against an always-accepting farmer; returns the frame types sent.
    fn run(s: &mut PlotSyncSender, now: u64) -> Vec<u8> {
        let mut types = Vec::new();
        while let Some(f) = s.poll(now) {
            types.push(f.msg_type);
            assert!(s.poll(now).is_none(), "one message at a time");
            match s.on_response(&ok(&f)) {
                Progress::Next => {}
                Progress::Done => break,
                p => panic!("{p:?}"),
            }
        }
        types
    }

    #[test]
    fn initial_then_delta_syncs() {
        let mut s = PlotSyncSender::new(2, true);
        let mut inv = Inventory::default();
        inv.plots.extend([plot("/a", 1), plot("/b", 2), plot("/c", 3)]);
        inv.invalid.push("/bad".into());
        assert!(s.wants_sync());
        assert!(s.start(&inv, 1, 100));
        assert!(!s.start(&inv, 1, 100), "one sync at a time");
        let types = run(&mut s, 100);
        assert_eq!(types, [78, 112, 112, 80, 81, 82, 83, 84]);
        assert_eq!(s.farmer_view().unwrap().len(), 3);
        assert!(!s.wants_sync());

        inv.plots.remove("/b");
        let (_, mut changed) = plot("/c", 3);
        changed.file_size = 2000;
        inv.plots.insert("/c".into(), changed);
        assert!(s.start(&inv, 0, 100));
        let f = s.poll(100).unwrap();
        let start: PlotSyncStart = f.body().unwrap();
        assert!(!start.initial);
        assert_eq!(start.last_sync_id, 100);
        assert_eq!(start.identifier.sync_id, 101, "a new id even within the same second");
        s.on_response(&ok(&f));
        let f = s.poll(100).unwrap();
        let loaded: PlotSyncPlotList2 = f.body().unwrap();
        assert!(loaded.data.is_empty() && loaded.final_);
        s.on_response(&ok(&f));
        let f = s.poll(100).unwrap();
        let removed: PlotSyncPathList = f.body().unwrap();
        assert_eq!(removed.data, ["/b", "/c"]);
        s.on_response(&ok(&f));
        run(&mut s, 100);
        assert_eq!(s.farmer_view().unwrap().keys().collect::<Vec<_>>(), ["/a"]);
        assert!(s.wants_sync(), "the changed plot is loaded again next sync");
        assert!(s.start(&inv, 0, 200));
        run(&mut s, 200);
        assert_eq!(s.farmer_view().unwrap().len(), 2);
        assert!(!s.wants_sync());
    }

    #[test]
    fn old_farmers_get_plot_v1_lists() {
        let mut s = PlotSyncSender::new(10, false);
        let mut inv = Inventory::default();
        inv.plots.extend([plot("/a", 1)]);
        s.start(&inv, 0, 7);
        let types = run(&mut s, 7);
        assert_eq!(types, [78, 79, 80, 81, 82, 83, 84]);
    }

    #[test]
    fn no_response_resends_after_the_timeout() {
        let mut s = PlotSyncSender::new(10, true);
        s.start(&Inventory::default(), 0, 50);
        let f = s.poll(50).unwrap();
        assert!(s.poll(50 + RESPONSE_TIMEOUT_SECONDS - 1).is_none());
        let again = s.poll(50 + RESPONSE_TIMEOUT_SECONDS).unwrap();
        assert_eq!(again.msg_type, f.msg_type);
        // A stale or foreign response is ignored.
        let mut stale = ok(&f);
        stale.identifier.sync_id += 5;
        assert_eq!(s.on_response(&stale), Progress::Ignored);
        assert_eq!(s.on_response(&ok(&again)), Progress::Next);
    }

    #[test]
    fn recoverable_and_fatal_errors() {
        let mut s = PlotSyncSender::new(10, true);
        let mut inv = Inventory::default();
        inv.plots.extend([plot("/a", 1)]);
        s.start(&inv, 0, 9);
        let f0 = s.poll(9).unwrap();
        s.on_response(&ok(&f0));
        let f1 = s.poll(9).unwrap();
        // The farmer wants message 0 again.
        let mut r = ok(&f1);
        r.error = Some(PlotSyncError {
            code: 2,
            message: "invalid identifier".into(),
            expected_identifier: Some(PlotSyncIdentifier {
                timestamp: 9,
                sync_id: r.identifier.sync_id,
                message_id: 0,
            }),
        });
        assert_eq!(s.on_response(&r), Progress::Next);
        assert_eq!(s.poll(9).unwrap().msg_type, msg::PLOT_SYNC_START);
        let f = s.poll(30).unwrap();
        let mut r = ok(&f);
        r.error = Some(PlotSyncError {
            code: 5,
            message: "plot already".into(),
            expected_identifier: None,
        });
        assert!(matches!(s.on_response(&r), Progress::Reset(_)));
        assert!(!s.active() && s.wants_sync() && s.farmer_view().is_none());
    }
}
