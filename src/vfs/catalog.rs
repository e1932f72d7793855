//! The snapshot list behind the virtual directories, kept current while
//! mounted.
//!
//! Manifests never change once written, so each is read once; a refresh lists
//! `snapshots/`, reads only the new names and drops the removed ones. A
//! refresh happens at most once per [`REFRESH`], when a virtual directory is
//! looked at, so snapshots written while mounted appear within about a second
//! and an idle mount costs nothing. New snapshots come with new index files,
//! which are mapped at the same moment.
//!
//! Whose snapshots `history/` shows (one host's right there, or each host's
//! under its name) is decided by the first list that holds a snapshot and
//! kept for the life of the mount ([`HistoryHosts`]).

use super::layout::{local_time_name, HistoryHosts, Layout, SnapInfo};
use crate::error::Result;
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How old the list may get before a look at a virtual directory refreshes it.
pub const REFRESH: Duration = Duration::from_secs(1);

struct State {
    known: HashMap<SnapshotId, SnapInfo>,
    /// Whose snapshots `history/` shows: decided at the first list that
    /// holds a snapshot, then kept.
    history: HistoryHosts,
    /// Manifests that could not be read: not read again while they stay
    /// (`rewind check` names them).
    unreadable: HashSet<SnapshotId>,
    layout: Arc<Layout>,
    checked: Instant,
}

/// The snapshots of a repository, as a [`Layout`].
pub struct Catalog {
    repo: Arc<Repository>,
    state: Mutex<State>,
}

impl Catalog {
    /// Read every snapshot manifest now.
    pub fn new(repo: Arc<Repository>) -> Result<Catalog> {
        let cat = Catalog {
            repo,
            state: Mutex::new(State {
                known: HashMap::new(),
                unreadable: HashSet::new(),
                history: HistoryHosts::Undecided,
                layout: Arc::new(Layout::build(
                    Vec::new(),
                    local_time_name,
                    &HistoryHosts::Undecided,
                )),
                checked: Instant::now(),
            }),
        };
        {
            let mut st = cat.lock();
            cat.refresh(&mut st)?;
        }
        Ok(cat)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current layout, refreshed first if the list is older than
    /// [`REFRESH`]. A failed refresh keeps the last good layout (the
    /// repository may be mid-write; the next look tries again).
    pub fn layout(&self) -> Arc<Layout> {
        let mut st = self.lock();
        if st.checked.elapsed() >= REFRESH {
            let _ = self.refresh(&mut st);
        }
        st.layout.clone()
    }

    /// The layout as last read, without refreshing.
    pub fn current(&self) -> Arc<Layout> {
        self.lock().layout.clone()
    }

    fn refresh(&self, st: &mut State) -> Result<()> {
        st.checked = Instant::now();
        let present: HashSet<SnapshotId> = self.repo.snapshot_ids()?.into_iter().collect();
        let before = st.known.len();
        st.known.retain(|id, _| present.contains(id));
        st.unreadable.retain(|id| present.contains(id));
        let mut changed = st.known.len() != before;
        for id in present {
            if st.known.contains_key(&id) || st.unreadable.contains(&id) {
                continue;
            }
            // A damaged manifest is left out, and not read again.
            match self.repo.load_snapshot(&id) {
                Ok(snap) => {
                    st.known.insert(id, info(id, &snap));
                    changed = true;
                }
                Err(crate::error::Error::NotFound(_)) => {}
                Err(_) => {
                    st.unreadable.insert(id);
                }
            }
        }
        if changed {
            self.repo.reload_index()?;
            let snaps: Vec<SnapInfo> = st.known.values().cloned().collect();
            if st.history == HistoryHosts::Undecided {
                st.history = HistoryHosts::of(&snaps);
            }
            st.layout = Arc::new(Layout::build(snaps, local_time_name, &st.history));
        }
        Ok(())
    }
}

/// What the layout needs from a manifest.
pub fn info(id: SnapshotId, s: &Snapshot) -> SnapInfo {
    SnapInfo {
        id,
        time: s.time,
        host: s.host.clone(),
        tags: s.tags.clone(),
        tree: s.tree,
    }
}
