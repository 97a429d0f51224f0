//! The partition checkpoint: the durable facts recovery starts from.
//!
//! Two 4 KiB slots written alternately, each with a sequence number and a
//! CRC-32C, so a torn checkpoint write leaves the previous one readable (the
//! TigerBeetle superblock habit). Holds the log start offset (moved by
//! retention and DeleteRecords), the recovery point (everything before it was
//! fdatasynced) and, after a clean shutdown, the exact end of the log. It
//! also keeps the replica's Raft hard state (term, vote, commit): a vote
//! must survive a crash, and this file is already open, written with a
//! sequence and CRC, and synced — one 4 KiB write and one fdatasync, no
//! descriptor or file of its own. Slots written before the hard state was
//! kept (`RCK1`) read as term 0 with no vote; slots written before the
//! abstention term (`RCK2`) read as not abstaining.

pub const SLOT_BYTES: usize = 4096;
pub const FILE_BYTES: usize = 2 * SLOT_BYTES;
const MAGIC_V1: &[u8; 4] = b"RCK1";
const MAGIC_V2: &[u8; 4] = b"RCK2";
const MAGIC: &[u8; 4] = b"RCK3";
const BODY_V1_BYTES: usize = 4 + 8 + 1 + 8 * 6;
const BODY_V2_BYTES: usize = BODY_V1_BYTES + 8 * 3;
const BODY_BYTES: usize = BODY_V2_BYTES + 8;

/// A Raft replica's durable state (Raft's `currentTerm`, `votedFor`, and
/// the commit index it last knew), in Kafka's terms: leader epoch, the
/// broker it voted for, the high watermark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<u64>,
    pub commit: i64,
    /// Set when recovery cut damaged synced data while in this term: the
    /// replica takes no part in elections until it commits an entry of a
    /// later term (see `rill_raft::node::HardState::abstain_through`).
    pub abstain_through: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    /// Written by a clean shutdown: indexes and sizes on disk are exact.
    pub clean: bool,
    pub log_start_offset: i64,
    /// Every batch below this offset was on stable storage when written.
    pub recovery_point: i64,
    /// Base offset of the segment holding the recovery point.
    pub recovery_segment: i64,
    /// File position of the recovery point in that segment.
    pub recovery_position: u64,
    /// Log end offset at clean shutdown (meaningful only when `clean`).
    pub log_end_offset: i64,
    /// Active segment size at clean shutdown (meaningful only when `clean`).
    pub active_size_bytes: u64,
    pub hard_state: HardState,
}

impl Checkpoint {
    /// The checkpoint of a brand-new, empty log.
    pub fn empty() -> Self {
        Checkpoint {
            seq: 0,
            clean: false,
            log_start_offset: 0,
            recovery_point: 0,
            recovery_segment: 0,
            recovery_position: 0,
            log_end_offset: 0,
            active_size_bytes: 0,
            hard_state: HardState::default(),
        }
    }

    /// Slot this checkpoint is written to.
    pub fn slot(&self) -> usize {
        (self.seq % 2) as usize
    }

    /// Encodes one slot (4 KiB, zero padded).
    pub fn encode(&self) -> [u8; SLOT_BYTES] {
        let mut out = [0u8; SLOT_BYTES];
        let mut w = 0;
        let mut put = |bytes: &[u8]| {
            out[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(MAGIC);
        put(&self.seq.to_be_bytes());
        put(&[self.clean as u8]);
        put(&self.log_start_offset.to_be_bytes());
        put(&self.recovery_point.to_be_bytes());
        put(&self.recovery_segment.to_be_bytes());
        put(&self.recovery_position.to_be_bytes());
        put(&self.log_end_offset.to_be_bytes());
        put(&self.active_size_bytes.to_be_bytes());
        put(&self.hard_state.term.to_be_bytes());
        put(&self
            .hard_state
            .vote
            .map_or(-1i64, |v| v as i64)
            .to_be_bytes());
        put(&self.hard_state.commit.to_be_bytes());
        put(&self
            .hard_state
            .abstain_through
            .map_or(-1i64, |t| t as i64)
            .to_be_bytes());
        let crc = crc32c::crc32c(&out[..BODY_BYTES]);
        out[BODY_BYTES..BODY_BYTES + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes one slot; `None` if it is empty, torn or damaged.
    pub fn decode(slot: &[u8]) -> Option<Checkpoint> {
        let body = match slot.get(0..4)? {
            m if m == MAGIC => BODY_BYTES,
            m if m == MAGIC_V2 => BODY_V2_BYTES,
            m if m == MAGIC_V1 => BODY_V1_BYTES,
            _ => return None,
        };
        if slot.len() < body + 4 {
            return None;
        }
        let stored = u32::from_be_bytes(slot[body..body + 4].try_into().ok()?);
        if crc32c::crc32c(&slot[..body]) != stored {
            return None;
        }
        let i64_at = |at: usize| i64::from_be_bytes(slot[at..at + 8].try_into().expect("8"));
        let hard_state = if body >= BODY_V2_BYTES {
            HardState {
                term: i64_at(61) as u64,
                vote: u64::try_from(i64_at(69)).ok(),
                commit: i64_at(77),
                abstain_through: (body == BODY_BYTES)
                    .then(|| u64::try_from(i64_at(85)).ok())
                    .flatten(),
            }
        } else {
            HardState::default()
        };
        Some(Checkpoint {
            seq: u64::from_be_bytes(slot[4..12].try_into().ok()?),
            clean: slot[12] == 1,
            log_start_offset: i64_at(13),
            recovery_point: i64_at(21),
            recovery_segment: i64_at(29),
            recovery_position: i64_at(37) as u64,
            log_end_offset: i64_at(45),
            active_size_bytes: i64_at(53) as u64,
            hard_state,
        })
    }

    /// The newest valid checkpoint in a two-slot file image.
    pub fn newest(file: &[u8]) -> Option<Checkpoint> {
        let a = file.get(..SLOT_BYTES).and_then(Checkpoint::decode);
        let b = file
            .get(SLOT_BYTES..FILE_BYTES)
            .and_then(Checkpoint::decode);
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.seq >= b.seq { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let mut c = Checkpoint::empty();
        c.seq = 7;
        c.log_start_offset = 12;
        c.recovery_point = 99;
        c.clean = true;
        let mut d = c;
        d.seq = 8;
        d.clean = false;
        let mut file = vec![0u8; FILE_BYTES];
        file[c.slot() * SLOT_BYTES..][..SLOT_BYTES].copy_from_slice(&c.encode());
        file[d.slot() * SLOT_BYTES..][..SLOT_BYTES].copy_from_slice(&d.encode());
        assert_eq!(Checkpoint::newest(&file), Some(d));
        // Tear the newer slot: the older one is used.
        file[d.slot() * SLOT_BYTES + 20] ^= 1;
        assert_eq!(Checkpoint::newest(&file), Some(c));
        assert_eq!(Checkpoint::newest(&[0u8; FILE_BYTES]), None);
    }

    #[test]
    fn the_hard_state_round_trips_and_an_older_slot_reads_without_one() {
        let mut c = Checkpoint::empty();
        c.seq = 3;
        c.hard_state = HardState {
            term: 9,
            vote: Some(2),
            commit: 1234,
            abstain_through: Some(8),
        };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        c.hard_state.vote = None;
        c.hard_state.abstain_through = None;
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        // A slot of the second format: term, vote and commit, no abstention.
        c.hard_state.abstain_through = Some(8);
        let mut v2 = c.encode();
        v2[..4].copy_from_slice(MAGIC_V2);
        let crc = crc32c::crc32c(&v2[..BODY_V2_BYTES]);
        v2[BODY_V2_BYTES..BODY_V2_BYTES + 4].copy_from_slice(&crc.to_be_bytes());
        let read = Checkpoint::decode(&v2).unwrap();
        assert_eq!(read.hard_state.term, 9);
        assert_eq!(read.hard_state.abstain_through, None);
        c.hard_state.abstain_through = None;
        // A slot of the first format: its own CRC over its shorter body.
        let mut old = c.encode();
        old[..4].copy_from_slice(MAGIC_V1);
        let crc = crc32c::crc32c(&old[..BODY_V1_BYTES]);
        old[BODY_V1_BYTES..BODY_V1_BYTES + 4].copy_from_slice(&crc.to_be_bytes());
        let read = Checkpoint::decode(&old).unwrap();
        assert_eq!(read.hard_state, HardState::default());
        assert_eq!(read.seq, 3);
    }
}
