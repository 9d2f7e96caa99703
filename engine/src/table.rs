//! Fixed-size tables for the engine's large structures (order slab, id index, idempotency
//! keys), allocated once, filled at construction, and backed by transparent huge pages where
//! the OS allows.
//!
//! Why: these tables are read at random (a cancel finds an order by id, a request finds its
//! key). With 4 KiB pages every such access also misses the TLB and walks the page table;
//! with 2 MiB pages a 64 MiB table needs 32 TLB entries. Filling at construction maps every
//! page up front, so no first-touch page fault ever lands on the processor thread.
//!
//! **Invariants**: the length never changes; the memory is always initialized.
//!
//! **Known limitations**: huge pages are a hint (`madvise(MADV_HUGEPAGE)` on Linux); without
//! them the table works the same, only slower.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE_PAGE_BYTES: usize = 2 * 1024 * 1024;

pub struct Table<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
}

// SAFETY: a `Table` owns its elements like a `Box<[T]>` does.
unsafe impl<T: Copy + Send> Send for Table<T> {}
// SAFETY: shared access only hands out `&[T]`.
unsafe impl<T: Copy + Sync> Sync for Table<T> {}

impl<T: Copy> Table<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> Table<T> {
        let bytes = std::mem::size_of::<T>()
            .checked_mul(len)
            .expect("table size fits in memory");
        let huge = bytes >= HUGE_PAGE_BYTES;
        let align = if huge {
            HUGE_PAGE_BYTES
        } else {
            std::mem::align_of::<T>()
        };
        let layout = Layout::from_size_align(bytes.max(1), align).expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) } as *mut T;
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if huge {
            // SAFETY: the range lies inside the allocation just made; the advice only changes
            // how the kernel backs it (a failure leaves normal pages).
            unsafe {
                libc::madvise(
                    ptr.as_ptr() as *mut libc::c_void,
                    bytes / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
        for i in 0..len {
            // SAFETY: `i < len` elements fit in the allocation; writing initializes them.
            unsafe { ptr.as_ptr().add(i).write(fill) };
        }
        Table { ptr, len, layout }
    }
}

impl<T: Copy> Deref for Table<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialized elements live at `ptr` for the table's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for Table<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for Table<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout; `T: Copy` needs no drop.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_tables_hold_their_values() {
        let mut t = Table::new(10, 7u32);
        t[3] = 9;
        assert_eq!(t.iter().sum::<u32>(), 7 * 9 + 9);
        let big = Table::new(HUGE_PAGE_BYTES / 8 + 5, 1u64);
        assert_eq!(big.len(), HUGE_PAGE_BYTES / 8 + 5);
        assert_eq!(big.iter().sum::<u64>() as usize, big.len());
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE_BYTES, 0);
    }
}
