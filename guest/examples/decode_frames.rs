//! Decodes a captured result channel (e.g. QEMU's `-serial file:com2.out`) and prints each
//! message as pretty JSON, then any framing errors. For debugging the agent by hand.
fn main() {
    let path = std::env::args().nth(1).expect("usage: decode_frames FILE");
    let bytes = std::fs::read(&path).expect("read the capture");
    let (msgs, errs) = ktstr_guest::frame::decode_all(&bytes);
    for m in &msgs {
        println!("{}", serde_json::to_string_pretty(m).expect("serialize"));
    }
    for e in &errs {
        eprintln!("frame error: {e}");
    }
    if msgs.is_empty() || !errs.is_empty() {
        std::process::exit(1);
    }
}
