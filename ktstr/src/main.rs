//! Thin entry point; everything lives in the library (`ktstr::cli`).
fn main() {
    std::process::exit(ktstr::cli::main());
}
