//! Memory contexts switched for a scope: the previous context is restored when the scope ends,
//! also when an error unwinds through it (before any context the scope used is deleted).

use pgrx::pg_sys;

/// The current memory context is `to` while this lives.
pub struct InContext {
    previous: pg_sys::MemoryContext,
}

impl InContext {
    pub fn switch(to: pg_sys::MemoryContext) -> InContext {
        InContext {
            previous: unsafe { pg_sys::MemoryContextSwitchTo(to) },
        }
    }
}

impl Drop for InContext {
    fn drop(&mut self) {
        unsafe { pg_sys::MemoryContextSwitchTo(self.previous) };
    }
}

/// A memory context that is deleted when dropped (after any `InContext` declared later).
pub struct Owned(pub pg_sys::MemoryContext);

impl Owned {
    pub fn new(parent: pg_sys::MemoryContext, name: &'static std::ffi::CStr) -> Owned {
        Owned(unsafe {
            pg_sys::AllocSetContextCreateInternal(
                parent,
                name.as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            )
        })
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        unsafe { pg_sys::MemoryContextDelete(self.0) };
    }
}
