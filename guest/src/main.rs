//! PID 1 inside the VM. See `ktstr_guest::agent` for what it does.
fn main() {
    ktstr_guest::agent::main()
}
