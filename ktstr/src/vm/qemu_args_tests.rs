//! The QEMU backend's command line: serial ports, topology, machine type.

use super::*;
use crate::topology::Topology;

fn cfg(topo: &str) -> VmConfig {
    VmConfig {
        kernel: "/k".into(),
        initramfs: "/i".into(),
        topology: topo.parse::<Topology>().unwrap(),
        memory_mib: 1000,
        cmdline_extra: vec!["x=1".into()],
        console: ConsoleMode::Capture { log: "/l".into() },
        timeout: Duration::from_secs(5),
        cpu_budget: None,
    }
}

fn be(m: Machine) -> QemuBackend {
    QemuBackend {
        binary: QEMU.into(),
        machine: m,
        accel: Accel::Tcg,
        pvh: false,
        cpu: None,
        kernel_log: None,
    }
}

fn after<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
    a.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn topology_maps_llcs_to_sockets_and_nodes_to_numa() {
    let a = be(Machine::Q35).args(&cfg("2n2l3c2t"), "/dev/fd/5", "/dev/fd/6", None);
    assert_eq!(after(&a, "-smp"), ["cpus=24,sockets=4,cores=3,threads=2"]);
    assert_eq!(
        after(&a, "-object"),
        [
            "memory-backend-ram,id=mem0,size=500M",
            "memory-backend-ram,id=mem1,size=500M"
        ]
    );
    let numa = after(&a, "-numa");
    assert!(numa.contains(&"cpu,node-id=1,socket-id=3"), "{numa:?}");
    assert!(numa.contains(&"cpu,node-id=0,socket-id=1"), "{numa:?}");
    let one = be(Machine::Q35).args(&cfg("1n2l2c1t"), "a", "b", None);
    assert!(after(&one, "-numa").is_empty());
}

#[test]
fn uneven_memory_split_adds_up() {
    let mut c = cfg("3n1l1c1t");
    c.memory_mib = 1000;
    let a = topology_args(&c);
    let sizes: u32 = after(&a, "-object")
        .iter()
        .map(|o| {
            o.rsplit("size=")
                .next()
                .unwrap()
                .trim_end_matches('M')
                .parse::<u32>()
                .unwrap()
        })
        .sum();
    assert_eq!(sizes, 1000);
}

#[test]
fn serial_ports_and_cmdline() {
    let a = be(Machine::Microvm).args(&cfg("1n1l2c1t"), "/dev/fd/5", "/dev/fd/6", None);
    assert!(after(&a, "-chardev").contains(&"file,id=con,path=/dev/fd/5"));
    assert!(after(&a, "-chardev").contains(&"file,id=res,path=/dev/fd/6"));
    assert_eq!(
        after(&a, "-device"),
        [
            "isa-serial,chardev=con,index=0",
            "isa-serial,chardev=res,index=1"
        ]
    );
    let append = after(&a, "-append")[0];
    assert!(
        append.contains("console=ttyS0") && append.ends_with(" x=1"),
        "{append}"
    );
    assert!(append.contains("tsc_early_khz="));
    assert!(after(&a, "-M")[0].starts_with("microvm,"));
    assert!(a.contains(&"-no-reboot".to_string()));
    let pc = be(Machine::Pc).args(&cfg("1n1l2c1t"), "a", "b", None);
    assert!(!after(&pc, "-append")[0].contains("tsc_early_khz"));
    assert!(after(&pc, "-fw_cfg").contains(&"name=etc/sercon-port,string=0"));
}

#[test]
fn numa_moves_microvm_to_q35() {
    let b = be(Machine::Microvm);
    assert_eq!(b.machine_for(&cfg("2n1l1c1t")), Machine::Q35);
    assert_eq!(b.machine_for(&cfg("1n2l1c1t")), Machine::Microvm);
    let a = b.args(&cfg("2n1l1c1t"), "a", "b", None);
    assert_eq!(after(&a, "-M"), ["q35"]);
}

#[test]
fn a_kernel_log_port_is_com3_with_a_kept_earlycon_and_no_earlyprintk() {
    let a = be(Machine::Microvm).args(&cfg("1n1l2c1t"), "a", "b", Some("/dev/fd/7"));
    assert!(after(&a, "-chardev").contains(&"file,id=kmsg,path=/dev/fd/7"));
    assert!(after(&a, "-device").contains(&"isa-serial,chardev=kmsg,index=2"));
    let append = after(&a, "-append")[0];
    assert!(
        append.contains("earlycon=uart8250,io,0x3e8,115200 keep_bootcon"),
        "{append}"
    );
    assert!(!append.contains("earlyprintk"), "{append}");
    assert!(append.contains("console=ttyS0"), "{append}");
}
