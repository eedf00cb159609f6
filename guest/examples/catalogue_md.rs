//! Prints the scenario catalogue as Markdown: `cargo run -p ktstr-guest --example catalogue_md >
//! docs/scenarios.md`. The doc is generated so that it cannot drift from the code (a test checks
//! it is current).
fn main() {
    print!("{}", ktstr_guest::scenario::catalogue_markdown());
}
