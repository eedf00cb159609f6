//! Process-wide cancellation (Ctrl-C / SIGTERM). Long-running loops poll [`requested`] and tear down
//! their VMs and temp dirs; a second Ctrl-C is not needed.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the Ctrl-C/SIGTERM handler once; later calls are no-ops.
pub fn install_handler() {
    INSTALL.call_once(|| {
        // An error here means another handler is installed (e.g. by a test harness); the flag
        // can still be set through `request`.
        let _ = ctrlc::set_handler(|| CANCELLED.store(true, Ordering::SeqCst));
    });
}

pub fn requested() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

pub fn request() {
    CANCELLED.store(true, Ordering::SeqCst);
}
