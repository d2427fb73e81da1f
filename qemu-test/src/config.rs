//! What a VM is made of, and how that turns into QEMU's command line.
//!
//! [`VmConfig`] is a builder: a boot source (a kernel with its initrd and
//! command line, or later an EFI firmware booting a disk), memory, CPUs, the
//! accelerator, networks and disks. Networks take **ports, never addresses**:
//! every host-side endpoint QEMU opens or connects to is rendered here as
//! `127.0.0.1`, and there is no raw-argument escape hatch, so no test can make
//! QEMU listen on, or send to, anything but the loopback address.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The kernel command line every kernel boot starts with; [`VmConfig::append`]
/// adds to it. `panic=-1` reboots at once on a panic, which `-no-reboot`
/// (the default, see [`VmConfig::no_reboot`]) turns into QEMU exiting.
pub const BASE_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// Appended to the kernel command line for [`Machine::Microvm`]: reboot by
/// triple fault. The default (ACPI reset first) left about one guest reboot
/// in four hanging after "reboot: machine restart" here.
pub const MICROVM_CMDLINE: &str = "reboot=t";

/// Also appended for [`Machine::Microvm`] under TCG: microvm has no HPET or
/// PM timer, and on a loaded host the kernel fails to calibrate the TSC
/// against the PIT, then hangs; so it is given the TSC's rate.
pub const MICROVM_TCG_CMDLINE: &str = "tsc_early_khz=2000000 tsc=reliable";

/// Debian's OVMF firmware code (the `ovmf` package), 2 MiB flash layout.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// The variable store template that goes with [`OVMF_CODE`].
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

/// The environment variable that overrides the default machine type
/// (`q35`, `pc` or `microvm`), to run a whole suite on another machine.
pub const MACHINE_ENV: &str = "BERTH_QEMU_MACHINE";

/// The QEMU machine type. See the crate documentation for measured boot times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// `-machine microvm`: no PCI, no firmware tables beyond ACPI, virtio-mmio
    /// devices; the fastest to `/init` here, and the default for kernel
    /// boots. Its ACPI power button (a GED device) takes `system_powerdown`,
    /// and guest reboots work. The kernel also gets [`MICROVM_CMDLINE`] and,
    /// under TCG, [`MICROVM_TCG_CMDLINE`], without which it hangs in most
    /// boots on a loaded host. The guest needs `virtio_mmio` (not
    /// `virtio_pci`).
    Microvm,
    /// `-machine q35`: PCIe, ACPI power button; the default for EFI boots.
    Q35,
    /// `-machine pc` (i440FX): as fast as q35 here, ACPI power button too.
    Pc,
}

impl Machine {
    fn qemu_name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
            Machine::Microvm => "microvm",
        }
    }

    /// The machine named `name` as QEMU spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim() {
            "q35" => Some(Machine::Q35),
            "pc" => Some(Machine::Pc),
            "microvm" => Some(Machine::Microvm),
            _ => None,
        }
    }

    /// The device-name suffix for virtio devices on this machine's bus.
    fn virtio_suffix(self) -> &'static str {
        match self {
            Machine::Microvm => "device",
            Machine::Q35 | Machine::Pc => "pci",
        }
    }
}

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// TCG, unless `BERTH_QEMU_ACCEL` says otherwise or a short KVM probe
    /// succeeds (see [`crate::accel`]).
    #[default]
    Auto,
    /// Always TCG (software emulation).
    Tcg,
    /// Always KVM.
    Kvm,
}

/// A transport protocol for a host forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A host-to-guest forward: QEMU listens on `127.0.0.1:host_port` and
/// forwards to the guest's `guest_port`. Only ports go in, so the host side
/// can be nothing but the loopback address:
///
/// ```compile_fail
/// // There is no way to give an address:
/// let fwd = berth_qemu_test::HostFwd::tcp("0.0.0.0:8080", 80);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFwd {
    proto: Proto,
    host_port: u16,
    guest_port: u16,
}

impl HostFwd {
    /// Forwards TCP `127.0.0.1:host_port` to the guest's `guest_port`.
    pub fn tcp(host_port: u16, guest_port: u16) -> Self {
        HostFwd {
            proto: Proto::Tcp,
            host_port,
            guest_port,
        }
    }

    /// Forwards UDP `127.0.0.1:host_port` to the guest's `guest_port`.
    pub fn udp(host_port: u16, guest_port: u16) -> Self {
        HostFwd {
            proto: Proto::Udp,
            host_port,
            guest_port,
        }
    }

    /// The host port QEMU listens on (at 127.0.0.1).
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    fn render(&self) -> String {
        format!(
            "hostfwd={}:127.0.0.1:{}-:{}",
            self.proto.as_str(),
            self.host_port,
            self.guest_port
        )
    }
}

/// A guest-to-host forward: the guest connects to `10.0.2.100:guest_port`
/// and QEMU connects to `127.0.0.1:host_port` on the host. This is how a
/// guest reaches a host-side service (a syslog receiver, a registry) under
/// `restrict=on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFwd {
    guest_port: u16,
    host_port: u16,
}

impl GuestFwd {
    /// The guest address inside QEMU's user network that guest forwards use.
    pub const GUEST_ADDR: &'static str = "10.0.2.100";

    /// Forwards the guest's TCP connections to `10.0.2.100:guest_port` to
    /// the host's `127.0.0.1:host_port`.
    pub fn tcp(guest_port: u16, host_port: u16) -> Self {
        GuestFwd {
            guest_port,
            host_port,
        }
    }

    fn render(&self) -> String {
        format!(
            "guestfwd=tcp:{}:{}-tcp:127.0.0.1:{}",
            Self::GUEST_ADDR,
            self.guest_port,
            self.host_port
        )
    }
}

/// A MAC address for a guest NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// QEMU's user-mode network (slirp), always with `restrict=on`: the guest
/// reaches nothing outside but what [`GuestFwd`] rules allow, and the host
/// reaches the guest only through [`HostFwd`] rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNet {
    hostfwds: Vec<HostFwd>,
    guestfwds: Vec<GuestFwd>,
    mac: Option<Mac>,
}

impl UserNet {
    /// A restricted user network with no forwards.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a host-to-guest forward.
    pub fn hostfwd(mut self, fwd: HostFwd) -> Self {
        self.hostfwds.push(fwd);
        self
    }

    /// Adds a guest-to-host forward.
    pub fn guestfwd(mut self, fwd: GuestFwd) -> Self {
        self.guestfwds.push(fwd);
        self
    }

    /// Sets the NIC's MAC address (default: one unique to the VM).
    pub fn mac(mut self, mac: Mac) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// A guest-to-guest LAN over a loopback TCP connection between two QEMUs:
/// one VM listens on `127.0.0.1:port`, the other connects to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketNet {
    listen: bool,
    port: u16,
    mac: Option<Mac>,
}

impl SocketNet {
    /// This VM's QEMU listens on `127.0.0.1:port`.
    pub fn listen(port: u16) -> Self {
        SocketNet {
            listen: true,
            port,
            mac: None,
        }
    }

    /// This VM's QEMU connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> Self {
        SocketNet {
            listen: false,
            port,
            mac: None,
        }
    }

    /// Sets the NIC's MAC address (default: one unique to the VM, so that two
    /// guests on one LAN never share one).
    pub fn mac(mut self, mac: Mac) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// One guest NIC and the QEMU network backend behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A restricted user network.
    User(UserNet),
    /// A socket LAN to another VM.
    Socket(SocketNet),
}

impl From<UserNet> for Network {
    fn from(n: UserNet) -> Self {
        Network::User(n)
    }
}

impl From<SocketNet> for Network {
    fn from(n: SocketNet) -> Self {
        Network::Socket(n)
    }
}

/// A raw disk image attached as a virtio-blk device (`/dev/vda`, `/dev/vdb`,
/// ... in attachment order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    path: PathBuf,
    read_only: bool,
}

impl Disk {
    /// A writable raw image.
    pub fn raw(path: impl Into<PathBuf>) -> Self {
        Disk {
            path: path.into(),
            read_only: false,
        }
    }

    /// Attaches the image read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// How the VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Direct kernel boot (`-kernel`, `-initrd`, `-append`).
    Kernel {
        /// The kernel image (bzImage/vmlinuz).
        kernel: PathBuf,
        /// The initramfs, if any.
        initrd: Option<PathBuf>,
        /// The full kernel command line.
        cmdline: String,
    },
    /// EFI firmware (OVMF) booting from the disks, by its default boot
    /// order (the removable-media path `\EFI\BOOT\BOOTX64.EFI`).
    Efi {
        /// The firmware image: with `vars`, the code flash (read-only
        /// pflash unit 0); without, a combined image passed as `-bios`.
        firmware: PathBuf,
        /// The variable store template. Each launch copies it into the VM's
        /// runtime directory (pflash unit 1, writable), so the template is
        /// never written and every boot starts from the same variables.
        vars: Option<PathBuf>,
    },
}

/// Everything a [`crate::Vm`] is launched from. Build one with
/// [`VmConfig::kernel`] or [`VmConfig::efi`] and the chained setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub(crate) name: String,
    pub(crate) qemu: PathBuf,
    pub(crate) boot: Boot,
    pub(crate) memory_mib: u32,
    pub(crate) smp: u32,
    pub(crate) accel: Accel,
    /// `None`: the default, [`Machine::Microvm`] for a kernel boot (or
    /// `$BERTH_QEMU_MACHINE`), [`Machine::Q35`] for an EFI boot.
    pub(crate) machine: Option<Machine>,
    pub(crate) networks: Vec<Network>,
    pub(crate) disks: Vec<Disk>,
    pub(crate) no_reboot: bool,
    pub(crate) own_process_group: bool,
}

impl VmConfig {
    fn new(name: &str, boot: Boot) -> Self {
        let qemu = std::env::var_os("BERTH_QEMU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"));
        VmConfig {
            name: sanitize_name(name),
            qemu,
            boot,
            memory_mib: 512,
            smp: 1,
            accel: Accel::Auto,
            machine: None,
            networks: Vec::new(),
            disks: Vec::new(),
            no_reboot: true,
            own_process_group: false,
        }
    }

    /// A VM named `name` (used in log file names and QEMU's `-name`) that
    /// boots `kernel` directly, with [`BASE_CMDLINE`].
    pub fn kernel(name: &str, kernel: impl Into<PathBuf>) -> Self {
        Self::new(
            name,
            Boot::Kernel {
                kernel: kernel.into(),
                initrd: None,
                cmdline: BASE_CMDLINE.to_owned(),
            },
        )
    }

    /// A VM named `name` whose EFI `firmware` (a combined OVMF image, as
    /// `-bios`) boots its first disk.
    pub fn efi(name: &str, firmware: impl Into<PathBuf>) -> Self {
        Self::new(
            name,
            Boot::Efi {
                firmware: firmware.into(),
                vars: None,
            },
        )
    }

    /// A VM named `name` booting its disks with Debian's OVMF as pflash:
    /// [`OVMF_CODE`] read-only and a fresh copy of [`OVMF_VARS`] (see
    /// [`Boot::Efi`]). No `-kernel`: the firmware finds the boot loader on
    /// a disk's EFI system partition. Add the disk with [`VmConfig::disk`].
    pub fn ovmf(name: &str) -> Self {
        Self::new(
            name,
            Boot::Efi {
                firmware: PathBuf::from(OVMF_CODE),
                vars: Some(PathBuf::from(OVMF_VARS)),
            },
        )
    }

    /// Sets the initramfs (kernel boot only: no effect on an EFI boot).
    pub fn initrd(mut self, initrd: impl Into<PathBuf>) -> Self {
        if let Boot::Kernel { initrd: i, .. } = &mut self.boot {
            *i = Some(initrd.into());
        }
        self
    }

    /// Appends `args` to the kernel command line (kernel boot only).
    pub fn append(mut self, args: &str) -> Self {
        if let Boot::Kernel { cmdline, .. } = &mut self.boot {
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str(args);
        }
        self
    }

    /// Replaces the whole kernel command line, [`BASE_CMDLINE`] included.
    pub fn cmdline(mut self, args: &str) -> Self {
        if let Boot::Kernel { cmdline, .. } = &mut self.boot {
            *cmdline = args.to_owned();
        }
        self
    }

    /// Guest memory in MiB (default 512).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Number of vCPUs (default 1).
    pub fn smp(mut self, cpus: u32) -> Self {
        self.smp = cpus;
        self
    }

    /// The accelerator (default [`Accel::Auto`]).
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = accel;
        self
    }

    /// The machine type (default: [`Machine::Microvm`] for a kernel boot,
    /// unless `$BERTH_QEMU_MACHINE` names another; [`Machine::Q35`] for an
    /// EFI boot).
    pub fn machine(mut self, machine: Machine) -> Self {
        self.machine = Some(machine);
        self
    }

    /// Adds a NIC on a network (none by default).
    pub fn network(mut self, net: impl Into<Network>) -> Self {
        self.networks.push(net.into());
        self
    }

    /// Attaches a disk.
    pub fn disk(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
        self
    }

    /// Whether a guest reboot (or a kernel panic, with `panic=-1`) ends QEMU
    /// instead of restarting the guest. Default `true`. A guest power-off
    /// always ends QEMU. With `true`, QMP `system_reset` also ends QEMU.
    pub fn no_reboot(mut self, no_reboot: bool) -> Self {
        self.no_reboot = no_reboot;
        self
    }

    /// Starts QEMU in a process group of its own (default `false`), so that
    /// a Ctrl-C on the terminal reaches only the test process (or
    /// `berth-vm`), which then decides what to do: QEMU quits at once on
    /// SIGINT. QEMU still dies with its parent process either way.
    pub fn own_process_group(mut self, own: bool) -> Self {
        self.own_process_group = own;
        self
    }

    /// The QEMU binary (default `$BERTH_QEMU`, else `qemu-system-x86_64`).
    pub fn qemu_binary(mut self, qemu: impl Into<PathBuf>) -> Self {
        self.qemu = qemu.into();
        self
    }

    /// The VM's name, as sanitized for file names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machine type this configuration runs on.
    pub fn machine_type(&self) -> Machine {
        match (self.machine, &self.boot) {
            (Some(m), _) => m,
            (None, Boot::Efi { .. }) => Machine::Q35,
            (None, Boot::Kernel { .. }) => std::env::var(MACHINE_ENV)
                .ok()
                .and_then(|m| Machine::from_name(&m))
                .unwrap_or(Machine::Microvm),
        }
    }

    /// How the VM boots.
    pub fn boot(&self) -> &Boot {
        &self.boot
    }

    /// Checks what can be checked before QEMU runs: files exist, sizes are
    /// sane, ports are non-zero.
    pub fn validate(&self) -> Result<()> {
        match &self.boot {
            Boot::Kernel { kernel, initrd, .. } => {
                must_exist("kernel", kernel)?;
                if let Some(initrd) = initrd {
                    must_exist("initrd", initrd)?;
                }
            }
            Boot::Efi { firmware, vars } => {
                must_exist("EFI firmware", firmware)?;
                if let Some(vars) = vars {
                    must_exist("EFI variable store", vars)?;
                }
                if self.disks.is_empty() {
                    return Err(Error::Config("an EFI boot needs a disk".into()));
                }
                if self.machine_type() == Machine::Microvm {
                    return Err(Error::Config("an EFI boot needs q35 or pc".into()));
                }
            }
        }
        for disk in &self.disks {
            must_exist("disk image", &disk.path)?;
        }
        if self.memory_mib < 64 {
            return Err(Error::Config(format!(
                "{} MiB of memory is too little",
                self.memory_mib
            )));
        }
        if self.smp == 0 || self.smp > 64 {
            return Err(Error::Config(format!("{} vCPUs", self.smp)));
        }
        for net in &self.networks {
            match net {
                Network::User(u) => {
                    let ports = u.hostfwds.iter().map(|f| (f.host_port, f.guest_port));
                    let gports = u.guestfwds.iter().map(|f| (f.host_port, f.guest_port));
                    if ports.chain(gports).any(|(h, g)| h == 0 || g == 0) {
                        return Err(Error::Config("a forward with port 0".into()));
                    }
                }
                Network::Socket(s) if s.port == 0 => {
                    return Err(Error::Config("a socket network on port 0".into()));
                }
                Network::Socket(_) => {}
            }
        }
        Ok(())
    }

    /// QEMU's arguments for this configuration. `runtime_dir` holds the QMP
    /// and control sockets; `unique` is the VM's process-unique tag (it goes
    /// into `-name` and default MAC addresses).
    pub(crate) fn qemu_args(
        &self,
        runtime_dir: &Path,
        kvm: bool,
        unique: &str,
        mac_seed: u32,
    ) -> Vec<OsString> {
        let mut a = Args::default();
        a.push2("-name", unique);
        a.push("-no-user-config");
        a.push("-nodefaults");
        a.push2("-display", "none");
        let machine = self.machine_type();
        a.push2("-machine", machine.qemu_name());
        // No `-cpu host` under KVM: QEMU 7.2 aborts with it on this nested
        // host ("failed to set MSR 0x10a"), and the probe must try exactly
        // what a VM will run.
        a.push2("-accel", if kvm { "kvm" } else { "tcg" });
        a.push2("-m", self.memory_mib.to_string());
        a.push2("-smp", self.smp.to_string());
        // The serial console goes to QEMU's stdout, which the harness reads.
        a.push2("-serial", "stdio");
        a.push2(
            "-qmp",
            format!(
                "unix:{},server=on,wait=off",
                escape(&runtime_dir.join(QMP_SOCKET))
            ),
        );
        if self.no_reboot {
            a.push("-no-reboot");
        }
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                a.push2("-kernel", kernel);
                if let Some(initrd) = initrd {
                    a.push2("-initrd", initrd);
                }
                let mut cmdline = cmdline.clone();
                if machine == Machine::Microvm {
                    for extra in [Some(MICROVM_CMDLINE), (!kvm).then_some(MICROVM_TCG_CMDLINE)]
                        .into_iter()
                        .flatten()
                    {
                        if !cmdline.contains(extra) {
                            cmdline.push(' ');
                            cmdline.push_str(extra);
                        }
                    }
                }
                a.push2("-append", cmdline);
            }
            Boot::Efi {
                firmware,
                vars: None,
            } => a.push2("-bios", firmware),
            Boot::Efi {
                firmware,
                vars: Some(_),
            } => {
                a.push2(
                    "-drive",
                    format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={}",
                        escape(firmware)
                    ),
                );
                a.push2(
                    "-drive",
                    format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        escape(&runtime_dir.join(EFI_VARS))
                    ),
                );
            }
        }
        let sfx = machine.virtio_suffix();
        // The control channel: virtio-serial port "berth".
        a.push2("-device", format!("virtio-serial-{sfx},id=vser0"));
        a.push2(
            "-chardev",
            format!(
                "socket,id=ctl,path={},server=on,wait=off",
                escape(&runtime_dir.join(CONTROL_SOCKET))
            ),
        );
        a.push2(
            "-device",
            format!("virtserialport,bus=vser0.0,chardev=ctl,name={CONTROL_PORT_NAME}"),
        );
        for (i, net) in self.networks.iter().enumerate() {
            let (backend, mac) = match net {
                Network::User(u) => {
                    let mut s = format!("user,id=n{i},restrict=on");
                    for f in &u.hostfwds {
                        s.push(',');
                        s.push_str(&f.render());
                    }
                    for f in &u.guestfwds {
                        s.push(',');
                        s.push_str(&f.render());
                    }
                    (s, u.mac)
                }
                Network::Socket(sn) => {
                    let mode = if sn.listen { "listen" } else { "connect" };
                    (
                        format!("socket,id=n{i},{mode}=127.0.0.1:{}", sn.port),
                        sn.mac,
                    )
                }
            };
            let mac = mac.unwrap_or_else(|| default_mac(mac_seed, i));
            a.push2("-netdev", &backend);
            let rom = if sfx == "pci" { ",romfile=" } else { "" };
            a.push2(
                "-device",
                format!("virtio-net-{sfx},netdev=n{i},mac={mac}{rom}"),
            );
        }
        for (i, d) in self.disks.iter().enumerate() {
            let ro = if d.read_only { ",readonly=on" } else { "" };
            a.push2(
                "-drive",
                format!("file={},format=raw,if=none,id=d{i}{ro}", escape(&d.path)),
            );
            a.push2("-device", format!("virtio-blk-{sfx},drive=d{i}"));
        }
        a.0
    }
}

/// The QMP socket's file name in the runtime directory.
pub(crate) const QMP_SOCKET: &str = "qmp.sock";
/// The EFI variable store's file name in the runtime directory: a copy of
/// the [`Boot::Efi`] template, made at launch.
pub(crate) const EFI_VARS: &str = "efivars.fd";
/// The control channel socket's file name in the runtime directory.
pub(crate) const CONTROL_SOCKET: &str = "ctl.sock";
/// The virtio-serial port's name, as the guest sees it in
/// `/sys/class/virtio-ports/*/name`.
pub const CONTROL_PORT_NAME: &str = "berth";

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, s: impl Into<OsString>) {
        self.0.push(s.into());
    }
    fn push2(&mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) {
        self.0.push(k.into());
        self.0.push(v.as_ref().to_owned());
    }
}

/// A locally administered, unicast MAC unique to one VM of this process
/// (`seed`) and one of its NICs (`nic`): `52:54:xx:xx:xx:nic`.
fn default_mac(seed: u32, nic: usize) -> Mac {
    let [_, b, c, d] = seed.to_be_bytes();
    // 0x52 has the locally-administered bit set and the multicast bit clear.
    Mac([0x52, 0x54, b, c, d, (nic & 0xff) as u8])
}

/// QEMU's option syntax splits on commas; a literal comma is doubled.
fn escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

fn must_exist(what: &'static str, path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(Error::MissingFile {
            what,
            path: path.to_owned(),
        })
    }
}

/// Keeps `[A-Za-z0-9._-]`, replaces the rest with `_`, caps the length.
fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if s.is_empty() { "vm".to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(cfg: &VmConfig) -> Vec<String> {
        cfg.qemu_args(Path::new("/tmp/rt"), false, "berth-t-1-0", 0x0102_0304)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn kernel_boot_defaults() {
        let cfg = VmConfig::kernel("a b/c", "/k").initrd("/i").append("x=1");
        assert_eq!(cfg.name(), "a_b_c");
        if std::env::var_os(MACHINE_ENV).is_none() {
            assert_eq!(cfg.machine_type(), Machine::Microvm);
            let args = args_of(&cfg);
            assert_eq!(
                value_of(&args, "-append"),
                [format!(
                    "{BASE_CMDLINE} x=1 {MICROVM_CMDLINE} {MICROVM_TCG_CMDLINE}"
                )]
            );
            assert!(value_of(&args, "-device").contains(&"virtio-serial-device,id=vser0"));
        }
        let cfg = cfg.machine(Machine::Q35);
        let args = args_of(&cfg);
        assert_eq!(value_of(&args, "-append"), [format!("{BASE_CMDLINE} x=1")]);
        assert_eq!(value_of(&args, "-m"), ["512"]);
        assert_eq!(value_of(&args, "-smp"), ["1"]);
        assert_eq!(value_of(&args, "-machine"), ["q35"]);
        assert_eq!(value_of(&args, "-accel"), ["tcg"]);
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert!(args.iter().any(|a| a == "-nodefaults"));
        assert_eq!(
            value_of(&args, "-qmp"),
            ["unix:/tmp/rt/qmp.sock,server=on,wait=off"]
        );
        assert!(
            value_of(&args, "-device")
                .contains(&"virtserialport,bus=vser0.0,chardev=ctl,name=berth")
        );
        assert!(
            value_of(&args, "-netdev").is_empty(),
            "no network by default"
        );
        let cfg = cfg.no_reboot(false);
        assert!(!args_of(&cfg).iter().any(|a| a == "-no-reboot"));
    }

    /// Every host-side endpoint of every kind of network is 127.0.0.1, and the
    /// only other address that appears is the guest-side 10.0.2.100.
    #[test]
    fn every_host_endpoint_is_loopback() {
        let cfg = VmConfig::kernel("n", "/k")
            .machine(Machine::Q35)
            .network(
                UserNet::new()
                    .hostfwd(HostFwd::tcp(2222, 22))
                    .hostfwd(HostFwd::udp(5353, 53))
                    .guestfwd(GuestFwd::tcp(514, 10514)),
            )
            .network(SocketNet::listen(4000))
            .network(SocketNet::connect(4001));
        let args = args_of(&cfg);
        let netdevs = value_of(&args, "-netdev");
        assert_eq!(
            netdevs,
            [
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,\
                 hostfwd=udp:127.0.0.1:5353-:53,\
                 guestfwd=tcp:10.0.2.100:514-tcp:127.0.0.1:10514",
                "socket,id=n1,listen=127.0.0.1:4000",
                "socket,id=n2,connect=127.0.0.1:4001",
            ]
        );
        for arg in &args {
            // Any dotted quad in any argument is loopback or the guest-side
            // forward address.
            for token in arg.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
                let parts: Vec<&str> = token.split('.').collect();
                if parts.len() == 4 && parts.iter().all(|p| !p.is_empty()) {
                    assert!(
                        token == "127.0.0.1" || token == GuestFwd::GUEST_ADDR,
                        "non-loopback address {token} in {arg}"
                    );
                }
            }
        }
        // Each NIC skips the iPXE ROM and has a MAC of its own.
        let devices = value_of(&args, "-device");
        let nics: Vec<_> = devices
            .iter()
            .filter(|d| d.starts_with("virtio-net-pci"))
            .collect();
        assert_eq!(nics.len(), 3);
        assert!(nics.iter().all(|d| d.ends_with(",romfile=")));
        assert!(nics[0].contains("mac=52:54:02:03:04:00"));
        assert!(nics[2].contains("mac=52:54:02:03:04:02"));
    }

    #[test]
    fn microvm_uses_mmio_devices_and_disks_escape_commas() {
        let cfg = VmConfig::kernel("m", "/k")
            .machine(Machine::Microvm)
            .disk(Disk::raw("/tmp/a,b.img").read_only());
        let args = args_of(&cfg);
        let devices = value_of(&args, "-device");
        assert!(devices.contains(&"virtio-serial-device,id=vser0"));
        assert!(devices.contains(&"virtio-blk-device,drive=d0"));
        assert_eq!(
            value_of(&args, "-drive"),
            ["file=/tmp/a,,b.img,format=raw,if=none,id=d0,readonly=on"]
        );
    }

    #[test]
    fn validate_reports_missing_paths() {
        let err = VmConfig::kernel("v", "/nonexistent/vmlinuz").validate();
        match err {
            Err(Error::MissingFile { what, path }) => {
                assert_eq!(what, "kernel");
                assert_eq!(path, Path::new("/nonexistent/vmlinuz"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = VmConfig::efi("e", "/").validate();
        assert!(matches!(e, Err(Error::Config(_))), "{e:?}");
        let efi = VmConfig::efi("e", "/").disk(Disk::raw("/"));
        assert_eq!(efi.machine_type(), Machine::Q35);
        assert!(efi.validate().is_ok());
        let e = efi.machine(Machine::Microvm).validate();
        assert!(matches!(e, Err(Error::Config(_))), "{e:?}");
        let e = VmConfig::ovmf("o").disk(Disk::raw("/")).validate();
        if !Path::new(OVMF_CODE).exists() {
            assert!(matches!(e, Err(Error::MissingFile { .. })), "{e:?}");
        }
    }

    #[test]
    fn ovmf_boots_from_pflash_with_a_private_variable_store() {
        let cfg = VmConfig::ovmf("o").disk(Disk::raw("/tmp/disk.img"));
        assert_eq!(cfg.machine_type(), Machine::Q35);
        let args = args_of(&cfg);
        assert!(value_of(&args, "-kernel").is_empty());
        assert!(value_of(&args, "-bios").is_empty());
        assert_eq!(
            value_of(&args, "-drive"),
            [
                format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
                "if=pflash,format=raw,unit=1,file=/tmp/rt/efivars.fd".to_owned(),
                "file=/tmp/disk.img,format=raw,if=none,id=d0".to_owned(),
            ]
        );
        assert!(value_of(&args, "-device").contains(&"virtio-blk-pci,drive=d0"));
        assert!(
            value_of(&args, "-boot").is_empty(),
            "the firmware's defaults"
        );
        let bios = args_of(&VmConfig::efi("b", "/fw.fd").disk(Disk::raw("/d")));
        assert_eq!(value_of(&bios, "-bios"), ["/fw.fd"]);
    }
}
