//! Owned byte buffers handed out in completions, and the pool the backends recycle them into.
//!
//! A [`Buffer`] is either a heap `Vec<u8>` (the simulated disk, which has no `unsafe`) or an
//! aligned allocation made with `std::alloc` (O_DIRECT needs the memory aligned, and the kernel
//! writes into it through a raw pointer). Either way it exposes one window, [`Buffer::bytes`]:
//! the requested range inside a possibly larger, aligned read.
//!
//! Ownership rule: the kernel may write a buffer until its read completes, whatever became of
//! the job that wanted it, so while a read is in flight its buffer sits in the backend's
//! in-flight table and nobody else can reach it; a caller only ever holds buffers of finished
//! reads. Aligned memory is allocated zeroed, so every byte of it is always initialized, whatever
//! the kernel wrote or did not write.
//!
//! Aliasing rule: while the kernel may write an aligned buffer, no Rust reference to its bytes
//! exists, not even a shared one for a moment. The buffer knows when that is: a backend takes
//! the pointer for an SQE with `Buffer::lend_to_kernel`, which marks the buffer *lent*, and
//! gives it back with `Buffer::reclaim_from_kernel` when the read's CQE arrives (an `unsafe`
//! call: its caller vouches for the CQE). Every way to a slice of the bytes ([`Buffer::bytes`],
//! `storage_mut`) asserts the buffer is not lent, so a use during the loan panics instead of
//! aliasing; what needs only the size (`Buffer::capacity`, `Debug`, the pool's accounting)
//! takes it from the allocation's layout and makes no slice. The flag and its checks are in
//! every build (a bool, and one comparison per slice), so the tests check the rule wherever
//! they run: this module's (a lent buffer is measured; its bytes are refused), `uring`'s and
//! `tests/stuck_disk.rs` (the path of `UringBackend::drop` that gives up on reads still in the
//! kernel and counts their buffers). A lent allocation is never freed: dropping it leaks it.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

use crate::limits::POOL_CLASS_BYTES_MAX;

/// Alignment of pooled buffers: one page. It covers the memory alignment O_DIRECT asks for on
/// every device seen (statx `dio_mem_align` and `queue/dma_alignment` + 1 are 512 here).
pub(crate) const BUFFER_ALIGNMENT_BYTES: usize = 4096;

/// The smallest pooled buffer; smaller requests get one of these.
const POOL_CLASS_BYTES_MIN: usize = BUFFER_ALIGNMENT_BYTES;

const _: () = assert!(BUFFER_ALIGNMENT_BYTES.is_power_of_two());
const _: () = assert!(POOL_CLASS_BYTES_MIN.is_power_of_two());
const _: () = assert!(POOL_CLASS_BYTES_MIN % BUFFER_ALIGNMENT_BYTES == 0);
const _: () = assert!(POOL_CLASS_BYTES_MIN <= POOL_CLASS_BYTES_MAX);

/// An owned byte buffer: the bytes of one finished read.
pub struct Buffer {
    storage: Storage,
    /// The window `bytes()` shows: `start <= end <= capacity`.
    start: usize,
    end: usize,
}

enum Storage {
    Heap(Vec<u8>),
    Aligned(AlignedBytes),
}

impl Buffer {
    /// A heap buffer whose window is the whole vector.
    pub fn from_vec(bytes: Vec<u8>) -> Buffer {
        let end = bytes.len();
        Buffer { storage: Storage::Heap(bytes), start: 0, end }
    }

    /// The bytes of the read: the requested range, fewer at end of file.
    pub fn bytes(&self) -> &[u8] {
        &self.storage()[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// A zeroed buffer of `capacity_bytes` at `alignment_bytes`; its window is empty.
    pub(crate) fn aligned_zeroed(capacity_bytes: usize, alignment_bytes: usize) -> Buffer {
        let bytes = AlignedBytes::zeroed(capacity_bytes, alignment_bytes);
        Buffer { storage: Storage::Aligned(bytes), start: 0, end: 0 }
    }

    /// Bytes allocated (the window's limit). From the allocation's recorded size, never from a
    /// slice: it is also asked of buffers lent to the kernel (`UringBackend::drop` counts the
    /// bytes it leaks).
    pub(crate) fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Heap(v) => v.len(), // reads the length field; heap buffers are never lent
            Storage::Aligned(a) => a.layout.size(),
        }
    }

    /// Alignment of the first byte (1 for heap buffers, whatever the allocator gave).
    pub(crate) fn alignment(&self) -> usize {
        match &self.storage {
            Storage::Heap(_) => 1,
            Storage::Aligned(a) => a.layout.align(),
        }
    }

    /// Lends the bytes to the kernel: the first byte, for an SQE to write through, and the
    /// buffer is *lent* until [`Buffer::reclaim_from_kernel`]; meanwhile any slice of its bytes
    /// panics. The pointer stays valid while `self` lives, also when `self` moves: the bytes are
    /// a separate allocation, reached only through a raw pointer. Only aligned buffers are lent
    /// (the backends read into pooled ones), and one loan at a time (one SQE per read).
    pub(crate) fn lend_to_kernel(&mut self) -> *mut u8 {
        match &mut self.storage {
            Storage::Heap(_) => panic!("heap buffers are never lent to the kernel"),
            Storage::Aligned(a) => {
                assert!(!a.lent, "a buffer is lent to one read of the kernel at a time");
                a.lent = true;
                a.ptr.as_ptr()
            }
        }
    }

    /// Ends the loan of [`Buffer::lend_to_kernel`]: the bytes may be read again.
    ///
    /// # Safety
    ///
    /// The kernel no longer accesses the bytes: the CQE of the one request that was given the
    /// pointer has arrived (and that request has no further CQEs).
    pub(crate) unsafe fn reclaim_from_kernel(&mut self) {
        match &mut self.storage {
            Storage::Heap(_) => panic!("heap buffers are never lent to the kernel"),
            Storage::Aligned(a) => {
                assert!(a.lent, "reclaiming a buffer that is not lent");
                a.lent = false;
            }
        }
    }

    /// Lent to the kernel: between [`Buffer::lend_to_kernel`] and
    /// [`Buffer::reclaim_from_kernel`].
    pub(crate) fn is_lent(&self) -> bool {
        match &self.storage {
            Storage::Heap(_) => false,
            Storage::Aligned(a) => a.lent,
        }
    }

    /// All `capacity()` bytes, for a synchronous read into them. Panics if lent.
    pub(crate) fn storage_mut(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Storage::Heap(v) => v.as_mut_slice(),
            Storage::Aligned(a) => a.as_mut_slice(),
        }
    }

    /// Sets the window `bytes()` shows.
    pub(crate) fn set_window(&mut self, start: usize, end: usize) {
        assert!(start <= end, "window {start}..{end}");
        assert!(end <= self.capacity(), "window end {end} beyond capacity {}", self.capacity());
        self.start = start;
        self.end = end;
    }

    /// All `capacity()` bytes. Panics if lent.
    fn storage(&self) -> &[u8] {
        match &self.storage {
            Storage::Heap(v) => v.as_slice(),
            Storage::Aligned(a) => a.as_slice(),
        }
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.storage {
            Storage::Heap(_) => "heap",
            Storage::Aligned(_) => "aligned",
        };
        f.debug_struct("Buffer")
            .field("kind", &kind)
            .field("window", &(self.start..self.end))
            .field("capacity", &self.capacity())
            .field("lent", &self.is_lent())
            .finish()
    }
}

/// Zeroed bytes from `std::alloc` at a chosen alignment, freed on drop.
///
/// A raw pointer rather than a `Box<[u8]>`: moving a `Box` asserts unique access to its bytes,
/// which would be a lie while the kernel writes into them.
struct AlignedBytes {
    ptr: NonNull<u8>,
    /// Size and alignment of the allocation: the size is read from here, never from a slice.
    layout: Layout,
    /// The kernel may be writing the bytes ([`Buffer::lend_to_kernel`]): no slice of them may be
    /// made, and the allocation is never freed.
    lent: bool,
}

// SAFETY: `AlignedBytes` owns its allocation outright (no sharing, no thread-local state), like a
// `Vec<u8>`; moving it to another thread moves that ownership. While lent, the kernel writes the
// bytes on behalf of the owning ring, whichever thread holds the value; no thread reads them.
unsafe impl Send for AlignedBytes {}
// SAFETY: `&AlignedBytes` only allows reading the bytes (`as_slice`, which refuses while lent)
// and the `lent` and `layout` fields, like `&Vec<u8>`; nothing mutates through `&self`.
unsafe impl Sync for AlignedBytes {}

impl AlignedBytes {
    fn zeroed(capacity_bytes: usize, alignment_bytes: usize) -> AlignedBytes {
        assert!(capacity_bytes > 0, "aligned buffers are never empty");
        assert!(alignment_bytes.is_power_of_two(), "alignment {alignment_bytes}");
        let layout = Layout::from_size_align(capacity_bytes, alignment_bytes)
            .unwrap_or_else(|e| panic!("buffer of {capacity_bytes} bytes: {e}"));
        // SAFETY: `layout` has a non-zero size (asserted above), as `alloc_zeroed` requires.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout);
        };
        AlignedBytes { ptr, layout, lent: false }
    }

    fn as_slice(&self) -> &[u8] {
        assert!(!self.lent, "the bytes of a buffer lent to the kernel were asked for");
        // SAFETY: `ptr` is a live allocation of `layout.size()` bytes (freed only in `drop`),
        // initialized by `alloc_zeroed`; `&self` rules out a `&mut` to it for the borrow's
        // length. The kernel is not writing it: the buffer is not lent (asserted above), and
        // `lent` is cleared only by `reclaim_from_kernel`, whose callers vouch that the CQE of
        // the read it was lent to arrived. A loan needs `&mut self`, so none starts while this
        // borrow lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        assert!(!self.lent, "the bytes of a buffer lent to the kernel were asked for");
        // SAFETY: as in `as_slice` (not lent: asserted above), and `&mut self` makes this the
        // only reference for the borrow's length.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        if self.lent {
            // The kernel may still write these bytes: never free them. Backends do not get
            // here (the in-flight table keeps a lent buffer until its CQE, and
            // `UringBackend::drop` forgets those it could not wait for); this is the last line.
            tracing::error!(
                bytes = self.layout.size(),
                "leaking a buffer still lent to the kernel"
            );
            return;
        }
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed only here, once; the
        // kernel is done with it: it is not lent (checked above).
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Free lists of aligned buffers by power-of-two size class, holding at most
/// `pooled_bytes_max` bytes. Taking a buffer of a class that is empty allocates one.
pub(crate) struct BufferPool {
    /// `free[c]` holds buffers of `POOL_CLASS_BYTES_MIN << c` bytes.
    free: Vec<Vec<Buffer>>,
    pooled_bytes: usize,
    pooled_bytes_max: usize,
}

impl BufferPool {
    /// A pool keeping at most `pooled_bytes_max` idle bytes, in classes up to the one holding
    /// `buffer_bytes_max` (capped at 64 MiB).
    pub(crate) fn new(pooled_bytes_max: usize, buffer_bytes_max: usize) -> BufferPool {
        let top = class_of(buffer_bytes_max.clamp(1, POOL_CLASS_BYTES_MAX));
        BufferPool {
            free: (0..=top).map(|_| Vec::new()).collect(),
            pooled_bytes: 0,
            pooled_bytes_max,
        }
    }

    /// A buffer of at least `bytes` bytes at `alignment_bytes`, with an empty window.
    pub(crate) fn take(&mut self, bytes: usize, alignment_bytes: usize) -> Buffer {
        let class = class_of(bytes.max(1));
        if alignment_bytes > BUFFER_ALIGNMENT_BYTES || class >= self.free.len() {
            let rounded =
                bytes.max(1).next_multiple_of(alignment_bytes.max(BUFFER_ALIGNMENT_BYTES));
            return Buffer::aligned_zeroed(rounded, alignment_bytes.max(BUFFER_ALIGNMENT_BYTES));
        }
        let mut buffer = match self.free[class].pop() {
            Some(b) => {
                self.pooled_bytes -= b.capacity();
                b
            }
            None => Buffer::aligned_zeroed(class_bytes(class), BUFFER_ALIGNMENT_BYTES),
        };
        assert!(buffer.capacity() >= bytes);
        assert_eq!(buffer.alignment(), BUFFER_ALIGNMENT_BYTES);
        buffer.set_window(0, 0);
        buffer
    }

    /// Keeps `buffer` for reuse if it is a pooled kind and there is room; else frees it.
    pub(crate) fn give(&mut self, buffer: Buffer) {
        assert!(!buffer.is_lent(), "a buffer lent to the kernel is never reused");
        let Storage::Aligned(_) = buffer.storage else {
            return; // heap buffers (the simulated disk's) are simply dropped
        };
        let capacity = buffer.capacity();
        let class = class_of(capacity);
        let pooled_kind = buffer.alignment() == BUFFER_ALIGNMENT_BYTES
            && class < self.free.len()
            && class_bytes(class) == capacity;
        if pooled_kind && self.pooled_bytes + capacity <= self.pooled_bytes_max {
            self.pooled_bytes += capacity;
            self.free[class].push(buffer);
        }
    }

    /// Idle bytes held in the free lists.
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.pooled_bytes
    }
}

/// The class whose buffers hold `bytes`: capacity `POOL_CLASS_BYTES_MIN << class`.
fn class_of(bytes: usize) -> usize {
    let rounded = bytes.max(POOL_CLASS_BYTES_MIN).next_power_of_two();
    (rounded.trailing_zeros() - POOL_CLASS_BYTES_MIN.trailing_zeros()) as usize
}

fn class_bytes(class: usize) -> usize {
    POOL_CLASS_BYTES_MIN << class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buffer_shows_the_whole_vec() {
        let b = Buffer::from_vec(vec![1, 2, 3]);
        assert_eq!(b.bytes(), &[1, 2, 3]);
        assert_eq!(b.len(), 3);
        assert!(!b.is_empty());
        assert!(Buffer::from_vec(Vec::new()).is_empty());
    }

    #[test]
    fn aligned_buffer_is_aligned_zeroed_and_windowed() {
        for alignment in [512, 4096, 65536] {
            let mut b = Buffer::aligned_zeroed(3 * alignment, alignment);
            assert_eq!(b.storage_mut().as_ptr() as usize % alignment, 0);
            assert!(b.is_empty());
            assert!(b.storage_mut().iter().all(|&x| x == 0));
            b.storage_mut()[alignment..alignment + 4].copy_from_slice(b"abcd");
            b.set_window(alignment + 1, alignment + 3);
            assert_eq!(b.bytes(), b"bc");
            assert_eq!(b.len(), 2);
        }
    }

    #[test]
    fn window_beyond_capacity_is_refused() {
        let r = std::panic::catch_unwind(|| {
            let mut b = Buffer::aligned_zeroed(4096, 4096);
            b.set_window(0, 4097);
        });
        assert!(r.is_err());
    }

    /// A buffer lent to the kernel (as `UringBackend::drop` finds those of a stuck disk) tells
    /// its size, formats, and takes a window, all without a slice of its bytes: every way to a
    /// slice refuses while it is lent (the tests below), so this panics if `capacity` makes one.
    #[test]
    fn a_lent_buffer_tells_its_capacity_from_the_layout() {
        let mut pool = BufferPool::new(1 << 20, 1 << 20);
        let mut b = pool.take(5000, BUFFER_ALIGNMENT_BYTES);
        let first = b.lend_to_kernel();
        assert!(b.is_lent());
        assert_eq!(b.capacity(), 8192);
        assert!(format!("{b:?}").contains("capacity: 8192, lent: true"), "{b:?}");
        b.set_window(100, 8192); // checked against `capacity()`
        assert_eq!(b.len(), 8092);
        // SAFETY: no kernel request was given the pointer.
        unsafe { b.reclaim_from_kernel() };
        assert!(!b.is_lent());
        assert_eq!(b.bytes().as_ptr(), first.wrapping_add(100).cast_const());
        pool.give(b);
        assert_eq!(pool.pooled_bytes(), 8192);
    }

    fn lent() -> Buffer {
        let mut b = Buffer::aligned_zeroed(4096, BUFFER_ALIGNMENT_BYTES);
        b.lend_to_kernel();
        b
    }

    #[test]
    #[should_panic(expected = "lent to the kernel were asked for")]
    fn the_bytes_of_a_lent_buffer_are_refused() {
        let _ = lent().bytes();
    }

    #[test]
    #[should_panic(expected = "lent to the kernel were asked for")]
    fn the_storage_of_a_lent_buffer_is_refused() {
        let _ = lent().storage_mut();
    }

    #[test]
    #[should_panic(expected = "never reused")]
    fn a_lent_buffer_is_not_pooled() {
        BufferPool::new(1 << 20, 1 << 20).give(lent());
    }

    #[test]
    #[should_panic(expected = "one read of the kernel at a time")]
    fn a_buffer_is_lent_once_at_a_time() {
        lent().lend_to_kernel();
    }

    #[test]
    fn classes_are_powers_of_two_from_a_page() {
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(4096), 0);
        assert_eq!(class_of(4097), 1);
        assert_eq!(class_of(8192), 1);
        assert_eq!(class_of(1 << 20), 8);
        assert_eq!(class_bytes(class_of(12_000)), 16384);
    }

    #[test]
    fn pool_reuses_within_its_byte_limit() {
        let mut pool = BufferPool::new(16384, 1 << 20);
        let a = pool.take(5000, BUFFER_ALIGNMENT_BYTES);
        assert_eq!(a.capacity(), 8192);
        let b = pool.take(8000, BUFFER_ALIGNMENT_BYTES);
        let given = [a.storage().as_ptr(), b.storage().as_ptr()];
        let c = pool.take(8000, BUFFER_ALIGNMENT_BYTES);
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.pooled_bytes(), 16384);
        pool.give(c); // over the limit: freed
        assert_eq!(pool.pooled_bytes(), 16384);
        let again = pool.take(6000, BUFFER_ALIGNMENT_BYTES);
        assert!(again.is_empty(), "a reused buffer starts with an empty window");
        assert_eq!(pool.pooled_bytes(), 8192);
        assert!(given.contains(&again.storage().as_ptr()), "taken from the free list");
        // Heap buffers and odd sizes are not pooled.
        pool.give(Buffer::from_vec(vec![0; 8192]));
        pool.give(Buffer::aligned_zeroed(12288, BUFFER_ALIGNMENT_BYTES));
        assert_eq!(pool.pooled_bytes(), 8192);
    }

    #[test]
    fn pool_serves_big_and_strongly_aligned_requests_unpooled() {
        let mut pool = BufferPool::new(1 << 30, 1 << 16);
        let big = pool.take((1 << 16) * 3, BUFFER_ALIGNMENT_BYTES);
        assert!(big.capacity() >= 3 << 16);
        pool.give(big);
        assert_eq!(pool.pooled_bytes(), 0);
        let mut wide = pool.take(100, 1 << 16);
        assert_eq!(wide.storage_mut().as_ptr() as usize % (1 << 16), 0);
        pool.give(wide);
        assert_eq!(pool.pooled_bytes(), 0);
    }
}
