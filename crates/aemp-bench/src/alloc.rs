//! The benchmark's global allocator: mimalloc (v2), entered through its plain functions
//! whenever they give the alignment asked for.
//!
//! The `mimalloc` crate's allocator always takes mimalloc's aligned entry points
//! (`mi_malloc_aligned` and friends), which check the alignment, look up the heap and check
//! the next free block's address before they reach the same fast path: about 20
//! instructions more per allocation (callgrind). Every mimalloc block is word-aligned (its
//! size classes are whole words), so a layout whose alignment is at most a word takes the
//! plain entry points; mimalloc's own `mi_realloc_aligned` uses the same rule. Larger
//! alignments keep the aligned ones.

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every mimalloc block has: one word.
const MIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc, see the module documentation.
pub struct MiMalloc;

/// Allocates `layout` through `plain` when its alignment is at most a word, else through
/// `aligned` (a pair of mimalloc's entry points: plain and zeroed).
///
/// # Safety
///
/// As for [`GlobalAlloc::alloc`].
#[inline(always)]
unsafe fn allocate(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation functions take any size and a power-of-two alignment
    // (which a Layout's is).
    unsafe {
        if layout.align() <= MIN_ALIGN {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: every method hands the request to mimalloc, whose functions return null or a
// block of at least the size asked for with the alignment asked for (the plain ones only
// for word alignment, which every mimalloc block has), and free or resize only blocks
// mimalloc gave out.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { allocate(layout, mi_malloc, mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { allocate(layout, mi_zalloc, mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl; mi_free takes blocks of either entry point.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= MIN_ALIGN {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}
