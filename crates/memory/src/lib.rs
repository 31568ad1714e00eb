//! Process-level hardening of memory that holds secrets.
//!
//! # Layout
//! - [`wipe_gmp_on_free`]: makes GMP (the big-integer library behind the Paillier keys of
//!   CGGMP24, through `rug`) overwrite every block with zeros before returning it to the
//!   allocator. Paillier primes and the protocols' big-integer intermediates are GMP
//!   integers, which `zeroize` cannot reach: `rug::Integer` frees its limbs with GMP's free
//!   function, and this crate replaces that function.
//!
//! - [`harden_process`]: disables core dumps and locks the process's memory (when the
//!   memory-lock limit allows it), so secrets are neither dumped nor swapped to disk.
//!
//! The hooks are `malloc`/`free`-compatible (they allocate with `malloc` and free with
//! `free`, exactly like GMP's defaults), so blocks allocated before the hooks were installed
//! are still freed correctly; installing them is idempotent and safe at any time.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use zeroize::Zeroize;

static INSTALL: Once = Once::new();
static WIPED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Installs GMP allocation hooks that wipe every block before it is freed or moved by a
/// reallocation. Call it first thing in `main`; library entry points that create secret
/// big integers call it too. Idempotent.
pub fn wipe_gmp_on_free() {
    INSTALL.call_once(|| {
        // SAFETY: the three functions below have the signatures GMP requires, never return
        // null (they abort, as GMP expects of an allocator that fails) and are compatible
        // with GMP's default malloc/realloc/free, so blocks allocated before this call are
        // released correctly.
        #[allow(unsafe_code)]
        unsafe {
            gmp_mpfr_sys::gmp::set_memory_functions(Some(allocate), Some(reallocate), Some(free));
        }
    });
}

/// Bytes wiped by the hooks since the process started (for tests and metrics).
pub fn gmp_wiped_bytes() -> u64 {
    WIPED_BYTES.load(Ordering::Relaxed)
}

/// Zeroes the usable part of a block; never more than the allocator says it holds.
#[allow(unsafe_code)]
unsafe fn wipe(ptr: *mut c_void, size: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` is a live block from `malloc`; `malloc_usable_size` bounds the slice to
    // memory the block owns even if GMP passed a larger size.
    let len = unsafe { size.min(libc::malloc_usable_size(ptr)) };
    // SAFETY: `ptr..ptr+len` is owned by the block and not aliased while GMP frees it.
    unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) }.zeroize();
    WIPED_BYTES.fetch_add(len as u64, Ordering::Relaxed);
}

extern "C" fn allocate(size: usize) -> *mut c_void {
    // SAFETY: plain malloc; a null result aborts as GMP requires.
    #[allow(unsafe_code)]
    let ptr = unsafe { libc::malloc(size.max(1)) };
    if ptr.is_null() {
        std::process::abort();
    }
    ptr
}

#[allow(unsafe_code)]
unsafe extern "C" fn reallocate(ptr: *mut c_void, old_size: usize, new_size: usize) -> *mut c_void {
    let new_ptr = allocate(new_size);
    if !ptr.is_null() {
        // SAFETY: both blocks are live and distinct; we copy at most what both hold.
        unsafe {
            let len = old_size.min(new_size).min(libc::malloc_usable_size(ptr));
            std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), new_ptr.cast::<u8>(), len);
            wipe(ptr, old_size);
            libc::free(ptr);
        }
    }
    new_ptr
}

#[allow(unsafe_code)]
unsafe extern "C" fn free(ptr: *mut c_void, size: usize) {
    // SAFETY: GMP frees a block it got from `allocate`/`reallocate` (or from the default
    // malloc before installation) exactly once.
    unsafe {
        wipe(ptr, size);
        libc::free(ptr);
    }
}

/// What [`harden_process`] achieved; anything not achieved comes with the reason, for a
/// warning at start-up (hardening is best effort: a refusal is not a failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Core dumps are off (`RLIMIT_CORE = 0` and not dumpable), or why not.
    pub core_dumps_disabled: Result<(), String>,
    /// All current and future memory is locked in RAM, or why not.
    pub memory_locked: Result<(), String>,
}

/// Disables core dumps and, when `RLIMIT_MEMLOCK` is unlimited, locks all current and future
/// memory. With a finite limit, locking future allocations would make them fail once the
/// limit is reached, so only the memory mapped now is locked (if the limit allows) and the
/// reason is returned: run with `ulimit -l unlimited` (or `LimitMEMLOCK=infinity`) to lock
/// everything.
pub fn harden_process() -> Hardening {
    Hardening {
        core_dumps_disabled: disable_core_dumps(),
        memory_locked: lock_memory(),
    }
}

#[allow(unsafe_code)]
fn disable_core_dumps() -> Result<(), String> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid arguments.
    let limit = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    // SAFETY: as above; PR_SET_DUMPABLE takes an integer argument.
    let dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if limit == 0 && dumpable == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot disable core dumps: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[allow(unsafe_code)]
fn lock_memory() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(format!(
            "cannot read RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        ));
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        // SAFETY: plain syscall; flags are valid.
        return if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
            Ok(())
        } else {
            Err(format!("mlockall refused: {}", std::io::Error::last_os_error()))
        };
    }
    // Under a finite limit, lock what is mapped now (the limit permitting) but not future
    // allocations, which would start failing once the limit is reached.
    // SAFETY: plain syscall; flags are valid.
    let current = unsafe { libc::mlockall(libc::MCL_CURRENT) };
    let outcome = if current == 0 {
        "current memory locked, future allocations not".to_owned()
    } else {
        format!("memory not locked ({})", std::io::Error::last_os_error())
    };
    Err(format!(
        "{outcome}: RLIMIT_MEMLOCK is {} bytes; raise it to lock all memory (a shell: `ulimit -l unlimited`; systemd: `LimitMEMLOCK=infinity`; Docker/Podman: `--ulimit memlock=-1:-1`; Kubernetes: the container runtime's memlock limit)",
        limit.rlim_cur
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardening_reports_each_outcome() {
        let h = harden_process();
        // Core dumps can always be disabled for our own process.
        assert_eq!(h.core_dumps_disabled, Ok(()));
        // Memory locking depends on the limit; either way the result says what happened.
        if let Err(reason) = &h.memory_locked {
            assert!(
                reason.contains("RLIMIT_MEMLOCK") || reason.contains("mlockall"),
                "{reason}"
            );
        }
    }

    #[test]
    fn dropped_and_grown_integers_are_wiped() {
        wipe_gmp_on_free();
        let before = gmp_wiped_bytes();
        {
            let mut x = rug::Integer::from(1) << 4096u32; // ~512 bytes of limbs
            x <<= 65536u32; // forces a reallocation: the old block is wiped
            assert!(x.significant_bits() > 65536);
        } // dropped: the last block is wiped
        let wiped = gmp_wiped_bytes() - before;
        assert!(wiped >= 512 + 8192, "only {wiped} bytes wiped");
        // Installing twice is harmless.
        wipe_gmp_on_free();
        let y = rug::Integer::from(12345) * 678;
        assert_eq!(y, 8_369_910);
    }
}
