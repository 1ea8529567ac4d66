//! Offset commits for sources that acknowledge by committing a position
//! (Kafka partitions, Kinesis shards) rather than message by message.
//!
//! With several deliveries in flight, events finish out of order, but a
//! commit means "everything before this position is done". [`Offsets`]
//! therefore hands out only the end of the contiguous run of settled events:
//! an event that failed (at-least-once, no dead letter) holds the commit
//! back, so after a restart the source redelivers from it (and the events
//! after it, which is where at-least-once allows duplicates).

use std::collections::VecDeque;

/// The received, not yet committable events of one partition, in order.
#[derive(Debug, Default)]
pub struct Offsets {
    /// Offsets received and not yet committed, oldest first, with whether each is settled.
    pending: VecDeque<(u64, bool)>,
    /// The position last handed out for committing.
    committed: Option<u64>,
}

impl Offsets {
    pub fn new() -> Offsets {
        Offsets::default()
    }

    /// An event at `offset` was received (offsets grow; gaps are fine).
    /// Returns false, and records nothing, for an offset at or below one
    /// already received or committed (a redelivery after a rewind): it must
    /// not hold later commits back.
    pub fn received(&mut self, offset: u64) -> bool {
        let last = self.pending.back().map(|(o, _)| o + 1).or(self.committed).unwrap_or(0);
        if offset < last {
            return false;
        }
        self.pending.push_back((offset, false));
        true
    }

    /// The event at `offset` is settled (delivered, dead-lettered, or
    /// received in at-most-once mode). Returns the position to commit (the
    /// offset after the last event of the contiguous settled run) when it
    /// moved, else `None`.
    pub fn settled(&mut self, offset: u64) -> Option<u64> {
        if let Some(entry) = self.pending.iter_mut().find(|(o, _)| *o == offset) {
            entry.1 = true;
        }
        let mut advanced = None;
        while let Some(&(o, true)) = self.pending.front() {
            self.pending.pop_front();
            advanced = Some(o + 1);
        }
        if advanced.is_some() {
            self.committed = advanced;
        }
        advanced
    }

    /// The position last handed out for committing, if any.
    pub fn committed(&self) -> Option<u64> {
        self.committed
    }

    /// Events received and not yet committable.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contiguous_settled_prefix_is_committed() {
        let mut offsets = Offsets::new();
        for o in 10..15 {
            offsets.received(o);
        }
        assert_eq!(offsets.settled(12), None, "10 and 11 are still in flight");
        assert_eq!(offsets.settled(11), None);
        assert_eq!(offsets.settled(10), Some(13), "10, 11, 12 are done: commit 13");
        assert_eq!(offsets.settled(14), None, "13 holds 14 back");
        assert_eq!(offsets.committed(), Some(13));
        assert_eq!(offsets.settled(13), Some(15));
        assert_eq!(offsets.pending(), 0);
    }

    #[test]
    fn a_failed_event_holds_the_commit_back() {
        let mut offsets = Offsets::new();
        for o in 0..4 {
            offsets.received(o);
        }
        // 1 failed (never settled): 2 and 3 finish, but nothing past 1 is committed.
        assert_eq!(offsets.settled(0), Some(1));
        assert_eq!(offsets.settled(2), None);
        assert_eq!(offsets.settled(3), None);
        assert_eq!(offsets.committed(), Some(1), "a restart redelivers from 1");
        assert_eq!(offsets.pending(), 3);
    }

    #[test]
    fn gaps_in_offsets_do_not_stall_commits() {
        let mut offsets = Offsets::new();
        for o in [5, 9, 20] {
            offsets.received(o);
        }
        assert_eq!(offsets.settled(9), None);
        assert_eq!(offsets.settled(5), Some(10));
        assert_eq!(offsets.settled(20), Some(21));
        assert_eq!(offsets.settled(99), None, "an unknown offset changes nothing");
        assert!(!offsets.received(20), "an offset already committed is not recorded again");
        assert!(offsets.received(21));
    }
}
