//! Kafka framing: a big-endian `i32` size, then that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// What the buffer holds at its front.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole frame (without its size prefix), removed from the buffer.
    Complete(Bytes),
    /// More bytes are needed; `frame_bytes` is the full frame size once known.
    Incomplete { frame_bytes: Option<usize> },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("negative frame size {size}")]
    Negative { size: i32 },
}

/// Takes the next frame off the front of `buf`. The size is checked against
/// `max_bytes` before anything is reserved for the body, so an oversized or
/// hostile size field costs nothing.
pub fn next_frame(buf: &mut BytesMut, max_bytes: usize) -> Result<Frame, FrameError> {
    if buf.len() < 4 {
        return Ok(Frame::Incomplete { frame_bytes: None });
    }
    let size = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
    if size < 0 {
        return Err(FrameError::Negative { size });
    }
    let size = size as usize;
    if size > max_bytes {
        return Err(FrameError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    if buf.len() < 4 + size {
        return Ok(Frame::Incomplete {
            frame_bytes: Some(4 + size),
        });
    }
    buf.advance(4);
    Ok(Frame::Complete(buf.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversized_and_negative_sizes_are_refused() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            next_frame(&mut buf, 1 << 20),
            Err(FrameError::TooLarge {
                size: i32::MAX as usize,
                max: 1 << 20
            })
        );
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(
            next_frame(&mut buf, 1 << 20),
            Err(FrameError::Negative { size: -2 })
        );
    }

    proptest! {
        #[test]
        fn frames_split_anywhere_reassemble(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..10), split in 1usize..50) {
            let mut wire = Vec::new();
            for b in &bodies {
                wire.extend_from_slice(&(b.len() as i32).to_be_bytes());
                wire.extend_from_slice(b);
            }
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                buf.extend_from_slice(chunk);
                while let Frame::Complete(f) = next_frame(&mut buf, 1000).unwrap() {
                    got.push(f.to_vec());
                }
            }
            prop_assert_eq!(got, bodies);
            prop_assert!(buf.is_empty());
        }
    }
}
