//! Direct-I/O appends to the active segment file.
//!
//! Batches are copied into a 4 KiB-aligned buffer; a full buffer becomes one
//! `O_DIRECT` write through io_uring, and up to `writes_in_flight_max` writes run
//! at once. A flush (for durability) writes the partly filled buffer padded to
//! a block boundary and starts the next buffer with a copy of the partial tail
//! block, which the next write rewrites in place. Two writes that touch the
//! same block are never in flight together, so the newer content always lands
//! last. Space is reserved ahead with `fallocate`, so a full disk surfaces as a
//! clean error before any data is accepted.
//!
//! A reservation also moves the file's size to its end (no `KEEP_SIZE`), so
//! writes land inside the file: ext4 runs a write past a file's size
//! synchronously, under the inode's exclusive lock and with an orphan-list
//! update, so io_uring hands it to one of its few worker threads, which waits
//! for the device (at 1,000 partitions these writes queued the shard
//! journal's `fdatasync` behind them). A seal cuts the file to its data; an
//! unclean open scans up to the zeros that follow the data and cuts there.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use crate::io::{IoBuffer, SegmentFile};

use crate::error::{Result, StorageError};
use crate::signal::Signal;

/// The write buffer of a cold partition (one that has not filled a buffer
/// since it was last idle); it doubles up to the configured size as
/// buffers fill.
pub const COLD_BUFFER_BYTES: usize = 64 << 10;

thread_local! {
    static WRITE_BUFFER_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// Bytes of write buffers the appenders of this thread (a shard) hold now,
/// not counting buffers handed to writes in flight.
pub fn write_buffer_bytes() -> usize {
    WRITE_BUFFER_BYTES.with(Cell::get)
}

/// A write buffer an appender holds, counted in [`write_buffer_bytes`]
/// from its allocation until it is handed to a write or dropped.
struct Held<B: IoBuffer>(Option<B>);

impl<B: IoBuffer> Held<B> {
    fn new(b: B) -> Held<B> {
        WRITE_BUFFER_BYTES.with(|c| c.set(c.get() + b.len()));
        Held(Some(b))
    }

    fn get_mut(&mut self) -> &mut B {
        self.0.as_mut().expect("held until taken")
    }

    fn into_inner(mut self) -> B {
        let b = self.0.take().expect("held until taken");
        WRITE_BUFFER_BYTES.with(|c| c.set(c.get().saturating_sub(b.len())));
        b
    }
}

impl<B: IoBuffer> Drop for Held<B> {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            WRITE_BUFFER_BYTES.with(|c| c.set(c.get().saturating_sub(b.len())));
        }
    }
}

impl<B: IoBuffer> std::ops::Deref for Held<B> {
    type Target = B;
    fn deref(&self) -> &B {
        self.0.as_ref().expect("held until taken")
    }
}

/// Direct-I/O alignment used for positions and lengths.
pub const ALIGN: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(ALIGN - 1)
}

pub fn align_up(v: u64) -> u64 {
    align_down(v + ALIGN - 1)
}

#[derive(Debug)]
struct PendingWrite {
    padded_end: u64,
    logical_end: u64,
    offset_end: i64,
    done: bool,
}

#[derive(Debug)]
struct WriteState {
    /// Submitted writes in submission order; completed ones leave from the front.
    queue: VecDeque<PendingWrite>,
    /// Id of the write at the front of `queue`.
    front_id: u64,
    /// Every byte before this position has been written to the device.
    written_position: u64,
    /// Every batch before this offset has been written to the device.
    written_offset: i64,
    failed: Option<String>,
}

/// How far writes of one segment have completed; shared with the write tasks
/// and with readers, which must not read the file beyond it.
#[derive(Debug)]
pub struct WriteProgress {
    state: RefCell<WriteState>,
    signal: Signal,
}

impl WriteProgress {
    fn new(position: u64, offset: i64) -> Self {
        WriteProgress {
            state: RefCell::new(WriteState {
                queue: VecDeque::new(),
                front_id: 0,
                written_position: position,
                written_offset: offset,
                failed: None,
            }),
            signal: Signal::default(),
        }
    }

    /// (position, offset) up to which data is on the device (not necessarily synced).
    pub fn written(&self) -> (u64, i64) {
        let s = self.state.borrow();
        (s.written_position, s.written_offset)
    }

    pub fn failure(&self) -> Option<String> {
        self.state.borrow().failed.clone()
    }

    /// Waits until everything before `position` is written.
    pub async fn wait_written(&self, position: u64) -> Result<()> {
        self.signal
            .wait_until(|| {
                let s = self.state.borrow();
                if let Some(reason) = &s.failed {
                    return Some(Err(StorageError::Failed {
                        reason: reason.clone(),
                    }));
                }
                (s.written_position >= position).then_some(Ok(()))
            })
            .await
    }

    fn complete(&self, id: u64, expected_len: usize, result: io::Result<usize>) {
        let mut s = self.state.borrow_mut();
        let index = (id - s.front_id) as usize;
        match result {
            Ok(n) if n == expected_len => s.queue[index].done = true,
            Ok(n) => {
                s.failed
                    .get_or_insert(format!("short write: {n} of {expected_len} bytes"));
            }
            Err(e) => {
                s.failed.get_or_insert(format!("write failed: {e}"));
            }
        }
        while s.queue.front().is_some_and(|w| w.done) {
            let w = s.queue.pop_front().expect("front exists");
            s.front_id += 1;
            s.written_position = s.written_position.max(w.logical_end);
            s.written_offset = s.written_offset.max(w.offset_end);
        }
        drop(s);
        self.signal.notify_all();
    }
}

/// How far ahead an appender reserves: nothing for a cold partition (each
/// append reserves exactly its blocks, so 100,000 partitions with a record
/// each take no more disk than their data), one write buffer once windows
/// are used up within a second, doubled each time that happens again (up
/// to the configured preallocation), halved when a window lasted more than
/// ten, and back to nothing when one lasted more than a minute or the disk
/// could not give one. A partition that reserves again within a minute
/// keeps at least a sixteenth of a write buffer ahead: with nothing ahead
/// every new block is an append waiting on a `fallocate` (a reactor round
/// trip, 6–10 ms at 1,000 partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveWindow {
    pub bytes: u64,
    /// The first window of a partition that writes steadily.
    step: u64,
    max: u64,
    last: Option<std::time::Instant>,
}

impl ReserveWindow {
    pub fn new(step: u64, max: u64) -> ReserveWindow {
        ReserveWindow {
            bytes: 0,
            step: step.min(max),
            max,
            last: None,
        }
    }

    /// The window for a reservation made at `now`.
    pub fn next(self, now: std::time::Instant) -> ReserveWindow {
        let floor = (self.step / 16).max(4096).min(self.max);
        let bytes = match self.last.map(|l| now.saturating_duration_since(l)) {
            None => self.bytes,
            Some(d) if d < std::time::Duration::from_secs(1) => {
                (self.bytes * 2).max(self.step).min(self.max)
            }
            Some(d) if d > std::time::Duration::from_secs(60) => 0,
            Some(d) if d > std::time::Duration::from_secs(10) => (self.bytes / 2).max(floor),
            Some(_) => self.bytes.max(floor),
        };
        ReserveWindow {
            bytes,
            last: Some(now),
            ..self
        }
    }

    /// The disk could not give a window, or the partition went idle:
    /// nothing ahead.
    pub fn shrunk(self) -> ReserveWindow {
        ReserveWindow { bytes: 0, ..self }
    }
}

/// A reservation ahead running in the background.
struct Reserving {
    task: glommio::Task<()>,
    /// Set when it has finished: the next one may start.
    done: Rc<Cell<bool>>,
}

/// Sizing of an [`Appender`].
#[derive(Debug, Clone, Copy)]
pub struct AppenderConfig {
    pub buffer_bytes: usize,
    pub writes_in_flight_max: usize,
    pub preallocate_bytes: u64,
}

/// The writer of one segment file.
pub struct Appender<F: SegmentFile> {
    file: Rc<F>,
    progress: Rc<WriteProgress>,
    config: AppenderConfig,
    /// The write buffer; `None` while the partition is idle (see
    /// [`Appender::release_idle`]). Its size is `cap`.
    buf: Option<Held<F::Buffer>>,
    /// Size of the next buffer: small for a cold partition, doubling up to
    /// `buffer_bytes` while buffers fill up.
    cap: usize,
    /// File position of `buf[0]`; always aligned.
    buf_position: u64,
    /// Valid bytes in `buf`.
    buf_len: usize,
    /// Bytes at the front of `buf` that a submitted write already covers.
    submitted_len: usize,
    /// Offset after the last whole batch appended.
    appended_offset: i64,
    next_write_id: u64,
    /// Space up to here is reserved with fallocate.
    reserved_end: Rc<Cell<u64>>,
    /// How far ahead the next reservation reaches: adapts to the write rate
    /// (see [`ReserveWindow`]), shared with the background reservation.
    window: Rc<Cell<ReserveWindow>>,
    /// A background reservation of the next window, if one is running.
    reserving: Option<Reserving>,
    /// Reservations an append waited for (none ahead, or not enough).
    reservations_waited: u64,
}

impl<F: SegmentFile> Appender<F> {
    /// Continues a segment whose data ends at `position`, with `next_offset`
    /// the offset of the next batch. The partial tail block is read back so
    /// the next write can rewrite it whole.
    pub async fn resume(
        file: Rc<F>,
        position: u64,
        next_offset: i64,
        config: AppenderConfig,
    ) -> Result<Appender<F>> {
        assert!(
            config.buffer_bytes as u64 >= 2 * ALIGN
                && (config.buffer_bytes as u64).is_multiple_of(ALIGN)
        );
        assert!(config.writes_in_flight_max >= 1);
        let buf_position = align_down(position);
        let tail = (position - buf_position) as usize;
        let progress = Rc::new(WriteProgress::new(position, next_offset));
        Ok(Appender {
            file,
            progress,
            config,
            buf: None,
            cap: Self::cold_cap(&config),
            buf_position,
            buf_len: tail,
            submitted_len: tail,
            appended_offset: next_offset,
            next_write_id: 0,
            reserved_end: Rc::new(Cell::new(position)),
            window: Rc::new(Cell::new(ReserveWindow::new(
                config.buffer_bytes as u64,
                config.preallocate_bytes,
            ))),
            reserving: None,
            reservations_waited: 0,
        })
    }

    /// The buffer size of a cold partition.
    fn cold_cap(config: &AppenderConfig) -> usize {
        COLD_BUFFER_BYTES.min(config.buffer_bytes)
    }

    /// The write buffer, allocated if the partition was idle; the partial
    /// tail block (written already) is read back into it.
    async fn buffer(&mut self) -> Result<&mut F::Buffer> {
        if self.buf.is_none() {
            let mut buf = self.file.alloc_buffer(self.cap);
            let tail = self.buf_len;
            if tail > 0 {
                let block = self
                    .file
                    .read_at_aligned(self.buf_position, ALIGN as usize)
                    .await
                    .map_err(|e| StorageError::io("reading the tail block", e))?;
                if block.len() < tail {
                    return Err(StorageError::Io {
                        context: "reading the tail block",
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "segment shorter than expected",
                        ),
                    });
                }
                buf.as_bytes_mut()[..tail].copy_from_slice(&block[..tail]);
            }
            self.buf = Some(Held::new(buf));
        }
        Ok(self.buf.as_mut().expect("allocated above").get_mut())
    }

    /// Gives back what an idle partition holds: the write buffer, once
    /// everything appended is written (the next append reads the tail block
    /// back), and the disk reserved past the data. Returns whether it was
    /// idle enough to do so (nothing waiting to be written). With
    /// `cut_by_caller` the caller cuts the file to [`position`](Self::position)
    /// right after (a seal), which gives the reservation back too: one
    /// truncate instead of two.
    pub async fn release_idle(&mut self, cut_by_caller: bool) -> Result<bool> {
        self.check_failed()?;
        let position = self.position();
        if self.buf_len > self.submitted_len || self.progress.written().0 < position {
            return Ok(false);
        }
        self.finish_reserving().await;
        self.buf = None;
        self.cap = Self::cold_cap(&self.config);
        self.window.set(self.window.get().shrunk());
        let written_end = align_up(position);
        if self.reserved_end.get() > written_end && !cut_by_caller {
            // Blocks reserved beyond the end of the file are freed by
            // truncating it to its own size (ext4, xfs).
            self.file
                .truncate(written_end)
                .await
                .map_err(|e| StorageError::io("giving back reserved space", e))?;
        }
        self.reserved_end
            .set(self.reserved_end.get().min(written_end));
        Ok(true)
    }

    /// Waits for a reservation ahead that is still running. A seal cuts
    /// the file to its data first: a reservation landing after the cut
    /// would move the file's size past the data again, and a sealed segment
    /// with zeros after its data does not open.
    pub async fn finish_reserving(&mut self) {
        if let Some(r) = self.reserving.take() {
            let _ = r.task.await;
        }
    }

    /// Logical end of the appended data.
    pub fn position(&self) -> u64 {
        self.buf_position + self.buf_len as u64
    }

    pub fn appended_offset(&self) -> i64 {
        self.appended_offset
    }

    pub fn progress(&self) -> Rc<WriteProgress> {
        self.progress.clone()
    }

    pub fn file(&self) -> &Rc<F> {
        &self.file
    }

    fn check_failed(&self) -> Result<()> {
        match self.progress.failure() {
            Some(reason) => Err(StorageError::Failed { reason }),
            None => Ok(()),
        }
    }

    /// Makes sure the next `bytes` bytes have space on the device. A full disk
    /// is reported here, before anything is copied; the appender is unchanged.
    ///
    /// Space is reserved a window ahead — one write buffer for an idle or
    /// slow partition, growing with the write rate up to `preallocate_bytes`
    /// — and the next window is reserved in the background once half of the
    /// current one is used, so appends rarely wait for `fallocate`. Near a
    /// full disk the window falls back to one buffer, so space that returns
    /// is not taken by a few partitions' reservations.
    pub async fn reserve(&mut self, bytes: u64) -> Result<()> {
        let needed_end = align_up(self.position() + bytes);
        if needed_end > self.reserved_end.get() {
            // Whatever it found, a synchronous attempt below decides.
            self.finish_reserving().await;
        }
        if needed_end <= self.reserved_end.get() {
            self.reserve_ahead(needed_end);
            return Ok(());
        }
        // Reserve a window ahead; near a full disk, settle for exactly what
        // this append needs.
        self.reservations_waited += 1;
        let ahead = needed_end + self.next_window();
        for target in [ahead, needed_end] {
            match self.file.pre_allocate(target, false).await {
                Ok(()) => {
                    self.reserved_end.set(target);
                    return Ok(());
                }
                Err(e) if target == needed_end => {
                    return Err(StorageError::io("reserving space", e))
                }
                Err(_) => self.window.set(self.window.get().shrunk()),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// How many reservations an append waited for: a cold partition's,
    /// then (rarely) one that the reservation ahead did not cover in time.
    pub fn reservations_waited(&self) -> u64 {
        self.reservations_waited
    }

    /// The window for a reservation made now.
    fn next_window(&mut self) -> u64 {
        let w = self.window.get().next(std::time::Instant::now());
        self.window.set(w);
        w.bytes
    }

    fn reserve_ahead(&mut self, needed_end: u64) {
        let current = self.window.get().bytes;
        if self.config.preallocate_bytes == 0
            || current == 0
            || self.reserving.as_ref().is_some_and(|r| !r.done.get())
            || self.reserved_end.get() - needed_end > current / 2
        {
            return;
        }
        let target = self.reserved_end.get() + self.next_window();
        let done = Rc::new(Cell::new(false));
        let (file, reserved_end, window, finished) = (
            self.file.clone(),
            self.reserved_end.clone(),
            self.window.clone(),
            done.clone(),
        );
        let task = glommio::spawn_local(async move {
            // A failure here is not an error yet: the append that needs the
            // space retries synchronously and reports it.
            match file.pre_allocate(target, false).await {
                Ok(()) => reserved_end.set(reserved_end.get().max(target)),
                Err(_) => window.set(window.get().shrunk()),
            }
            finished.set(true);
        });
        self.reserving = Some(Reserving { task, done });
    }

    /// Copies `parts` (one batch, possibly split for patching) into the
    /// buffer; full buffers are submitted as they fill. `next_offset` is the
    /// offset after the batch. Call [`Appender::reserve`] first.
    pub async fn append(&mut self, parts: &[&[u8]], next_offset: i64) -> Result<()> {
        self.check_failed()?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut remaining = total;
        for part in parts {
            let mut data = *part;
            while !data.is_empty() {
                let at = self.buf_len;
                let buf = self.buffer().await?;
                let cap = buf.len();
                let n = (cap - at).min(data.len());
                buf.as_bytes_mut()[at..at + n].copy_from_slice(&data[..n]);
                self.buf_len += n;
                data = &data[n..];
                remaining -= n;
                if remaining == 0 {
                    self.appended_offset = next_offset;
                }
                if self.buf_len == cap {
                    self.submit_full().await?;
                }
            }
        }
        self.appended_offset = next_offset;
        Ok(())
    }

    async fn submit_full(&mut self) -> Result<()> {
        let full = self.buf.take().expect("a full buffer").into_inner();
        let cap = full.len();
        // Filled up: the partition is warm, its next buffer larger.
        self.cap = (cap * 2).min(self.config.buffer_bytes);
        self.buf = Some(Held::new(self.file.alloc_buffer(self.cap)));
        let start = self.buf_position;
        self.buf_position += cap as u64;
        self.buf_len = 0;
        self.submitted_len = 0;
        self.submit(full, start, start + cap as u64, self.appended_offset)
            .await
    }

    /// Submits whatever has been appended but not yet written, padded to a
    /// block, and returns the (position, offset) that the write covers once
    /// complete. The partial tail block moves to a fresh buffer.
    pub async fn flush(&mut self) -> Result<(u64, i64)> {
        self.check_failed()?;
        if self.buf_len > self.submitted_len {
            let padded = align_up(self.buf_len as u64) as usize;
            let tail_start = align_down(self.buf_len as u64) as usize;
            let mut out = self
                .buf
                .take()
                .expect("unsubmitted data is in the buffer")
                .into_inner();
            let mut next = self.file.alloc_buffer(self.cap);
            next.as_bytes_mut()[..self.buf_len - tail_start]
                .copy_from_slice(&out.as_bytes()[tail_start..self.buf_len]);
            self.buf = Some(Held::new(next));
            out.as_bytes_mut()[self.buf_len..padded].fill(0);
            out.trim_to_size(padded);
            let start = self.buf_position;
            let logical_end = start + self.buf_len as u64;
            self.buf_position += tail_start as u64;
            self.buf_len -= tail_start;
            self.submitted_len = self.buf_len;
            self.submit(out, start, logical_end, self.appended_offset)
                .await?;
        }
        Ok((self.position(), self.appended_offset))
    }

    async fn submit(
        &mut self,
        buf: F::Buffer,
        padded_start: u64,
        logical_end: u64,
        offset_end: i64,
    ) -> Result<()> {
        let progress = self.progress.clone();
        let in_flight_max = self.config.writes_in_flight_max;
        progress
            .signal
            .wait_until(|| {
                let s = progress.state.borrow();
                if s.failed.is_some() {
                    return Some(());
                }
                let mut in_flight = 0;
                let mut overlap = false;
                for w in s.queue.iter().filter(|w| !w.done) {
                    in_flight += 1;
                    overlap |= w.padded_end > padded_start;
                }
                (in_flight < in_flight_max && !overlap).then_some(())
            })
            .await;
        self.check_failed()?;
        let len = buf.len();
        let id = self.next_write_id;
        self.next_write_id += 1;
        progress.state.borrow_mut().queue.push_back(PendingWrite {
            padded_end: padded_start + len as u64,
            logical_end,
            offset_end,
            done: false,
        });
        let file = self.file.clone();
        glommio::spawn_local(async move {
            let result = file.write_at(buf, padded_start).await;
            progress.complete(id, len, result);
        })
        .detach();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition that keeps appending waits for a reservation only while
    /// it is cold: after that the next window is reserved in the
    /// background before it is needed, again and again.
    #[test]
    fn appends_wait_for_no_reservation_once_windows_are_reserved_ahead() {
        use crate::io::Disk;
        let waited = glommio::LocalExecutorBuilder::default()
            .spawn(|| async move {
                let disk = crate::sim_disk::SimDisk::new();
                let file = Rc::new(
                    disk.open_rw(std::path::Path::new("/p/0.log"))
                        .await
                        .unwrap(),
                );
                let config = AppenderConfig {
                    buffer_bytes: 64 << 10,
                    writes_in_flight_max: 2,
                    preallocate_bytes: 1 << 20,
                };
                let mut a = Appender::resume(file, 0, 0, config).await.unwrap();
                let block = [7u8; 4096];
                for i in 0..2_000 {
                    a.reserve(4096).await.unwrap();
                    a.append(&[&block], i + 1).await.unwrap();
                    // The reservation ahead runs meanwhile.
                    futures_lite::future::yield_now().await;
                }
                a.reservations_waited()
            })
            .unwrap()
            .join()
            .unwrap();
        // The first append's, and the second's (the window starts then).
        assert_eq!(waited, 2, "8 MB appended through 1 MiB windows");
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_up(0), 0);
    }
}

#[cfg(test)]
mod window_tests {
    use super::ReserveWindow;
    use std::time::{Duration, Instant};

    #[test]
    fn the_window_grows_with_the_write_rate_and_falls_back_on_a_full_disk() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let w = ReserveWindow::new(1 << 20, 32 << 20);
        assert_eq!(w.bytes, 0, "a cold partition reserves nothing ahead");
        let w = w.next(ms(0));
        assert_eq!(w.bytes, 0, "nor after one append");
        // Used up quickly, again and again: one buffer, then doubling up to the cap.
        let w = w.next(ms(100));
        assert_eq!(w.bytes, 1 << 20);
        let mut w = w;
        for i in 2..10 {
            w = w.next(ms(i * 100));
        }
        assert_eq!(w.bytes, 32 << 20);
        // Slow again: halves, down to a sixteenth of a buffer...
        let w = w.next(ms(30_000));
        assert_eq!(w.bytes, 16 << 20);
        let mut w = w;
        for i in 1..=12 {
            w = w.next(ms(30_000 + i * 20_000));
        }
        assert_eq!(w.bytes, 64 << 10);
        // ...kept while the partition reserves every few seconds...
        let w = w.next(ms(275_000));
        assert_eq!(w.bytes, 64 << 10);
        // ...and nothing once a window lasted over a minute.
        let w = w.next(ms(340_000));
        assert_eq!(w.bytes, 0);
        // From nothing, reserving every few seconds: the sixteenth again.
        let w = w.next(ms(345_000));
        assert_eq!(w.bytes, 64 << 10);
        // The disk could not give it: nothing ahead.
        assert_eq!(w.next(ms(400_000)).next(ms(400_100)).shrunk().bytes, 0);
    }
}
