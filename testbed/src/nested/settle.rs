//! Booting L1 again for what an earlier L1 boot left unsettled.
//!
//! On this test bed (QEMU 7.2 TCG emulating SVM) L1 dies now and then and L2s fail for the bed's
//! own reasons (docs/benchmarks.md, "The nested test bed's own failures"). Both users of L1, the benchmark and the nested
//! tests, therefore keep what each L1 boot gave and run only what is missing in a fresh L1. This
//! module is that loop; what "missing" means is the caller's ([`Rounds`]).

use super::{L1Outcome, L1Request, NestedError};

/// A job spread over L1 boots.
pub trait Rounds {
    /// The request for L1 boot `boot` (counted from 1), or `None` when nothing is left to run.
    fn next(&mut self, boot: u32) -> Option<L1Request>;
    /// Takes what L1 boot `boot` gave.
    fn absorb(&mut self, boot: u32, out: &L1Outcome);
}

/// What [`boot_until_settled`] ended with.
#[derive(Debug)]
pub struct Settled {
    /// The last L1 boot that ran; its console is the evidence for anything left unsettled.
    pub last: L1Outcome,
    /// L1 boots that ran to an outcome.
    pub boots: u32,
}

/// Boots L1 (through `run`, normally [`super::run_l1`]) until `rounds` has nothing left, at most
/// `max_boots` times, or until Ctrl-C. `Ok(None)`: nothing was asked for.
///
/// A failure to boot L1 at all is an error on the first boot; on a later boot it ends the loop
/// with what the earlier boots gave, since their results are real and the caller reports the rest
/// as unsettled.
pub fn boot_until_settled(
    rounds: &mut impl Rounds,
    max_boots: u32,
    mut run: impl FnMut(&L1Request) -> Result<L1Outcome, NestedError>,
) -> Result<Option<Settled>, NestedError> {
    let mut settled: Option<Settled> = None;
    for boot in 1..=max_boots {
        let Some(req) = rounds.next(boot) else {
            break;
        };
        let out = match run(&req) {
            Ok(out) => out,
            Err(e) if settled.is_some() => {
                eprintln!(
                    "nested: L1 boot {boot} failed ({e}); keeping what the earlier boots gave"
                );
                break;
            }
            Err(e) => return Err(e),
        };
        rounds.absorb(boot, &out);
        settled = Some(Settled {
            last: out,
            boots: boot,
        });
        // Ctrl-C: keep what was measured, boot nothing more.
        if ktstr::cancel::requested() {
            break;
        }
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktstr::vm::{VmEnd, VmRun};
    use std::path::PathBuf;
    use std::time::Duration;

    /// Needs `want` items; each L1 boot settles the ones listed for it in `gives`.
    struct Items {
        want: u32,
        got: u32,
        gives: Vec<u32>,
        asked: Vec<u32>,
    }

    impl Rounds for Items {
        fn next(&mut self, _boot: u32) -> Option<L1Request> {
            let left = self.want - self.got;
            (left > 0).then(|| {
                self.asked.push(left);
                L1Request::new(PathBuf::new(), left.to_string(), PathBuf::new())
            })
        }
        fn absorb(&mut self, boot: u32, _out: &L1Outcome) {
            self.got += self.gives[boot as usize - 1];
        }
    }

    fn items(want: u32, gives: &[u32]) -> Items {
        Items {
            want,
            got: 0,
            gives: gives.to_vec(),
            asked: Vec::new(),
        }
    }

    /// Stands in for L1: echoes the script so a test can tell which boot's outcome it got.
    fn fake_l1(req: &L1Request) -> Result<L1Outcome, NestedError> {
        Ok(L1Outcome {
            run: VmRun {
                end: VmEnd::Shutdown,
                messages: Vec::new(),
                frame_errors: Vec::new(),
                console_tail: String::new(),
                console_log: None,
                crash_line: None,
                to_agent: None,
                to_result: None,
                wall: Duration::ZERO,
                backend: "fake".into(),
            },
            console: req.script.clone(),
            records: Vec::new(),
            json: Vec::new(),
            exit_code: Some(0),
        })
    }

    #[test]
    fn boots_again_only_for_what_is_missing() {
        let mut job = items(5, &[3, 1, 1]);
        let s = boot_until_settled(&mut job, 4, fake_l1).unwrap().unwrap();
        assert_eq!(job.asked, vec![5, 2, 1]);
        assert_eq!(s.boots, 3);
        assert_eq!(s.last.console, "1");
    }

    #[test]
    fn stops_at_the_boot_limit_with_the_last_boot_as_evidence() {
        let mut job = items(5, &[1, 1, 1, 1]);
        let s = boot_until_settled(&mut job, 2, fake_l1).unwrap().unwrap();
        assert_eq!((s.boots, job.got), (2, 2));
        assert_eq!(s.last.console, "4");
    }

    #[test]
    fn nothing_asked_boots_nothing() {
        let mut job = items(0, &[]);
        let mut booted = false;
        let s = boot_until_settled(&mut job, 3, |r| {
            booted = true;
            fake_l1(r)
        });
        assert!(s.unwrap().is_none());
        assert!(!booted);
    }

    #[test]
    fn a_first_boot_error_is_an_error_and_a_later_one_keeps_what_was_got() {
        let err = || NestedError::Io {
            what: "qemu".into(),
            source: std::io::Error::other("gone"),
        };
        let mut job = items(3, &[1, 1, 1]);
        assert!(boot_until_settled(&mut job, 3, |_| Err(err())).is_err());

        let mut job = items(3, &[1, 1, 1]);
        let mut boot = 0;
        let s = boot_until_settled(&mut job, 3, |r| {
            boot += 1;
            if boot == 2 { Err(err()) } else { fake_l1(r) }
        })
        .unwrap()
        .unwrap();
        assert_eq!((s.boots, job.got), (1, 1));
        assert_eq!(s.last.console, "3");
    }
}
