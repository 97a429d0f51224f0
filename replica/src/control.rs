//! Control batches of the Raft log: Kafka's convention for records that
//! clients must skip (the control bit in the batch attributes; a record key
//! of version and type). A new leader's first entry is a `LEADER_CHANGE`
//! record (type 2, as KRaft); a membership change is a `VOTERS` record
//! (type 6, as KRaft's voters record after KIP-853) whose value lists the
//! voters and learners in our own encoding: version (i16 = 0), then a count
//! (u32) and ids (u64) for voters, then the same for learners, big-endian.

use bytes::Bytes;
use rill_raft::log::Membership;
use rill_record::build::BatchBuilder;
use rill_record::header::{self, BatchHeader, HEADER_BYTES};
use rill_record::varint;
use rill_record::Compression;

pub const LEADER_CHANGE: i16 = 2;
pub const VOTERS: i16 = 6;

/// A control batch of one record at offset 0 (the caller stamps the base
/// offset and epoch): a leader change, or the membership `conf`.
pub fn encode(conf: Option<&Membership>) -> Bytes {
    let kind = if conf.is_some() {
        VOTERS
    } else {
        LEADER_CHANGE
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::new();
    value.extend_from_slice(&0i16.to_be_bytes());
    if let Some(conf) = conf {
        for set in [&conf.voters, &conf.learners] {
            value.extend_from_slice(&(set.len() as u32).to_be_bytes());
            for id in set {
                value.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
    let mut b = BatchBuilder::new(HEADER_BYTES + 64 + value.len());
    b.control(true);
    b.push(0, Some(&key), Some(&value), &[]);
    b.finish(Compression::None)
        .expect("an uncompressed batch always encodes")
}

/// What a control batch of the Raft log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    LeaderChange,
    Voters(Membership),
    /// A control batch of another kind (a transaction marker).
    Other,
}

/// Reads a control batch written by [`encode`]; `None` if `batch` is not a
/// control batch or cannot be read.
pub fn decode(batch: &[u8]) -> Option<Control> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() {
        return None;
    }
    let records = batch.get(HEADER_BYTES..)?;
    let mut at = 0usize;
    let next = |at: &mut usize| -> Option<i64> {
        let (v, used) = varint::read_i64(records.get(*at..)?)?;
        *at += used;
        Some(v)
    };
    let _len = next(&mut at)?;
    at += 1; // record attributes
    let _ts = next(&mut at)?;
    let _delta = next(&mut at)?;
    let key_len = usize::try_from(next(&mut at)?).ok()?;
    let key = records.get(at..at + key_len)?;
    at += key_len;
    if key.len() < 4 {
        return Some(Control::Other);
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    match kind {
        LEADER_CHANGE => Some(Control::LeaderChange),
        VOTERS => {
            let value_len = usize::try_from(next(&mut at)?).ok()?;
            let value = records.get(at..at + value_len)?;
            let mut p = 2usize; // version
            let mut sets = [Default::default(), Default::default()];
            for set in sets.iter_mut() {
                let n = u32::from_be_bytes(value.get(p..p + 4)?.try_into().ok()?) as usize;
                p += 4;
                let s: &mut std::collections::BTreeSet<u64> = set;
                for _ in 0..n {
                    s.insert(u64::from_be_bytes(value.get(p..p + 8)?.try_into().ok()?));
                    p += 8;
                }
            }
            let [voters, learners] = sets;
            Some(Control::Voters(Membership { voters, learners }))
        }
        _ => Some(Control::Other),
    }
}

/// `batch` with its base offset and leader epoch set (both lie outside the
/// CRC, which stays valid); shared, not copied, when already so.
pub fn stamped(batch: &Bytes, base_offset: i64, epoch: i32) -> Bytes {
    if let Ok(h) = BatchHeader::parse(batch) {
        if h.base_offset == base_offset && h.leader_epoch == epoch {
            return batch.clone();
        }
    }
    let mut b = batch.to_vec();
    header::set_base_offset(&mut b, base_offset);
    header::set_leader_epoch(&mut b, epoch);
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_batches_round_trip() {
        let conf = Membership {
            voters: [1, 2, 3].into(),
            learners: [9].into(),
        };
        let b = encode(Some(&conf));
        rill_record::check_integrity(&b).expect("a valid batch");
        assert_eq!(decode(&b), Some(Control::Voters(conf)));
        let b = stamped(&encode(None), 41, 7);
        rill_record::check_integrity(&b).expect("still valid after stamping");
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.leader_epoch), (41, 7));
        assert_eq!(decode(&b), Some(Control::LeaderChange));
        assert_eq!(decode(&crate::control::tests::data_batch()), None);
    }

    pub(crate) fn data_batch() -> Bytes {
        let mut b = BatchBuilder::new(256);
        b.push(0, Some(b"k"), Some(b"v"), &[]);
        b.finish(Compression::None).unwrap()
    }
}
