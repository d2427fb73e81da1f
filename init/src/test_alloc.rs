//! The unit tests' allocator: the system allocator, counting the bytes each
//! thread has live, so that a test can check what a piece of PID 1 keeps
//! allocated (each test runs on a thread of its own).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the bytes allocated and not yet freed, per thread.
struct Counting;

thread_local! {
    /// A thread's live bytes: what it allocated minus what it freed (a
    /// block freed on another thread than its own counts there).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(n: usize) {
    // try_with: a thread being torn down may still allocate.
    let _ = LIVE.try_with(|c| c.set(c.get().wrapping_add_unsigned(n)));
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|c| c.set(c.get().wrapping_sub_unsigned(n)));
}

// SAFETY: every call goes to System with the caller's layout and pointer
// unchanged; the counting touches only a thread-local Cell, never memory
// handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for alloc, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for alloc_zeroed, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: the caller's contract for dealloc, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for realloc, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            sub(layout.size());
            add(new_size);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The bytes this thread has allocated and not freed so far.
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_stays_allocated() {
        let before = live_bytes();
        let v = vec![0u8; 10_000];
        assert_eq!(live_bytes() - before, 10_000);
        drop(v);
        assert_eq!(live_bytes(), before);
    }
}
