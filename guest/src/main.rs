//! PID 1 inside the VM. See `agent` for what it does.
fn main() {
    eprintln!("ktstr-guest: agent not implemented yet");
}
