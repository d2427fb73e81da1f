//! Valid manifests: every example loads, and the resolved model has the
//! values written and the documented defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth_config::*;

fn example(name: &str) -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn minimal_gets_every_default() {
    let m = example("minimal.toml");
    assert_eq!(m.version, 1);
    let h = &m.host;
    assert_eq!(h.hostname, None);
    assert_eq!(h.on_fatal, FatalAction::Reboot);
    assert_eq!(h.shutdown_grace, defaults::SHUTDOWN_GRACE);
    assert_eq!(h.network.bridge.name, "berth0");
    assert_eq!(h.network.bridge.subnet.to_string(), "10.88.0.0/24");
    assert_eq!(
        h.network.bridge.gateway(),
        Some("10.88.0.1".parse().unwrap())
    );
    assert!(h.network.bridge.nat);
    assert_eq!(h.storage.data, None);
    assert_eq!(h.logging.console, LogLevel::Info);
    assert_eq!(h.watchdog, None);
    assert_eq!(h.api.socket, Path::new("/run/berth/berth.sock"));
    let c = &m.containers["hello"];
    assert_eq!(c.image.to_string(), "busybox:latest");
    assert_eq!(c.restart, RestartPolicy::No);
    assert_eq!(c.stop_signal, Signal::TERM);
    assert_eq!(c.stop_grace_period, Duration::from_secs(10));
    assert_eq!(c.network_mode, NetworkMode::Bridge);
    assert_eq!(c.hostname.as_deref(), Some("hello"));
    assert_eq!(c.shm_size, 64 << 20);
    assert_eq!(c.resources, Resources::default());
    assert_eq!(c.logging, defaults::CONTAINER_LOGGING);
    assert!(!c.init && !c.read_only && !c.privileged && !c.persist);
    assert_eq!(c.security_opt, SecurityOpt::default());
}

#[test]
fn demo_orders_setup_web_worker() {
    let m = example("demo.toml");
    assert_eq!(
        start_order(&m),
        vec![vec!["setup"], vec!["web"], vec!["worker"]]
    );
    let web = &m.containers["web"];
    assert_eq!(web.ports[0].to_string(), "8080:80/tcp");
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(
        hc.test,
        HealthTest::Shell("wget -q -O /dev/null http://127.0.0.1/ || exit 1".into())
    );
    assert_eq!(hc.start_interval, Duration::from_secs(1));
    assert_eq!(
        web.depends_on["setup"].condition,
        Condition::ServiceCompletedSuccessfully
    );
    assert_eq!(m.containers["worker"].restart, RestartPolicy::Always);
    let s = summary(&m);
    for needle in [
        "3 containers",
        "1. setup",
        "2. web (after setup completed)",
        "3. worker (after web healthy)",
        "*:8080/tcp -> web:80",
    ] {
        assert!(s.contains(needle), "{needle:?} not in\n{s}");
    }
    assert!(
        s.lines().count() <= 24,
        "summary longer than a screen:\n{s}"
    );
}

#[test]
fn full_resolves_every_field() {
    let m = example("full.toml");
    let h = &m.host;
    assert_eq!(h.hostname.as_deref(), Some("edge-01"));
    assert_eq!(h.modules, ["veth", "bridge"]);
    assert_eq!(h.sysctls["vm.swappiness"], "10");
    assert_eq!(h.shutdown_grace, Duration::from_secs(45));
    let eth1 = &h.network.interfaces[1];
    assert_eq!(eth1.mac.unwrap().to_string(), "52:54:00:12:34:56");
    assert_eq!(eth1.gateway4, Some("192.168.10.1".parse().unwrap()));
    assert_eq!(eth1.gateway6, Some("fd00:10::1".parse().unwrap()));
    assert_eq!(eth1.routes[0].metric, Some(100));
    let data = h.storage.data.as_ref().unwrap();
    assert_eq!(data.device, DeviceRef::Label("berth-data".into()));
    assert_eq!(h.logging.files.as_ref().unwrap().max_size, 10 << 20);
    let syslog = h.logging.syslog.as_ref().unwrap();
    assert_eq!((syslog.protocol, syslog.port), (Protocol::Udp, 514));
    assert_eq!(
        h.watchdog.as_ref().unwrap().timeout,
        Duration::from_secs(30)
    );
    assert_eq!(h.api.remote.as_ref().unwrap().listen.port(), 2376);

    let db = &m.containers["db"];
    assert_eq!(db.stop_signal.number(), 2);
    assert_eq!(db.stop_grace_period, Duration::from_secs(90));
    assert_eq!(db.resources.memory, Some(512 << 20));
    assert_eq!(db.resources.memory_swap, Some(MemorySwap::Limit(1 << 30)));
    assert_eq!(db.resources.cpus, Some(1.5));
    assert_eq!(db.volumes[0].source, VolumeSource::Named("pgdata".into()));
    assert!(db.volumes[1].read_only);

    let migrate = &m.containers["migrate"];
    assert_eq!(migrate.command.as_deref().unwrap(), ["--all", "--verbose"]);
    assert_eq!(
        migrate.restart,
        RestartPolicy::OnFailure {
            max_retries: Some(3)
        }
    );
    let userns = migrate.userns.as_ref().unwrap();
    assert_eq!(userns.host_uid(0), Some(100000));
    assert_eq!(userns.host_gid(1000), Some(300000));
    assert_eq!(userns.host_gid(1001), None);
    assert!(m.containers["web"].userns.is_none());

    let web = &m.containers["web"];
    assert_eq!(
        web.image.digest.as_deref().map(|d| &d[..7]),
        Some("sha256:")
    );
    assert_eq!(web.image.tag, None);
    assert_eq!(
        web.user,
        Some(User {
            user: IdOrName::Id(1000),
            group: Some(IdOrName::Id(1000))
        })
    );
    assert_eq!(
        web.group_add,
        [IdOrName::Name("audio".into()), IdOrName::Id(44)]
    );
    assert_eq!(
        web.environment,
        BTreeMap::from([
            ("LOG_LEVEL".into(), "info".into()),
            ("PORT".into(), "8000".into())
        ])
    );
    assert_eq!(web.ports.len(), 4);
    assert_eq!(web.ports[2].to_string(), "0.0.0.0:5353:5353/udp");
    assert_eq!(web.ports[3].host.len(), 3);
    assert_eq!(web.tmpfs[0].size, Some(64 << 20));
    assert_eq!(web.tmpfs[0].mode, Some(0o1777));
    assert_eq!(web.cap_drop, [CapSpec::All]);
    assert_eq!(web.cap_add[0].to_string(), "CAP_NET_BIND_SERVICE");
    assert_eq!(web.security_opt.no_new_privileges, Some(true));
    assert_eq!(
        web.security_opt.seccomp,
        Seccomp::Profile("/etc/berth/seccomp/web.json".into())
    );
    assert_eq!(
        web.extra_hosts[1],
        ("legacy".into(), "192.168.1.20".parse().unwrap())
    );
    let nofile = web
        .ulimits
        .iter()
        .find(|u| u.name == UlimitName::Nofile)
        .unwrap();
    assert_eq!(
        (nofile.soft, nofile.hard, nofile.name.resource()),
        (4096, 8192, 7)
    );
    assert_eq!(web.oom_score_adj, -100);
    assert_eq!(web.resources.cpus, Some(0.5));
    assert!(matches!(
        web.healthcheck.as_ref().unwrap().test,
        HealthTest::Shell(_)
    ));
    assert!(!web.depends_on["db"].required);

    let sidecar = &m.containers["sidecar"];
    assert_eq!(sidecar.network_mode, NetworkMode::Service("web".into()));
    assert_eq!(sidecar.hostname, None);
    assert!(sidecar.persist);
    assert!(!web.persist, "persist is off by default");
    let offline = &m.containers["offline"];
    assert_eq!(offline.healthcheck, None);
    assert_eq!(offline.resources.pids, None);
    assert_eq!(offline.resources.memory_swap, Some(MemorySwap::Unlimited));
    assert_eq!(offline.ulimits[0].soft, Ulimit::UNLIMITED);
    assert!(!m.containers["node-exporter"].logging.console);

    assert_eq!(
        start_order(&m),
        vec![
            vec!["db", "node-exporter", "offline"],
            vec!["migrate"],
            vec!["web"],
            vec!["sidecar"]
        ]
    );
}

#[test]
fn relative_bind_sources_and_env_files_resolve_against_the_manifest() {
    let src = r#"version = 1
[containers.a]
image = "busybox"
volumes = ["./data:/data", "../shared/x:/x:ro"]
env_file = "app.env"
"#;
    let m = parse(src, "/etc/berth/berth.toml").unwrap();
    let a = &m.containers["a"];
    assert_eq!(
        a.volumes[0].source,
        VolumeSource::Bind("/etc/berth/data".into())
    );
    assert_eq!(
        a.volumes[1].source,
        VolumeSource::Bind("/etc/shared/x".into())
    );
    assert_eq!(a.env_file, [Path::new("/etc/berth/app.env")]);
}

#[test]
fn compose_spellings_are_accepted() {
    let src = r#"version = 1
[containers.Web]
image = "nginx"
command = "nginx -g 'daemon off;'"
depends_on = ["db"]
stop_signal = "QUIT"
healthcheck = { test = ["CMD-SHELL", "curl -f http://localhost"], interval = "1m30s", start_period = "250ms" }
cap_add = ["cap_net_admin", "SYS_TIME"]
ports = ["10.0.2.15:8000-8001:80-81/udp", "[2001:db8::1]:9000:90"]
[containers.db]
image = "postgres@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
"#;
    let m = parse(src, "compose.toml").unwrap();
    let web = &m.containers["web"];
    assert_eq!(web.name, "web");
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["nginx", "-g", "daemon off;"]
    );
    assert_eq!(web.stop_signal.name(), "SIGQUIT");
    assert_eq!(
        web.healthcheck.as_ref().unwrap().interval,
        Duration::from_secs(90)
    );
    assert_eq!(web.healthcheck.as_ref().unwrap().retries, 3);
    assert_eq!(web.ports[1].to_string(), "[2001:db8::1]:9000:90/tcp");
    assert_eq!(
        web.depends_on["db"],
        Dependency {
            condition: Condition::ServiceStarted,
            required: true
        }
    );
}
