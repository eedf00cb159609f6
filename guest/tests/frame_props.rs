//! Property tests of the host<->guest framing: every message survives encode/decode, whatever
//! garbage precedes it and however the stream is cut into reads.

use ktstr_guest::frame::{Decoder, decode_all, encode};
use ktstr_guest::protocol::{
    AgentStarted, GuestMessage, GuestReport, GuestStatus, KernelInfo, PROTOCOL_VERSION,
};
use proptest::prelude::*;

fn message() -> impl Strategy<Value = GuestMessage> {
    let started = (any::<u64>(), any::<String>(), any::<u32>()).prop_map(|(up, rel, cpus)| {
        GuestMessage::AgentStarted(AgentStarted {
            protocol_version: PROTOCOL_VERSION,
            uptime_ms: up,
            kernel_release: rel,
            online_cpus: cpus,
        })
    });
    let status = prop_oneof![
        Just(GuestStatus::Passed),
        any::<String>().prop_map(|reason| GuestStatus::Failed { reason }),
        any::<String>().prop_map(|message| GuestStatus::Error { message }),
    ];
    let report = (status, any::<String>(), any::<Option<i32>>(), any::<u64>()).prop_map(
        |(status, release, exit_code, uptime_ms)| {
            GuestMessage::Result(Box::new(GuestReport {
                status,
                kernel: KernelInfo {
                    release,
                    sched_ext: true,
                    online_cpus: 2,
                },
                exit_code,
                scheduler: None,
                scenario: None,
                uptime_ms,
            }))
        },
    );
    prop_oneof![started, report]
}

/// Bytes that cannot start a frame's magic, as a console or a crashing agent might print.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>().prop_filter("no magic", |b| *b != b'@'), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_survive_garbage_and_any_chunking(
        items in prop::collection::vec((garbage(), message()), 1..6),
        tail in garbage(),
        cuts in prop::collection::vec(1usize..64, 1..16),
    ) {
        let mut stream = Vec::new();
        for (junk, msg) in &items {
            stream.extend_from_slice(junk);
            stream.extend(encode(msg));
        }
        stream.extend_from_slice(&tail);
        let sent: Vec<GuestMessage> = items.iter().map(|(_, m)| m.clone()).collect();

        let (msgs, errs) = decode_all(&stream);
        prop_assert!(errs.is_empty(), "{errs:?}");
        prop_assert_eq!(&msgs, &sent);

        let mut d = Decoder::new();
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + cut).min(stream.len());
            got.extend(d.push(&stream[at..end]));
            at = end;
        }
        let got: Vec<GuestMessage> = got.into_iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got, sent);
    }
}
