//! The one place a cell becomes a boot request, for `run`, `shell`, `matrix` and `bisect`.
//!
//! A [`Cell`] is what the user asked for, resolved to host files: a kernel image, a scheduler
//! binary (or none), a scenario with its parameters (or a shell), a topology, memory and extra
//! files. [`Cell::request`] turns it into the [`CellRequest`] a backend boots, and owns every rule
//! that front ends used to apply each in their own way: the memory check against the topology,
//! the scheduler attach timeout the agent gets, and the host watchdog's formula.

use super::CellRequest;
use crate::initramfs::{self, InitramfsSpec};
use crate::topology::Topology;
use ktstr_guest::protocol::{CellSpec, Mode, PROTOCOL_VERSION, ScenarioRun, SchedulerLaunch};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long the agent waits for a scheduler to reach `enabled`: BPF verification of a large
/// scheduler under TCG, on a loaded host, takes tens of seconds.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// Below this a distribution kernel plus the initramfs leaves the guest too little to run a
/// scenario; QEMU would also silently turn 0 into its default.
pub const MIN_MEMORY_MIB: u32 = 128;
/// Per NUMA node, so that no node holds only kernel text.
pub const MIN_NODE_MEMORY_MIB: u32 = 64;
/// Past this a guest's memory is a typing error (the host has far less), not a request.
pub const MAX_MEMORY_MIB: u32 = 1 << 20;

/// The watchdog of `shell --exec` (a command has no scenario duration to derive one from).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(600);
/// "No timeout" for an interactive shell: a VM left open for a month is still ended.
pub const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CellError {
    #[error(
        "memory {mib} MiB: give at least {need} MiB for topology {topology} ({MIN_MEMORY_MIB} MiB, and {MIN_NODE_MEMORY_MIB} MiB per NUMA node)"
    )]
    TooLittleMemory {
        mib: u32,
        need: u32,
        topology: Topology,
    },
    #[error(
        "memory {mib} MiB: more than {MAX_MEMORY_MIB} MiB is not a guest size; give MiB, e.g. 512"
    )]
    TooMuchMemory { mib: u32 },
}

/// Guest memory against the topology: enough in all and on every NUMA node.
pub fn check_memory(mib: u32, topology: &Topology) -> Result<(), CellError> {
    if mib > MAX_MEMORY_MIB {
        return Err(CellError::TooMuchMemory { mib });
    }
    if mib < MIN_MEMORY_MIB || mib / topology.nodes < MIN_NODE_MEMORY_MIB {
        return Err(CellError::TooLittleMemory {
            mib,
            need: MIN_MEMORY_MIB.max(MIN_NODE_MEMORY_MIB * topology.nodes),
            topology: *topology,
        });
    }
    Ok(())
}

/// Boot allowance for the watchdog on top of a scenario's duration: a distribution kernel reaches
/// the agent in seconds under TCG on an idle host, several times that when cells run in parallel
/// on a loaded one, and more vCPUs take longer to bring up.
pub fn boot_allowance(cpus: u32) -> Duration {
    Duration::from_secs(60 + 2 * u64::from(cpus))
}

/// The host watchdog of a scenario cell: the scenario, the boot allowance, and the attach wait
/// when a scheduler must attach first.
pub fn scenario_watchdog(duration: Duration, topology: &Topology, attaches: bool) -> Duration {
    let attach = if attaches {
        ATTACH_TIMEOUT
    } else {
        Duration::ZERO
    };
    duration + boot_allowance(topology.cpus()) + attach
}

/// A scheduler binary on the host and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerBinary {
    /// Display name, e.g. `scx_rusty` or `kernel:scx_simple`.
    pub name: String,
    pub path: PathBuf,
    pub args: Vec<String>,
}

/// What runs in the guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// A catalogue scenario under a scheduler (`None`: the kernel's own, EEVDF).
    Scenario {
        scheduler: Option<SchedulerBinary>,
        scenario: String,
        params: BTreeMap<String, serde_json::Value>,
        duration: Duration,
    },
    /// A busybox shell: one command (`exec`) or the user's terminal.
    Shell { exec: Option<String> },
}

/// One cell, resolved to host files.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// bzImage or vmlinux.
    pub kernel: PathBuf,
    pub workload: Workload,
    pub topology: Topology,
    pub memory_mib: u32,
    /// Extra files (`-i`): (host path, guest path; empty means `/ktstr/files/<name>`).
    pub files: Vec<(PathBuf, String)>,
    pub cpu_budget: Option<u32>,
    /// Extra kernel command line items (after `vm::cmdline::base`).
    pub cmdline_extra: Vec<String>,
}

impl Cell {
    /// What the guest agent is told to do (`/ktstr/cell.json`).
    pub fn guest_spec(&self) -> CellSpec {
        let mode = match &self.workload {
            Workload::Scenario {
                scheduler,
                scenario,
                params,
                duration,
            } => Mode::Scenario(ScenarioRun {
                scheduler: scheduler.as_ref().map(|s| SchedulerLaunch {
                    name: s.name.clone(),
                    path: initramfs::guest_path_for(&s.path, ""),
                    args: s.args.clone(),
                    attach_timeout_ms: ATTACH_TIMEOUT.as_millis() as u64,
                }),
                scenario: scenario.clone(),
                params: params.clone(),
                duration_ms: duration.as_millis() as u64,
                thresholds: BTreeMap::new(),
            }),
            Workload::Shell { exec } => Mode::Shell { exec: exec.clone() },
        };
        CellSpec {
            protocol_version: PROTOCOL_VERSION,
            mode,
        }
    }

    /// Every host file the initramfs carries: the `-i` files, then the scheduler binary, then
    /// the host programs the scenario runs (a packaged benchmark's binary).
    pub fn initramfs_files(&self) -> Vec<(PathBuf, String)> {
        let mut files = self.files.clone();
        if let Workload::Scenario {
            scheduler: Some(s), ..
        } = &self.workload
        {
            files.push((s.path.clone(), initramfs::guest_path_for(&s.path, "")));
        }
        if let Workload::Scenario { scenario, .. } = &self.workload {
            // A missing program was refused as bad input while the front end validated; one
            // that vanished since then fails in the guest, naming the path it could not run.
            let brought: Vec<String> = self
                .files
                .iter()
                .map(|(host, guest)| initramfs::guest_path_for(host, guest))
                .collect();
            files.extend(super::programs::resolve(scenario, &brought).unwrap_or_default());
        }
        files
    }

    /// The initramfs this cell boots with (content-addressed: equal cells share one image).
    pub fn initramfs_spec(&self) -> InitramfsSpec {
        InitramfsSpec::new(self.guest_spec(), self.initramfs_files())
    }

    /// The host watchdog unless the user set one.
    pub fn default_watchdog(&self) -> Duration {
        match &self.workload {
            Workload::Scenario {
                scheduler,
                scenario,
                params,
                duration,
            } => scenario_watchdog(
                ktstr_guest::scenario::time_bound(scenario, params, *duration),
                &self.topology,
                scheduler.is_some(),
            ),
            Workload::Shell { exec: Some(_) } => EXEC_TIMEOUT,
            Workload::Shell { exec: None } => INTERACTIVE_TIMEOUT,
        }
    }

    /// The boot request: checked (memory against the topology), with the watchdog `timeout` or
    /// the default one, the kernel console going to `console_log`.
    pub fn request(
        &self,
        console_log: PathBuf,
        timeout: Option<Duration>,
    ) -> Result<CellRequest, CellError> {
        check_memory(self.memory_mib, &self.topology)?;
        Ok(CellRequest {
            kernel: self.kernel.clone(),
            cell: self.guest_spec(),
            files: self.initramfs_files(),
            topology: self.topology,
            memory_mib: self.memory_mib,
            timeout: timeout.unwrap_or_else(|| self.default_watchdog()),
            cpu_budget: self.cpu_budget,
            console_log,
            cmdline_extra: self.cmdline_extra.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(s: &str) -> Topology {
        s.parse().unwrap()
    }

    fn scenario_cell(sched: bool) -> Cell {
        Cell {
            kernel: "/k/bzImage".into(),
            workload: Workload::Scenario {
                scheduler: sched.then(|| SchedulerBinary {
                    name: "kernel:scx_simple".into(),
                    path: "/cache/scx_simple".into(),
                    args: vec!["-v".into()],
                }),
                scenario: "steady".into(),
                params: BTreeMap::new(),
                duration: Duration::from_secs(5),
            },
            topology: topo("1n1l2c1t"),
            memory_mib: 512,
            files: vec![("/host/f".into(), String::new())],
            cpu_budget: None,
            cmdline_extra: vec![],
        }
    }

    #[test]
    fn memory_is_checked_against_the_topology() {
        assert!(check_memory(512, &topo("1n1l2c1t")).is_ok());
        assert_eq!(
            check_memory(127, &topo("1n1l1c1t")),
            Err(CellError::TooLittleMemory {
                mib: 127,
                need: 128,
                topology: topo("1n1l1c1t")
            })
        );
        // 4 nodes need 64 MiB each.
        let e = check_memory(200, &topo("4n1l1c1t")).unwrap_err();
        assert!(e.to_string().contains("at least 256 MiB"), "{e}");
        assert!(matches!(
            check_memory(4_000_000, &topo("1n1l1c1t")),
            Err(CellError::TooMuchMemory { .. })
        ));
        let mut c = scenario_cell(false);
        c.memory_mib = 0;
        assert!(c.request("/log".into(), None).is_err());
    }

    #[test]
    fn the_watchdog_adds_the_attach_wait_only_for_a_scheduler() {
        let eevdf = scenario_cell(false).request("/log".into(), None).unwrap();
        let scx = scenario_cell(true).request("/log".into(), None).unwrap();
        assert_eq!(eevdf.timeout, Duration::from_secs(5 + 60 + 4));
        assert_eq!(scx.timeout, eevdf.timeout + ATTACH_TIMEOUT);
        let set = scenario_cell(true)
            .request("/log".into(), Some(Duration::from_secs(7)))
            .unwrap();
        assert_eq!(set.timeout, Duration::from_secs(7));
    }

    #[test]
    fn the_scheduler_binary_rides_in_the_initramfs_and_the_agent_gets_its_path() {
        let req = scenario_cell(true).request("/log".into(), None).unwrap();
        assert_eq!(
            req.files,
            vec![
                ("/host/f".into(), String::new()),
                ("/cache/scx_simple".into(), "/ktstr/files/scx_simple".into())
            ]
        );
        let Mode::Scenario(run) = &req.cell.mode else {
            panic!("a scenario cell")
        };
        let launch = run.scheduler.as_ref().unwrap();
        assert_eq!(launch.path, "/ktstr/files/scx_simple");
        assert_eq!(launch.attach_timeout_ms, 30_000);
        assert_eq!(run.duration_ms, 5000);
    }

    #[test]
    fn a_benchmark_rides_in_the_initramfs_unless_brought_with_dash_i() {
        let mut c = scenario_cell(false);
        if let Workload::Scenario { scenario, .. } = &mut c.workload {
            *scenario = "hackbench".into();
        }
        // scripts/setup.sh installs rt-tests here.
        let files = c.initramfs_files();
        let packed: Vec<&str> = files.iter().map(|(_, g)| g.as_str()).collect();
        assert_eq!(packed, ["", "/usr/bin/hackbench"]);
        c.files
            .push(("/my/hackbench".into(), "/usr/bin/hackbench".into()));
        let files = c.initramfs_files();
        assert_eq!(
            files.last(),
            Some(&(
                PathBuf::from("/my/hackbench"),
                "/usr/bin/hackbench".to_string()
            ))
        );
        assert_eq!(files.len(), 2, "{files:?}");
    }

    #[test]
    fn shells_get_the_shell_watchdogs() {
        let mut c = scenario_cell(false);
        c.workload = Workload::Shell {
            exec: Some("nproc".into()),
        };
        assert_eq!(c.default_watchdog(), EXEC_TIMEOUT);
        c.workload = Workload::Shell { exec: None };
        assert_eq!(c.default_watchdog(), INTERACTIVE_TIMEOUT);
    }
}
