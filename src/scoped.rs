//! Backend-local flags that hold while a closure runs, and are put back when it returns or
//! unwinds (an error raised inside it).

use std::cell::Cell;
use std::thread::LocalKey;

/// Run `f` with `flag` set, then put its previous value back.
pub fn while_set<T>(flag: &'static LocalKey<Cell<bool>>, f: impl FnOnce() -> T) -> T {
    struct Restore(&'static LocalKey<Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.set(self.1);
        }
    }
    let _restore = Restore(flag, flag.replace(true));
    f()
}
