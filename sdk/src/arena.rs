//! A bump allocator for policies: every event runs in a fresh instance that lives for one call,
//! so memory never needs to be given back, only handed out quickly.
//!
//! Rust's default wasm allocator obtains every byte with `memory.grow`. In the daemon's
//! sandbox, growing a memory makes the host change page protections (an `mprotect` and a TLB
//! flush per call), which measured as a large part of a policy call's cost. This allocator
//! hands out memory from a static arena that is part of the module's initial memory, so an
//! ordinary event never grows memory at all. Allocations that do not fit fall back to the
//! system allocator, so a policy that needs more still works (within the daemon's memory cap).
//!
//! Only the WebAssembly build installs it (feature `arena`, on by default); native unit tests
//! use the normal allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes in the arena: enough for any ordinary decision (settings, event, plan, strings).
const ARENA_BYTES: usize = 512 * 1024;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: a policy instance is single-threaded; the arena is only reached through `Bump`,
// which hands out disjoint ranges.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

/// Offset of the first free byte in the arena.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The allocator: bump within the arena, the system allocator beyond it.
pub struct Bump;

impl Bump {
    fn base() -> usize {
        ARENA.0.get() as usize
    }

    fn in_arena(ptr: *mut u8) -> bool {
        let address = ptr as usize;
        address >= Self::base() && address < Self::base() + ARENA_BYTES
    }
}

// SAFETY: `alloc` returns either a fresh, suitably aligned range of the arena that no other
// allocation overlaps (the bump offset only moves forward), or what `System` returns; each
// pointer is given back to whichever of the two made it.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = Self::base();
        let next = NEXT.load(Ordering::Relaxed);
        let start = (base + next).next_multiple_of(layout.align()) - base;
        match start.checked_add(layout.size()) {
            Some(end) if end <= ARENA_BYTES => {
                NEXT.store(end, Ordering::Relaxed);
                (base + start) as *mut u8
            }
            // SAFETY: the caller's layout is valid, as `GlobalAlloc::alloc` requires.
            _ => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::in_arena(ptr) {
            // SAFETY: not in the arena, so `System` allocated it with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
        // Arena memory is given back when the instance is dropped after the event.
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Grow in place when this is the arena's last allocation (the common case of a
        // `Vec` or `String` being built).
        if Self::in_arena(ptr) {
            let offset = ptr as usize - Self::base();
            let end = offset + layout.size();
            if end == NEXT.load(Ordering::Relaxed) && offset + new_size <= ARENA_BYTES {
                NEXT.store(offset + new_size, Ordering::Relaxed);
                return ptr;
            }
        }
        // SAFETY: `layout` with `new_size` is valid, as `GlobalAlloc::realloc` requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are valid for the smaller size and do not overlap (`new`
            // is a fresh allocation).
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated by this allocator with `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_aligns_grows_in_place_and_falls_back() {
        let bump = Bump;
        // SAFETY: valid layouts; every pointer is used within its allocation.
        unsafe {
            let a = bump.alloc(Layout::from_size_align(3, 1).unwrap());
            let b = bump.alloc(Layout::from_size_align(8, 8).unwrap());
            assert!(Bump::in_arena(a) && Bump::in_arena(b));
            assert_eq!(b as usize % 8, 0);
            assert!(b as usize >= a as usize + 3);
            let grown = bump.realloc(b, Layout::from_size_align(8, 8).unwrap(), 64);
            assert_eq!(grown, b, "the last allocation grows in place");
            let big = Layout::from_size_align(ARENA_BYTES + 1, 8).unwrap();
            let outside = bump.alloc(big);
            assert!(!outside.is_null() && !Bump::in_arena(outside));
            bump.dealloc(outside, big);
        }
    }
}
